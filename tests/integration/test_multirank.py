"""Multi-rank training on CPU: two gloo processes under torchrun against one process, and a 2-rank run
interrupted and resumed on 2 ranks.

(a) Same global batch, 1 process against 2 gloo ranks (`grad_accum_base` split across the ranks, so
each optimizer step sees the same sequences):

- one micro-step per rank (`grad_accum_base=2`): **bit-identical** losses and weights. The one
  process accumulates g1/2 + g2/2; DDP sums the two ranks' gradients and halves the sum. Halving is
  exact in floating point and a sum of two terms is commutative, so nothing can differ (measured:
  0 over 24 steps).
- two micro-steps per rank (`grad_accum_base=4`): the one process sums ((g1/4 + g2/4) + g3/4) + g4/4,
  the ranks (g1/2 + g3/2) + (g2/2 + g4/2), then halve: a different summation order, so the last bits
  differ and the difference grows slowly through training. Measured over these 24 steps (tiny
  preset, 1,024 tokens a step, EMA 0.9, fp32, 1 thread): train losses within 1.6e-7 relative (one
  or two float32 ulps), final weights within 1.4e-5 of each tensor's largest magnitude (tok_emb,
  whose rarely seen rows Adam normalizes, is the largest; 4.8e-5 with 2,048 tokens a step).
  Stated tolerances: losses rel 2e-6, weights |a - b| <= 2e-4 * max|a| per tensor (over 10x the
  measured differences).

(b) A 2-rank run stopped twice, each time resumed with `--resume` on 2 ranks, ends with
**bit-identical** weights and the same loss curve as an uninterrupted 2-rank run: the checkpoint
holds every rank's state that matters (weights, optimizer and EMA states, stream position, elapsed
time), and gloo's two-rank sums are deterministic. The two stops (one run, to keep the launches
few):
- SIGTERM to the launcher, which torchrun forwards to the workers: every rank stops after the same
  step and rank 0 writes a checkpoint there (a preemption);
- `kill -9` of the launcher and its workers after a periodic checkpoint of the resumed run (a crash).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pgolf.artifacts import load_safetensors, read_manifest
from pgolf.cli import app
from pgolf.runtime.metrics import read_metrics
from pgolf.stages import train as stage

runner = CliRunner()
STEPS = 24
COMMON = ["--set", "warmdown_iters=8", "--set", "val_every=0", "--set", "log_every=1", "--set", "max_seconds=0",
          "--set", "ema_decay=0.9", "--set", "batch_tokens=1024", "--set", "device=cpu"]

LOSS_RTOL = 2e-6  # (a), two micro-steps per rank: measured 1.6e-7
WEIGHT_TOL = 2e-4  # (a), two micro-steps per rank, times max|w| of each tensor: measured 1.4e-5


def _args(data: Path, out: Path, accum: int, ckpt: float = 0.0) -> list[str]:
    """`pgolf train` of the tiny preset for STEPS steps of 1,024 tokens in `accum` micro-steps (all ranks)."""
    return ["train", "--preset", "tiny", "--data", str(data), "--out", str(out), *COMMON,
            "--set", f"iterations={STEPS}", "--set", f"grad_accum_base={accum}",
            "--set", f"checkpoint_every_s={ckpt}"]


def _torchrun(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pgolf", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _two_ranks(args: list[str]) -> None:
    proc = subprocess.run(_torchrun(args), env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _one_process(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def _steps(out: Path) -> list[tuple[int, float]]:
    return [(e["step"], e["train_loss"]) for e in read_metrics(out / "metrics.jsonl") if e["event"] == "step"]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_safetensors(out / "model.safetensors")
    return tensors


def _assert_same_bits(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"weights differ in {different}"
    assert _steps(a) == _steps(b)


@pytest.fixture(scope="module")
def two_rank_ref(tmp_path_factory, embedded_data) -> Path:
    """An uninterrupted 2-rank run, two micro-steps per rank, no checkpoints."""
    out = tmp_path_factory.mktemp("multirank") / "ref"
    _two_ranks(_args(embedded_data, out, accum=4))
    m = read_manifest(out, "train")
    assert m.env["world_size"] == 2 and m.metrics["grad_accum"] == 2 and m.metrics["steps"] == STEPS
    return out


@pytest.mark.slow
def test_one_micro_step_per_rank_is_bit_identical_to_one_process(tmp_path, embedded_data):
    one, two = tmp_path / "one", tmp_path / "two"
    _one_process(_args(embedded_data, one, accum=2))
    _two_ranks(_args(embedded_data, two, accum=2))
    assert read_manifest(two, "train").env["world_size"] == 2
    assert [s for s, _ in _steps(one)] == list(range(1, STEPS + 1))
    _assert_same_bits(one, two)
    m1, m2 = read_manifest(one, "train").metrics, read_manifest(two, "train").metrics
    assert m1["val_loss"] == m2["val_loss"] and m1["val_bpb"] == m2["val_bpb"]


@pytest.mark.slow
def test_two_micro_steps_per_rank_match_one_process_within_tolerance(tmp_path, embedded_data, two_rank_ref):
    one = tmp_path / "one"
    _one_process(_args(embedded_data, one, accum=4))
    assert read_manifest(one, "train").metrics["grad_accum"] == 4
    l1, l2 = _steps(one), _steps(two_rank_ref)
    assert [s for s, _ in l1] == [s for s, _ in l2] == list(range(1, STEPS + 1))
    for (step, a), (_, b) in zip(l1, l2):
        assert b == pytest.approx(a, rel=LOSS_RTOL, abs=0), f"step {step}"
    w1, w2 = _weights(one), _weights(two_rank_ref)
    assert w1.keys() == w2.keys()
    for k in w1:
        scale = w1[k].abs().max().item()
        worst = (w1[k].double() - w2[k].double()).abs().max().item()
        assert worst <= WEIGHT_TOL * scale, f"{k}: max |diff| {worst:.3g} > {WEIGHT_TOL} * {scale:.3g}"


def _read(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return out


def _wait_for(proc: subprocess.Popen, metrics: Path, event: str, min_step: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(e["event"] == event and e["step"] >= min_step for e in _read(metrics)):
            return
        time.sleep(0.05)
    raise AssertionError(f"the run finished (rc {proc.poll()}) or stalled before a {event} event at step >= "
                         f"{min_step}; make it longer")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (torchrun's workers), from /proc."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _kill_all(proc: subprocess.Popen) -> list[int]:
    """kill -9 of torchrun and its workers (each worker runs in a session of its own, so killing the
    launcher alone would leave them training): the launcher first, so it cannot react. Returns the
    workers' pids once they are gone."""
    workers = _children(proc.pid)
    proc.kill()
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.monotonic() + 30
    while not all(_gone(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    return workers


@pytest.mark.slow
def test_two_ranks_stopped_twice_resume_to_the_same_bits(tmp_path, embedded_data, two_rank_ref):
    """SIGTERM to torchrun, --resume on 2 ranks, kill -9 of everything after a checkpoint, --resume
    again: the weights and the loss curve are those of the uninterrupted 2-rank run."""
    out = tmp_path / "run"
    work = stage.work_dir(out)
    metrics = work / "metrics.jsonl"
    resume = ["train", "--data", str(embedded_data), "--out", str(out), "--resume"]

    # 1. A preemption: torchrun forwards SIGTERM to every worker; all ranks stop after the same step
    # and rank 0 writes a checkpoint there.
    proc = subprocess.Popen(_torchrun(_args(embedded_data, out, accum=4, ckpt=0.1)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(proc, metrics, "step", 4)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            _kill_all(proc)
    assert proc.returncode != 0, "the run finished before the interrupt"
    events = _read(metrics)
    stopped = [e["step"] for e in events if e["event"] == "step"][-1]
    assert [e["step"] for e in events if e["event"] == "checkpoint"][-1] == stopped < STEPS, err[-3000:]
    assert not out.exists() and not any(e["event"] == "end" for e in events)

    # 2. A crash of the resumed run: kill -9 of the launcher and both workers after a later checkpoint.
    proc = subprocess.Popen(_torchrun(resume), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(proc, metrics, "checkpoint", stopped + 3)
        workers = _kill_all(proc)
    finally:
        if proc.poll() is None:
            _kill_all(proc)
    assert len(workers) == 2 and all(_gone(p) for p in workers), workers
    assert work.is_dir() and not out.exists()
    assert not any(e["event"] == "end" for e in _read(metrics))

    # 3. Resumed again, to the end.
    _two_ranks(resume)
    assert not work.exists()
    assert read_manifest(out, "train").env["world_size"] == 2
    _assert_same_bits(out, two_rank_ref)
    events = read_metrics(out / "metrics.jsonl")
    assert sum(e["event"] == "resume" for e in events) == 2 and events[-1]["event"] == "end"
