"""The optimizer split of the baseline (techniques.md §3.4), by pgolf.model.param_class:

- embedding tables (every nn.Embedding weight: `tok_emb`, and the bigram / value-embedding tables):
  Adam at `tied_embed_lr` when the embedding is tied to the output, else `embed_lr`;
- `lm_head.weight` (untied only): Adam at `head_lr`;
- every other 2-D parameter that is not a control tensor (attention and MLP matrices, the bigram
  and value-embedding projections): Muon at `matrix_lr`;
- everything else (vectors, scalars, control tensors such as `attn_scale`, `q_gain`, `skip_weights`,
  `smear`, `backout_lambda`): Adam at `scalar_lr`.

The bigram / value-embedding tables and projections can be moved to another group (`AuxGroups`,
as the records placed them), and `decoder_lr_mult` multiplies the lr of every block parameter in
the decoder half, blocks num_layers // 2 and up (PR #861's DECODER_LR_MULT): those get their own
param group inside the same optimizer.

Adam groups become AdamW when `adam_wd > 0` (decoupled, multiplied by the scheduled lr, §4.6); the
embedding group takes `embed_wd` instead when that is >= 0 (PR #2135's EMBED_WD). Parameters with
requires_grad off (an asym_softcap model's learned caps) are in no group.
Each group keeps its `base_lr`; `OptimizerSet.set_lr_multiplier` writes `lr = base_lr * mult`.
`optimizer = "parallel_muon"` puts the matrices on ParallelMuon (parallel_muon.py) instead of Muon;
under torch.distributed the training loop then steps through `OptimizerSet.reduce_and_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from pgolf.config import check
from pgolf.optim.muon import Muon
from pgolf.optim.parallel_muon import ParallelMuon, average_gradients

GROUPS = ("embed", "head", "matrix", "scalar")

AuxGroup = Literal["auto", "embed", "matrix", "scalar"]
AUX_GROUP_CHOICES: tuple[str, ...] = ("auto", "embed", "matrix", "scalar")


@dataclass(frozen=True)
class AuxGroups:
    """Optimizer group of the bigram / value-embedding tables and projections; "auto" = pgolf's split
    (tables: Adam at the embedding lr; projections: Muon). In TOML:
    `aux_groups = { bigram_table = "scalar", value_embed_proj = "scalar" }`.

    The records differ: PR #264/#366 use "auto"; PR #861 puts the bigram table and the whole value
    embedding in the scalar AdamW group and the bigram proj on Muon; PR #1216 and #1406 put both
    projections in the scalar AdamW group."""

    bigram_table: AuxGroup = "auto"
    bigram_proj: AuxGroup = "auto"
    value_embed_table: AuxGroup = "auto"
    value_embed_proj: AuxGroup = "auto"

    def __post_init__(self) -> None:
        for name in AUX_PARAMS:
            check(getattr(self, name) in AUX_GROUP_CHOICES, f"aux_groups.{name}",
                  f"must be one of {', '.join(AUX_GROUP_CHOICES)}")

    def overrides(self) -> dict[str, str]:
        """{parameter name: group} of the tensors moved out of their "auto" group."""
        return {param: getattr(self, key) for key, param in AUX_PARAMS.items() if getattr(self, key) != "auto"}


# AuxGroups field -> the GPT parameter it places.
AUX_PARAMS: dict[str, str] = {
    "bigram_table": "bigram.embed.weight",
    "bigram_proj": "bigram.proj.weight",
    "value_embed_table": "value_embed.embed.weight",
    "value_embed_proj": "value_embed.proj.weight",
}


@dataclass(frozen=True)
class OptimSettings:
    """What the optimizers need from a TrainConfig (kept separate so optim/ does not import train/)."""

    tied_embed_lr: float = 0.05
    embed_lr: float = 0.6
    head_lr: float = 0.008
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    adam_wd: float = 0.0
    embed_wd: float = -1.0
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5
    muon_wd: float = 0.0
    muon_variant: str = "standard"
    ns_coefficients: str = "baseline"
    optimizer: str = "muon"
    aux_groups: AuxGroups = field(default_factory=AuxGroups)
    decoder_lr_mult: float = 1.0


MATRIX_OPTIMIZERS = {"muon": Muon, "parallel_muon": ParallelMuon}


def _default_classifier() -> Callable[[str], str]:
    from pgolf.model import param_class

    return param_class


def split_params(model: nn.Module, classify: Callable[[str], str] | None = None,
                 overrides: dict[str, str] | None = None) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Named trainable parameters by optimizer group ('embed', 'head', 'matrix', 'scalar'), in model order.

    `overrides` ({name: group}, `AuxGroups.overrides()`) places the named parameters explicitly."""
    classify = classify or _default_classifier()
    overrides = overrides or {}
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = classify(name)
        if name in overrides:
            if overrides[name] == "matrix" and p.ndim != 2:
                raise ValueError(f"{name} is not a matrix; Muon cannot take it")
            groups[overrides[name]].append((name, p))
        elif kind == "control" or p.ndim < 2:
            groups["scalar"].append((name, p))
        elif id(p) in tables:
            groups["embed"].append((name, p))
        elif name == "lm_head.weight":
            groups["head"].append((name, p))
        elif p.ndim == 2:
            groups["matrix"].append((name, p))
        else:  # >2-D tensors (none in pgolf's models) are not matrices Muon can orthogonalize
            groups["scalar"].append((name, p))
    return groups


@dataclass
class OptimizerSet:
    """The optimizers of one model, stepped and scheduled together."""

    optimizers: dict[str, torch.optim.Optimizer]
    names: dict[str, list[str]] = field(default_factory=dict)

    @property
    def muon(self) -> Muon | ParallelMuon | None:
        opt = self.optimizers.get("matrix")
        return opt if isinstance(opt, Muon | ParallelMuon) else None

    def __iter__(self) -> Iterator[torch.optim.Optimizer]:
        return iter(self.optimizers.values())

    def zero_grad(self) -> None:
        for opt in self:
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self:
            opt.step()

    def reduce_and_step(self, grad_clip: float = 0.0) -> None:
        """The step of a model that is not under DDP (ParallelMuon under torch.distributed), each rank
        holding its own gradients: ParallelMuon's reduce-scatters start first (biggest bank first),
        then one asynchronous all-reduce averages every other parameter's gradient (embeddings,
        scalars, head). Without clipping, ParallelMuon's Newton-Schulz work runs while that
        all-reduce is in flight, and the Adam steps follow it. With `grad_clip > 0` every reduction
        is waited for first, so the norm is the global norm of the averaged gradients, as DDP +
        `clip_grad_norm_` computes it, and every gradient is scaled by the same coefficient."""
        import torch.distributed as dist

        matrix = self.optimizers.get("matrix")
        parallel = matrix if isinstance(matrix, ParallelMuon) else None
        if parallel is not None:
            parallel.reduce_gradients()
        others = [opt for opt in self if opt is not parallel]
        replicated = [p for opt in others for group in opt.param_groups for p in group["params"] if p.grad is not None]
        wait = average_gradients(replicated)
        if grad_clip > 0:
            wait()
            sq = torch.zeros((), device=replicated[0].device if replicated else None)
            for p in replicated:  # the same on every rank after the all-reduce
                assert p.grad is not None
                sq = sq + p.grad.to(torch.promote_types(p.grad.dtype, torch.float32)).square().sum()
            if parallel is not None:
                shard_sq = parallel.grad_sq_norm()
                if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                    dist.all_reduce(shard_sq, op=dist.ReduceOp.SUM)
                sq = sq.to(shard_sq.device) + shard_sq
            coef = (grad_clip / (sq.sqrt() + 1e-6)).clamp(max=1.0)  # torch.nn.utils.clip_grad_norm_'s rule
            for p in replicated:
                assert p.grad is not None
                p.grad.mul_(coef.to(p.grad.dtype))
            if parallel is not None:
                parallel.scale_grads(coef)
                parallel.step()
            for opt in others:
                opt.step()
            return
        if parallel is not None:
            parallel.step()
        wait()
        for opt in others:
            opt.step()

    def set_lr_multiplier(self, mult: float) -> None:
        for opt in self:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult

    def set_muon_momentum(self, momentum: float) -> None:
        if self.muon is not None:
            for group in self.muon.param_groups:
                group["momentum"] = momentum

    def state_dict(self) -> dict[str, Any]:
        return {key: opt.state_dict() for key, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert set(state) == set(self.optimizers), "optimizer groups differ from the checkpoint's"
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state[key])


def _adam(groups: list[dict[str, Any]], s: OptimSettings, wd: float) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = dict(betas=(s.beta1, s.beta2), eps=s.adam_eps, weight_decay=wd)
    cls = torch.optim.AdamW if wd > 0 else torch.optim.Adam
    try:  # the baseline's fused Adam (one kernel per group; CPU kernels since torch 2.4)
        return cls(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return cls(groups, **kwargs)


def _is_decoder_param(name: str, decoder_from: int) -> bool:
    """A parameter of block `decoder_from` or later (`blocks.{i}.` names)."""
    parts = name.split(".")
    return len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() and int(parts[1]) >= decoder_from


def _lr_groups(named: list[tuple[str, nn.Parameter]], lr: float, s: OptimSettings,
               decoder_from: int | None) -> list[dict[str, Any]]:
    """One param group at `lr`, or two when the decoder blocks' parameters get `decoder_lr_mult`."""
    if decoder_from is None or s.decoder_lr_mult == 1.0:
        return [{"params": [p for _, p in named], "lr": lr, "base_lr": lr}]
    enc = [p for n, p in named if not _is_decoder_param(n, decoder_from)]
    dec = [p for n, p in named if _is_decoder_param(n, decoder_from)]
    dec_lr = lr * s.decoder_lr_mult
    return [g for g in ({"params": enc, "lr": lr, "base_lr": lr}, {"params": dec, "lr": dec_lr, "base_lr": dec_lr})
            if g["params"]]


def build_optimizers(model: nn.Module, s: OptimSettings, tied_embeddings: bool,
                     classify: Callable[[str], str] | None = None, ns_dtype: torch.dtype | None = None,
                     decoder_from: int | None = None) -> OptimizerSet:
    """Adam / Muon / Adam as the baseline splits them; empty groups get no optimizer.

    `decoder_from` (num_layers // 2 for a GPT) is the first block `s.decoder_lr_mult` applies to."""
    split = split_params(model, classify, s.aux_groups.overrides())
    opts: dict[str, torch.optim.Optimizer] = {}
    lrs = {"embed": s.tied_embed_lr if tied_embeddings else s.embed_lr, "head": s.head_lr, "scalar": s.scalar_lr}
    for key in GROUPS:
        named = split[key]
        if not named:
            continue
        if key == "matrix":
            if s.optimizer not in MATRIX_OPTIMIZERS:
                raise ValueError(f"unknown optimizer {s.optimizer!r}; one of {sorted(MATRIX_OPTIMIZERS)}")
            cls = MATRIX_OPTIMIZERS[s.optimizer]
            groups = [{"params": g["params"], "lr": g["lr"], "base_lr": g["base_lr"]}
                      for g in _lr_groups(named, s.matrix_lr, s, decoder_from)]
            opts[key] = cls(groups, lr=s.matrix_lr, momentum=s.muon_momentum,
                            weight_decay=s.muon_wd, ns_steps=s.muon_backend_steps,
                            ns_coefficients=s.ns_coefficients, variant=s.muon_variant, ns_dtype=ns_dtype)
        else:
            # the embedding tables may decay at their own rate (PR #2135 EMBED_WD); embed_wd < 0 = adam_wd
            wd = s.embed_wd if key == "embed" and s.embed_wd >= 0 else s.adam_wd
            opts[key] = _adam(_lr_groups(named, lrs[key], s, decoder_from if key == "scalar" else None), s, wd)
    return OptimizerSet(opts, {key: [n for n, _ in split[key]] for key in GROUPS})
