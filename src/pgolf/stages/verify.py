"""`pgolf verify`: gather the evidence of one or several runs from disk, run every check, write a report.

A DIR is an eval directory (or any stage directory), a run directory (`data/ train/ quant/ pack/
eval/`, the layout of `pgolf run`: one run), a `pgolf run --seeds` directory (its `seed-<N>/` runs)
or a directory of per-seed run directories (see `find_runs`). From the top stage
the lineage is followed through each manifest's inputs (eval -> pack -> quant -> train -> data, and
eval -> data), re-hashing every file and input on the way; nothing is trusted because a manifest
says so. All reading of evidence happens in `collect` (which also reads the launch ledger `pgolf run`
keeps in run.json), so adapting to a stage's new manifest fields touches one place.

The report goes to `--out`, or by default to `<run dir>/verify` (for a stage directory, its
run directory's `verify/`; for several DIRs, `verify/` in their common parent): `manifest.json` +
`report.json`, written atomically, replacing the previous verify report there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgolf import artifacts
from pgolf.artifacts import MANIFEST, Manifest
from pgolf.artifacts import corpus as corpus_io
from pgolf.artifacts import data as datadir
from pgolf.artifacts import submission_folder as writer
from pgolf.artifacts.evaluation import LEDGER_NAMES, read_ledger
from pgolf.artifacts.model import LOG_FILE, METRICS_FILE
from pgolf.artifacts.model import MODEL_FILE as MODEL_NAME
from pgolf.artifacts.packed import CODE_FILE, MODEL_FILE, load_packed_model
from pgolf.artifacts.run_record import (
    RUN_FILE,
    RUN_FORMAT,
    launch_config_sha256,
    launch_log_path,
    read_launch_log,
)
from pgolf.config import flat_items
from pgolf.data.bpb import build_byte_tables as bpb_tables
from pgolf.data.bpb import build_piece_table, lut_stream_bytes
from pgolf.data.caseops import control_ids, decoded_original_bytes
from pgolf.data.tokenizer import load_tokenizer
from pgolf.errors import ArtifactError, PgolfError
from pgolf.eval.ledger import parse_ledger
from pgolf.layout import SEED_DIR
from pgolf.pack import decode_model
from pgolf.runtime import console
from pgolf.runtime.env import code_info
from pgolf.stages import runner
from pgolf.verify import facts as factmod
from pgolf.verify import significance as sig
from pgolf.verify.audit import BOOTSTRAP, AuditFacts, parse_log
from pgolf.verify.checks import run_checks
from pgolf.verify.evidence import (
    STAGE_KINDS,
    ContaminationFacts,
    DataFacts,
    Evidence,
    FileFact,
    InputFact,
    LaunchFacts,
    LaunchLogFacts,
    LedgerFacts,
    Options,
    PaidPrefixFacts,
    ReproductionFacts,
    SeedEvidence,
    StageFacts,
    TrainReproductionFacts,
)
from pgolf.verify.probes import ContaminationConfig, contamination, replay, run_probes, scorer_for, tilt_of
from pgolf.verify.records import seed_record
from pgolf.verify.results import counts, failed
from pgolf.verify.rules import RULESET

REPORT_FILE = "report.json"
# Val documents are hashed against the training shards when those hold at most this many tokens
# (the 8B-token challenge set is not rescanned on every verify; its document ranges are checked).
OVERLAP_SCAN_TOKENS = 200_000_000
# Where each stage's lineage points (input kind of the stage's manifest -> role in the evidence).
UPSTREAM = {"eval": ("pack", "data"), "pack": ("quant",), "quant": ("train",), "train": ("data",)}


# ============================================================================ finding the runs


def _manifest_kind(directory: Path) -> str | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text("utf-8")).get("kind"))
    except (OSError, ValueError, AttributeError):
        return "?"  # unreadable: read_manifest will say why


def _stage_subdirs(directory: Path) -> list[str]:
    return [k for k in STAGE_KINDS if (directory / k / MANIFEST).is_file()]


def _is_run(directory: Path) -> bool:
    return directory.is_dir() and (bool(_stage_subdirs(directory)) or _manifest_kind(directory) == "eval")


def _seed_dirs(path: Path) -> list[Path]:
    """The `seed-<N>` run directories of a `pgolf run --seeds` directory, by seed."""
    found = [p for p in path.iterdir() if SEED_DIR.fullmatch(p.name) and _is_run(p)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def find_runs(path: str | Path) -> list[tuple[str, Path, str]]:
    """(label, top stage directory, its kind) for each run under `path`.

    `path` is a stage directory; a run directory (one run, from its latest stage: other directories
    in it, such as an extra evaluation, are not seeds); a `pgolf run --seeds` directory (its
    `seed-<N>` runs are the seeds); or a directory that holds no stages itself but run directories
    (each one a seed).
    """
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path} does not exist or is not a directory", "pass an eval or run directory")
    kind = _manifest_kind(path)
    if kind is not None and kind != "run":
        artifacts.read_manifest(path)  # an unreadable top manifest is an error (exit 1)
        if kind not in STAGE_KINDS:
            raise ArtifactError(f"{path} holds a '{kind}' artifact, not a stage of a run",
                                "pass the run directory or its eval directory")
        label = path.parent.name if kind in STAGE_KINDS and path.name == kind else path.name
        return [(label, path, kind)]
    seeds = _seed_dirs(path)
    if seeds:
        return [run for child in seeds for run in find_runs(child)]
    present = _stage_subdirs(path)
    if set(present) - {"data"}:  # a run directory (a shared data/ alone does not make one)
        top = next(k for k in reversed(STAGE_KINDS) if k in present)  # the latest stage the run reached
        artifacts.read_manifest(path / top)
        return [(path.name, path / top, top)]
    children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                      and p.name not in STAGE_KINDS and p.name != "verify" and _is_run(p))
    if children:
        return [run for child in children for run in find_runs(child)]
    if present:
        artifacts.read_manifest(path / "data")
        return [(path.name, path / "data", "data")]
    raise ArtifactError(f"{path} holds no pgolf artifact (no manifest.json, no data/ train/ quant/ pack/ eval/ "
                        "with a manifest, no run directories)", "pass an eval directory or a `pgolf run` directory")


# ============================================================================ reading evidence


def _file_fact(directory: Path, entry: dict[str, Any]) -> FileFact:
    path = artifacts.listed_path(directory, entry)
    exists = path.is_file()
    return FileFact(path=str(entry.get("path")), listed_bytes=entry.get("bytes"), listed_sha256=entry.get("sha256"),
                    bytes=path.stat().st_size if exists else None,
                    sha256=artifacts.sha256_file(path) if exists else None)


def _input_fact(directory: Path, entry: dict[str, Any], external: bool) -> InputFact:
    # Lineage entries are relative to the manifest; the data stage's sources are recorded as given.
    path = artifacts.resolve_input(directory, entry) if not external else Path(str(entry.get("path", "")))
    exists = path.is_file()
    return InputFact(kind=str(entry.get("kind")), path=str(entry.get("path")), expected=str(entry.get("sha256")),
                     actual=artifacts.sha256_file(path) if exists else None, resolved=str(path), external=external)


def load_stage(directory: Path, kind: str) -> StageFacts:
    """A stage directory's manifest with its files and inputs re-measured; an unreadable manifest is
    recorded (and judged by LINEAGE), not raised."""
    path = directory / MANIFEST
    sha = artifacts.sha256_file(path) if path.is_file() else None
    try:
        manifest = artifacts.read_manifest(directory)
    except ArtifactError as e:
        return StageFacts(kind=kind, dir=str(directory), manifest=None, error=str(e), manifest_sha256=sha)
    raw = manifest.to_dict()
    try:
        files = [_file_fact(directory, e) for e in manifest.files]
        # The data stage's inputs name the corpus and tokenizer it was built from, outside the run.
        inputs = [_input_fact(directory, e, external=manifest.kind == "data") for e in manifest.inputs]
    except ArtifactError as e:  # a file outside the stage's directory, an absolute or linked input
        return StageFacts(kind=kind, dir=str(directory), manifest=None, error=str(e), manifest_sha256=sha)
    error = None if manifest.kind == kind else f"holds a '{manifest.kind}' artifact where a '{kind}' one was expected"
    return StageFacts(kind=kind, dir=str(directory), manifest=raw if error is None else None, error=error,
                      files=files, inputs=inputs, manifest_sha256=sha)


def walk_lineage(top: Path, top_kind: str, seed: SeedEvidence) -> dict[str, Path]:
    """Load the top stage and everything its inputs lead to; returns the directory of each role."""
    dirs: dict[str, Path] = {}
    todo = [(top_kind, top)]
    while todo:
        kind, directory = todo.pop(0)
        role = kind
        if kind == "data" and "data" in dirs and dirs["data"].resolve() != directory.resolve():
            role = "train_data"  # the trainer read other data than the eval scored
        elif kind in dirs:
            continue
        dirs[role] = directory
        stage = load_stage(directory, kind)
        seed.stages[role] = stage
        if stage.manifest is None:
            continue
        for up in UPSTREAM.get(kind, ()):
            entry = stage.input(up)
            if entry is None and up == "data" and stage.input("val_shard") is not None:
                # Official challenge shards have no data manifest: the stage names the val shards (and
                # the tokenizer) by sha256 instead.
                dirs.setdefault("shards", Path(stage.input("val_shard").resolved).parent)
                if stage.input("tokenizer") is not None:
                    dirs.setdefault("tokenizer", Path(stage.input("tokenizer").resolved))
                continue
            if entry is None:
                seed.problems.append(f"the {kind} manifest in {directory} names no {up} input")
                continue
            target = Path(entry.resolved)
            if target.name == MANIFEST and target.is_file():
                todo.append((up, target.parent))
            elif not target.is_file():
                seed.problems.append(f"the {kind} manifest's {up} input {entry.path} is missing: the lineage stops")
    return dirs


def _read_ledger(eval_dir: Path, stage: StageFacts) -> LedgerFacts | None:
    """The ledger, decoded only when it is the file the manifest measured, and never past MAX_LEDGER_BYTES."""
    names = [f.path for f in stage.files if f.path.startswith("ledger")] or list(LEDGER_NAMES)
    path = next((eval_dir / n for n in names if (eval_dir / n).is_file()), None)
    if path is None:
        return LedgerFacts(error="no ledger file in the eval directory")
    listed = next((f for f in stage.files if f.path == path.name), None)
    if listed is not None and (listed.sha256 != listed.listed_sha256 or listed.bytes != listed.listed_bytes):
        return LedgerFacts(error=f"{path.name} is not the file the eval manifest measured (sha256 mismatch); "
                                 "not decoded")
    try:
        text = read_ledger(eval_dir, path.name)
        header, entries, summary = parse_ledger(text)
    except PgolfError as e:
        return LedgerFacts(error=str(e))
    except (OSError, UnicodeDecodeError) as e:  # a truncated or corrupted file
        return LedgerFacts(error=f"{path.name} cannot be decoded ({type(e).__name__}: {e})")
    return LedgerFacts(header=header, entries=entries, summary=summary)


# (name, path to read or None, why it cannot be read): one training or calibration shard of the lineage.
Source = tuple[str, Path | None, str]


def _training_sources(seed: SeedEvidence, dirs: dict[str, Path]) -> list[Source] | None:
    """Every training shard the lineage names (rules DATA-2): the train manifest's `train_shard` inputs
    (re-hashed by `load_stage`) and the train split of the data directory the train manifest names
    (the eval's data when there is no train stage). None: no training data can be named."""
    train = seed.stages.get("train")
    out: list[Source] = []
    seen: set[str] = set()
    if train is not None and train.manifest is not None:
        for i in train.inputs:
            if i.kind != "train_shard":
                continue
            seen.add(os.path.realpath(i.resolved))
            why = ("missing" if i.actual is None else
                   "its sha256 differs from the train manifest's" if i.actual != i.expected else "")
            out.append((i.path, None if why else Path(i.resolved), why))
        data_in = train.input("data")
        data_dir = dirs.get("train_data", dirs.get("data")) if data_in is not None else None
    else:
        data_dir = dirs.get("train_data", dirs.get("data"))
    if data_dir is not None:
        try:
            shards = datadir.list_shards(data_dir, "train")
        except PgolfError as e:
            seed.problems.append(f"the training shards in {data_dir} cannot be listed ({e})")
            shards = []
        for p in shards:
            if os.path.realpath(p) not in seen:
                out.append((f"{data_dir.name}/{p.name}", p, ""))
    return out if out or train is not None else None


def _scan(tokens: np.ndarray, bos: int, sources: list[Source], seed: SeedEvidence, what: str
          ) -> tuple[int | None, dict[str, int], list[str], str]:
    """(val documents found or None when not scanned, per source, unreadable sources, note)."""
    bad = [f"{name}: {why}" for name, path, why in sources if path is None]
    readable = [(name, path) for name, path, _ in sources if path is not None]
    if not readable:
        return None, {}, bad, f"the lineage names no readable {what} shard"
    try:
        total = sum(datadir.read_header(path) for _, path in readable)
        if total > OVERLAP_SCAN_TOKENS:
            return None, {}, bad, (f"val documents not hashed against {total:,} {what} tokens (over the "
                                   f"{OVERLAP_SCAN_TOKENS:,}-token scan budget): not scanned")
        found, per = factmod.document_overlap_by_source(
            tokens, ((name, datadir.open_shard(path)) for name, path in readable), bos)
    except PgolfError as e:
        seed.problems.append(f"the {what} shards cannot be read ({e})")
        return None, {}, bad, f"the {what} shards cannot be read"
    return found, per, bad, ""


def _calibration_sources(quant: StageFacts) -> list[Source]:
    """The GPTQ calibration shards the quant manifest's provenance names, re-hashed (rules DATA-7)."""
    prov = quant.config.get("calibration")
    if not isinstance(prov, dict) or not isinstance(prov.get("shards"), list):
        return []
    base = Path(str(prov.get("data", "")))
    out: list[Source] = []
    for sh in prov["shards"]:
        if not isinstance(sh, dict):
            continue
        name = str(sh.get("name", "?"))
        path = Path(str(sh["path"])) if sh.get("path") else base if base.name == name else base / name
        if not path.is_file():
            out.append((name, None, f"missing ({path})"))
        elif artifacts.sha256_file(path) != sh.get("sha256"):
            out.append((name, None, f"{path}: its sha256 differs from the quant manifest's"))
        else:
            out.append((name, path, ""))
    return out


def _raw_val_documents(data: StageFacts) -> tuple[Iterator[str] | None, str]:
    """The raw val documents a CaseOps data directory was built from, read again from the corpus its manifest
    names (each file's sha256 checked first; the embedded corpus by its identity), or why they cannot be."""
    n_docs = int(data.metrics.get("val_docs") or 0)
    paths = [str(p) for p in (data.config.get("corpus") or [])]
    named = [i for i in data.inputs if i.kind == "corpus"]
    if not paths:
        ident = corpus_io.embedded_identity()
        if not named or named[0].expected != ident["sha256"]:
            return None, "the embedded corpus of this Python is not the one the data was built from"
        return itertools.islice(corpus_io.embedded_documents(), n_docs), ""
    for i in named:
        if i.actual is None:
            return None, f"the corpus {i.path} is not readable here"
        if not i.ok:
            return None, f"the corpus {i.path} is not the file the data was built from (its sha256 differs)"
    if len(named) != len(paths):
        return None, "the data manifest does not name every corpus file by sha256"
    return itertools.islice(corpus_io.iter_documents(paths), n_docs), ""


def _caseops_raw(data: StageFacts, facts: DataFacts, tokens: np.ndarray, sidecar: np.ndarray | None, sp) -> None:
    if sidecar is None or sp is None or facts.transform_error is not None:
        facts.raw_note = "no byte sidecar or no CaseOps tokenizer with the data"
        return
    try:
        docs, why = _raw_val_documents(data)
        if docs is None:
            facts.raw_note = why
            return
        console.info(f"verify: re-deriving the CaseOps byte sidecar from {facts.val_docs:,} raw val documents")
        facts.raw_bytes, facts.raw_docs, facts.raw_error = factmod.caseops_recount(sp, docs, tokens, sidecar)
    except PgolfError as e:
        facts.raw_note = f"the corpus cannot be read ({e.message})"


def _data_facts(data_dir: Path, bos: int, tok_path: Path | None, train: list[Source] | None, seed: SeedEvidence
                ) -> tuple[DataFacts | None, np.ndarray | None]:
    try:
        tokens = datadir.load_val_tokens(data_dir)
        sidecar = datadir.load_val_bytes(data_dir)
        sp = load_tokenizer(tok_path.read_bytes(), str(tok_path)) if tok_path is not None and tok_path.is_file() \
            else None
    except PgolfError as e:
        seed.problems.append(f"the validation data in {data_dir} cannot be read ({e})")
        return None, None
    data = seed.stages.get("data")
    transform = str(data.metrics.get("transform") or "none") if data is not None and data.manifest is not None \
        else "none"
    facts = factmod.data_facts(tokens, sidecar, sp, bos_id=bos, transform=transform)
    if transform == "caseops" and data is not None:
        _caseops_raw(data, facts, tokens, sidecar, sp)
    facts.tokenizer_sha256 = artifacts.sha256_file(tok_path) if sp is not None and tok_path is not None else None
    if train is not None:
        facts.train_sources = [name for name, _, _ in train]
        with contextlib.suppress(PgolfError):
            facts.train_tokens = sum(datadir.read_header(p) for _, p, _ in train if p is not None)
        facts.overlap_docs, facts.overlap_by_source, facts.train_unreadable, facts.overlap_note = \
            _scan(tokens, bos, train, seed, "training")
    return facts, tokens


def _paid_prefix(pack_dir: Path, tokens: np.ndarray, stage: StageFacts) -> PaidPrefixFacts:
    listed = next((f for f in stage.files if f.path == MODEL_FILE), None)
    if listed is None or listed.sha256 != listed.listed_sha256:  # hashes before decoding
        return PaidPrefixFacts(ngram=32, sampled=0, hits={}, error=f"{MODEL_FILE} is not the file the pack manifest "
                                                                    "measured; not decoded")
    try:
        tensors, _ = decode_model((pack_dir / MODEL_FILE).read_bytes())
    except (PgolfError, OSError) as e:
        return PaidPrefixFacts(ngram=32, sampled=0, hits={}, error=str(e))
    arrays = {name: (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).cpu().numpy()
              for name, t in tensors.items()}
    return factmod.paid_prefix(arrays, tokens)


def _probes(pack_dir: Path, tokens: np.ndarray, bos: int, probe_cfg, seed: SeedEvidence) -> None:
    try:
        loaded = load_packed_model(pack_dir)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (GPT, info) or GPT
    except PgolfError as e:
        seed.problems.append(f"the packed model cannot be loaded for probing ({e})")
        return
    model = model.to("cpu").float().eval()
    led = seed.ledger
    ev = seed.stages.get("eval")
    # The distribution the eval scored: the ledger's config (else the eval manifest's) says whether it was tilted.
    eval_cfg = led.header.get("config") if led is not None and led.error is None else None
    if not isinstance(eval_cfg, dict):
        eval_cfg = ev.config if ev is not None and isinstance(ev.config, dict) else {}
    tilted = tilt_of(eval_cfg) is not None
    # The n-gram tilt's state runs over the whole stream (PR #2135): a tilted distribution is not isolated
    # at BOS even when the model's attention is.
    seed.probe_claims_isolation = bool(getattr(getattr(model, "cfg", None), "attn_doc_mask", False)) and not tilted
    torch.manual_seed(0)
    seed.probes = run_probes(scorer_for(model, eval_cfg), tokens, probe_cfg, bos_id=bos,
                             claims_isolation=seed.probe_claims_isolation)
    if led is not None and led.error is None and led.entries:
        cfg = led.header.get("config") if isinstance(led.header.get("config"), dict) else {}
        on_cpu = ev is not None and str(ev.env.get("device", "")).startswith("cpu")
        exact = on_cpu or not cfg.get("autocast", True)
        seed.probes.append(replay(model, tokens, led.entries, led.header, tol=1e-4 if exact else 5e-3))


def _seq_len(seed: SeedEvidence) -> int:
    """The window the contamination probe scores with: the eval's (ledger header, eval config), else 1024."""
    led = seed.ledger
    for value in ((led.header.get("seq_len") if led is not None else None),
                  seed.stages["eval"].config.get("seq_len") if "eval" in seed.stages else None):
        if isinstance(value, int) and value > 0:
            return value
    return 1024


def _contamination(pack_dir: Path, data_dir: Path, data: StageFacts | None, tokens: np.ndarray, bos: int,
                   seed: SeedEvidence) -> ContaminationFacts:
    """CONTAM-1: the packed model's bpb on val against the data build's held-out split (never a crash: a data
    directory without the split, or one that cannot be read, says why)."""
    import time

    if data is None or data.manifest is None:
        return ContaminationFacts("cannot", "the data has no data manifest (official challenge shards): no held-out "
                                            "split to compare with")
    t0 = time.perf_counter()
    try:
        manifest = artifacts.read_manifest(data_dir, "data")
        heldout = datadir.load_heldout_tokens(data_dir, manifest)
        if heldout is None:
            return ContaminationFacts("cannot", f"the data directory {data_dir} has no held-out split (built before "
                                                "pgolf set one aside, or with --heldout-docs 0); rebuild it with "
                                                "`pgolf data build` to probe")
        tok = data_dir / datadir.TOKENIZER_FILE
        if not tok.is_file():
            return ContaminationFacts("cannot", f"{tok} is missing: bytes per token unknown")
        sp = load_tokenizer(tok.read_bytes(), str(tok))
        tables = bpb_tables(sp)
        loaded = load_packed_model(pack_dir)
        model = (loaded[0] if isinstance(loaded, tuple) else loaded).to("cpu").float().eval()
    except PgolfError as e:
        return ContaminationFacts("cannot", f"the held-out split or the packed model cannot be read ({e})")
    if data.metrics.get("transform") == "caseops":
        # The lookup tables would charge each case-op token 3 bytes: count both splits by decoding + inverting the
        # transform instead (the held-out split has no sidecar; val is counted the same way to compare alike).
        try:
            ctl = control_ids(sp, str(tok))
        except PgolfError as e:
            return ContaminationFacts("cannot", f"CaseOps data with a tokenizer without its control pieces ({e})")
        pieces = build_piece_table(sp)
        val = (np.asarray(tokens), decoded_original_bytes(pieces, tokens, ctl))
        held = (heldout, decoded_original_bytes(pieces, heldout, ctl))
    else:
        val = (np.asarray(tokens), lut_stream_bytes(tables, tokens))
        held = (heldout, lut_stream_bytes(tables, heldout))
    console.info(f"verify: contamination probe of {seed.name}: val against the held-out split")
    facts = contamination(model, val, held, bos_id=bos, seq_len=_seq_len(seed), vocab=int(sp.vocab_size()),
                          cfg=ContaminationConfig())
    facts.seconds = time.perf_counter() - t0
    return facts


def collect(label: str, top: Path, top_kind: str, *, probe_cfg=None) -> SeedEvidence:
    """All evidence about one run, from its top stage directory back to the data."""
    seed = SeedEvidence(label=label, root=str(top))
    dirs = walk_lineage(top, top_kind, seed)
    tokens = None
    data = seed.stages.get("data")
    bos = 1
    if data is not None and data.manifest is not None:
        bos = int(data.metrics.get("bos_id", 1))
        seed.data, tokens = _data_facts(dirs["data"], bos, dirs["data"] / datadir.TOKENIZER_FILE,
                                        _training_sources(seed, dirs), seed)
    elif "shards" in dirs:  # official challenge shards: no data manifest, the val shards named by sha256
        seed.data, tokens = _data_facts(dirs["shards"], 1, dirs.get("tokenizer"), _training_sources(seed, dirs), seed)
    quant = seed.stages.get("quant")
    if seed.data is not None and tokens is not None and quant is not None and quant.manifest is not None:
        calib = _calibration_sources(quant)
        if calib:  # GPTQ calibrated on shards: scan them for val documents (rules DATA-7)
            seed.data.calib_sources = [name for name, _, _ in calib]
            (seed.data.calib_overlap, seed.data.calib_overlap_by_source, seed.data.calib_unreadable,
             seed.data.calib_note) = _scan(tokens, bos, calib, seed, "calibration")
    train = seed.stages.get("train")
    if train is not None:
        seed.launch = read_launch(train)
        if train.manifest is not None:
            seed.train_clocks = read_train_clocks(Path(train.dir))
    ev = seed.stages.get("eval")
    if ev is not None and ev.manifest is not None:
        seed.ledger = _read_ledger(dirs["eval"], ev)
        report = dirs["eval"] / REPORT_FILE
        if report.is_file():
            try:
                seed.eval_report = json.loads(report.read_text("utf-8"))
            except (OSError, ValueError):
                seed.eval_report = None
    pack = seed.stages.get("pack")
    if pack is not None and pack.manifest is not None:
        code = dirs["pack"] / CODE_FILE
        seed.shipped = sorted(p.name for p in dirs["pack"].iterdir() if p.is_file())  # side files too (SIZE-3)
        if code.is_file():
            try:
                seed.code = code.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                seed.problems.append(f"{code} is not UTF-8 text")
        if tokens is not None and (dirs["pack"] / MODEL_FILE).is_file():
            seed.paid_prefix = _paid_prefix(dirs["pack"], tokens, pack)
        if probe_cfg is not None and tokens is not None:
            bos = int(data.metrics.get("bos_id", 1)) if data is not None and data.manifest else 1
            _probes(dirs["pack"], tokens, bos, probe_cfg, seed)
            seed.contamination = _contamination(dirs["pack"], dirs.get("data", Path()), data, tokens, bos, seed)
    return seed


# ============================================================================ --reproduce (REPRO-1)

REPRO_TIMEOUT_S = 3600.0  # one re-executed evaluation; a CPU re-run of a tiny run takes seconds


def _repro_sets(cfg: dict[str, Any]) -> list[str]:
    """The recorded EvalConfig as `--set key=value` overrides (values as TOML literals), budget off: the
    re-execution has its own clock, and a budget would let this machine's speed change what TTT adapts on."""
    from pgolf.config import leaf_paths
    from pgolf.eval.config import EvalConfig

    known = set(leaf_paths(EvalConfig))
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    flat["time_budget_s"] = 0.0
    out = []
    for key, value in flat.items():
        if key in known and value is not None:
            out += ["--set", f"{key}={json.dumps(list(value) if isinstance(value, tuple) else value)}"]
    return out


def reproduce(seed: SeedEvidence, timeout: float = REPRO_TIMEOUT_S) -> ReproductionFacts | None:
    """Re-execute the seed's evaluation from its packed artifact in a fresh `pgolf ttt-eval` process (on the
    data the eval's lineage names, with the recorded eval config, on CPU unless the eval ran on CUDA and
    CUDA is here), read the fresh ledger, and leave the comparison to REPRO-1. None: no eval artifact."""
    import shlex
    import sys
    import tempfile

    from pgolf.verify.checks.reproduce import tolerance

    ev, pack, data = seed.stages.get("eval"), seed.stages.get("pack"), seed.stages.get("data")
    if ev is None or ev.manifest is None:
        return None
    env, cfg = ev.env, ev.config
    data_args: list[str] = []
    if data is not None and data.manifest is not None:
        data_args = ["--data", data.dir]
    elif ev.input("val_shard") is not None:  # official shards: the val shards (and tokenizer) by sha256
        data_args = ["--data", str(Path(ev.input("val_shard").resolved).parent)]
        tok = ev.input("tokenizer")
        if tok is not None:
            data_args += ["--tokenizer", tok.resolved]
    on_cuda = str(env.get("device", "")).startswith("cuda")
    device = "cuda" if on_cuda and torch.cuda.is_available() else "cpu"
    world = env.get("world_size") if isinstance(env.get("world_size"), int) else 1
    pack_dir = pack.dir if pack is not None else "PACK"
    args = ["ttt-eval", pack_dir, *data_args, "--out", "OUT", *_repro_sets(cfg), "--json"]
    # Where this machine cannot re-execute it: the command to run where it can (the eval's device and ranks).
    there = [*args, "--device", "cuda" if on_cuda else "cpu"]
    launcher = ["python", "-m", "pgolf"] if world <= 1 or not on_cuda else \
        ["torchrun", "--standalone", f"--nproc_per_node={world}", "-m", "pgolf"]
    shown = shlex.join([*launcher, *there])
    args += ["--device", device]
    if pack is None or pack.manifest is None:
        return ReproductionFacts("error", shown, reason="the eval's pack artifact is not readable (see LINEAGE)")
    if not data_args:
        return ReproductionFacts("cannot", shown, reason="the validation data the eval scored is not found here")
    if on_cuda and device == "cpu":
        return ReproductionFacts("cannot", shown, device="cuda",
                                 reason=f"the eval ran on cuda ({env.get('gpu') or 'GPU'}, world size {world}) "
                                        "and this machine has no CUDA")
    exact = device == "cpu" and not on_cuda and world <= 1 and str(env.get("torch")) == torch.__version__
    tmp = Path(tempfile.mkdtemp(prefix="pgolf-reproduce-"))
    try:
        out = tmp / "eval"
        cmd = [sys.executable, "-m", "pgolf", *[str(out) if a == "OUT" else a for a in args]]
        shown = shlex.join(cmd)
        facts = ReproductionFacts("ran", shown, device=device, exact=exact, rel_tol=tolerance(exact, env, cfg))
        console.info(f"verify: re-executing the evaluation of {seed.name} ({ev.dir}) in a fresh process")
        status, reason, facts.seconds = _run_fresh(cmd, env.get("num_threads") if device == "cpu" else None,
                                                   timeout, "re-execution", "ttt-eval")
        if status:
            facts.status, facts.reason = status, reason
            return facts
        try:
            _, facts.entries, facts.summary = parse_ledger(read_ledger(out))
            fresh = artifacts.read_manifest(out, "eval")
        except PgolfError as e:
            facts.status, facts.reason = "error", f"the fresh ledger cannot be read ({e})"
            return facts
        bpb = fresh.metrics.get("val_bpb")
        facts.val_bpb = float(bpb) if isinstance(bpb, (int, float)) else None
        if cfg.get("mode") == "ttt" and seed.ledger is not None:
            facts.compare_until = next((e.index for e in seed.ledger.entries if e.adapt == "deadline"), None)
        return facts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ============================================================================ --reproduce-train (REPRO-2)

REPRO_TRAIN_MAX_S = 600.0  # recorded training seconds above which the re-training is refused (the command is printed)
REPRO_TRAIN_TIMEOUT_S = 3600.0


def _toml(value: Any) -> str:
    """A JSON-like value (a manifest's config) as a TOML literal (dict: an inline table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items() if v is not None) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def recipe_toml(cfg: dict[str, Any], device: str = "cpu") -> str:
    """The recorded TrainConfig as a `pgolf train --config` file: [model] and [train] tables (keys whose value is
    None are left to their defaults; the re-training's manifest is then compared with the recorded config)."""
    def table(d: dict[str, Any]) -> str:
        return "".join(f"{k} = {_toml(v)}\n" for k, v in d.items() if v is not None)

    train = {k: v for k, v in cfg.items() if k != "model"}
    train["device"] = device
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    return f"[model]\n{table(model)}\n[train]\n{table(train)}"


def _run_fresh(cmd: list[str], threads: Any, timeout: float, what: str, command: str,
               extra_env: dict[str, str] | None = None) -> tuple[str, str, float]:
    """Run a re-execution (`pgolf COMMAND ...`) in a fresh process with the recorded thread count:
    ("", "", seconds) when it exits 0; ("cannot", reason, seconds) past `timeout`; ("error", its last
    output line, seconds) on a non-zero exit."""
    import subprocess
    import time

    penv = {**os.environ, **(extra_env or {}),
            **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
               if isinstance(threads, int) and threads > 0 else {})}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, env=penv)
    except subprocess.TimeoutExpired:
        return "cannot", f"the {what} ran past {timeout:g} s", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [x for x in (proc.stderr or proc.stdout or "").splitlines() if x.strip()]
        return "error", f"pgolf {command} exited {proc.returncode}: {lines[-1].strip() if lines else 'no output'}", seconds
    return "", "", seconds


def _loss_curve(path: Path) -> dict[int, float]:
    """{step: train_loss} of a metrics.jsonl's step events, plus the final val_loss as step -1."""
    curve: dict[int, float] = {}
    try:
        if path.stat().st_size > MAX_LOG_BYTES:
            return curve
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return curve
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and e.get("event") == "step" and isinstance(e.get("train_loss"), (int, float)):
            curve[int(e["step"])] = float(e["train_loss"])
        elif isinstance(e, dict) and e.get("event") == "end" and isinstance(e.get("val_loss"), (int, float)):
            curve[-1] = float(e["val_loss"])
    return curve


def reproduce_train(seed: SeedEvidence, *, max_seconds: float = REPRO_TRAIN_MAX_S,
                    timeout: float = REPRO_TRAIN_TIMEOUT_S) -> TrainReproductionFacts | None:
    """Re-train the seed's train artifact in a fresh `pgolf train` process from its manifest's recorded config on
    the data its lineage names, on the CPU, and compare the loss curve and the weights (REPRO-2 judges). None:
    no readable train artifact."""
    import shlex
    import sys
    import tempfile

    from pgolf.verify.checks.reproduce import TRAIN_LOSS_REL_TOL, TRAIN_TENSOR_TOL, curve_diff, tensor_diff

    train = seed.stages.get("train")
    if train is None or train.manifest is None:
        return None
    env, cfg, timing = train.env, train.config, train.timing
    data_in = train.input("data")
    data_args: list[str] = []
    if data_in is not None:
        data_args = ["--data", str(Path(data_in.resolved).parent)]
    elif train.input("val_shard") is not None:
        data_args = ["--data", str(Path(train.input("val_shard").resolved).parent)]
        if train.input("tokenizer") is not None:
            data_args += ["--tokenizer", train.input("tokenizer").resolved]
    on_cuda = str(env.get("device", "")).startswith("cuda")
    world = env.get("world_size") if isinstance(env.get("world_size"), int) else 1
    launcher = ["torchrun", "--standalone", f"--nproc_per_node={world}", "-m", "pgolf"] if world > 1 else \
        ["python", "-m", "pgolf"]
    there = [*launcher, "train", "--config", "RECIPE.toml", *(data_args or ["--data", "DATA"]), "--out", "OUT"]
    shown = (f"{shlex.join(there)} (RECIPE.toml: the config of {Path(train.dir) / MANIFEST} as [model] and [train] "
             "tables)")
    seconds = timing.get("train_time_s")
    stop = timing.get("stop_reason") or train.metrics.get("stop_reason")
    if on_cuda or world > 1:
        return TrainReproductionFacts("cannot", shown, reason=f"it trained on {env.get('device')} with world size "
                                                              f"{world}: only one-process CPU runs are re-trained here")
    if isinstance(seconds, (int, float)) and seconds > max_seconds:
        return TrainReproductionFacts("cannot", shown, reason=f"its training took {seconds:.0f} s, over the "
                                                              f"{max_seconds:g} s re-training cap")
    if stop == "time":
        return TrainReproductionFacts("cannot", shown, reason="it was stopped by its clock: a re-run stops at "
                                                              "another step")
    if not data_args:
        return TrainReproductionFacts("cannot", shown, reason="the train manifest names no data directory")
    from pgolf.runtime.env import source_sha256

    recorded_src = (train.manifest.get("code") or {}).get("source_sha256")
    same_code = recorded_src is None or recorded_src == source_sha256()
    exact = not on_cuda and world <= 1 and str(env.get("torch")) == torch.__version__ and same_code
    tmp = Path(tempfile.mkdtemp(prefix="pgolf-reproduce-train-"))
    try:
        out = tmp / "train"
        recipe = tmp / "recipe.toml"
        recipe.write_text(recipe_toml(cfg), "utf-8")
        cmd = [sys.executable, "-m", "pgolf", "train", "--config", str(recipe), *data_args, "--out", str(out), "--json"]
        facts = TrainReproductionFacts("ran", shown, exact=exact, rel_tol=0.0 if exact else TRAIN_LOSS_REL_TOL)
        if not same_code:
            facts.note = (f"pgolf's source here ({source_sha256()[:12]}) is not the one that trained it "
                          f"({str(recorded_src)[:12]}): compared within the tolerance; re-run with that pgolf to "
                          "require bit-identity")
        console.info(f"verify: re-training {seed.name} ({train.dir}) from its recorded recipe in a fresh process")
        # a re-execution is no launch of the config (STAT-3): no line in the launch log
        status, reason, facts.seconds = _run_fresh(cmd, env.get("num_threads"), timeout, "re-training", "train",
                                                   {"PGOLF_LAUNCH_LOG": ""})
        if status:
            facts.status, facts.reason = status, reason
            return facts
        try:
            fresh = artifacts.read_manifest(out, "train")
            mine, _ = artifacts.load_safetensors(out / MODEL_NAME)
            theirs, _ = artifacts.load_safetensors(Path(train.dir) / MODEL_NAME)
        except PgolfError as e:
            facts.status, facts.reason = "error", f"the re-trained or the claimed model cannot be read ({e})"
            return facts
        # Every recorded key must be re-trained with its value (keys a newer pgolf added keep their defaults).
        recorded, redone = flat_items(cfg), flat_items(fresh.config)
        differ = [k for k, v in recorded.items() if k != "device" and redone.get(k, v) != v]
        if differ or not set(recorded) <= set(redone):
            shown_keys = ", ".join(differ[:4]) or "keys pgolf train no longer has"
            facts.status, facts.reason = "error", f"the re-training's config is not the recorded one ({shown_keys})"
            return facts
        claimed = _loss_curve(Path(train.dir) / METRICS_FILE)
        facts.loss_diff, facts.max_loss_rel, facts.steps = curve_diff(claimed, _loss_curve(out / METRICS_FILE),
                                                                      facts.rel_tol)
        facts.tensor_diff, facts.max_tensor_abs = tensor_diff(theirs, mine, 0.0 if exact else TRAIN_TENSOR_TOL)
        facts.tensors = len(theirs)
        if not claimed:
            facts.status, facts.reason = "error", f"{Path(train.dir) / METRICS_FILE} holds no logged loss to compare"
        return facts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ============================================================================ --audit (AUDIT-1)

AUDIT_TIMEOUT_S = 600.0
AUDIT_MIN_TOKENS = 4096  # the slice: at least this many val tokens, and four sequences of the eval's length
# Environment variables the audited file would otherwise inherit and that change what it does.
AUDIT_DROPPED_ENV = ("EVAL_", "PYTHON", "SEED", "TRAIN", "DATA_PATH", "TOKENIZER_PATH", "MODEL_PATH", "RANK",
                     "WORLD_SIZE", "LOCAL_RANK")


def audit_slice_tokens(eval_config: dict[str, Any], available: int) -> int:
    """How many val tokens the audit scores: four sequences of the eval's length (2048 assumed when the
    config says 0, the training length), at least AUDIT_MIN_TOKENS, at most what there is."""
    seq = eval_config.get("seq_len") or 2048
    return min(available, max(AUDIT_MIN_TOKENS, 4 * int(seq) + 1))


def _audit_val_source(seed: SeedEvidence) -> tuple[Path, Path | None] | None:
    """(the val data directory the eval's lineage names, its tokenizer) or None when not found here."""
    ev, data = seed.stages.get("eval"), seed.stages.get("data")
    if data is not None and data.manifest is not None:
        tok = Path(data.dir) / datadir.TOKENIZER_FILE
        return Path(data.dir), tok if tok.is_file() else None
    shard = ev.input("val_shard") if ev is not None and ev.manifest is not None else None
    if shard is not None and Path(shard.resolved).is_file():
        tok_in = ev.input("tokenizer") if ev is not None else None
        found = Path(tok_in.resolved) if tok_in is not None and Path(tok_in.resolved).is_file() else None
        return Path(shard.resolved).parent, found
    return None


def audit_seed(seed: SeedEvidence, timeout: float = AUDIT_TIMEOUT_S) -> AuditFacts | None:
    """Run the seed's packed train_gpt.py under `pgolf.verify.audit.BOOTSTRAP`'s audit hook, in a fresh
    interpreter, in a temporary folder holding the pack directory's files (manifest aside: side files
    included) and a slice of the val data the eval's lineage names; read the hook's log back. AUDIT-1 judges
    it (`pgolf.verify.checks.audit`). None: no readable pack."""
    import shlex
    import subprocess
    import sys
    import tempfile
    import time

    from pgolf.data import shards

    pack = seed.stages.get("pack")
    if pack is None or pack.manifest is None:
        return None
    code, model = Path(pack.dir) / CODE_FILE, Path(pack.dir) / MODEL_FILE
    shown = f"{shlex.quote(sys.executable)} -c <audit bootstrap> LOG {CODE_FILE}"
    if not code.is_file() or not model.is_file():
        return AuditFacts("cannot", shown, reason=f"the pack holds no {CODE_FILE} and {MODEL_FILE} to run")
    source = _audit_val_source(seed)
    if source is None:
        return AuditFacts("cannot", shown, reason="the validation data the eval scored is not found here")
    data_dir, tok = source
    tmp = Path(tempfile.mkdtemp(prefix="pgolf-audit-"))
    try:
        folder, val = tmp / "submission", tmp / "val"
        folder.mkdir()
        val.mkdir()
        for f in Path(pack.dir).iterdir():  # what ships beside the file (side files included), not the manifest
            if f.is_file() and f.name != MANIFEST:
                shutil.copy(f, folder / f.name)
        try:
            tokens = datadir.load_val_tokens(data_dir)
            side = datadir.load_val_bytes(data_dir)
        except PgolfError as e:
            return AuditFacts("cannot", shown, reason=f"the val data cannot be read ({e})")
        ev = seed.stages.get("eval")
        n = audit_slice_tokens(ev.config if ev is not None and ev.manifest is not None else {}, int(tokens.shape[0]))
        (val / "fineweb_val_000000.bin").write_bytes(shards.shard_bytes(tokens[:n]))
        if side is not None:
            (val / "bytes_val_000000.bin").write_bytes(shards.sidecar_bytes(side[:n]))
        log = tmp / "audit.jsonl"
        cmd = [sys.executable, "-c", BOOTSTRAP, str(log), str(folder / CODE_FILE)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(AUDIT_DROPPED_ENV)}
        env.update(DATA_PATH=str(val), TOKENIZER_PATH=str(tok) if tok is not None else str(val / "absent.model"))
        env.setdefault("OMP_NUM_THREADS", "1")
        allowed = [str(p.resolve()) for p in (folder / CODE_FILE, folder / MODEL_FILE, *sorted(val.iterdir()))]
        if tok is not None:
            allowed.append(str(tok.resolve()))
        facts = AuditFacts("ran", shown, tokens=n, allowed=allowed)
        console.info(f"verify: auditing {seed.name}'s train_gpt.py on {n:,} val tokens in a fresh process")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout,
                                  check=False, stdin=subprocess.DEVNULL)
            facts.returncode = proc.returncode
            tail = (proc.stdout or "") + (proc.stderr or "")
        except subprocess.TimeoutExpired as e:
            facts.status, facts.reason = "error", f"the audited run ran past {timeout:g} s"
            tail = e.stdout.decode("utf-8", "replace") if isinstance(e.stdout, bytes) else str(e.stdout or "")
        facts.seconds = time.perf_counter() - t0
        facts.output_tail = tail[-2000:]
        if facts.returncode not in (None, 0):
            lines = [x for x in tail.splitlines() if x.strip()]
            facts.status = "error"
            facts.reason = f"train_gpt.py exited {facts.returncode}: {lines[-1].strip() if lines else 'no output'}"
        facts.roots, facts.events = parse_log(log.read_text("utf-8", "replace")) if log.is_file() else ([], [])
        return facts
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_TRAIN_TIME = re.compile(r"train_time:(\d+(?:\.\d+)?)ms")
MAX_LOG_BYTES = 64 << 20  # a training log of a 10-minute run is well under a megabyte


def read_train_clocks(train_dir: Path) -> dict[str, float]:
    """The training seconds the train artifact's own logs record (TIME-1 compares them with its manifest):
    metrics.jsonl's end event and log.txt's last `train_time:...ms`. Unreadable or absent: left out."""
    clocks: dict[str, float] = {}
    for name in (METRICS_FILE, LOG_FILE):
        path = train_dir / name
        try:
            if not path.is_file() or path.stat().st_size > MAX_LOG_BYTES:
                continue
            lines = path.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in reversed(lines):
            if name == METRICS_FILE:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "end" \
                        and isinstance(event.get("train_time_s"), (int, float)):
                    clocks[name] = float(event["train_time_s"])
                    break
            elif (m := _TRAIN_TIME.search(line)) is not None:
                clocks[name] = float(m.group(1)) / 1000
                break
    return clocks


def read_launch(train: StageFacts) -> LaunchFacts | None:
    """The launch ledger (`pgolf run`'s run.json) that records the training of `train`, or None: no run.json
    beside the run (`RUN/run.json`, or `SWEEP/run.json` for `SWEEP/seed-<N>`), or none that names this
    train artifact (its `stages` record) and the launch that made it."""
    if train.manifest is None:
        return None
    root = Path(train.dir).parent
    for ledger, rel in ((root / RUN_FILE, "."), (root.parent / RUN_FILE, root.name)):
        try:
            record = json.loads(ledger.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
            continue
        stages = record.get("stages")
        made = stages.get("train" if rel == "." else f"{rel}/train") if isinstance(stages, dict) else None
        if not isinstance(made, dict) or made.get("run_id") != train.manifest.get("run_id"):
            continue  # run.json does not speak of this train artifact
        launches = tuple(x for x in record.get("launches") or () if isinstance(x, dict))
        launch = next((x for x in launches if x.get("run_id") == made.get("launch_run_id")), None)
        if launch is not None:
            return LaunchFacts(ledger=str(ledger), record=launch, launches=launches,
                               config_sha256=launch_config_sha256(train.config))
    return None


# ============================================================================ the verification


def default_out(paths: Sequence[Path], runs: Sequence[tuple[str, Path, str]]) -> Path:
    """Where the report goes without --out: the run directory's verify/ (see the module docstring).
    Paths stay as given (relative ones relative): as every `out` pgolf prints."""
    if len(paths) == 1:
        p = Path(paths[0])
        kind = _manifest_kind(p)
        return (p.parent if kind in STAGE_KINDS else p) / "verify"
    try:
        common = os.path.commonpath([os.path.normpath(p) for p in paths])
    except ValueError:  # relative and absolute paths mixed: only absolute ones compare
        common = os.path.commonpath([str(Path(p).resolve()) for p in paths])
    return Path(common) / "verify"


def gather(paths: Sequence[str | Path], options: Options, probe_cfg=None) -> tuple[Evidence, list]:
    """Evidence of every run under `paths` (one SeedEvidence per run) and the runs found."""
    runs = [run for p in paths for run in find_runs(p)]
    if not runs:
        raise ArtifactError("no runs found", "pass an eval or run directory")
    if len(runs) > 1:  # several seeds are a claim, however they were passed
        options = dataclasses.replace(options, claim=True)
    seeds = []
    for label, top, kind in runs:
        console.info(f"verify: reading {top}")
        seeds.append(collect(label, top, kind, probe_cfg=probe_cfg if options.probe else None))
        if options.reproduce:
            seeds[-1].reproduction = reproduce(seeds[-1])
        if options.reproduce_train:
            seeds[-1].train_reproduction = reproduce_train(seeds[-1])
        if options.audit:
            seeds[-1].audit = audit_seed(seeds[-1])
    return Evidence(seeds=seeds, options=options, launch_log=read_launches(seeds)), runs


def read_launches(seeds: Sequence[SeedEvidence]) -> LaunchLogFacts | None:
    """The local launch log's launches of the configs verified (STAT-3); None when no log is kept."""
    path = launch_log_path()
    verified: dict[str, tuple[Any, ...]] = {}
    for s in seeds:
        train = s.stages.get("train")
        if train is not None and train.manifest is not None:
            key = launch_config_sha256(train.config)
            verified[key] = (*verified.get(key, ()), s.seed)
    if path is None or not verified:
        return None
    entries, error = read_launch_log(path, set(verified))
    return LaunchLogFacts(path=str(path), entries=tuple(entries), verified=verified, error=error)


def report_dict(ev: Evidence, results) -> dict[str, Any]:
    """The report: ok, checks, total_bytes, val_bpb (+ stats with several runs), seeds, options."""
    records = [seed_record(s) for s in ev.seeds]
    sizes = [r.artifact_bytes for r in records if r.artifact_bytes is not None]
    scores = [r.val_bpb for r in records if r.val_bpb is not None]
    report: dict[str, Any] = {
        "ok": not failed(results),
        "checks": [r.to_dict() for r in results],
        "total_bytes": max(sizes) if sizes else None,
        "val_bpb": (sum(scores) / len(scores)) if scores else None,
        "counts": counts(results),
        "ruleset": RULESET,
        "track": ev.options.track.name,
        "options": ev.options.to_dict(),
        "seeds": [r.to_dict() for r in records],
        "dirs": [s.root for s in ev.seeds],
    }
    if ev.multi or ev.options.reference_bpb:
        report["stats"] = sig.significance(records, ev.options.reference_bpb)
    if any(s.probes is not None for s in ev.seeds):
        report["probes"] = {s.name: [p.__dict__ for p in s.probes or []] for s in ev.seeds}
    return report


def write_report(output: runner.Output, report: dict[str, Any], ev: Evidence) -> Manifest:
    """verify/ (report.json and a manifest); it replaces its own previous report, never anything else."""
    out = output.out
    with output.publish() as work:
        artifacts.write_json(work / REPORT_FILE, report)
        inputs = []
        for s in ev.seeds:
            top = Path(s.root) / MANIFEST
            if top.is_file():
                inputs.append(artifacts.input_entry(next(iter(s.stages), "eval"), top, out))
        manifest = Manifest(kind="verify", config=ev.options.to_dict(), inputs=inputs,
                            files=[artifacts.file_entry(work, REPORT_FILE, "pgolf.verify.report")],
                            metrics={k: report[k] for k in ("ok", "total_bytes", "val_bpb", "counts")},
                            code=code_info())
        artifacts.write_manifest(work, manifest)
    return manifest


def run(paths: Sequence[str | Path], options: Options, *, out: str | Path | None = None, probe_cfg=None,
        submission=None) -> dict[str, Any]:
    """Verify the runs under `paths`; write the report (and, when asked and nothing FAILs, the
    submission folder). Returns the report; `report["ok"]` is False when a check FAILs."""
    paths = [Path(p) for p in paths]
    if submission is not None and Path(submission.out).exists() and not submission.force:
        raise ArtifactError(f"{submission.out} already exists", "pass --force to replace it, or choose another "
                                                                 "--submission")
    runs = [run for p in paths for run in find_runs(p)]
    target = Path(out) if out is not None else default_out(paths, runs)
    tops = [top for _, top, _ in runs]
    with runner.claim(target, "verify", inputs=tops, force=True) as output:
        ev, runs = gather(paths, options, probe_cfg)
        results = run_checks(ev)
        written = None
        if submission is not None and not failed(results):
            runner.guard_inputs(Path(submission.out), tops)
            written, results = writer.write(ev, results, submission)
        report = report_dict(ev, results)
        if submission is not None:
            report["submission"] = str(written) if written is not None else None
        write_report(output, report, ev)
    report["out"] = str(output.out)
    return report
