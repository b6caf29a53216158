"""Interrupted runs: SIGKILL mid-run, then --resume, gives the same bits as an uninterrupted run; a
2-process gloo run gives the losses of a 1-process run with the same global batch."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from pgolf.artifacts import load_safetensors, read_manifest
from pgolf.cli import app
from pgolf.runtime.metrics import read_metrics
from pgolf.stages import train as stage

runner = CliRunner()
SETS = ["--set", "iterations=24", "--set", "warmdown_iters=8", "--set", "val_every=0", "--set", "log_every=1",
        "--set", "max_seconds=0", "--set", "ema_decay=0.9", "--set", "batch_tokens=2048"]


def _args(data, out, *extra):
    return ["train", "--preset", "tiny", "--data", str(data), "--out", str(out), *SETS, *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _steps(events):
    return [(e["step"], e["train_loss"]) for e in events if e["event"] == "step"]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_bits(tmp_path, embedded_data):
    ref = tmp_path / "ref"  # checkpoints do not change the arithmetic: the reference takes none
    result = runner.invoke(app, _args(embedded_data, ref, "--set", "checkpoint_every_s=0"))
    assert result.exit_code == 0, result.output

    out = tmp_path / "run"
    work = stage.work_dir(out)
    cmd = [sys.executable, "-m", "pgolf", *_args(embedded_data, out, "--set", "checkpoint_every_s=0.2")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = work / "metrics.jsonl"
            if metrics.exists() and any(e["event"] == "checkpoint" and e["step"] >= 4 for e in _read(metrics)):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert work.is_dir() and not out.exists()

    result = runner.invoke(app, ["train", "--data", str(embedded_data), "--out", str(out), "--resume", "--json"])
    assert result.exit_code == 0, result.output
    assert not work.exists()
    a, _ = load_safetensors(ref / "model.safetensors")
    b, _ = load_safetensors(out / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # The resumed log has every step once, with the uninterrupted run's losses, and says it resumed.
    events = read_metrics(out / "metrics.jsonl")
    assert _steps(events) == _steps(read_metrics(ref / "metrics.jsonl"))
    assert sum(e["event"] == "resume" for e in events) == 1 and events[-1]["event"] == "end"
    assert read_manifest(out, "train").run_id == events[0]["run_id"]


def _read(path):
    import json

    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return out


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path, embedded_data):
    common = ["--set", "grad_accum_base=2", "--set", "device=cpu"]
    one = tmp_path / "one"
    result = runner.invoke(app, _args(embedded_data, one, "--set", "iterations=6", *common))
    assert result.exit_code == 0, result.output

    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pgolf",
           *_args(embedded_data, two, "--set", "iterations=6", *common), "--json"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["out"] == str(two)  # one JSON document: only rank 0 prints
    assert "FutureWarning" not in proc.stderr
    m1, m2 = read_manifest(one, "train"), read_manifest(two, "train")
    assert m2.env["world_size"] == 2 and m2.metrics["grad_accum"] == 1 and m1.metrics["grad_accum"] == 2
    l1, l2 = _steps(read_metrics(one / "metrics.jsonl")), _steps(read_metrics(two / "metrics.jsonl"))
    assert [s for s, _ in l1] == [s for s, _ in l2] == list(range(1, 7))
    for (_, a), (_, b) in zip(l1, l2):
        assert b == pytest.approx(a, rel=1e-5)
    assert m2.metrics["val_loss"] == pytest.approx(m1.metrics["val_loss"], rel=1e-5)
