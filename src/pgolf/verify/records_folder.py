"""The records folder the challenge asks for (pure: evidence in, file contents out).

    README.md          results table, method, compliance, the exact commands with their configs
    submission.json    author, github_id, name, blurb, date, track, val_loss, val_bpb, val_loss_std,
                       val_bpb_std, seeds, seed_results{val_loss, val_bpb, artifact_bytes, bytes_code,
                       steps, train_time_s, eval_time_s}, bytes_total (max over seeds), bytes_code,
                       hardware, pytorch_version, compliance{...} (techniques.md §1.6)
    train_gpt.py       the packed submission file, byte for byte
    train_seed<N>.log  each seed's training log
    requirements.txt   only when the code imports packages the upstream requirements.txt lacks

Every number comes from the per-seed records (`pgolf.verify.records`), so the folder re-checks
against the evidence exactly (STAT-4).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pgolf import __version__
from pgolf.config import check, to_dict
from pgolf.eval.config import EvalConfig
from pgolf.pack.config import PackConfig
from pgolf.quant.config import QuantizeConfig
from pgolf.train.config import TrainConfig
from pgolf.verify import significance as sig
from pgolf.verify.checks import NOT_CONFIG, code_groups, log_name
from pgolf.verify.evidence import Evidence, SeedEvidence
from pgolf.verify.records import SeedRecord, seed_record
from pgolf.verify.results import CheckResult, worst
from pgolf.verify.rules import RULESET, WARN

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SEED_KEYS = ("val_loss", "val_bpb", "artifact_bytes", "bytes_code", "steps", "train_time_s", "eval_time_s")
# The config class of each stage whose settings the README shows as differences from the defaults.
STAGE_CONFIGS: dict[str, type] = {"train": TrainConfig, "quant": QuantizeConfig, "eval": EvalConfig, "pack": PackConfig}


@dataclasses.dataclass(frozen=True)
class SubmissionInfo:
    """Who submits what: from --author/--github-id/--name/--blurb or a [submission] table."""

    author: str = ""
    github_id: str = ""
    name: str = ""
    blurb: str = ""
    date: str = ""  # YYYY-MM-DD; empty: today (UTC)
    track: str = "10min_16mb"

    def __post_init__(self) -> None:
        for key in ("author", "github_id", "name", "blurb"):
            check(bool(str(getattr(self, key)).strip()), key,
                  f"is required for --submission: pass --{key.replace('_', '-')} or set it in the [submission] "
                  "table of --submission-config")
        if not self.date:
            object.__setattr__(self, "date", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d"))
        check(bool(DATE.match(self.date)), "date", f"must be YYYY-MM-DD, got {self.date!r}")

    def folder_name(self) -> str:
        """`YYYY-MM-DD_Descriptive_Name` from the date and the submission's name."""
        slug = re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_")
        return f"{self.date}_{slug or 'Submission'}"


def _env(s: SeedEvidence, kind: str = "train") -> dict[str, Any]:
    st = s.stage(kind)
    return st.env if st is not None and st.manifest is not None else {}


def hardware_text(ev: Evidence) -> str:
    env = _env(ev.seeds[0]) if ev.seeds else {}
    if str(env.get("device", "")).startswith("cuda") and env.get("gpu"):
        return f"{env.get('world_size', env.get('gpu_count', 1))}x {env['gpu']}"
    return f"{env.get('device', 'unknown')} ({env.get('cpu') or env.get('platform') or '?'})"


def requirements(ev: Evidence) -> list[str]:
    """Packages the shipped code imports beyond the upstream requirements.txt."""
    return sorted({m for _, scan in code_groups(ev) for m in scan.third_party()})


def _num(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def submission_json(ev: Evidence, results: Sequence[CheckResult], info: SubmissionInfo) -> dict[str, Any]:
    records = [seed_record(s) for s in ev.seeds]
    block = sig.per_seed(records)
    per_id: dict[str, list[CheckResult]] = {}
    for r in results:
        per_id.setdefault(r.id, []).append(r)
    sizes = [r.artifact_bytes for r in records if r.artifact_bytes is not None]
    codes = [r.bytes_code for r in records if r.bytes_code is not None]
    times = lambda key: [getattr(r, key) for r in records if getattr(r, key) is not None]  # noqa: E731
    out: dict[str, Any] = {
        "author": info.author, "github_id": info.github_id, "name": info.name, "blurb": info.blurb,
        "date": info.date, "track": info.track,
        "val_loss": _num(block["mean_loss"]), "val_bpb": _num(block["mean_bpb"]),
        "val_loss_std": _num(block["std_loss"]), "val_bpb_std": _num(block["std_bpb"]),
        "seeds": [r.seed for r in records],
        "seed_results": {str(r.seed if r.seed is not None else r.label): {k: _num(getattr(r, k)) for k in SEED_KEYS}
                         for r in records},
        "bytes_total": max(sizes) if sizes else None,
        "bytes_code": max(codes) if codes else None,
        "hardware": hardware_text(ev),
        "pytorch_version": _env(ev.seeds[0]).get("torch") if ev.seeds else None,
        "compliance": {
            "ruleset": RULESET,
            "verified_by": f"pgolf {__version__} verify",
            "ok": all(r.verdict != "FAIL" for r in results),
            "artifact_bytes_max": max(sizes) if sizes else None,
            "train_time_max_s": max(times("train_time_s"), default=None),
            "eval_time_max_s": max(times("eval_time_s"), default=None),
            "limits": {"max_bytes": ev.options.max_bytes, "max_train_s": ev.options.max_train_s,
                       "max_eval_s": ev.options.max_eval_s},
            "checks": {rid: worst(rs) for rid, rs in per_id.items()},
            "warnings": [r.line() for r in results if r.verdict == WARN],
        },
    }
    if block.get("bytes_per_token") is not None:
        out["bytes_per_token"] = block["bytes_per_token"]
    return out


# ----------------------------------------------------------------------------- configs and commands


def _defaults(kind: str) -> dict[str, Any] | None:
    """The default config of a stage as a dict (None for a stage without a config class: its config is shown whole)."""
    cls = STAGE_CONFIGS.get(kind)
    return to_dict(cls()) if cls is not None else None


def non_default(config: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> dict[str, Any]:
    """The entries of `config` that differ from `defaults` (nested tables kept nested)."""
    if defaults is None:
        return dict(config)
    out: dict[str, Any] = {}
    for key, value in config.items():
        base = defaults.get(key)
        if isinstance(value, dict) and isinstance(base, dict):
            sub = non_default(value, base)
            if sub:
                out[key] = sub
        elif key not in defaults or value != base:
            out[key] = value
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return repr(v) if not (isinstance(v, float) and not math.isfinite(v)) else ("inf" if v > 0 else "nan")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        return '""'
    return json.dumps(str(v), ensure_ascii=False)


def toml_text(table: Mapping[str, Any], prefix: str = "") -> str:
    """A small TOML writer for config tables (scalars, lists, nested tables)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            name = f"{prefix}.{k}" if prefix else k
            body = toml_text(v, name)
            lines.append(f"\n[{name}]\n{body}" if body else f"\n[{name}]")
    return "\n".join(lines).strip("\n")


def stage_configs(s: SeedEvidence) -> dict[str, dict[str, Any]]:
    """Per stage, the settings that differ from pgolf's defaults (the train seed and the calibration
    provenance left out: what a `--config` file of that stage accepts)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in ("train", "quant", "pack", "eval"):
        st = s.stage(kind)
        if st is None or st.manifest is None:
            continue
        cfg = {k: v for k, v in st.config.items() if (kind, k) not in NOT_CONFIG}
        out[kind] = non_default(cfg, _defaults(kind))
    return out


def _train_toml(cfg: Mapping[str, Any]) -> str:
    """A train config as `pgolf train --config` reads it: a [model] table and a [train] table."""
    model = cfg.get("model", {}) if isinstance(cfg.get("model"), dict) else {}
    rest = {k: v for k, v in cfg.items() if k != "model"}
    return toml_text({"model": model, "train": rest})


def commands(ev: Evidence) -> tuple[list[str], dict[str, str]]:
    """The pipeline's commands for every seed and the config files they read (name -> TOML text)."""
    s = ev.seeds[0]
    configs = stage_configs(s)
    files = {"train.toml": _train_toml(configs.get("train", {}))}
    for kind, name in (("quant", "quantize.toml"), ("pack", "pack.toml"), ("eval", "ttt-eval.toml")):
        if kind in configs:
            files[name] = toml_text({kind if kind != "quant" else "quantize": configs[kind]})
    data = s.stage("data")
    dcfg = data.config if data is not None and data.manifest is not None else {}
    build = ["pgolf data build"]
    for c in dcfg.get("corpus") or []:
        build.append(f"--corpus {c}")
    if dcfg.get("tokenizer"):
        build.append(f"--tokenizer {dcfg['tokenizer']}")
    elif dcfg.get("train_tokenizer"):
        build.append(f"--train-tokenizer --vocab-size {dcfg.get('vocab_size', 1024)}")
    if dcfg.get("val_docs") is not None:
        build.append(f"--val-docs {dcfg['val_docs']}")
    build.append("--out runs/sub/data")
    seeds = [x.seed for x in ev.seeds]
    lines = [" ".join(build), f"for SEED in {' '.join(str(x) for x in seeds)}; do",
             "  R=runs/sub/seed$SEED",
             "  pgolf train --config train.toml --data runs/sub/data --seed $SEED --out $R/train"]
    if "quant" in configs:
        lines.append("  pgolf quantize $R/train --config quantize.toml --out $R/quant")
    if "pack" in configs:
        lines.append("  pgolf pack $R/quant --config pack.toml --out $R/pack")
    if "eval" in configs:
        lines.append("  pgolf ttt-eval $R/pack --data runs/sub/data --config ttt-eval.toml --out $R/eval")
    lines.append("done")
    track = f" --track {ev.options.track.name}"
    refs = "".join(f" --reference-bpb {x}" for x in ev.options.reference_bpb)
    lines.append(f"pgolf verify runs/sub{track}{refs} --probe --submission OUT --author ... --github-id ... "
                 "--name ... --blurb ...")
    return lines, files


# ----------------------------------------------------------------------------- README


def _fmt(x: Any, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def _table(records: Sequence[SeedRecord], block: Mapping[str, Any]) -> str:
    head = "| seed | val_loss (nats) | val_bpb | artifact bytes | code bytes | steps | train s | eval s |"
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    for r in records:
        rows.append(f"| {r.seed if r.seed is not None else r.label} | {_fmt(r.val_loss, '.8f')} | "
                    f"{_fmt(r.val_bpb, '.8f')} | {_fmt(r.artifact_bytes, ',')} | {_fmt(r.bytes_code, ',')} | "
                    f"{_fmt(r.steps, ',')} | {_fmt(r.train_time_s, '.1f')} | {_fmt(r.eval_time_s, '.1f')} |")
    sizes = [r.artifact_bytes for r in records if r.artifact_bytes is not None]
    rows.append(f"| **mean** | **{_fmt(block['mean_loss'], '.8f')}** | **{_fmt(block['mean_bpb'], '.8f')}** | "
                f"max {_fmt(max(sizes) if sizes else None, ',')} | | | | |")
    rows.append(f"| std | {_fmt(block['std_loss'], '.8f')} | {_fmt(block['std_bpb'], '.8f')} | | | | | |")
    return "\n".join(rows)


def _method(s: SeedEvidence) -> list[str]:
    configs = stage_configs(s)
    out = []
    tr = s.stage("train")
    if tr is not None and tr.manifest is not None:
        m = tr.config.get("model", {})
        out.append(f"- **Model**: {m.get('num_layers', '?')} layers, width {m.get('model_dim', '?')}, "
                   f"{m.get('num_heads', '?')} heads ({m.get('num_kv_heads', '?')} KV), vocabulary "
                   f"{m.get('vocab_size', '?')}, {tr.metrics.get('params', '?'):,} parameters"
                   if isinstance(tr.metrics.get("params"), int) else
                   f"- **Model**: {m.get('num_layers', '?')} layers, width {m.get('model_dim', '?')}")
        out.append(f"- **Training**: {tr.metrics.get('steps', '?')} steps, stopped by "
                   f"{tr.timing.get('stop_reason', '?')}; weights: {tr.metrics.get('weights', '?')}")
    for kind, title in (("quant", "Quantization"), ("pack", "Compression"), ("eval", "Evaluation")):
        st = s.stage(kind)
        if st is not None and st.manifest is not None:
            keys = configs.get(kind, {})
            shown = ", ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in keys.items())
            out.append(f"- **{title}**: {shown or 'pgolf defaults'}")
    return out


def readme(ev: Evidence, results: Sequence[CheckResult], info: SubmissionInfo) -> str:
    records = [seed_record(s) for s in ev.seeds]
    block = sig.per_seed(records)
    lines, files = commands(ev)
    counts = {v: sum(1 for r in results if r.verdict == v) for v in ("PASS", "WARN", "FAIL", "INFO")}
    sizes = [r.artifact_bytes for r in records if r.artifact_bytes is not None]
    parts = [f"# {info.name}", "", info.blurb, ""]
    if not ev.options.track.record:
        parts += [f"**Non-record submission** (track `{info.track}`): it does not claim a record.", ""]
    parts += [f"**val_bpb {_fmt(block['mean_bpb'], '.5f')}** (std {_fmt(block['std_bpb'], '.5f')}, "
              f"{len(records)} seed(s)) · val_loss {_fmt(block['mean_loss'], '.5f')} nats · bytes_total "
              f"{_fmt(max(sizes) if sizes else None, ',')} · track `{info.track}`",
              "", f"{info.author} (@{info.github_id}), {info.date}. Hardware: {hardware_text(ev)}.", "",
              "## Results", "", _table(records, block), "",
              "val_bpb = Σnll / (ln 2 · Σbytes) over every validation target, recomputed from the score ledger; "
              "artifact bytes = train_gpt.py + model.bin, measured on disk (decimal bytes).", "",
              "## Method", "", *_method(ev.seeds[0]), "",
              "## Compliance", "",
              f"`pgolf verify` (rule set `{RULESET}`, pgolf {__version__}): {counts['PASS']} PASS, "
              f"{counts['WARN']} WARN, {counts['FAIL']} FAIL, {counts['INFO']} INFO. Every check is in "
              "`submission.json` under `compliance`.", ""]
    warns = [r for r in results if r.verdict == WARN]
    if warns:
        parts += ["Warnings for the reviewer:", ""] + [f"- `{r.line()}`" for r in warns] + [""]
    parts += ["## Reproduce", "", "With pgolf installed, from the configs below:", "", "```bash", *lines, "```", ""]
    for name, text in files.items():
        parts += [f"`{name}`:", "", "```toml", text or "# pgolf defaults", "```", ""]
    parts += ["## Files", "", "- `train_gpt.py`: the self-contained submission file (counted code).",
              *(f"- `{log_name(s)}`: the training log of {s.name}." for s in ev.seeds),
              "- `submission.json`: the numbers above and the compliance record.", ""]
    return "\n".join(parts)


def folder_files(ev: Evidence, results: Sequence[CheckResult], info: SubmissionInfo,
                 logs: Mapping[str, bytes]) -> dict[str, bytes]:
    """name -> bytes of every file in the records folder. `logs`: log file name -> the train log's bytes."""
    codes = {s.code for s in ev.seeds if s.code is not None}
    assert len(codes) == 1, "the caller checks that the seeds ship one train_gpt.py"
    files = {"README.md": readme(ev, results, info).encode("utf-8"),
             "submission.json": (json.dumps(submission_json(ev, results, info), indent=2) + "\n").encode("utf-8"),
             "train_gpt.py": next(iter(codes)).encode("utf-8"), **logs}
    reqs = requirements(ev)
    if reqs:
        files["requirements.txt"] = ("\n".join(reqs) + "\n").encode("utf-8")
    return files
