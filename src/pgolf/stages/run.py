"""`pgolf run`: one pipeline config -> a run directory with every stage, rerunning only what changed.

The config is one TOML file with a table per stage (`[data] [train] [quantize] [pack] [eval]
[verify]`, see `load_pipeline`). The run directory:

```
RUN_DIR/
  run.json                        what ran with which key, and the launch ledger (below)
  data/                           built by the run (absent when [data] dir / --data names a directory)
  train/ quant/ pack/ eval/       one seed; with --seeds: seed-<N>/{train,quant,pack,eval} per seed
  verify/                         `pgolf verify` over the run (or every seed run)
  report/                         `pgolf report`: report.md and PNG figures
```

Reuse. Each stage has a key: the sha256 of (the stage, its resolved config, the sha256 of each
upstream manifest, pgolf's version). After a stage completes, run.json records its key and the
sha256 of the manifest it wrote. A stage is reused, not rerun, when the recomputed key equals the
recorded one, its manifest.json still has the recorded sha256, and every file the manifest lists
passes `artifacts.check_files`. Any upstream rerun writes a new manifest, so everything downstream
reruns with it. `start` (`--from`) reruns that stage and everything after it; `force` reruns all.

Interruptions. Stages publish atomically, so an interrupted run keeps every stage that completed;
the next `pgolf run` reuses them and reruns the rest. An interrupted training resumes from its last
checkpoint (`pgolf.stages.train.run(..., resume=True)` on its `train.partial/`) when its config and
data are unchanged, and otherwise starts over.

run.json (format `pgolf.run`, version 1, rewritten atomically after every stage):
- `config`: {path, tables} of the latest invocation (tables after path resolution and --set);
- `stages`: {relative stage dir: {stage, seed, key, manifest_sha256, seconds, finished_utc, ...}};
- `launches`: append-only, one entry per training launch (fresh or resumed): `run_id` (fresh per
  launch), `seed`, `config_sha256` (`launch_config_sha256` of the TrainConfig: every key but the
  seed), `data_sha256` (the data's manifest sha256 or identity), `started_utc`, `run_dir`
  (relative: "." or "seed-<N>"), `resume` (continuing an interrupted launch), `pgolf_version`.
  The train record in `stages` names the launch that produced it (`launch_run_id`) and the train
  manifest's own `run_id`. Every seed ever trained with a config is here, reported or not.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from rich.text import Text

from pgolf import __version__, artifacts
from pgolf import config as cfgmod
from pgolf.artifacts import MANIFEST, Manifest
from pgolf.artifacts import data as datadir
from pgolf.artifacts.run_record import RUN_FORMAT, RUN_FORMAT_VERSION, launch_config_sha256, sha256_json
from pgolf.config import check
from pgolf.data.config import DataConfig
from pgolf.errors import ArtifactError, ConfigError, DataError
from pgolf.eval.config import EvalConfig
from pgolf.layout import DIRS, RUN_FILE, STAGES
from pgolf.layout import KIND_OF_STAGE as KINDS
from pgolf.pack.config import PackConfig
from pgolf.quant import QuantizeConfig
from pgolf.runtime import console
from pgolf.stages import data as data_stage
from pgolf.stages import pack as pack_stage
from pgolf.stages import quantize as quant_stage
from pgolf.stages import report as report_stage
from pgolf.stages import runner as stage_runner
from pgolf.stages import train as train_stage
from pgolf.stages import ttt_eval
from pgolf.stages import verify as verify_stage
from pgolf.stages.report import MARKDOWN_FILE
from pgolf.train.config import TrainConfig
from pgolf.verify.evidence import TRACKS, track_named
from pgolf.verify.options import make_options
from pgolf.verify.probes import ProbeConfig

JSON_KEYS = ("out", "stages", "val_bpb", "total_bytes", "verify_ok", "verify", "report")


# ============================================================================ the config


@dataclasses.dataclass(frozen=True)
class DataStep:
    """[data] keys besides DataConfig's. dir: an existing data directory, used instead of building one."""

    dir: str = ""


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """[train] keys besides TrainConfig's: the base the table's keys apply on (a preset or a file)."""

    preset: str = ""
    config: str = ""

    def __post_init__(self) -> None:
        check(not (self.preset and self.config), "train.preset", "cannot be combined with train.config (pick one)")


Device = Literal["auto", "cpu", "cuda"]


@dataclasses.dataclass(frozen=True)
class QuantizeStep:
    """[quantize] keys besides QuantizeConfig's (the flags of `pgolf quantize`).

    eval_tokens: also score the float and the quantized model on the first N validation tokens.
    """

    eval_tokens: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        check(self.eval_tokens >= 0, "quantize.eval_tokens", "must be >= 0 (0: no evaluation)")


@dataclasses.dataclass(frozen=True)
class EvalStep:
    """[eval] keys besides EvalConfig's (the flags of `pgolf ttt-eval`)."""

    device: Device = "auto"
    compare_plain: bool = False


@dataclasses.dataclass(frozen=True)
class VerifyStep:
    """[verify]: the options of `pgolf verify` (unset limits are the track's; the track's default is the
    challenge's 10min_16mb, whose time limits are judged on 8xH100 only)."""

    max_bytes: int | None = None
    max_train_seconds: float | None = None
    max_eval_seconds: float | None = None
    track: str = ""
    reference_bpb: tuple[float, ...] = ()
    probe: bool = False
    probe_positions: int = 1000
    reproduce: bool = False  # re-execute each evaluation and compare the ledgers (REPRO-1)
    reproduce_train: bool = False  # re-train each run from its recorded recipe and compare (REPRO-2)

    def __post_init__(self) -> None:
        check(not self.track or track_named(self.track) is not None, "verify.track",
              f"must be one of {', '.join(TRACKS)}; got {self.track!r}")
        check(self.max_bytes is None or self.max_bytes > 0, "verify.max_bytes", "must be positive")
        check(self.probe_positions >= 1, "verify.probe_positions", "must be at least 1")


def _sections() -> dict[str, tuple[type | None, type]]:
    """Each table's stage config class (None: none) and its run options class."""

    return {"data": (DataConfig, DataStep), "train": (TrainConfig, TrainStep),
            "quantize": (QuantizeConfig, QuantizeStep), "pack": (PackConfig, None), "eval": (EvalConfig, EvalStep),
            "verify": (None, VerifyStep)}


def _names(cls: type | None) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)] if cls is not None and dataclasses.is_dataclass(cls) else []


def _unknown(key: str, valid: Sequence[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ConfigError(f"unknown key '{key}' in {where}; {hint}valid keys: {', '.join(sorted(valid))}")


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A pipeline config, validated: every stage's config is checked before anything runs.

    data: the DataConfig to build (None when `data_dir` names an existing directory; `tokenizer` is
    then the SentencePiece model of shards without a pgolf manifest, if given). quantize and
    eval are tables: quantize's defaults follow the trained model and eval starts from the
    evaluation the pack records, so both are resolved when their stage runs.
    """

    path: Path
    tables: dict[str, Any]
    data: Any
    data_dir: Path | None
    tokenizer: Path | None
    train: Any
    train_source: str
    quantize: dict[str, Any]
    quantize_step: QuantizeStep
    pack: Any
    eval: dict[str, Any]
    eval_step: EvalStep
    verify: VerifyStep


def _resolve_paths(tables: dict[str, Any], base: Path) -> None:
    """Relative paths in the file are relative to the file's directory."""

    def rel(value: Any) -> Any:
        return str(base / value) if isinstance(value, str) and value and not Path(value).is_absolute() else value

    data, train = tables.get("data", {}), tables.get("train", {})
    for key in ("dir", "tokenizer"):
        if key in data:
            data[key] = rel(data[key])
    if isinstance(data.get("corpus"), list):
        data["corpus"] = [rel(c) for c in data["corpus"]]
    if "config" in train:
        train["config"] = rel(train["config"])


def apply_sets(tables: dict[str, Any], sets: Sequence[str]) -> None:
    """`--set SECTION.KEY=VALUE`: KEY is a run option of the section or a key of its stage config (in
    full, `train.model.num_layers`, or by its unambiguous last part, `train.num_layers`)."""
    sections = _sections()
    for text in sets:
        key, raw = cfgmod.split_override(text)
        section, _, rest = key.partition(".")
        if section not in sections or not rest:
            raise ConfigError(f"--set {text}: the key must start with its table, one of "
                              f"{', '.join(s + '.' for s in STAGES)}", "e.g. --set train.iterations=50")
        cfg_cls, step_cls = sections[section]
        if rest in _names(step_cls):
            path = [rest]
        elif cfg_cls is not None:
            try:
                path = cfgmod.resolve_key(cfg_cls, rest).split(".")
            except ConfigError:
                raise _unknown(rest, _names(cfg_cls) + _names(step_cls), f"[{section}] (--set {text})") from None
        else:
            raise _unknown(rest, _names(step_cls), f"[{section}] (--set {text})")
        node = tables.setdefault(section, {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text}: '{part}' is not a table in [{section}]")
        node[path[-1]] = cfgmod.parse_value(raw)


def _split(section: str, table: Mapping[str, Any], cfg_cls: type | None, step_cls: type | None
           ) -> tuple[dict[str, Any], Any]:
    """(the stage config's keys, the run options) of one table; an unknown key names the valid ones."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"'{section}' must be a table ([{section}]), got {table!r}")
    cfg_names, step_names = _names(cfg_cls), _names(step_cls)
    for key in table:
        if key not in cfg_names and key not in step_names:
            raise _unknown(key, cfg_names + step_names, f"[{section}]")
    step = cfgmod.from_dict(step_cls, {k: v for k, v in table.items() if k in step_names}, where=section) \
        if step_names else None
    return {k: v for k, v in table.items() if k not in step_names}, step


def quantize_config(table: Mapping[str, Any], train_manifest: Manifest):
    """QuantizeConfig of the [quantize] table, resolved as `pgolf quantize` resolves it."""
    return quant_stage.resolve_config(table, train_manifest)


def eval_config(table: Mapping[str, Any], pack_dir: Path):
    """EvalConfig: the evaluation the pack records (what its train_gpt.py runs) <- the [eval] table."""
    return ttt_eval.resolve_config(table, pack_dir)


def load_pipeline(path: str | Path, sets: Sequence[str] = (), data: str | Path | None = None) -> Pipeline:
    """Read and validate a pipeline config. `sets`: `--set SECTION.KEY=VALUE` overrides; `data`: a data
    directory that replaces the [data] table (`--data`)."""
    path = Path(path)
    raw = cfgmod.load_toml(path)
    for key, value in raw.items():
        if key not in STAGES:
            raise ConfigError(f"{path}: unknown table [{key}]; valid tables: {', '.join(f'[{s}]' for s in STAGES)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: '{key}' must be a table ([{key}]), got {value!r}")
    tables = json.loads(json.dumps(raw, default=str))  # a deep, JSON-able copy (TOML dates become strings)
    _resolve_paths(tables, path.resolve().parent)
    apply_sets(tables, sets)
    sections = _sections()
    parts = {name: _split(name, tables.get(name, {}), *sections[name]) for name in STAGES}

    data_table, data_step = parts["data"]
    data_cfg, data_dir, tokenizer = None, None, None
    if data is not None or data_step.dir:
        build_keys = sorted(set(data_table) - {"tokenizer"})
        if data is None and build_keys:
            raise ConfigError(f"[data] has dir = {data_step.dir!r} and build keys ({', '.join(build_keys)})",
                              "either name an existing data directory (and its tokenizer) or give the keys to build "
                              "one")
        data_dir = Path(data) if data is not None else Path(data_step.dir)
        tokenizer = Path(data_table["tokenizer"]) if data_table.get("tokenizer") else None
        datadir.resolve_data_dir(data_dir, tokenizer)  # a missing directory or one without shards fails now
    else:
        data_cfg = cfgmod.from_dict(sections["data"][0], data_table, where="data")

    train_table, train_step = parts["train"]
    base: dict[str, Any] = {}
    source = "defaults"
    if train_step.preset or train_step.config:
        file = train_stage.preset_path(train_step.preset) if train_step.preset else Path(train_step.config)
        base = train_stage.config_table(cfgmod.load_toml(file), str(file))
        source = f"preset:{train_step.preset}" if train_step.preset else f"file:{file}"
    train_cfg = cfgmod.from_dict(sections["train"][0], cfgmod.merge_tables(base, train_table), where="train")

    quant_table, quant_step = parts["quantize"]
    synthetic = Manifest(kind="train", config=cfgmod.to_dict(train_cfg))  # the defaults follow the model config
    quantize_config(quant_table, synthetic)
    eval_table, eval_step = parts["eval"]
    cfgmod.from_dict(EvalConfig, eval_table, where="eval")
    pack_table, _ = parts["pack"]
    # The submission's train_gpt.py evaluates the way the score was measured, unless [pack.eval] says otherwise.
    pack_table = cfgmod.merge_tables({"eval": eval_table}, pack_table)
    pack_cfg = cfgmod.from_dict(sections["pack"][0], pack_table, where="pack")
    _, verify_step = parts["verify"]
    verify_step = byte_cap(verify_step, pack_cfg.limit_bytes if "limit_bytes" in parts["pack"][0] else None)
    return Pipeline(path=path, tables=tables, data=data_cfg, data_dir=data_dir, tokenizer=tokenizer, train=train_cfg,
                    train_source=source, quantize=quant_table, quantize_step=quant_step, pack=pack_cfg,
                    eval=eval_table, eval_step=eval_step, verify=verify_step)


def byte_cap(step: VerifyStep, pack_limit: int | None) -> VerifyStep:
    """[verify] judges the bytes against the cap [pack] counted them against: `max_bytes` defaults to
    the pack's `limit_bytes` when only [pack] sets a limit (`pack_limit`; None: it sets none). When
    [verify] has its own (`max_bytes`, or its track's) and it differs, one warning line says so."""
    if pack_limit is None:
        return step
    if step.max_bytes is not None:
        cap, where = step.max_bytes, "[verify] max_bytes"
    elif step.track:
        cap, where = track_named(step.track).max_bytes, f"the {step.track} track's cap"
    else:
        return dataclasses.replace(step, max_bytes=pack_limit)
    if cap != pack_limit:
        console.warn(f"[pack] limit_bytes is {pack_limit:,} but verify judges the artifact against {where}, "
                     f"{cap:,}: set them equal")
    return step


def parse_seeds(text: str) -> list[int]:
    """`--seeds 1337,42,2025` -> [1337, 42, 2025]; anything else is a ConfigError."""
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not p.lstrip("-").isdigit())
        raise ConfigError(f"--seeds {text!r}: {bad!r} is not an integer", "pass integers separated by commas, "
                                                                           "e.g. --seeds 1337,42,2025") from None
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"--seeds {text!r} repeats a seed", "each seed is one independent run")
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: seeds must be >= 0")
    return seeds


def verify_options(step: VerifyStep):
    """`pgolf verify`'s Options from the [verify] table (the same rules as its flags)."""
    return make_options(step.track or None, max_bytes=step.max_bytes, max_train_seconds=step.max_train_seconds,
                        max_eval_seconds=step.max_eval_seconds, reference_bpb=step.reference_bpb, probe=step.probe,
                        reproduce=step.reproduce, reproduce_train=step.reproduce_train)


# ============================================================================ keys and the run record


def stage_key(stage: str, config: Any, upstream: Mapping[str, str]) -> str:
    """The reuse key of a stage: sha256 of its resolved config, its upstream manifests' sha256, pgolf's version."""
    return sha256_json({"stage": stage, "config": config, "inputs": dict(upstream), "pgolf_version": __version__})


def _file_identity(path: Path, name: str | None = None) -> list[Any]:
    st = path.stat()
    return [name if name is not None else str(path), st.st_size, st.st_mtime_ns]


def data_identity(directory: Path, tokenizer: Path | None = None) -> str:
    """What the stages after the data depend on: the data manifest's sha256, or for shards without a
    pgolf manifest the names, sizes and modification times of the shards and tokenizer."""
    manifest = directory / MANIFEST
    if manifest.is_file():
        artifacts.read_manifest(directory, "data")
        return artifacts.sha256_file(manifest)
    data = datadir.resolve_data_dir(directory, tokenizer)
    files = datadir.list_shards(directory, "train") + datadir.list_shards(directory, "val")
    files += [data.tokenizer_path] if data.tokenizer_path is not None else []
    return sha256_json([_file_identity(p, p.name) for p in files])


def _data_key_config(cfg) -> dict[str, Any]:
    """The data build's config plus the identity of what it reads (cheap: sizes and times, not hashes)."""
    sources = [_file_identity(Path(p)) for p in cfg.corpus if Path(p).is_file()]
    if cfg.tokenizer and Path(cfg.tokenizer).is_file():
        sources.append(_file_identity(Path(cfg.tokenizer)))
    if not cfg.corpus:  # the embedded corpus is Python's own documentation
        sources.append(f"embedded:python-{platform.python_version()}")
    return {"config": cfgmod.to_dict(cfg), "sources": sources}


def _open_record(out: Path, force: bool) -> dict[str, Any]:
    """run.json of `out`, or a new record; a directory that is not a run is refused unless `force`."""
    path = out / RUN_FILE
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"{out} is a file, not a directory", "choose another --out")
    if path.is_file():
        try:
            record = json.loads(path.read_text("utf-8"))
            problem = None if isinstance(record, dict) and record.get("format") == RUN_FORMAT else "not a run record"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problem = f"unreadable: {e}"
        if problem is None and record.get("version", 0) > RUN_FORMAT_VERSION:
            raise ArtifactError(f"{path} has version {record.get('version')}, newer than this pgolf understands",
                                "upgrade pgolf")
        if problem is None:
            record.setdefault("stages", {})
            record.setdefault("launches", [])
            return record
        if not force:
            raise ArtifactError(f"{path} is {problem}", "pass --force to start the run directory over")
        console.warn(f"{path} is {problem}; starting a new run record (--force)")
    elif out.is_dir() and any(out.iterdir()) and not force:
        raise ArtifactError(f"{out} exists and is not a pgolf run directory (no {RUN_FILE})",
                            "choose another --out, or pass --force to run into it")
    return {"format": RUN_FORMAT, "version": RUN_FORMAT_VERSION, "created_utc": artifacts.utc_now(), "stages": {},
            "launches": []}


# ============================================================================ running


@dataclasses.dataclass
class RunResult:
    """What `run` did: `stages` ({stage, status, seconds, dir, seed?, resumed?}), the eval and pack
    manifests of each seed run, the verify report (with `out`) and the report directory."""

    out: Path
    stages: list[dict[str, Any]]
    evals: list[Manifest]
    packs: list[Manifest]
    verify: dict[str, Any]
    report: Path

    @property
    def val_bpb(self) -> float | None:
        scores = [m.metrics.get("val_bpb") for m in self.evals if m.metrics.get("val_bpb") is not None]
        return sum(scores) / len(scores) if scores else None

    @property
    def total_bytes(self) -> int | None:
        sizes = [m.metrics.get("total_bytes") for m in self.packs if m.metrics.get("total_bytes") is not None]
        return max(sizes) if sizes else None


class _Steps:
    """Runs or reuses each stage into `out`, keeping run.json up to date."""

    def __init__(self, out: Path, record: dict[str, Any], rerun: set[str], force: bool, multi: bool):
        self.out, self.record, self.rerun, self.force, self.multi = out, record, rerun, force, multi
        self.results: list[dict[str, Any]] = []

    def save(self) -> None:
        self.record["updated_utc"] = artifacts.utc_now()
        self.out.mkdir(parents=True, exist_ok=True)
        artifacts.write_json(self.out / RUN_FILE, self.record)

    def _say(self, stage: str, seed: int | None, text: str) -> None:

        who = f"{stage} (seed {seed})" if self.multi and seed is not None else stage
        console.console.print(Text.assemble(("run ", "bold"), f"{who}: {text}"), soft_wrap=True)

    def _reusable(self, rel: str, kind: str, key: str) -> str | None:
        """None when the stage in `rel` can be reused; else why it runs."""
        rec = self.record["stages"].get(rel)
        directory = self.out / rel
        if rec is None:
            return "not run yet"
        if rec.get("key") != key:
            return "its config or inputs changed"
        if not (directory / MANIFEST).is_file():
            return "its artifact is missing"
        if artifacts.sha256_file(directory / MANIFEST) != rec.get("manifest_sha256"):
            return "its manifest changed since it ran"
        try:
            artifacts.check_files(directory, artifacts.read_manifest(directory, kind))
        except ArtifactError as e:
            return f"its artifact is damaged ({e.message})"
        return None

    def step(self, stage: str, rel: str, key: str, seed: int | None, make) -> Manifest:
        """Reuse the stage in `out/rel` when its key and artifact allow, else `make(directory)` it."""
        kind, directory = KINDS[stage], self.out / rel
        why = "rerun requested" if stage in self.rerun else self._reusable(rel, kind, key)
        entry: dict[str, Any] = {"stage": stage, "dir": rel, **({"seed": seed} if self.multi else {})}
        if why is None:
            self._say(stage, seed, f"reused {directory}")
            self.results.append({**entry, "status": "reused", "seconds": 0.0})
            return artifacts.read_manifest(directory, kind)
        if rel not in self.record["stages"] and (directory / MANIFEST).is_file() and not self.force:
            raise ArtifactError(f"{directory} holds an artifact this run did not make (not in {self.out / RUN_FILE})",
                                "pass --force to replace it, or choose another --out")
        self._say(stage, seed, f"running ({why}) -> {directory}")
        t0 = time.perf_counter()
        manifest, extra = make(directory)
        seconds = time.perf_counter() - t0
        self.record["stages"][rel] = {"stage": stage, "seed": seed, "key": key,
                                      "manifest_sha256": artifacts.sha256_file(directory / MANIFEST),
                                      "seconds": round(seconds, 3), "finished_utc": artifacts.utc_now(), **extra}
        self.save()
        self.results.append({**entry, "status": "ran", "seconds": round(seconds, 3),
                             **({"resumed": True} if extra.get("resumed") else {})})
        self._say(stage, seed, f"done in {seconds:.1f} s")
        return manifest

    # ------------------------------------------------------------------------- the stages

    def data(self, pipe: Pipeline) -> tuple[Path, str]:
        """The data directory and its identity (the data manifest's sha256 when it has one)."""
        if pipe.data_dir is not None:
            self._say("data", None, f"using {pipe.data_dir}")
            return pipe.data_dir, data_identity(pipe.data_dir, pipe.tokenizer)
        def make(directory: Path):
            return data_stage.build(pipe.data, directory, force=True), {}

        self.step("data", DIRS["data"], stage_key("data", _data_key_config(pipe.data), {}), None, make)
        directory = self.out / DIRS["data"]
        return directory, artifacts.sha256_file(directory / MANIFEST)

    def train(self, pipe: Pipeline, seed: int, base: str, data_dir: Path, data_sha: str) -> Manifest:
        cfg = dataclasses.replace(pipe.train, seed=seed)
        config = cfgmod.to_dict(cfg)
        source = f"{pipe.train_source} (pgolf run {pipe.path})"

        def launch(resume: bool) -> str:
            run_id = artifacts.new_run_id()
            self.record["launches"].append({
                "run_id": run_id, "seed": seed, "config_sha256": launch_config_sha256(config),
                "data_sha256": data_sha, "started_utc": artifacts.utc_now(), "run_dir": base or ".",
                "resume": resume, "pgolf_version": __version__})
            self.save()
            return run_id

        def make(directory: Path):
            work = train_stage.work_dir(directory)
            if _resumable(work, config) and "train" not in self.rerun:
                run_id = launch(resume=True)
                self._say("train", seed, f"resuming the interrupted training in {work}")
                try:
                    m = train_stage.run(cfg, data_dir, directory, tokenizer=pipe.tokenizer, force=True, resume=True,
                                        source=source)
                    return m, {"resumed": True, "launch_run_id": run_id, "run_id": m.run_id}
                except (ConfigError, DataError, ArtifactError) as e:
                    console.warn(f"cannot resume {work} ({e}); training from the start")
            run_id = launch(resume=False)
            m = train_stage.run(cfg, data_dir, directory, tokenizer=pipe.tokenizer, force=True, source=source)
            return m, {"launch_run_id": run_id, "run_id": m.run_id}

        return self.step("train", _rel(base, "train"), stage_key("train", config, {"data": data_sha}), seed, make)

    def quantize(self, pipe: Pipeline, seed: int, base: str, train_dir: Path) -> Manifest:
        cfg = quantize_config(pipe.quantize, artifacts.read_manifest(train_dir, "train"))
        opts = pipe.quantize_step
        config = {"config": cfgmod.to_dict(cfg), **dataclasses.asdict(opts)}
        upstream = {"train": artifacts.sha256_file(train_dir / MANIFEST)}

        def make(directory: Path):
            return quant_stage.run(cfg, train_dir, directory, force=True, tokenizer=pipe.tokenizer,
                                   eval_tokens=opts.eval_tokens, device=opts.device), {}

        return self.step("quantize", _rel(base, "quantize"), stage_key("quantize", config, upstream), seed, make)

    def pack(self, pipe: Pipeline, seed: int, base: str, quant_dir: Path) -> Manifest:
        upstream = {"quant": artifacts.sha256_file(quant_dir / MANIFEST)}

        def make(directory: Path):
            return pack_stage.run(pipe.pack, quant_dir, directory, force=True), {}

        key = stage_key("pack", cfgmod.to_dict(pipe.pack), upstream)
        return self.step("pack", _rel(base, "pack"), key, seed, make)

    def eval(self, pipe: Pipeline, seed: int, base: str, pack_dir: Path, data_dir: Path, data_sha: str) -> Manifest:
        cfg = eval_config(pipe.eval, pack_dir)
        opts = pipe.eval_step
        config = {"config": cfgmod.to_dict(cfg), **dataclasses.asdict(opts)}
        upstream = {"pack": artifacts.sha256_file(pack_dir / MANIFEST), "data": data_sha}

        def make(directory: Path):
            return ttt_eval.run(cfg, pack_dir, data_dir, directory, tokenizer=pipe.tokenizer, device=opts.device,
                                compare_plain=opts.compare_plain, force=True), {}

        return self.step("eval", _rel(base, "eval"), stage_key("eval", config, upstream), seed, make)

    def verify(self, pipe: Pipeline, eval_dirs: Sequence[Path]) -> dict[str, Any]:
        options = verify_options(pipe.verify)
        probe_cfg = None
        if pipe.verify.probe:
            probe_cfg = ProbeConfig(positions=pipe.verify.probe_positions)
        upstream = {str(d.relative_to(self.out)): artifacts.sha256_file(d / MANIFEST) for d in eval_dirs}
        config = {"options": options.to_dict(), "probe_positions": pipe.verify.probe_positions}
        report: dict[str, Any] = {}

        def make(directory: Path):
            report.update(verify_stage.run(list(eval_dirs), options, out=directory, probe_cfg=probe_cfg))
            return artifacts.read_manifest(directory, "verify"), {"ok": report["ok"]}

        directory = self.out / DIRS["verify"]
        self.step("verify", DIRS["verify"], stage_key("verify", config, upstream), None, make)
        if not report:  # reused: the report it wrote
            report.update(json.loads((directory / verify_stage.REPORT_FILE).read_text("utf-8")))
            report["out"] = str(directory)
        return report

    def report(self, runs: Sequence[tuple[str, Path]]) -> Path:
        verify_dir = self.out / DIRS["verify"]
        upstream = {str((d / DIRS[s]).relative_to(self.out)): artifacts.sha256_file(d / DIRS[s] / MANIFEST)
                    for _, d in runs for s in ("train", "quantize", "pack", "eval")}
        upstream["verify"] = artifacts.sha256_file(verify_dir / MANIFEST)

        def make(directory: Path):
            return report_stage.run(runs, directory, verify_dir=verify_dir), {}

        # Not keyed by the labels: a run directory that moved (its name is a label) keeps its report.
        self.step("report", DIRS["report"], stage_key("report", {}, upstream), None, make)
        return self.out / DIRS["report"]


def _resumable(work: Path, config: Mapping[str, Any]) -> bool:
    """Whether `work` (a train stage's OUT.partial) holds an interrupted training of `config`: its run.json
    records the config it started with (or its manifest is written, only publishing is left)."""
    if (work / MANIFEST).is_file():
        return True
    try:
        return json.loads(train_stage.resume_file(work).read_text("utf-8")).get("config") == config
    except (OSError, ValueError, AttributeError):
        return False


def _rel(base: str, stage: str) -> str:
    return f"{base}/{DIRS[stage]}" if base else DIRS[stage]


def run(pipe: Pipeline, out: str | Path, *, seeds: Sequence[int] | None = None, start: str | None = None,
        force: bool = False) -> RunResult:
    """Run (or reuse) every stage of `pipe` into `out`; returns what happened.

    `seeds`: one run per seed under `out/seed-<N>/` (the data shared), verified together; None: one
    run with the config's seed in `out/`. `start`: rerun this stage (a name of STAGES) and every
    stage after it. `force`: rerun every stage, and run into an existing directory that is not a run.
    """
    out = Path(out)
    if start is not None and start not in STAGES:
        raise ConfigError(f"--from {start!r} is not a stage", f"valid stages: {', '.join(STAGES)}")
    if start == "data" and pipe.data is None:
        raise ConfigError(f"--from data: the data is the existing directory {pipe.data_dir}, which this run does not "
                          "build", "use --from train")
    if force:
        rerun = {*STAGES, "report"}
    elif start is not None:
        rerun = {*STAGES[STAGES.index(start):], "report"}
    else:
        rerun = set()
    # One `pgolf run` writes a run directory at a time: a second one gets one clear line naming the first.
    with stage_runner.lock(out, "pgolf run"):
        try:
            return _run(pipe, out, seeds=seeds, rerun=rerun, force=force)
        except OSError as e:
            line = stage_runner.os_error_line(e, f"pgolf run could not write {out}")
            if line is None:
                raise
            raise line from None


def _run(pipe: Pipeline, out: Path, *, seeds: Sequence[int] | None, rerun: set[str], force: bool) -> RunResult:
    record = _open_record(out, force)
    record["config"] = {"path": str(pipe.path), "tables": pipe.tables}
    runner = _Steps(out, record, rerun, force, multi=seeds is not None)
    runner.save()
    which = f"seeds {', '.join(map(str, seeds))}" if seeds is not None else f"seed {pipe.train.seed}"
    console.console.print(f"pgolf run {pipe.path} -> {out} ({which})", markup=False, highlight=False, soft_wrap=True)

    data_dir, data_sha = runner.data(pipe)
    runs: list[tuple[str, Path]] = []
    evals: list[Manifest] = []
    packs: list[Manifest] = []
    for seed in seeds if seeds is not None else [pipe.train.seed]:
        base = f"seed-{seed}" if seeds is not None else ""
        root = out / base if base else out
        runner.train(pipe, seed, base, data_dir, data_sha)
        runner.quantize(pipe, seed, base, root / DIRS["train"])
        packs.append(runner.pack(pipe, seed, base, root / DIRS["quantize"]))
        evals.append(runner.eval(pipe, seed, base, root / DIRS["pack"], data_dir, data_sha))
        runs.append((base or out.resolve().name, root))
    verify = runner.verify(pipe, [root / DIRS["eval"] for _, root in runs])
    report = runner.report(runs)
    return RunResult(out=out, stages=runner.results, evals=evals, packs=packs, verify=verify, report=report)


def summary(result: RunResult) -> dict[str, Any]:
    """The `--json` document of `pgolf run` (JSON_KEYS)."""
    return {"out": str(result.out), "stages": result.stages, "val_bpb": result.val_bpb,
            "total_bytes": result.total_bytes, "verify_ok": bool(result.verify.get("ok")),
            "verify": str(result.verify.get("out")), "report": str(result.report / MARKDOWN_FILE)}
