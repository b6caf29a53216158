"""`pgolf report`: report.md and PNG figures of one run, of two runs compared, of a partial run."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.cli import app

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONFIG = """
[data]
val_docs = 2

[train]
preset = "tiny"
iterations = 12
warmdown_iters = 4
val_every = 4
log_every = 2
checkpoint_every_s = 0.0
max_seconds = 0.0

[quantize]
scheme = "int5mlp"
eval_tokens = 1000

[eval]
mode = "plain"

[verify]
max_train_seconds = 600.0
max_eval_seconds = 600.0
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of the same trained model: int5mlp and int8 (the second reuses the first's data and training)."""
    root = tmp_path_factory.mktemp("runs")
    config = root / "pipeline.toml"
    config.write_text(CONFIG)
    a, b = root / "int5mlp", root / "int8"
    result = runner.invoke(app, ["run", str(config), "--out", str(a)])
    assert result.exit_code == 0, result.output
    shutil.copytree(a, b)
    result = runner.invoke(app, ["run", str(config), "--out", str(b), "--set", "quantize.scheme=int8"])
    assert result.exit_code == 0, result.output
    return a, b


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _report(*args):
    result = runner.invoke(app, ["report", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_one_run_gives_markdown_and_figures(two_runs):
    a, _ = two_runs
    doc = _report(a)
    assert set(doc) == {"out", "markdown", "plots", "runs"} and Path(doc["out"]) == a / "report"
    assert sorted(Path(p).name for p in doc["plots"]) == ["bpb.png", "budget.png", "loss.png"]
    for path in map(Path, doc["plots"]):
        width, height = _png_size(path)
        assert width >= 600 and height >= 250 and path.stat().st_size > 10_000
    text = Path(doc["markdown"]).read_text()
    for needle in ("# pgolf report", "## Summary", "## Training", "## val_bpb at each stage", "## Byte budget",
                   "## Verify", "![Training and validation loss](loss.png)", "| mlp |", "| code |", "int5mlp",
                   "**OK**"):
        assert needle in text, needle
    [run] = doc["runs"]
    ev = artifacts.read_manifest(a / "eval", "eval")
    assert run["label"] == "int5mlp" and run["val_bpb"] == ev.metrics["val_bpb"] and run["seed"] == 1337
    manifest = artifacts.read_manifest(a / "report", "report")
    artifacts.check_files(a / "report", manifest)
    assert {i["kind"] for i in manifest.inputs} == {"train", "quant", "pack", "eval", "verify"}


def test_two_runs_are_compared(two_runs, tmp_path):
    a, b = two_runs
    out = tmp_path / "compare"
    doc = _report(a, b, "--out", out)
    assert sorted(Path(p).name for p in doc["plots"]) == ["bpb.png", "budget.png", "compare.png", "loss.png"]
    width, height = _png_size(out / "compare.png")
    assert width >= 600 and height >= 400
    assert [r["label"] for r in doc["runs"]] == ["int5mlp", "int8"]
    sizes = [artifacts.read_manifest(d / "pack", "pack").metrics["total_bytes"] for d in (a, b)]
    assert [r["total_bytes"] for r in doc["runs"]] == sizes and sizes[1] > sizes[0]  # int8 is bigger
    text = (out / "report.md").read_text()
    assert "![val_bpb against artifact size](compare.png)" in text
    assert "| component | int5mlp bytes | int8 bytes |" in text


def test_partial_run_reports_what_it_has(two_runs, tmp_path):
    a, _ = two_runs
    partial = tmp_path / "only-train"
    shutil.copytree(a / "train", partial / "train")
    doc = _report(partial)
    assert sorted(Path(p).name for p in doc["plots"]) == ["bpb.png", "loss.png"]
    text = Path(doc["markdown"]).read_text()
    assert "No pack artifact" in text and "No verify report" in text


def test_bad_input_is_one_clear_line(two_runs, tmp_path):
    a, _ = two_runs
    (tmp_path / "empty").mkdir()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x.txt").write_text("keep")
    for args, message in (([tmp_path / "empty"], "holds no run"), ([tmp_path / "nope"], "does not exist"),
                          ([a, "--out", taken], "files pgolf did not write")):
        result = runner.invoke(app, ["report", *map(str, args)])
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], result.output
    assert [p.name for p in taken.iterdir()] == ["x.txt"]
