"""`pgolf ttt-eval`: pack directory + validation data -> `eval/` (report.json, ledger.jsonl.zst, manifest.json).

The stage around the pure `pgolf.eval` library. What it adds is everything that touches disk and
everything the rules ask of an evaluation process (rules.md, the [E] rules):

- SIZE-5: the weights come only from the packed artifact (`pgolf.artifacts.packed.load_packed_model`
  decodes pack/model.bin); the sha256 of the bytes decoded is recorded in the eval's inputs.
- DATA-1: the val shards, byte sidecars and tokenizer are hashed against the data manifest before
  the first forward pass; the tokenizer and vocabulary must be the model's.
- DATA-5 / DATA-6: only the val shards, sidecars and tokenizer are opened (never a training shard),
  and nothing here opens a socket.
- TIME-3: the eval clock starts when the command starts, before model.bin is read; loading,
  decompression, dequantization, hashing, warm-up, scoring and adaptation all run on it. With TTT,
  adaptation stops (scoring never does) when the projected finish would pass the budget.
- MET-1 / MET-4: every target is scored (val_tokens = N - 1, tail included) and the byte total must
  equal the data manifest's `val_bytes`; the ledger is re-checked before anything is published.
- TTT-1..8: the library's score-first loop and ledger; `--compare-plain` runs its diagnostic pass
  only after the reported TTT pass, from the same artifact weights (see `run`).

Under torchrun every rank loads the model and scores its share of each chunk (adaptation gradients
are summed across ranks); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import zstandard

from pgolf import artifacts, layout
from pgolf import config as cfgmod
from pgolf.artifacts import MANIFEST, Manifest
from pgolf.artifacts import data as datadir
from pgolf.artifacts.evaluation import LEDGER_FILE, LEDGER_FORMAT, PLAIN_LEDGER_FILE, REPORT_FILE, read_ledger
from pgolf.artifacts.packed import MODEL_FILE, load_packed_model
from pgolf.data.bpb import build_byte_tables, lut_stream_bytes
from pgolf.data.tokenizer import load_tokenizer
from pgolf.errors import ArtifactError, ConfigError, DataError, LegalityError
from pgolf.eval import World, evaluate, model_checksum
from pgolf.eval.config import EvalConfig
from pgolf.eval.ledger import check_ledger
from pgolf.runtime import console, dist
from pgolf.runtime import device as devmod
from pgolf.runtime.env import code_info, env_info
from pgolf.stages import runner

# The --json document (and the head of report.json); COMPARE_KEYS are added with --compare-plain.
JSON_KEYS = ("mode", "val_loss", "val_bpb", "val_tokens", "val_bytes", "eval_time_s", "tokens_per_s", "ledger")
COMPARE_KEYS = ("plain_val_bpb", "ttt_gain_bpb")
ZSTD_LEVEL = 10



# ----------------------------------------------------------------------------- config


def resolve_config(table: Mapping[str, Any], pack_dir: str | Path | None = None) -> EvalConfig:
    """The stage contract's config step, the one place the evaluation is resolved (`pgolf ttt-eval` and
    `pgolf run` alike): EvalConfig defaults <- the evaluation the pack records (what its train_gpt.py
    runs; see `pack_eval_table`) <- `table`."""
    base = pack_eval_table(pack_dir) if pack_dir is not None else None
    return cfgmod.build(EvalConfig, cfgmod.merge_tables(base or {}, table))


def load_config(config: str | Path | None = None, overrides: Sequence[str] = (), mode: str | None = None, *,
                pack: str | Path | None = None) -> EvalConfig:
    """EvalConfig: defaults <- what `pack` records <- the TOML file's `[eval]` table (or the whole file)
    <- `--set` <- `--mode`."""
    table = cfgmod.load_section(config, "eval", nested=("ttt",)) if config is not None else {}
    overrides = list(overrides) + ([f"mode={mode}"] if mode is not None else [])
    return resolve_config(cfgmod.merge_tables(table, cfgmod.overrides_to_table(EvalConfig, overrides)), pack)


def pack_eval_table(pack_dir: str | Path) -> dict[str, Any] | None:
    """The evaluation `pgolf pack` recorded for the artifact (what its train_gpt.py runs), from the
    pack manifest; None when there is none to read (the stage then reports what is wrong)."""
    try:
        manifest = artifacts.read_manifest(pack_dir, "pack")
    except ArtifactError:
        return None
    table = manifest.metrics.get("eval", manifest.config.get("eval"))
    return dict(table) if isinstance(table, dict) else None


def fill_seq_len(cfg: EvalConfig, train_seq_len: int | None) -> EvalConfig:
    """Fill `seq_len = 0` with the model's training sequence length (validated again)."""
    if cfg.seq_len:
        return cfg
    if not train_seq_len:
        raise ConfigError("config key 'seq_len' is 0 (the training length) but the pack records no training "
                          "sequence length", "pass --set seq_len=L")
    changes: dict[str, Any] = {"seq_len": int(train_seq_len)}
    if cfg.mode == "plain":  # plain windows do not stride: a default stride above L is not an error there
        changes["stride"] = min(cfg.stride, int(train_seq_len))
    return dataclasses.replace(cfg, **changes)


def default_out(pack_dir: str | Path) -> Path:
    """`eval/` next to the pack directory (the run layout: runs/<run>/pack -> runs/<run>/eval)."""
    return layout.next_to(pack_dir, "eval")


def verify_target(out: str | Path) -> Path:
    """What to hand `pgolf verify`: the run directory when `out` sits in one, else the eval directory."""
    out = Path(out)
    return out.parent if out.name == "eval" and (out.parent / "pack" / MANIFEST).is_file() else out


# ----------------------------------------------------------------------------- validation data


@dataclasses.dataclass
class ValSet:
    """The validation stream as evaluation sees it, checked against the data manifest.

    tokens [N] (uint16, all val shards in sorted order); token_bytes [N] (the bytes each token adds
    to the normalized text; entry 0 is never a target); val_bytes = token_bytes[1:].sum().
    """

    dir: datadir.DataDir
    tokens: np.ndarray
    token_bytes: np.ndarray
    val_bytes: int
    bytes_source: str  # "sidecar" or "lut" (official shards without a sidecar)
    vocab_size: int | None
    tokenizer_sha256: str | None
    bos_id: int | None

    @property
    def manifest(self) -> Manifest | None:
        return self.dir.manifest  # type: ignore[return-value]

    def inputs(self, manifest_dir: Path) -> list[dict[str, Any]]:
        """Lineage: the data manifest; for official shards without one, the val shards and tokenizer by sha256."""
        if self.manifest is not None:
            return [artifacts.input_entry("data", self.dir.path / MANIFEST, manifest_dir)]
        shards = datadir.list_shards(self.dir.path, "val")
        entries = [artifacts.input_entry("val_shard", p, manifest_dir) for p in shards]
        if self.dir.tokenizer_path is not None:
            entries.append(artifacts.input_entry("tokenizer", self.dir.tokenizer_path, manifest_dir))
        return entries


def open_val(data: str | Path | None, tokenizer: str | Path | None = None) -> ValSet:
    """Resolve, hash-check and load the validation split of a data directory.

    A pgolf data directory is checked file by file against its manifest (DATA-1) and its byte total
    against the manifest's `val_bytes` (MET-1). A directory of official shards without a manifest
    is accepted with a warning: its val shards and tokenizer are recorded by sha256, and the bytes
    come from the tokenizer's lookup tables.
    """
    if tokenizer is not None and data is not None and (Path(data) / MANIFEST).is_file():
        raise ConfigError("--tokenizer is only for shards without a pgolf manifest; a pgolf data directory "
                          "is evaluated with its own tokenizer.model", "drop --tokenizer")
    d = datadir.resolve_data_dir(data, tokenizer)
    manifest: Manifest | None = d.manifest  # type: ignore[assignment]
    if manifest is not None:
        datadir.check_val_files(d.path, manifest)
    elif not datadir.list_shards(d.path, "val"):
        raise DataError(f"no fineweb_val_*.bin shards in {d.path}", "pass the directory that holds the val shards")

    sp = None
    if manifest is None and d.tokenizer_path is not None:

        sp = load_tokenizer(d.tokenizer_path.read_bytes(), str(d.tokenizer_path))
    if manifest is not None:
        data_vocab = manifest.metrics.get("vocab_size")
    else:
        data_vocab = sp.vocab_size() if sp is not None else None
    tokens = datadir.load_val_tokens(d.path, data_vocab)  # ids checked against the data's own vocabulary
    side = datadir.load_val_bytes(d.path)
    if side is not None:
        token_bytes, source = side, "sidecar"
    elif manifest is not None:
        raise DataError(f"{d.path} has no byte sidecar (bytes_val_*.bin) although it has a pgolf manifest",
                        "rebuild the data directory with `pgolf data build`")
    elif sp is not None:

        token_bytes, source = lut_stream_bytes(build_byte_tables(sp), tokens).astype(np.int32), "lut"
    else:
        raise DataError(f"{d.path} has neither a byte sidecar nor a tokenizer: val_bpb cannot be computed",
                        "pass --tokenizer PATH.model (the SentencePiece model of these shards)")
    val_bytes = int(np.asarray(token_bytes[1:], dtype=np.int64).sum())

    if manifest is not None:
        m = manifest.metrics
        if m.get("val_tokens") is not None and int(m["val_tokens"]) != tokens.shape[0]:
            raise DataError(f"the val shards in {d.path} hold {tokens.shape[0]:,} tokens, the data manifest says "
                            f"{int(m['val_tokens']):,} (rules DATA-1)",
                            "rebuild the data directory with `pgolf data build`")
        if m.get("val_bytes") is None:
            raise DataError(f"the data manifest in {d.path} records no val_bytes: the BPB denominator cannot be "
                            "checked (rules MET-1)", "rebuild the data directory with `pgolf data build`")
        if int(m["val_bytes"]) != val_bytes:
            raise DataError(f"the byte sidecar of {d.path} sums to {val_bytes:,} bytes over the val targets, the data "
                            f"manifest says {int(m['val_bytes']):,} (rules MET-1)",
                            "rebuild the data directory with `pgolf data build`")
        tok_sha = m.get("tokenizer_sha256")
        if tok_sha is None and d.tokenizer_path is not None:
            tok_sha = artifacts.sha256_file(d.tokenizer_path)
        bos = m.get("bos_id")
    else:
        tok_sha = artifacts.sha256_file(d.tokenizer_path) if d.tokenizer_path is not None else None
        bos = None
        console.warn(f"{d.path} has no pgolf data manifest: the val shards are recorded by sha256 but cannot be "
                     "checked against a canonical list (rules DATA-1; `pgolf verify` warns)")
    return ValSet(dir=d, tokens=tokens, token_bytes=token_bytes, val_bytes=val_bytes, bytes_source=source,
                  vocab_size=None if data_vocab is None else int(data_vocab), tokenizer_sha256=tok_sha,
                  bos_id=None if bos is None else int(bos))


# ----------------------------------------------------------------------------- the packed model


def load_model(pack_dir: str | Path):
    """(GPT, PackedInfo) decoded from pack/model.bin: the only way evaluation gets weights (SIZE-5).

    The pack manifest is read first, so a missing directory or one that is not a pack artifact
    gets its own message; the loader checks model.bin against the manifest's sha256 before decoding.
    """
    artifacts.read_manifest(pack_dir, "pack")
    return load_packed_model(pack_dir)


def _upstream(directory: Path, manifest: Manifest, kind: str) -> tuple[Path, Manifest] | None:
    """The `kind` manifest that `manifest` names as its input, or None when the lineage is not reachable."""
    entry = next((e for e in manifest.inputs if e.get("kind") == kind), None)
    if entry is None:
        return None
    path = artifacts.resolve_input(directory, entry)
    if path.name != MANIFEST or not path.is_file():
        return None
    try:
        return path.parent, artifacts.read_manifest(path.parent, kind)
    except ArtifactError:
        return None


def trained_tokenizer_sha256(pack_dir: Path, pack_manifest: Manifest) -> str | None:
    """sha256 of the tokenizer the packed model was trained with, from its lineage (pack -> quant ->
    train -> data manifests; manifests only, no data file is opened), or None when not reachable."""
    quant = _upstream(pack_dir, pack_manifest, "quant")
    train = _upstream(*quant, "train") if quant else None
    if train is None:
        return None
    data = _upstream(*train, "data")
    if data is not None:
        return data[1].metrics.get("tokenizer_sha256")
    tok = next((e for e in train[1].inputs if e.get("kind") == "tokenizer"), None)  # trained on official shards
    return tok.get("sha256") if tok else None


def check_compatible(model_cfg, val: ValSet, trained_tokenizer: str | None) -> None:
    """The data must be tokenized as the model was trained: same vocabulary, tokenizer and BOS id."""
    fix = "evaluate on data built with the model's tokenizer (`pgolf data build --tokenizer ...`)"
    if val.vocab_size is not None and val.vocab_size != model_cfg.vocab_size:
        raise DataError(f"the data in {val.dir.path} has a vocabulary of {val.vocab_size} tokens, the model "
                        f"{model_cfg.vocab_size}", fix)
    if trained_tokenizer is not None and val.tokenizer_sha256 is not None and trained_tokenizer != val.tokenizer_sha256:
        raise DataError(f"the data in {val.dir.path} was tokenized with another tokenizer than the model was trained "
                        f"with (sha256 {val.tokenizer_sha256[:12]}... vs {trained_tokenizer[:12]}...)", fix)
    if val.bos_id is not None and val.bos_id != model_cfg.bos_id:
        raise DataError(f"the data's BOS id is {val.bos_id}, the model's {model_cfg.bos_id}", fix)


# ----------------------------------------------------------------------------- the stage


class Pass(NamedTuple):
    """One evaluation pass: its result (`pgolf.eval.EvalResult`), its ledger as JSONL, its seconds."""

    result: Any
    ledger: str
    seconds: float


def run(cfg: EvalConfig, pack: str | Path, data: str | Path | None, out: str | Path, *,
        tokenizer: str | Path | None = None, device: str = "auto", compare_plain: bool = False, force: bool = False,
        started: float | None = None, clock: Callable[[], float] = time.perf_counter) -> Manifest:
    """Score the packed model in `pack` on the validation split of `data`; publish `out`. Returns the
    eval manifest (on every rank).

    `started`: a `clock()` reading taken when the command started (default: now); the eval clock and
    the TTT deadline (`cfg.time_budget_s` after it) count from there. `compare_plain`: after the
    reported TTT pass, score the same windows once more without adaptation (a separate diagnostic
    evaluation, never the reported score).
    """
    started = clock() if started is None else started
    pack = Path(pack)
    artifacts.read_manifest(pack, "pack")  # the wrong kind of input is named before anything else
    info = dist.from_env()
    with runner.claim(out, "eval", inputs=[pack, data, tokenizer], force=force, writer=info.is_main) as output:
        return _run(cfg, pack, data, output, info, tokenizer=tokenizer, device=device, compare_plain=compare_plain,
                    started=started, clock=clock)


def _run(cfg: EvalConfig, pack: Path, data: str | Path | None, output: runner.Output, info, *,
         tokenizer: str | Path | None, device: str, compare_plain: bool, started: float,
         clock: Callable[[], float]) -> Manifest:
    out = output.out
    if compare_plain and cfg.mode != "ttt":
        raise ConfigError(f"--compare-plain compares a TTT pass with the same windows scored without adaptation; "
                          f"mode is {cfg.mode!r}", "use --mode ttt")
    dev = devmod.resolve_device(device, info.local_rank)
    dist.init(info, dev)
    try:
        t = clock()
        model, packed = load_model(pack)
        load_s = clock() - t
        cfg = fill_seq_len(cfg, packed.seq_len)
        model_cfg = packed.model_config
        t = clock()
        val = open_val(data, tokenizer)  # hashed before the first forward (DATA-1)
        check_compatible(model_cfg, val, trained_tokenizer_sha256(pack, packed.manifest))
        data_s = clock() - t
        model = model.to(dev)
        world = World.current()
        num_tokens = int(val.tokens.shape[0])
        if info.is_main:
            tilt = "" if cfg.tilt_config is None else f", {cfg.tilt} tilt (order {cfg.tilt_order})"
            console.info(f"ttt-eval: {cfg.mode}{tilt}, window {cfg.seq_len}, stride {cfg.window_stride}, "
                         f"{num_tokens - 1:,} targets, {val.val_bytes:,} bytes, model.bin {packed.model_sha256[:12]}, "
                         f"{devmod.describe(dev)}, world size {world.size}")
        meta = {"pass": "reported", "model_sha256": packed.model_sha256, "val_bytes_source": val.bytes_source}
        initial = model_checksum(model) if compare_plain else None  # what the diagnostic pass must start from

        def score(pass_cfg: EvalConfig, deadline: float | None, role: str) -> Pass:
            t0 = clock()
            with _progress(num_tokens - 1, f"{pass_cfg.mode} eval ({role})", info.is_main) as advance:
                result = evaluate(model, val.tokens, val.token_bytes, pass_cfg, bos_id=model_cfg.bos_id, world=world,
                                  clock=clock, deadline=deadline, vocab_size=model_cfg.vocab_size,
                                  meta={**meta, "pass": role}, on_chunk=advance)
            seconds = clock() - t0
            text = result.ledger.to_jsonl()
            # Re-check the ledger as `pgolf verify` will, before anything is published (MET-1, MET-4, TTT-1..4).
            check_ledger(text, num_positions=num_tokens - 1, val_bytes=val.val_bytes,
                         reported_bpb=result.val_bpb).raise_if_bad()
            return Pass(result, text, seconds)

        reported = score(cfg, started + cfg.time_budget_s if cfg.time_budget_s > 0 else None, "reported")
        eval_time_s = clock() - started  # the final score exists and is checked: the eval clock stops (TIME-3)
        diagnostic = None
        if compare_plain:
            # A second, diagnostic evaluation. It runs after the reported TTT pass, so the reported
            # score is the first pass over the tokens (TTT-2); nothing selects between the two
            # (TTT-3); and it starts from the artifact's own weights, so nothing the TTT pass learned
            # reaches it (and no state reached the TTT pass from it).
            if model_checksum(model) != initial:
                raise LegalityError("the TTT pass did not leave the artifact's weights as loaded; the plain pass "
                                    "would not score the artifact")
            diagnostic = score(dataclasses.replace(cfg, mode="sliding", time_budget_s=0.0), None, "diagnostic")

        manifest = None
        if info.is_main:
            timing = {"eval_time_s": eval_time_s, "load_s": load_s, "data_s": data_s,
                      "warmup_s": reported.result.warmup_time_s, "score_s": reported.result.score_time_s,
                      "adapt_s": reported.result.adapt_time_s, "tilt_s": reported.result.tilt_time_s,
                      "time_budget_s": cfg.time_budget_s}
            if diagnostic is not None:
                timing["plain_pass_s"] = diagnostic.seconds
            manifest = _publish(output, cfg, reported, diagnostic, val, packed, pack, timing,
                                env=_env(dev, world.size))
            _announce(manifest, cfg)
        dist.barrier()
        if manifest is None:
            manifest = artifacts.read_manifest(out, "eval")
        return manifest
    finally:
        dist.shutdown()


def _progress(total: int, label: str, show: bool):
    """A context giving `on_chunk(entry)`: advances a transient progress bar on a terminal (rank 0)."""

    @contextlib.contextmanager
    def bar():
        if not (show and console.console.is_terminal):
            yield None
            return
        with console.progress() as p:
            task = p.add_task(label, total=total)
            yield lambda entry: p.advance(task, entry.count)

    return bar()


def _env(dev, world_size: int) -> dict[str, Any]:

    return env_info(dev.type, world_size)


def _compress(text: str) -> bytes:

    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(text.encode("utf-8"))


def _publish(output: runner.Output, cfg: EvalConfig, reported: Pass, diagnostic: Pass | None, val: ValSet, packed,
             pack: Path, timing: dict[str, Any], env: dict[str, Any]) -> Manifest:

    s = reported.result.summary()
    loop_s = s["score_time_s"] + s["adapt_time_s"]
    metrics: dict[str, Any] = {
        "mode": cfg.mode, "val_loss": s["val_loss"], "val_bpb": s["val_bpb"], "val_tokens": s["val_tokens"],
        "val_bytes": s["val_bytes"], "eval_time_s": timing["eval_time_s"],
        "tokens_per_s": s["val_tokens"] / loop_s if loop_s > 0 else None,
    }
    if diagnostic is not None:
        plain = diagnostic.result
        metrics.update(plain_val_bpb=plain.val_bpb, ttt_gain_bpb=plain.val_bpb - s["val_bpb"],  # positive: TTT helped
                       plain_val_loss=plain.val_loss)
    budget = cfg.time_budget_s
    metrics.update({
        "model_sha256": packed.model_sha256, "seq_len": cfg.seq_len, "stride": cfg.window_stride,
        "num_chunks": s["num_chunks"], "adapted_chunks": s["adapted_chunks"], "adapt_steps": s["adapt_steps"],
        "adapt_stopped_at": s["adapt_stopped_at"], "world_size": reported.result.ledger.meta["world_size"],
        "val_bytes_source": val.bytes_source, "warmup_source": "synthetic", "tilt": cfg.tilt,
        "within_budget": None if budget <= 0 else timing["eval_time_s"] <= budget,
    })
    with output.publish() as work:
        artifacts.atomic_write_bytes(work / LEDGER_FILE, _compress(reported.ledger))
        files = [LEDGER_FILE]
        report = {**metrics, "ledger": LEDGER_FILE}
        if diagnostic is not None:
            artifacts.atomic_write_bytes(work / PLAIN_LEDGER_FILE, _compress(diagnostic.ledger))
            files.append(PLAIN_LEDGER_FILE)
            report["plain_ledger"] = PLAIN_LEDGER_FILE
        artifacts.write_json(work / REPORT_FILE, {**report, "timing": timing})
        files.append(REPORT_FILE)
        # model.bin by the sha256 of the bytes that were decoded, not of a second read (SIZE-5)
        rel = os.path.relpath((pack / MODEL_FILE).resolve(), work.resolve())
        model_bin = {"kind": "pack", "path": Path(rel).as_posix(), "sha256": packed.model_sha256}
        manifest = Manifest(
            kind="eval", config=cfgmod.to_dict(cfg),
            inputs=[artifacts.input_entry("pack", pack / MANIFEST, work), model_bin, *val.inputs(work)],
            files=[artifacts.file_entry(work, f, LEDGER_FORMAT if f.endswith(".zst") else "pgolf.eval.report")
                   for f in files],
            metrics=metrics, timing=timing, seed=packed.manifest.seed, code=code_info(), env=env)
        artifacts.write_manifest(work, manifest)
    return manifest


def _announce(manifest: Manifest, cfg: EvalConfig) -> None:
    """The parameter-golf log line, and what the clock did."""
    m = manifest.metrics
    console.info(f"final_{cfg.mode} val_loss:{m['val_loss']:.8f} val_bpb:{m['val_bpb']:.8f} "
                 f"eval_time:{m['eval_time_s'] * 1000:.0f}ms")
    if m.get("adapt_stopped_at") is not None:
        console.warn(f"adaptation stopped after chunk {m['adapt_stopped_at']} of {m['num_chunks']} to stay within "
                     f"the {cfg.time_budget_s:g} s budget (rules TIME-3); every target was still scored")
    if m.get("within_budget") is False:
        console.warn(f"the evaluation took {m['eval_time_s']:.1f} s, over the {cfg.time_budget_s:g} s budget "
                     "(rules TIME-3); `pgolf verify` judges it for the hardware it ran on")


def summary(manifest: Manifest, out: str | Path) -> dict[str, Any]:
    """The `--json` document of `pgolf ttt-eval`: JSON_KEYS (+ COMPARE_KEYS with --compare-plain) and `out`."""
    m = manifest.metrics
    doc: dict[str, Any] = {k: m.get(k) for k in JSON_KEYS if k != "ledger"}
    doc["ledger"] = str(Path(out) / LEDGER_FILE)
    if "plain_val_bpb" in m:
        doc.update({k: m[k] for k in COMPARE_KEYS})
    doc["out"] = str(out)
    return doc


__all__ = ["COMPARE_KEYS", "JSON_KEYS", "LEDGER_FILE", "PLAIN_LEDGER_FILE", "REPORT_FILE", "ValSet", "check_compatible",
           "default_out", "load_config", "load_model", "open_val", "pack_eval_table", "read_ledger",
           "fill_seq_len", "resolve_config", "run", "summary", "trained_tokenizer_sha256", "verify_target"]
