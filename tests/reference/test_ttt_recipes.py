"""Each seed config's TTT recipe is the record's: the same parameters adapt (through the name map of
that record's model test), with the record's optimizer class, lr (per parameter), momentum / betas,
weight decay, epochs, batch and grad clip; and a tiny score-first run on the CPU works with it.

The record's own TTT function is called on its own model (built at a small shape as its model test
builds it) until it constructs its optimizer: `torch.optim.SGD` / `AdamW` are replaced, for that call
only, by a stand-in that records what it was given and stops the function. The schedule is not an
object the records build; it is stated per record below, with the code it comes from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from pgolf import config as cfgmod
from pgolf.eval import EvalConfig, GradientAdapter, evaluate
from pgolf.eval.adapters import block_lr_scale, select_params
from pgolf.stages.run import EvalStep

from . import cases, test_pr264, test_pr366, test_pr861, test_pr1216, test_pr1406
from .record_export import seed_tables
from .refimport import sources

pytestmark = pytest.mark.shared


class _Built(Exception):
    """Raised by the stand-in optimizer: the record's TTT function has chosen its parameters."""


@dataclasses.dataclass
class Captured:
    cls: str = ""
    groups: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


def capture(monkeypatch: pytest.MonkeyPatch, call: Callable[[], Any]) -> Captured:
    got = Captured()

    def stand_in(cls_name: str) -> Callable[..., Any]:
        def make(params: Any, **kwargs: Any) -> Any:
            groups = list(params)
            if groups and not isinstance(groups[0], dict):
                groups = [{"params": groups}]
            got.cls, got.kwargs = cls_name, kwargs
            got.groups = [{**g, "params": list(g["params"])} for g in groups]
            raise _Built

        return make

    monkeypatch.setattr(torch.optim, "SGD", stand_in("sgd"))
    monkeypatch.setattr(torch.optim, "AdamW", stand_in("adamw"))
    with pytest.raises(_Built):
        call()
    monkeypatch.undo()
    return got


def val_tokens(n: int = 4096) -> torch.Tensor:
    return torch.randint(2, 200, (n,), generator=torch.Generator().manual_seed(0))


def _luts(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.ones(vocab, dtype=torch.int16), torch.zeros(vocab, dtype=torch.bool), torch.zeros(vocab, dtype=torch.bool)


# ----------------------------------------------------------------------------- the records' TTT calls


def call_pr264(mod: ModuleType, args: Any, rec: torch.nn.Module) -> Callable[[], Any]:
    # main(): ttt_adapt(base_model, device, val_tokens, seq_len, lr=args.ttt_lr, momentum=args.ttt_momentum,
    #                   epochs=args.ttt_epochs, batch_size=32)
    return lambda: mod.ttt_adapt(rec, torch.device("cpu"), val_tokens(), args.train_seq_len, lr=args.ttt_lr,
                                 momentum=args.ttt_momentum, epochs=args.ttt_epochs, batch_size=32)


def call_pr366(mod: ModuleType, args: Any, rec: torch.nn.Module) -> Callable[[], Any]:
    return lambda: mod.ttt_adapt(args, rec, torch.device("cpu"), val_tokens())


def call_pr861(mod: ModuleType, args: Any, rec: torch.nn.Module) -> Callable[[], Any]:
    return lambda: mod.eval_val_sliding_ttt(args, rec, 0, 1, torch.device("cpu"), val_tokens(),
                                            *_luts(args.vocab_size), stride=64, log0=lambda *a, **k: None)


def call_pr1216(mod: ModuleType, args: Any, rec: torch.nn.Module) -> Callable[[], Any]:
    return lambda: mod.eval_val_sliding_ttt(args, rec, 0, 1, torch.device("cpu"), val_tokens(),
                                            *_luts(args.vocab_size), stride=64, log0=lambda *a, **k: None)


def call_pr1406(mod: ModuleType, args: Any, rec: torch.nn.Module) -> Callable[[], Any]:
    # its pre-quantization dTTT (main() runs it on the validation set before GPTQ)
    return lambda: mod.ttt_adapt_adamw(args, rec, torch.device("cpu"), val_tokens(), log0=lambda *a, **k: None)


@dataclasses.dataclass(frozen=True)
class Seed:
    seed: str
    case: cases.RecordCase  # the record's model test: its small shape and name map
    call: Callable[[ModuleType, Any, torch.nn.Module], Callable[[], Any]]
    schedule: str  # the record's lr over the evaluation, from its code
    epochs: Callable[[Any], int]
    batch: Callable[[Any], int]
    grad_clip: Callable[[Any], float]
    env: tuple[tuple[str, str], ...] = ()  # read by the TTT function at call time


SEEDS = [
    # ttt_adapt: one SGD over the whole validation set, lr never changed; batch 32 and clip 1.0 hard-coded
    Seed("int5mlp-ttt", test_pr264.CASE, call_pr264, "constant", lambda a: a.ttt_epochs, lambda a: 32,
         lambda a: 1.0),
    # ttt_adapt: SGD, first TTT_FREEZE_BLOCKS blocks frozen, lr never changed
    Seed("backout", test_pr366.CASE, call_pr366, "constant", lambda a: a.ttt_epochs,
         lambda a: a.ttt_batch_seqs, lambda a: a.ttt_grad_clip),
    # eval_val_sliding_ttt: cos_lr = base_lr * 0.5 * (1 + cos(pi * ci / (num_chunks - 1))) per chunk;
    # AdamW's weight decay from TTT_ADAMW_WD, which run_training.sh sets to 0.0
    Seed("int5-qat-ttt", test_pr861.CASE, call_pr861, "cosine", lambda a: a.ttt_epochs,
         lambda a: a.ttt_batch_seqs, lambda a: a.ttt_grad_clip, (("TTT_ADAMW_WD", "0.0"),)),
    # eval_val_sliding_ttt: SGD, the same cosine over chunks
    Seed("banked-ve", test_pr1216.CASE, call_pr1216,
         "cosine", lambda a: a.ttt_epochs, lambda a: a.ttt_batch_seqs, lambda a: a.ttt_grad_clip),
    # ttt_adapt_adamw: AdamW, per-block lr 0.3x..1x on the parameters its blocks own (the banked matrices
    # are the GPT's, at the base lr); its CosineAnnealingLR runs over the epochs, pgolf's cosine over the
    # chunks (the legal, score-first form: docs/seeds.md)
    Seed("recurrence", test_pr1406.CASE, call_pr1406,
         "cosine", lambda a: a.ttt_epochs, lambda a: a.ttt_batch_seqs, lambda a: a.ttt_grad_clip),
]


def seed_eval(seed: str) -> EvalConfig:
    step_keys = {f.name for f in dataclasses.fields(EvalStep)}
    table = {k: v for k, v in seed_tables(seed)["eval"].items() if k not in step_keys}
    return cfgmod.from_dict(EvalConfig, table, where="eval")


def record_lrs(got: Captured, rec: torch.nn.Module) -> dict[str, float]:
    names = {id(p): n for n, p in rec.named_parameters()}
    return {names[id(p)]: float(g.get("lr", got.kwargs.get("lr"))) for g in got.groups for p in g["params"]}


@pytest.mark.parametrize("spec", SEEDS, ids=[s.seed for s in SEEDS])
def test_ttt_recipe_is_the_records(spec: Seed, reference_dir, monkeypatch):
    mod, cfg, rec, model = cases.built_pair(spec.case, reference_dir)
    args = cases.small_args(spec.case, mod)
    for key, value in spec.env:
        monkeypatch.setenv(key, value)
    got = capture(monkeypatch, spec.call(mod, args, rec))
    ttt = seed_eval(spec.seed).ttt
    assert ttt.optimizer == got.cls
    if got.cls == "sgd":
        assert ttt.momentum == got.kwargs.get("momentum", 0.0)
        assert ttt.weight_decay == got.kwargs.get("weight_decay", 0.0)
    else:
        assert (ttt.momentum, ttt.beta2) == tuple(got.kwargs.get("betas", (0.9, 0.999)))
        assert ttt.weight_decay == got.kwargs.get("weight_decay", 1e-2)  # torch's AdamW default
    assert ttt.epochs == spec.epochs(args)
    assert ttt.batch_seqs == spec.batch(args)
    assert ttt.grad_clip == spec.grad_clip(args)
    assert ttt.schedule == spec.schedule

    # the parameters that adapt, and each one's lr, through the model test's name map
    num_blocks = 1 + max(int(n.split(".")[1]) for n, _ in model.named_parameters() if n.startswith("blocks."))
    ours: dict[str, set[float]] = {}  # a record bank holds several pgolf tensors: each must get its lr
    for name, _ in select_params(model, ttt):
        for src, _index in sources(spec.case.name_map, name):
            ours.setdefault(src, set()).add(ttt.lr * block_lr_scale(name, ttt, num_blocks))
    theirs = record_lrs(got, rec)
    assert sorted(ours) == sorted(theirs)
    for name, lr in theirs.items():
        assert all(x == pytest.approx(lr, rel=1e-12) for x in ours[name]), (name, ours[name], lr)


@pytest.mark.parametrize("spec", SEEDS, ids=[s.seed for s in SEEDS])
def test_a_tiny_score_first_run_with_the_recipe(spec: Seed, reference_dir):
    """The seed's [eval] recipe, at a tiny window and chunk, on the seed preset's small model: it
    scores every position once, adapts on the scored chunks, and moves only the chosen parameters."""
    _mod, _cfg, _rec, model = cases.built_pair(spec.case, reference_dir)
    cfg = dataclasses.replace(seed_eval(spec.seed), seq_len=32, stride=16, chunk_tokens=96, batch_seqs=8,
                              time_budget_s=0.0, autocast=False)
    cfg = dataclasses.replace(cfg, ttt=dataclasses.replace(cfg.ttt, epochs=min(cfg.ttt.epochs, 2)))
    adapter = GradientAdapter(model, cfg.ttt, cfg.ttt_seq_len, autocast=False)
    chosen = {n for n, _ in adapter.named_params}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    moved: set[str] = set()
    adapt = adapter.adapt

    def watched(view: Any, chunk: Any) -> None:
        adapt(view, chunk)
        moved.update(n for n, p in model.named_parameters() if not torch.equal(p, before[n]))

    adapter.adapt = watched  # type: ignore[method-assign]
    tokens = np.random.default_rng(0).integers(2, 200, size=289).astype(np.int64)
    result = evaluate(model, tokens, np.ones_like(tokens), cfg, adapter=adapter)
    summary = result.summary()
    assert summary["val_tokens"] == len(tokens) - 1 and math.isfinite(summary["val_bpb"])
    assert summary["adapted_chunks"] == summary["num_chunks"] - 1 and summary["adapt_steps"] > 0
    assert moved and moved <= chosen
