"""`pgolf train`: data directory + config -> `train/` (model.safetensors, manifest, metrics.jsonl, log.txt).

Disk layout while a run is in progress: everything lives in `OUT.partial/` next to the output:
`run.json` (the effective config and the data's identity), `metrics.jsonl`, `log.txt` and
`checkpoint.safetensors` (model, optimizer states, EMA/SWA, stream position, RNG, elapsed time and
the byte offsets of the two logs; replaced atomically, never half-written). `--resume` truncates the
logs back to those offsets and continues from the checkpoint; the same seed on CPU then gives the
same bits as an uninterrupted run. When training ends the model and the manifest are written, the
checkpoint is removed and `OUT.partial/` is renamed to `OUT` (artifacts.publish_dir).

Under torchrun every rank trains; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from pgolf import artifacts, layout
from pgolf import config as cfgmod
from pgolf.artifacts import Manifest
from pgolf.artifacts import data as datadir
from pgolf.artifacts.model import LOG_FILE, METRICS_FILE, MODEL_FILE, MODEL_FORMAT
from pgolf.data.bpb import build_byte_tables, lut_stream_bytes
from pgolf.data.stream import TokenBatches, TokenStream
from pgolf.errors import ArtifactError, ConfigError, DataError
from pgolf.model import GPT, num_params
from pgolf.runtime import console, dist
from pgolf.runtime import device as devmod
from pgolf.runtime.env import code_info, env_info
from pgolf.runtime.metrics import LineFile, MetricsWriter
from pgolf.runtime.seed import seed_everything
from pgolf.stages import runner
from pgolf.train.checkpoint import decode_state, encode_state
from pgolf.train.config import TrainConfig
from pgolf.train.loop import Hooks, Runtime, log_line, train
from pgolf.train.validate import ValData

CHECKPOINT_FILE = "checkpoint.safetensors"
RESUME_FILE = "resume.json"  # the interrupted run's config and data identity, in train.partial/
LEGACY_RESUME_FILE = "run.json"  # its name before 0.1.1 (it is not the pipeline's run.json)
JSON_KEYS = ("out", "steps", "train_time_s", "tokens_per_s", "params", "final_train_loss", "val_loss", "val_bpb")

# Presets ship inside the package (src/pgolf/configs, so an installed pgolf has them); the
# repository's top-level configs/ is a link to that directory.
PRESET_DIR = Path(__file__).resolve().parents[1] / "configs"


# ----------------------------------------------------------------------------- configs and presets


def _is_training_config(path: Path) -> bool:
    """A training preset has only [model] and [train] tables (configs/ also holds `pgolf run` configs)."""
    return set(cfgmod.load_toml(path)) <= {"model", "train"}


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml") if _is_training_config(p))


def preset_path(name: str) -> Path:
    """The TOML file of a shipped training preset; an unknown name is an error suggesting the closest one."""
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        names = preset_names()
        close = difflib.get_close_matches(name, names, n=1)
        guess = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset '{name}'{guess}", f"valid presets: {', '.join(names) or 'none found'}")
    if not _is_training_config(path):
        raise ConfigError(f"configs/{name}.toml is a pipeline config for `pgolf run`, not a training preset",
                          f"run it with `pgolf run {path}`, or pick a preset: {', '.join(preset_names())}")
    return path


def config_table(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """A preset/config file's `[model]` and `[train]` tables as one TrainConfig table."""
    unknown = sorted(set(raw) - {"model", "train"})
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {', '.join(unknown)}; a training config has [model] and [train]")
    table = dict(raw.get("train", {}))
    if "model" in table:
        raise ConfigError(f"{source}: put model settings in the [model] table, not [train].model")
    table["model"] = dict(raw.get("model", {}))
    return table


def load_config(preset: str | None = None, config: str | Path | None = None, overrides: Sequence[str] = ()):
    """TrainConfig from a preset name or a TOML file, then `--set` overrides."""

    if preset is not None and config is not None:
        raise ConfigError("pass either --preset or --config, not both")
    table: dict[str, Any] = {}
    if preset is not None or config is not None:
        path = preset_path(preset) if preset is not None else Path(config)
        table = config_table(cfgmod.load_toml(path), str(path))
    return cfgmod.build(TrainConfig, table, list(overrides))


# ----------------------------------------------------------------------------- data


class TrainData:
    """The shards and validation arrays of one data directory, checked against the model's vocab."""

    def __init__(self, data: str | Path | None, tokenizer: str | Path | None, vocab_size: int,
                 record_shards: bool = True):
        self.dir = datadir.resolve_data_dir(data, tokenizer)
        manifest = self.dir.manifest
        data_vocab = manifest.metrics.get("vocab_size") if manifest is not None else None
        if data_vocab is None and self.dir.tokenizer_path is not None:
            data_vocab = _tokenizer(self.dir.tokenizer_path).vocab_size()
        if data_vocab is not None and data_vocab > vocab_size:
            raise ConfigError(f"the data in {self.dir.path} has a vocabulary of {data_vocab} tokens, more than the "
                              f"model's vocab_size {vocab_size}", f"pass --set vocab_size={data_vocab}")
        if manifest is not None:
            # What evaluation will score: the val shards, sidecar and tokenizer are the files the data
            # manifest measured (an edited sidecar would otherwise be trained against silently).
            datadir.check_val_files(self.dir.path, manifest)
        # A pgolf data dir states its vocabulary (and its build checked every id); other shards are
        # range-checked token by token against the model, so an out-of-vocabulary id is one clear line.
        self.train = datadir.open_split(self.dir.path, "train", None if manifest is not None else vocab_size)
        self.val_tokens = datadir.load_val_tokens(self.dir.path, vocab_size)
        # Provenance of every training shard opened (rules DATA-2), hashed once here, before the clock;
        # by the rank that writes the manifest only (`record_shards`).
        self.train_shards = self._train_shards(manifest) if record_shards else []
        self.target_bytes, self.bytes_source = self._target_bytes()

    def _train_shards(self, manifest: Any) -> list[tuple[Path, str, int]]:
        """(path, sha256, tokens) of each fineweb_train_*.bin opened. A pgolf data manifest's sha256 is
        taken when the file's size matches the listed one; anything else is hashed."""
        listed = {str(e.get("path")): e for e in manifest.files} if manifest is not None else {}
        out = []
        for path, arr in zip(datadir.list_shards(self.dir.path, "train"), self.train):
            entry = listed.get(path.name)
            sha = entry.get("sha256") if entry is not None and entry.get("bytes") == path.stat().st_size else None
            out.append((path, str(sha) if sha else artifacts.sha256_file(path), int(arr.shape[0])))
        return out

    def _target_bytes(self) -> tuple[np.ndarray | None, str]:
        side = datadir.load_val_bytes(self.dir.path)
        if side is not None:
            return side, "sidecar"
        if self.dir.tokenizer_path is None:
            return None, "none"

        return lut_stream_bytes(build_byte_tables(_tokenizer(self.dir.tokenizer_path)), self.val_tokens), "lut"

    def identity(self) -> dict[str, Any]:
        """What must not change between an interrupted run and its resume."""
        man = self.dir.path / artifacts.MANIFEST
        return {
            "path": str(self.dir.path.resolve()),
            "manifest_sha256": artifacts.sha256_file(man) if man.is_file() else None,
            "train_shards": [[p.name, p.stat().st_size] for p in datadir.list_shards(self.dir.path, "train")],
            "val_shards": [[p.name, p.stat().st_size] for p in datadir.list_shards(self.dir.path, "val")],
        }

    def inputs(self, manifest_dir: Path) -> list[dict[str, Any]]:
        """Lineage: the data manifest; for official shards without one, the val shards and tokenizer by
        sha256; and always every training shard read (`train_shard`, with its sha256 and token count)."""
        base = Path(manifest_dir).resolve()
        shards = [{"kind": "train_shard", "path": Path(os.path.relpath(p.resolve(), base)).as_posix(), "sha256": sha,
                   "tokens": tokens} for p, sha, tokens in self.train_shards]
        man = self.dir.path / artifacts.MANIFEST
        if man.is_file():
            return [artifacts.input_entry("data", man, manifest_dir), *shards]
        entries = [artifacts.input_entry("val_shard", p, manifest_dir) for p in datadir.list_shards(self.dir.path, "val")]
        if self.dir.tokenizer_path is not None:
            entries.append(artifacts.input_entry("tokenizer", self.dir.tokenizer_path, manifest_dir))
        return entries + shards


def _log_launch(cfg, td: TrainData, out: Path, stored: dict[str, Any], resume: bool) -> None:
    """Append this launch to pgolf's launch log (`pgolf.artifacts.run_record`), so `pgolf verify` sees every seed
    of a config launched on this machine (STAT-3). A log that cannot be written is a warning, not a failure."""
    import platform

    from pgolf import __version__
    from pgolf.artifacts.run_record import append_launch, launch_config_sha256

    entry = {"run_id": stored.get("run_id"), "seed": cfg.seed, "config_sha256": launch_config_sha256(cfgmod.to_dict(cfg)),
             "data_sha256": td.identity().get("manifest_sha256"), "out": str(Path(out).resolve()), "resume": resume,
             "started_utc": artifacts.utc_now(), "host": platform.node(), "pid": os.getpid(),
             "pgolf_version": __version__}
    try:
        append_launch(entry)
    except OSError as e:
        console.warn(f"the launch log cannot be written ({e}); `pgolf verify` will not see this launch (STAT-3)")


def _tokenizer(path: Path):

    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as e:
        raise DataError(f"cannot load tokenizer {path}: {e}", "pass a SentencePiece .model with --tokenizer") from None


# ----------------------------------------------------------------------------- work directory


def work_dir(out: Path) -> Path:
    return layout.train_work_dir(out)


def resume_file(work: Path) -> Path:
    """The interrupted run's record in `work` (its pre-0.1.1 name when only that exists)."""
    legacy = work / LEGACY_RESUME_FILE
    return legacy if not (work / RESUME_FILE).is_file() and legacy.is_file() else work / RESUME_FILE


def _prepare_work(out: Path, force: bool, resume: bool) -> None:
    """Check the output and the work directory for this start (fresh or --resume); clear it on --force."""
    work = work_dir(out)
    if resume:
        if not (resume_file(work).is_file() or (work / artifacts.MANIFEST).is_file()):
            raise ArtifactError(f"nothing to resume: {work} holds no interrupted run",
                                "start the run without --resume")
        if (out / artifacts.MANIFEST).is_file() and not force:
            raise ArtifactError(f"{out} already holds a finished run", "pass --force to replace it, or choose another --out")
        return
    if work.exists():
        if not force:
            raise ArtifactError(f"an interrupted run exists at {work}",
                                "pass --resume to continue it, or --force to start over")
        shutil.rmtree(work)


class _Interrupts:
    """SIGINT/SIGTERM set a flag the loop checks at step boundaries; a second signal acts at once."""

    def __init__(self) -> None:
        self.flag = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.flag = True
        for sig, old in self._old.items():  # the next signal is not caught
            signal.signal(sig, old)
        console.warn("interrupt: saving a checkpoint after this step (again to stop at once)")

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------- the stage


def _stored_run(work: Path, cfg):
    """The interrupted run's record and config; a config given on --resume must be the same."""

    try:
        stored = json.loads(resume_file(work).read_text("utf-8"))
        stored_cfg = cfgmod.from_dict(TrainConfig, stored["config"])
        stored["data"], stored["run_id"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as e:
        raise ArtifactError(f"the interrupted run's record {resume_file(work)} is unreadable "
                            f"({type(e).__name__}: {e}); it cannot be resumed",
                            "start over with --force (without --resume)") from None
    if cfg is not None and cfg != stored_cfg:
        diff = _config_diff(cfgmod.to_dict(stored_cfg), cfgmod.to_dict(cfg))
        raise ConfigError(f"the config differs from the interrupted run's ({diff})",
                          "resume with the same settings, or without --preset/--config to use the stored ones")
    return stored, stored_cfg


def run(cfg, data: str | Path | None, out: str | Path, *, tokenizer: str | Path | None = None, force: bool = False,
        resume: bool = False, source: str = "") -> Manifest:
    """Train on `data` and publish `out`; returns the train manifest (on every rank).

    `cfg` is a TrainConfig. With `resume` it may be None: the interrupted run's stored config is
    used (a given one must equal it).
    """
    info = dist.from_env()
    datadir.resolve_data_dir(data, tokenizer)  # a data directory that is not one is named before the output
    inputs = [p for p in (data, tokenizer) if p is not None]
    runner.guard_inputs(work_dir(Path(out)), inputs)  # --force clears train.partial too
    # The lock on `out` also covers its train.partial/: one process trains into a directory at a time.
    with runner.claim(out, "train", inputs=inputs, force=force or resume, writer=info.is_main) as output:
        return _train(cfg, data, output, info, tokenizer=tokenizer, force=force, resume=resume, source=source)


def _train(cfg, data: str | Path | None, output: runner.Output, info, *, tokenizer: str | Path | None, force: bool,
           resume: bool, source: str) -> Manifest:
    t_start = time.perf_counter()
    out = output.out
    work = work_dir(out)
    if info.is_main:  # one rank checks (torchrun stops the others when it fails)
        _prepare_work(out, force, resume)
    state, extra = None, {}
    stored: dict[str, Any] = {}
    if resume and (work / artifacts.MANIFEST).is_file():  # interrupted between its manifest and the rename
        if info.is_main:
            _publish_complete(work, out)
        return artifacts.read_manifest(out, "train")
    if resume:
        stored, cfg = _stored_run(work, cfg)
    assert cfg is not None
    device = devmod.resolve_device(cfg.device, info.local_rank)
    dist.init(info, device)
    try:
        td = TrainData(data, tokenizer, cfg.model.vocab_size, record_shards=info.is_main)
        if len(td.val_tokens) <= cfg.seq_len:
            raise ConfigError(f"seq_len {cfg.seq_len:,} needs more than {cfg.seq_len:,} validation tokens; "
                              f"{td.dir.path} has {len(td.val_tokens):,}",
                              f"use a smaller seq_len (at most {max(len(td.val_tokens) - 1, 1):,}), or build the "
                              "data with more validation documents")
        accum = cfg.grad_accum(info.world_size)
        if resume:
            if not _same_data(td.identity(), stored["data"]):
                raise DataError(f"{td.dir.path} is not the data the interrupted run used ({stored['data']['path']})",
                                "resume with the same data directory")
            if (work / CHECKPOINT_FILE).is_file():
                state, extra = _read_checkpoint(work / CHECKPOINT_FILE)

        seed_everything(cfg.seed)
        model = GPT(cfg.model).to(device)
        params = num_params(model)
        if not resume and info.is_main:  # from here on an interrupted run can be resumed
            work.mkdir(parents=True, exist_ok=True)
            stored = {"config": cfgmod.to_dict(cfg), "data": td.identity(), "run_id": artifacts.new_run_id(),
                      "source": source, "created_utc": artifacts.utc_now()}
            artifacts.write_json(work / RESUME_FILE, stored)
        if info.is_main:
            _log_launch(cfg, td, out, stored, resume)
        dist.barrier()
        if not info.is_main:
            stored = json.loads(resume_file(work).read_text("utf-8"))
        rt = Runtime(device=device, amp_dtype=devmod.autocast_dtype(cfg.dtype, device), dist=info)
        batches = TokenBatches(TokenStream(td.train), info.rank, info.world_size)
        val = ValData(td.val_tokens, td.target_bytes)

        rec = _Recorder(work, info.is_main, extra if state is not None else None)
        if state is None:
            rec.start(stored, cfg, params, info, accum, devmod.describe(device), td)
        with _Interrupts() as interrupts, rec.progress(cfg.iterations, state.step if state else 0):
            hooks = Hooks(on_event=rec.event, on_checkpoint=rec.checkpoint if info.is_main else (lambda s: None),
                          interrupted=lambda: interrupts.flag)
            try:
                result = train(model, cfg, batches, rt, val=val, hooks=hooks, resume=state)
            except BaseException:
                rec.close()
                raise
        manifest = None
        if info.is_main:
            manifest = _publish(work, out, model, cfg, td, result, rec, stored, params, info, accum, device,
                                time.perf_counter() - t_start)
        dist.barrier()
        if manifest is None:
            manifest = artifacts.read_manifest(out, "train")
        return manifest
    finally:
        dist.shutdown()


def _same_data(now: dict[str, Any], then: dict[str, Any]) -> bool:
    """Same shards (names, sizes) and data manifest; the directory may have moved."""
    keys = ("manifest_sha256", "train_shards", "val_shards")
    return all(now.get(k) == then.get(k) for k in keys)


def _config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> str:
    keys = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            sub = _config_diff(a[k], b[k], f"{prefix}{k}.")
            if sub:
                keys.append(sub)
        elif a.get(k) != b.get(k):
            keys.append(f"{prefix}{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return ", ".join(keys)


def _read_checkpoint(path: Path):

    fix = "start over with --force (without --resume); the interrupted run's progress is lost"
    try:
        tensors, meta = artifacts.load_safetensors(path)
        return decode_state(tensors, meta["pgolf.checkpoint"])
    except ArtifactError as e:
        raise ArtifactError(f"the checkpoint of the interrupted run is corrupt ({e.message})", fix) from None
    except (KeyError, ValueError, TypeError) as e:
        raise ArtifactError(f"{path} is not a pgolf training checkpoint ({e})", fix) from None


class _Recorder:
    """Rank 0's side of the run: metrics.jsonl, log.txt, console lines or a progress bar, checkpoints."""

    def __init__(self, work: Path, is_main: bool, offsets: dict[str, Any] | None):
        """`offsets`: where the checkpoint being resumed left the two logs (None: start them afresh)."""

        self.work, self.is_main = work, is_main
        self.metrics = self.log = None
        self.bar = None
        if is_main:
            offsets = offsets or {}
            self.metrics = MetricsWriter(work / METRICS_FILE, offsets.get("metrics_offset", 0))
            self.log = LineFile(work / LOG_FILE, offsets.get("log_offset", 0))

    def line(self, text: str) -> None:
        if self.log is not None:
            self.log.write_line(text)
        if self.is_main and self.bar is None:
            console.info(text)
        elif self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)

    def start(self, stored, cfg, params, info, accum, device_name, td) -> None:
        if not self.is_main:
            return
        self.metrics.write({"event": "start", "schema_version": 1, "run_id": stored["run_id"], "source": stored["source"],
                            "config": cfgmod.to_dict(cfg), "params": params, "world_size": info.world_size,
                            "grad_accum": accum, "device": device_name, "data": str(td.dir.path),
                            "val_bytes_source": td.bytes_source, "created_utc": stored["created_utc"]})
        self.line(f"model_params:{params}")
        self.line(f"world_size:{info.world_size} grad_accum_steps:{accum} device:{device_name}")
        self.line(f"train_batch_tokens:{cfg.batch_tokens} train_seq_len:{cfg.seq_len} iterations:{cfg.iterations} "
                  f"warmup_steps:{cfg.warmup_steps} max_wallclock_seconds:{cfg.max_seconds:.3f}")
        self.line(f"seed:{cfg.seed}")
        if td.target_bytes is None:
            console.warn("no byte sidecar and no tokenizer: val_bpb is unavailable (pass --tokenizer)")

    def event(self, event: dict[str, Any]) -> None:

        if not self.is_main:
            return
        if event["event"] != "warmup" or event["step"] == event["steps"]:
            self.metrics.write(event)
        text = log_line(event)
        if text is not None and (event["event"] != "warmup" or event["steps"] <= 20 or event["step"] % 10 == 0
                                 or event["step"] == event["steps"]):
            self.line(text)
        if self.bar is not None and event["event"] == "step":
            self.bar.update(self.task, completed=event["step"],
                            description=f"train_loss {event['train_loss']:.4f}  {event['tokens_per_s']:,.0f} tok/s")

    def checkpoint(self, state) -> None:

        self.metrics.sync()
        self.log.sync()
        extra = {"metrics_offset": self.metrics.offset(), "log_offset": self.log.offset()}
        tensors, meta = encode_state(state, extra)
        artifacts.save_safetensors(self.work / CHECKPOINT_FILE, tensors, {"pgolf.checkpoint": meta})

    @contextlib.contextmanager
    def progress(self, total: int, done: int) -> Iterator[None]:
        """A live progress bar on a terminal (rank 0), else nothing; log lines print either way."""
        if not (self.is_main and console.console.is_terminal):
            yield
            return
        with console.progress() as bar:
            self.bar, self.task = bar, bar.add_task("training", total=total, completed=done)
            try:
                yield
            finally:
                self.bar = None

    def close(self) -> None:
        for f in (self.metrics, self.log):
            if f is not None:
                f.close()


def _publish(work, out, model, cfg, td, result, rec, stored, params, info, accum, device, wall_s) -> Manifest:

    val = result.val
    metrics = {
        "steps": result.steps, "iterations": cfg.iterations, "train_time_s": result.train_time_s,
        "tokens": result.tokens, "tokens_per_s": result.tokens_per_s, "params": params,
        "final_train_loss": result.final_train_loss, "val_loss": val.loss if val else None,
        "val_bpb": val.bpb if val else None, "val_tokens": val.tokens if val else 0,
        "val_bytes": val.bytes if val else 0, "val_bytes_source": td.bytes_source, "stop_reason": result.stop_reason,
        "weights": result.weights, "swa_count": result.swa_count, "switches": result.switches,
        "world_size": info.world_size, "grad_accum": accum, "device": devmod.describe(device),
        "source": stored.get("source", ""),
    }
    timing = {"train_time_s": result.train_time_s, "max_seconds": cfg.max_seconds, "stop_reason": result.stop_reason,
              "last_step_s": result.last_step_s, "warmup_s": result.warmup_s, "val_time_s": result.val_time_s,
              "wall_s": wall_s}
    rec.metrics.write({"event": "end", **{k: metrics[k] for k in ("steps", "train_time_s", "tokens_per_s",
                                                                    "final_train_loss", "val_loss", "val_bpb",
                                                                    "stop_reason", "weights")}})
    rec.close()
    artifacts.save_safetensors(work / MODEL_FILE, model.state_dict(), {
        "pgolf.format": MODEL_FORMAT, "pgolf.model_config": cfgmod.to_dict(cfg.model), "pgolf.weights": result.weights})
    manifest = Manifest(
        kind="train", config=cfgmod.to_dict(cfg), inputs=td.inputs(work), seed=cfg.seed, run_id=stored["run_id"],
        files=[artifacts.file_entry(work, MODEL_FILE, MODEL_FORMAT),
               artifacts.file_entry(work, METRICS_FILE, "pgolf.metrics.jsonl"),
               artifacts.file_entry(work, LOG_FILE, "pgolf.log")],
        metrics=metrics, timing=timing, code=code_info(), env=env_info(device.type, info.world_size))
    artifacts.write_manifest(work, manifest)  # from here on the run is complete: only publishing is left
    _publish_complete(work, out)
    return manifest


def _publish_complete(work: Path, out: Path) -> None:
    """Drop the resume files of a finished run and rename it into place."""
    (work / CHECKPOINT_FILE).unlink(missing_ok=True)
    (work / RESUME_FILE).unlink(missing_ok=True)
    (work / LEGACY_RESUME_FILE).unlink(missing_ok=True)
    artifacts.publish_dir(work, out)


def summary(manifest: Manifest, out: str | Path) -> dict[str, Any]:
    """The `--json` document of `pgolf train`."""
    return {"out": str(out), **{k: manifest.metrics.get(k) for k in JSON_KEYS if k != "out"}}
