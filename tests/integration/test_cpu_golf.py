"""The CPU golf track's preset and pipeline config: they say what the track says, and the whole
pipeline runs through them (shortened: a few steps, eager, one TTT epoch)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.cli.app import app
from pgolf.stages import run as run_stage
from pgolf.stages import train as train_stage
from pgolf.verify.evidence import track_named

ROOT = Path(__file__).resolve().parents[2]
RUN_CONFIG = ROOT / "configs" / "cpu-golf-run.toml"


def test_preset_and_pipeline_hold_the_track_budget():
    preset = train_stage.load_config("cpu-golf")
    track = track_named("cpu-golf")
    assert preset.max_seconds == track.max_train_s == 60.0
    assert preset.compile and preset.warmup_steps >= 1  # the warm-up absorbs the compile (and its fallback)
    assert preset.dtype == "bf16" and preset.checkpoint_every_s == 0  # a checkpoint would cost clock time
    assert preset.model.vocab_size == 1024 and preset.model.bigram_buckets > 0 and preset.model.smear_gate

    pipe = run_stage.load_pipeline(RUN_CONFIG)
    assert pipe.train == preset  # the run config trains the preset as it is
    assert pipe.verify.track == "cpu-golf" and pipe.pack.limit_bytes == track.max_bytes == 1_000_000
    assert pipe.eval["mode"] == "ttt" and pipe.eval["time_budget_s"] == track.max_eval_s == 180.0


@pytest.mark.slow
def test_the_pipeline_runs_end_to_end_when_shortened(tmp_path, embedded_data):
    out = tmp_path / "golf"
    sets = ["train.iterations=6", "train.max_seconds=0", "train.warmdown_frac=0", "train.warmdown_iters=3",
            "train.compile=false", "train.warmup_steps=0", "eval.ttt.epochs=1", "eval.chunk_tokens=16384"]
    args = ["run", str(RUN_CONFIG), "--out", str(out), "--data", str(embedded_data), "--json"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["verify_ok"] is True and doc["total_bytes"] <= 1_000_000
    assert artifacts.read_manifest(out / "train").metrics["steps"] == 6
    evaluation = artifacts.read_manifest(out / "eval").metrics
    assert evaluation["mode"] == "ttt" and evaluation["val_bpb"] == doc["val_bpb"]
    verdicts = {c["id"]: c["verdict"] for c in json.loads((out / "verify" / "report.json").read_text())["checks"]}
    assert verdicts["SIZE-1"] == "PASS" and verdicts["TIME-1"] == "PASS" and verdicts["TIME-3"] == "PASS"
