"""`pgolf report`: run directories -> `report/` (report.md, PNG figures, manifest.json).

A run directory holds stage directories (`train/ quant/ pack/ eval/`, the layout of `pgolf run`); a
directory without them whose subdirectories are runs (`pgolf run --seeds`: `seed-<N>/`) stands for
those runs. Everything is read from the artifacts: the train manifest and metrics.jsonl, the quant
manifest and report.json, the pack manifest and report.json, the eval manifest, and the verify
report next to the runs when there is one. The report is written atomically, as an artifact of kind
`report` whose inputs are the manifests it summarizes; a later report replaces it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgolf import artifacts
from pgolf.artifacts import MANIFEST, Manifest
from pgolf.errors import ArtifactError
from pgolf.report import figures
from pgolf.report.budget import Budget, class_budget
from pgolf.report.markdown import render
from pgolf.report.summary import RunSummary, loss_curves
from pgolf.stages import runner

MARKDOWN_FILE = "report.md"
RUN_STAGES = ("train", "quant", "pack", "eval")  # a directory with one of these is a run
PLOTS = ("loss", "bpb", "budget", "compare")


# ----------------------------------------------------------------------------- finding runs


def is_run(directory: Path) -> bool:
    return any((directory / kind / MANIFEST).is_file() for kind in RUN_STAGES)


def find_runs(paths: Sequence[str | Path]) -> tuple[list[tuple[str, Path]], Path | None]:
    """((label, run dir) for every run under `paths`, the verify directory beside them if any).

    The verify report is taken from the single path given (`PATH/verify`); with several paths, from
    their common parent (where `pgolf verify A B` writes it).
    """
    runs: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise ArtifactError(f"{path} does not exist or is not a directory", "pass a run directory")
        if is_run(path):
            runs.append((path.resolve().name, path))
            continue
        children = sorted(c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".") and is_run(c))
        if not children:
            raise ArtifactError(f"{path} holds no run (no train/ quant/ pack/ eval/ with a manifest, in it or in "
                                "its subdirectories)", "pass a `pgolf run` directory")
        runs += [(c.name, c) for c in children]
    labels = [label for label, _ in runs]
    if len(set(labels)) < len(labels):  # the same name twice: tell them apart by their paths
        base = os.path.commonpath([str(p.resolve()) for _, p in runs])
        runs = [(os.path.relpath(p.resolve(), base), p) for _, p in runs]
    anchor = Path(paths[0]) if len(paths) == 1 else Path(os.path.commonpath([str(Path(p).resolve()) for p in paths]))
    verify = anchor / "verify"
    return runs, verify if (verify / MANIFEST).is_file() else None


def default_out(paths: Sequence[str | Path]) -> Path:
    """`PATH/report` for one path; `report/` in the common parent of several."""
    if len(paths) == 1:
        return Path(paths[0]) / "report"
    return Path(os.path.commonpath([str(Path(p).resolve()) for p in paths])) / "report"


# ----------------------------------------------------------------------------- reading a run


def _manifest(directory: Path, kind: str) -> Manifest | None:
    return artifacts.read_manifest(directory, kind) if (directory / MANIFEST).is_file() else None


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is not readable JSON ({e})", "re-create it with the stage that wrote it") from None
    return value if isinstance(value, dict) else None


def _events(path: Path) -> list[dict[str, Any]]:
    events = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            raise ArtifactError(f"{path} line {number} is not JSON", "re-create it with pgolf train") from None
    return events


def _budget(pack: Manifest, pack_dir: Path, quant_dir: Path) -> Budget | None:
    """The byte budget by class (None when the pack manifest does not count its bytes)."""
    m = pack.metrics
    if not isinstance(m.get("code_bytes"), int) or not isinstance(m.get("model_bytes"), int):
        return None
    quant_report = _json(quant_dir / "report.json") or {}
    pack_report = _json(pack_dir / "report.json") or {}
    return class_budget(m["code_bytes"], m["model_bytes"], m.get("sections") or [],
                        quant_report.get("tensors") or {}, pack_report.get("tensors"))


def collect(label: str, run_dir: str | Path) -> RunSummary:
    """What the artifacts of one run directory say (absent stages are None)."""
    run_dir = Path(run_dir)
    train = _manifest(run_dir / "train", "train")
    quant = _manifest(run_dir / "quant", "quant")
    pack = _manifest(run_dir / "pack", "pack")
    ev = _manifest(run_dir / "eval", "eval")
    metrics = run_dir / "train" / "metrics.jsonl"
    seed = next((m.seed for m in (train, quant, pack, ev) if m is not None and m.seed is not None), None)
    return RunSummary(
        label=label, path=str(run_dir), seed=seed,
        curves=loss_curves(_events(metrics)) if train is not None and metrics.is_file() else None,
        train=train.metrics if train else None, train_config=train.config if train else None,
        quant=quant.metrics if quant else None, pack=pack.metrics if pack else None,
        eval=ev.metrics if ev else None,
        budget=_budget(pack, run_dir / "pack", run_dir / "quant") if pack is not None else None)


def read_verify(verify_dir: Path | None) -> dict[str, Any] | None:
    if verify_dir is None:
        return None
    artifacts.read_manifest(verify_dir, "verify")
    return _json(verify_dir / "report.json")


# ----------------------------------------------------------------------------- the stage


def run(runs: Sequence[tuple[str, str | Path]], out: str | Path, *, verify_dir: str | Path | None = None) -> Manifest:
    """Write report.md and the figures of `runs` ((label, run dir) pairs) into `out`; returns its manifest."""
    inputs = [Path(path) / kind for _, path in runs for kind in RUN_STAGES] + \
        ([Path(verify_dir)] if verify_dir is not None else [])
    # A report replaces its own previous report, never anything else.
    with runner.claim(out, "report", inputs=[p for p in inputs if p.exists()], force=True) as output:
        return _report(runs, output, verify_dir)


def _report(runs: Sequence[tuple[str, str | Path]], output: runner.Output, verify_dir: str | Path | None) -> Manifest:
    summaries = [collect(label, path) for label, path in runs]
    verify = read_verify(Path(verify_dir) if verify_dir is not None else None)
    pngs = {"loss": figures.loss_png(summaries), "bpb": figures.bpb_png(summaries),
            "budget": figures.budget_png(summaries), "compare": figures.compare_png(summaries)}
    plots = {key: f"{key}.png" for key in PLOTS if pngs[key] is not None}
    created = artifacts.utc_now()
    with output.publish() as work:
        for key, name in plots.items():
            artifacts.atomic_write_bytes(work / name, pngs[key])
        artifacts.atomic_write_text(work / MARKDOWN_FILE, render(summaries, verify, plots, created))
        inputs = [artifacts.input_entry(kind, Path(path) / kind / MANIFEST, work)
                  for _, path in runs for kind in RUN_STAGES if (Path(path) / kind / MANIFEST).is_file()]
        if verify_dir is not None:
            inputs.append(artifacts.input_entry("verify", Path(verify_dir) / MANIFEST, work))
        files = [artifacts.file_entry(work, MARKDOWN_FILE, "pgolf.report.markdown")]
        files += [artifacts.file_entry(work, name, "png") for name in plots.values()]
        rows = [{"label": s.label, "path": s.path, "seed": s.seed, "val_bpb": s.val_bpb,
                 "total_bytes": s.total_bytes} for s in summaries]
        manifest = Manifest(kind="report", config={"runs": [label for label, _ in runs]}, inputs=inputs,
                            files=files, metrics={"runs": rows, "plots": list(plots.values()),
                                                  "verify_ok": verify.get("ok") if verify else None},
                            created_utc=created)
        artifacts.write_manifest(work, manifest)
    return manifest


def summary(manifest: Manifest, out: str | Path) -> dict[str, Any]:
    """The `--json` document of `pgolf report`: out, markdown, plots (paths), runs."""
    out = Path(out)
    return {"out": str(out), "markdown": str(out / MARKDOWN_FILE),
            "plots": [str(out / name) for name in manifest.metrics.get("plots", [])],
            "runs": manifest.metrics.get("runs", [])}
