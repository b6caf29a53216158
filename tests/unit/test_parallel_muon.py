"""Parallel Muon (pgolf.optim.parallel_muon): Muon's arithmetic with banked, sharded matrices.

One process: ParallelMuon equals Muon bit for bit (float32). Two gloo ranks on CPU (one spawn for
all the slow checks, float64 with a float64 Newton-Schulz): the weights equal one-process Muon fed the
averaged gradients and DDP + Muon's, to atol 1e-10; state dicts move between world sizes; and the real
training loop with `optimizer = "parallel_muon"` on 2 processes gives the losses of 1 process with Muon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pgolf.optim import Muon, OptimSettings, ParallelMuon, build_optimizers

# Banks: (8, 4) x 3 (odd: padded to 4 on 2 ranks), (4, 8) x 2, (6, 6) x 1 and (5, 3) x 1 (rank 1 owns
# only padding); the second group repeats a shape of the first (banks are per group).
SHAPES = [(8, 4), (4, 8), (8, 4), (6, 6), (4, 8), (8, 4), (5, 3)]
GROUP2 = [(8, 4), (3, 7)]
CONFIGS = {
    "standard": dict(variant="standard", ns_coefficients="baseline", weight_decay=0.0, nesterov=True),
    "eq_r-polar-wd": dict(variant="eq_r", ns_coefficients="polar_express", weight_decay=0.1, nesterov=True),
    "no-nesterov-wd": dict(variant="standard", ns_coefficients="baseline", weight_decay=0.05, nesterov=False),
}
STEPS = 5
RESUME_AT = 2  # the state-dict round trips stop after this many steps and continue in another world size
ATOL = 1e-10  # float64 weights, two ranks against one process (observed: 0; 4.4e-16 against DDP with clipping)


def _params(dtype, seed=0) -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(*s, generator=gen, dtype=dtype)) for s in SHAPES + GROUP2]


def _groups(params, lr=0.02):
    n = len(SHAPES)
    return [{"params": params[:n], "base_lr": lr}, {"params": params[n:], "base_lr": 0.5 * lr}]


def _grads(step: int, rank: int, dtype) -> list[torch.Tensor]:
    """Rank `rank`'s gradients at `step` (different on every rank and step)."""
    gen = torch.Generator().manual_seed(1000 * step + rank + 1)
    return [torch.randn(*s, generator=gen, dtype=dtype) for s in SHAPES + GROUP2]


def _mean_grads(step: int, dtype, world=2) -> list[torch.Tensor]:
    per_rank = [_grads(step, r, dtype) for r in range(world)]
    return [sum(gs) / world for gs in zip(*per_rank)]  # the SUM / W that the collectives compute


def _schedule(opt, step: int) -> None:
    """A changing lr and momentum, as the training loop's warm-down and momentum warm-up write them."""
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * (1.0 - 0.1 * step)
        group["momentum"] = 0.85 + 0.02 * step


def _make(cls, params, name, dtype):
    ns_dtype = torch.float64 if dtype == torch.float64 else None
    return cls(_groups(params), lr=0.02, ns_dtype=ns_dtype, **CONFIGS[name])


def _run(opt, params, steps, grads_of, skip=lambda step, i: False) -> None:
    for step in steps:
        _schedule(opt, step)
        for i, (p, g) in enumerate(zip(params, grads_of(step))):
            p.grad = None if skip(step, i) else g.clone()
        opt.step()


def _single(name, dtype, steps, grads_of=None, cls=Muon, state=None, params=None):
    """One process: `cls` over `steps` fed the averaged gradients (from `state` and `params` if given)."""
    params = params if params is not None else _params(dtype)
    opt = _make(cls, params, name, dtype)
    if state is not None:
        opt.load_state_dict(state)
    _run(opt, params, steps, grads_of or (lambda s: _mean_grads(s, dtype)))
    return params, opt


# ----------------------------------------------------------------------------- one process


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_one_process_equals_muon_bit_for_bit(name):
    ours, ref = _params(torch.float32), _params(torch.float32)
    o1, o2 = _make(ParallelMuon, ours, name, torch.float32), _make(Muon, ref, name, torch.float32)
    _run(o1, ours, range(STEPS), lambda s: _grads(s, 0, torch.float32))
    _run(o2, ref, range(STEPS), lambda s: _grads(s, 0, torch.float32))
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    s1, s2 = o1.state_dict(), o2.state_dict()
    assert s1["param_groups"] == s2["param_groups"] and s1["state"].keys() == s2["state"].keys()
    for k in s2["state"]:
        assert torch.equal(s1["state"][k]["momentum_buffer"], s2["state"][k]["momentum_buffer"])


def test_parameters_without_a_gradient_keep_their_state_as_under_muon():
    skip = lambda step, i: (i == 1 and step < 2) or (i == 3 and step == 3) or i == 6  # noqa: E731
    ours, ref = _params(torch.float32), _params(torch.float32)
    o1, o2 = _make(ParallelMuon, ours, "eq_r-polar-wd", torch.float32), _make(Muon, ref, "eq_r-polar-wd", torch.float32)
    _run(o1, ours, range(STEPS), lambda s: _grads(s, 0, torch.float32), skip)
    _run(o2, ref, range(STEPS), lambda s: _grads(s, 0, torch.float32), skip)
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    assert o1.state_dict()["state"].keys() == o2.state_dict()["state"].keys() and 6 not in o2.state_dict()["state"]


@pytest.mark.parametrize("first,then", [(Muon, ParallelMuon), (ParallelMuon, Muon)])
def test_muon_and_parallel_muon_load_each_others_state(first, then):
    name, dt = "no-nesterov-wd", torch.float32
    ref, _ = _single(name, dt, range(STEPS), lambda s: _grads(s, 0, dt))
    params, opt = _single(name, dt, range(RESUME_AT), lambda s: _grads(s, 0, dt), cls=first)
    state = opt.state_dict()
    params, _ = _single(name, dt, range(RESUME_AT, STEPS), lambda s: _grads(s, 0, dt), cls=then, state=state,
                        params=params)
    for a, b in zip(params, ref):
        assert torch.equal(a, b)


def test_load_state_dict_resets_a_fresh_state():
    """The warm-up saves the state before any step and loads it back after: momentum starts again."""
    params = _params(torch.float32)
    opt = _make(ParallelMuon, params, "standard", torch.float32)
    empty = opt.state_dict()
    assert empty["state"] == {}
    _run(opt, params, range(2), lambda s: _grads(s, 0, torch.float32))
    opt.load_state_dict(empty)
    assert opt.state_dict()["state"] == {}


def test_build_optimizers_picks_the_matrix_optimizer():
    from pgolf.model import GPT, ModelConfig
    from pgolf.train.config import TrainConfig

    model = GPT(ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    assert TrainConfig().optimizer == "muon"
    s = TrainConfig(optimizer="parallel_muon").optim_settings()
    opts = build_optimizers(model, s, tied_embeddings=True)
    assert isinstance(opts.muon, ParallelMuon) and opts.muon is opts.optimizers["matrix"]
    assert type(build_optimizers(model, OptimSettings(), tied_embeddings=True).muon) is Muon
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizers(model, OptimSettings(optimizer="adam"), tied_embeddings=True)


def test_the_key_is_a_checked_train_config_switch():
    from pgolf.config import build
    from pgolf.errors import ConfigError
    from pgolf.train.config import TrainConfig

    assert build(TrainConfig, {}, ["optimizer=parallel_muon"]).optimizer == "parallel_muon"
    with pytest.raises(ConfigError, match="optimizer"):
        build(TrainConfig, {}, ["optimizer=adam"])


def test_the_loop_does_not_wrap_the_model_in_ddp_with_parallel_muon():
    """Under torch.distributed (a 2-rank layout; no process group is needed to build the trainer) the
    Parallel Muon run keeps the bare module: its step reduces the gradients itself."""
    from pgolf.model import GPT, ModelConfig
    from pgolf.runtime.dist import DistInfo
    from pgolf.train.config import TrainConfig
    from pgolf.train.loop import Hooks, Runtime, _LossModule, _Trainer

    mcfg = ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)
    cfg = TrainConfig(model=mcfg, optimizer="parallel_muon", seq_len=16, batch_tokens=64, grad_accum_base=2)
    trainer = _Trainer(GPT(mcfg), cfg, None, Runtime(dist=DistInfo(rank=0, world_size=2)), None,  # type: ignore[arg-type]
                       Hooks(), lambda: 0.0)
    assert not trainer.ddp and type(trainer.runner) is _LossModule and trainer.accum == 1
    assert isinstance(trainer.opts.muon, ParallelMuon)


def test_a_single_process_step_through_reduce_and_step_equals_the_plain_step():
    """Outside torch.distributed, reduce_and_step (with clipping) is clip_grad_norm_ + step."""
    torch.manual_seed(0)
    a, b = _Toy(torch.float32), _Toy(torch.float32)
    b.load_state_dict(a.state_dict())
    oa = build_optimizers(a, OptimSettings(optimizer="parallel_muon"), True, classify=lambda n: "other")
    ob = build_optimizers(b, OptimSettings(optimizer="muon"), True, classify=lambda n: "other")
    for step in range(3):
        gs = _toy_grads(a, step, 0)
        a(gs).backward()
        b(gs).backward()
        oa.reduce_and_step(grad_clip=1.0)
        torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0)
        ob.step()
        oa.zero_grad()
        ob.zero_grad()
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7, msg=k)  # the norms sum in another order


# ----------------------------------------------------------------------------- two gloo ranks


class _Toy(nn.Module):
    """An embedding table (Adam), a gain vector (Adam) and the SHAPES matrices (Muon); the loss is linear
    in the weights, so a rank's gradients are what it feeds in."""

    def __init__(self, dtype):
        super().__init__()
        self.emb = nn.Embedding(10, 4, dtype=dtype)
        self.gain = nn.Parameter(torch.ones(4, dtype=dtype))
        self.mats = nn.ParameterList([nn.Parameter(torch.randn(*s, dtype=dtype)) for s in SHAPES])

    def forward(self, gs):
        return sum((p * g).sum() for p, g in zip(self.parameters(), gs))


def _toy_grads(model, step, rank):
    gen = torch.Generator().manual_seed(7000 + 100 * step + rank)
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in model.parameters()]


def _toy_run(rank: int, parallel: bool, clip: float) -> dict[str, torch.Tensor]:
    """Weights after STEPS steps, and `grad.<step>.<name>`: the embedding's and gain's gradients after the
    reduction and clipping (Muon and Adam hardly depend on a gradient's scale: these show the clip
    coefficient itself)."""
    from pgolf.train.loop import wrap_ddp

    torch.manual_seed(3)
    model = _Toy(torch.float64)
    s = OptimSettings(optimizer="parallel_muon" if parallel else "muon", muon_wd=0.04, adam_wd=0.01)
    opts = build_optimizers(model, s, True, classify=lambda n: "other", ns_dtype=torch.float64)
    runner = model if parallel else wrap_ddp(model, torch.device("cpu"))
    grads = {}
    for step in range(STEPS):
        opts.set_lr_multiplier(1.0 - 0.1 * step)
        opts.set_muon_momentum(0.85 + 0.02 * step)
        runner(_toy_grads(model, step, rank)).backward()
        if parallel:
            opts.reduce_and_step(clip)
        else:
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opts.step()
        grads |= {f"grad.{step}.emb": model.emb.weight.grad.clone(), f"grad.{step}.gain": model.gain.grad.clone()}
        opts.zero_grad()
    return {k: v.detach().clone() for k, v in model.state_dict().items()} | grads


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        dt = torch.float64
        results: dict[str, object] = {}
        for name in CONFIGS:
            for fallback in (False, True):
                params = _params(dt)
                opt = _make(ParallelMuon, params, name, dt)
                if fallback:  # as on a backend without reduce-scatter
                    opt._has_reduce_scatter = False
                _run(opt, params, range(STEPS), lambda s: _grads(s, rank, dt))
                key = f"{name}-{'fallback' if fallback else 'rs'}"
                results[key] = [p.detach().clone() for p in params]
                results[key + "-state"] = opt.state_dict()
        # 2 -> 1: save after RESUME_AT steps; 1 -> 2: continue the one-process state saved by the parent
        params = _params(dt)
        opt = _make(ParallelMuon, params, "eq_r-polar-wd", dt)
        _run(opt, params, range(RESUME_AT), lambda s: _grads(s, rank, dt))
        results["saved"] = (opt.state_dict(), [p.detach().clone() for p in params])
        one = torch.load(f"{out}/one-process.pt")
        params = [nn.Parameter(p.clone()) for p in one["params"]]
        opt = _make(ParallelMuon, params, "eq_r-polar-wd", dt)
        opt.load_state_dict(one["state"])
        _run(opt, params, range(RESUME_AT, STEPS), lambda s: _grads(s, rank, dt))
        results["resumed"] = [p.detach().clone() for p in params]
        for clip in (0.0, 1.0):  # 1.0 is below the gradients' norm: clipping acts at every step
            results[f"ddp-clip{clip}"] = _toy_run(rank, parallel=False, clip=clip)
            results[f"parallel-clip{clip}"] = _toy_run(rank, parallel=True, clip=clip)
        torch.save(results, f"{out}/rank{rank}.pt")
        dist.barrier()  # neither rank tears gloo down while the other is still talking to it
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every two-rank run, in one spawn: {rank: results}."""
    out = tmp_path_factory.mktemp("parallel_muon")
    params, opt = _single("eq_r-polar-wd", torch.float64, range(RESUME_AT), cls=ParallelMuon)
    torch.save({"params": [p.detach() for p in params], "state": opt.state_dict()}, out / "one-process.pt")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    return {r: torch.load(out / f"rank{r}.pt") for r in range(2)}


def _close(a, b):
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_two_ranks_equal_one_process_fed_the_averaged_gradients(two_ranks, name):
    ref, ref_opt = _single(name, torch.float64, range(STEPS))
    for r in range(2):
        _close(two_ranks[r][f"{name}-rs"], ref)
        assert all(torch.equal(a, b) for a, b in zip(two_ranks[r][f"{name}-rs"], two_ranks[0][f"{name}-rs"]))
        state, ref_state = two_ranks[r][f"{name}-rs-state"], ref_opt.state_dict()  # Muon's layout, gathered
        assert state["param_groups"] == ref_state["param_groups"]
        assert state["state"].keys() == ref_state["state"].keys()
        _close([v["momentum_buffer"] for v in state["state"].values()],
               [v["momentum_buffer"] for v in ref_state["state"].values()])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_all_reduce_fallback_gives_the_same_numbers(two_ranks, name):
    for r in range(2):
        assert all(torch.equal(a, b) for a, b in zip(two_ranks[r][f"{name}-fallback"], two_ranks[r][f"{name}-rs"]))


@pytest.mark.slow
@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_two_ranks_without_ddp_equal_ddp_and_muon(two_ranks, clip):
    """Embedding and gain on Adam (all-reduced), matrices on ParallelMuon (reduce-scattered); with
    clipping, by the global norm of the averaged gradients, as DDP + clip_grad_norm_."""
    for r in range(2):
        ddp, par = two_ranks[r][f"ddp-clip{clip}"], two_ranks[r][f"parallel-clip{clip}"]
        assert ddp.keys() == par.keys()
        _close(list(par.values()), list(ddp.values()))
    first = two_ranks[0][f"ddp-clip{clip}"]
    torch.manual_seed(3)
    assert not torch.allclose(first["mats.0"], _Toy(torch.float64).mats[0])  # it trained
    if clip:  # clipping acted
        assert not torch.allclose(first["grad.0.gain"], two_ranks[0]["ddp-clip0.0"]["grad.0.gain"])


@pytest.mark.slow
def test_a_state_saved_on_two_ranks_continues_on_one(two_ranks):
    ref, _ = _single("eq_r-polar-wd", torch.float64, range(STEPS))
    state, saved_params = two_ranks[0]["saved"]
    for cls in (ParallelMuon, Muon):
        params = [nn.Parameter(p.clone()) for p in saved_params]
        params, _ = _single("eq_r-polar-wd", torch.float64, range(RESUME_AT, STEPS), cls=cls, state=state,
                            params=params)
        _close(params, ref)


@pytest.mark.slow
def test_a_state_saved_on_one_process_continues_on_two_ranks(two_ranks):
    ref, _ = _single("eq_r-polar-wd", torch.float64, range(STEPS))
    for r in range(2):
        _close(two_ranks[r]["resumed"], ref)


# ----------------------------------------------------------------------------- the training loop


def _train_args(data, out, *extra):
    sets = ["iterations=6", "warmup_steps=2", "val_every=0", "log_every=1", "max_seconds=0", "grad_accum_base=2",
            "device=cpu", "grad_clip=0.3", "batch_tokens=2048", *extra]
    return ["train", "--preset", "tiny", "--data", str(data), "--out", str(out),
            *[a for s in sets for a in ("--set", s)]]


@pytest.mark.slow
def test_two_gloo_processes_with_parallel_muon_match_one_with_muon(tmp_path, embedded_data):
    """The real loop: no DDP, warm-up reset, clipping by the global norm, and a checkpoint (a collective
    state capture) at every step on 2 ranks; the same losses as 1 process with Muon (rel 1e-5, as the
    DDP test in test_train_resume.py)."""
    from typer.testing import CliRunner

    from pgolf.artifacts import read_manifest
    from pgolf.cli import app
    from pgolf.runtime.metrics import read_metrics

    one = tmp_path / "one"
    result = CliRunner().invoke(app, _train_args(embedded_data, one, "optimizer=muon"))
    assert result.exit_code == 0, result.output

    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pgolf",
           *_train_args(embedded_data, two, "optimizer=parallel_muon", "checkpoint_every_s=0.001"), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["out"] == str(two)
    assert "FutureWarning" not in proc.stderr
    m1, m2 = read_manifest(one, "train"), read_manifest(two, "train")
    assert m2.env["world_size"] == 2 and m2.config["optimizer"] == "parallel_muon"
    e2 = read_metrics(two / "metrics.jsonl")
    steps = lambda events: [(e["step"], e["train_loss"]) for e in events if e["event"] == "step"]  # noqa: E731
    l1, l2 = steps(read_metrics(one / "metrics.jsonl")), steps(e2)
    assert [s for s, _ in l1] == [s for s, _ in l2] == list(range(1, 7))
    for (_, a), (_, b) in zip(l1, l2):
        assert b == pytest.approx(a, rel=1e-5)
    assert any(e["event"] == "checkpoint" for e in e2)
    assert m2.metrics["val_loss"] == pytest.approx(m1.metrics["val_loss"], rel=1e-5)
