"""Parallel Muon: Muon's update, with its Newton-Schulz work and momentum state sharded across ranks.

The technique of PR #1216 (12L banked + Parallel Muon: reduce-scatter the gradients, orthogonalize a
shard on each rank, all-gather the updates), re-done for pgolf, whose model keeps one parameter per
layer and matrix (the record stores its matrices as 3-D banks):

- **Banks.** At the first step, the matrices of one param group with the same shape, dtype and device
  form a bank, in model order: a [n_pad, rows, cols] buffer that each step fills with a copy of
  their gradients, n_pad being n rounded up to a multiple of the world size W (the padding rows stay
  zero). Rank k owns the bank rows [k s, (k + 1) s), s = n_pad / W.
- **Communication** (the model is not under DDP: each rank holds its own micro-batches' gradient):
  `reduce_gradients()` launches one asynchronous reduce-scatter (SUM) per bank, the biggest bank first,
  so rank k receives the sum over ranks of its rows, divided by W: the averaged gradient that DDP
  would have given. `step()` then takes the banks in that order: wait for the bank's reduce-scatter,
  momentum and Newton-Schulz for each matrix of the own shard, launch an asynchronous all-gather of
  the shard's updates (in the Newton-Schulz dtype; it overlaps the next bank's iteration); at the end
  it waits for each all-gather and applies weight decay and the scaled update to every matrix, on
  every rank. The loop all-reduces the other parameters' gradients meanwhile (`average_gradients`).
- **The same update as Muon**: the per-matrix operations are muon.py's (`orthogonalized`,
  `apply_update`) on the same averaged gradient, and the momentum buffers have the gradient's dtype.
  With W = 1 nothing is communicated and the weights equal Muon's bit for bit.
- **State.** Each rank keeps momentum only for its shard (1/W of Muon's memory). `state_dict()`
  gathers the shards (an all-gather per bank: a collective, so every rank must call it at the same
  point) into Muon's layout, {"momentum_buffer": [rows, cols]} per parameter index for the parameters
  that have had a gradient: a checkpoint does not depend on the world size, and Muon and ParallelMuon
  load each other's. `load_state_dict()` keeps the own shard's rows of a full state dict.
- **Backends.** NCCL has reduce-scatter and all-gather into one tensor; gloo has them in recent torch
  (2.13) but not in every release. One probe at the first step (a tiny reduce-scatter) decides: where
  it fails, each bank is all-reduced whole and every rank keeps its own rows (the same numbers, W
  times the traffic), and the updates travel through the list form of all-gather.

A parameter whose gradient is None is assumed None on every rank (the same graph everywhere, as DDP
assumes); it keeps its momentum and weights unchanged that step, as under Muon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from pgolf.optim.muon import apply_update, check_matrices, default_ns_dtype, muon_defaults, orthogonalized


def _reduce_scatter(output: Tensor, input: Tensor, op: Any, async_op: bool = False) -> Any:
    # torch 2.13 renames reduce_scatter_tensor / all_gather_into_tensor (the old names warn with a
    # FutureWarning); the GPUs' torch 2.11 only knows the old ones. Same arguments either way.
    fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    return fn(output, input, op=op, async_op=async_op)


def _all_gather(output: Tensor, input: Tensor, async_op: bool = False) -> Any:
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    return fn(output, input, async_op=async_op)


def _world() -> tuple[int, int]:
    """(world size, rank); (1, 0) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _reduce_scatter_works(device: torch.device, world: int) -> bool:
    """Whether this process group's backend has reduce-scatter (one tiny collective on every rank)."""
    out = torch.zeros(1, device=device)
    try:
        _reduce_scatter(out, torch.ones(world, device=device), op=dist.ReduceOp.SUM)
    except (RuntimeError, NotImplementedError, ValueError):
        return False
    return True


@dataclass
class _Bank:
    """The matrices of one param group with one shape (and dtype, device); this rank owns rows [start, start + s)."""

    group: int
    params: list[Tensor]
    index: list[int]  # each parameter's index in the state dict
    grads: Tensor  # [n_pad, rows, cols], the parameters' dtype: the stacked gradients
    shard: Tensor  # [s, rows, cols]: the own rows of the averaged gradient (a view of `grads` without RS)
    updates: Tensor  # [n_pad, rows, cols], Newton-Schulz dtype: every rank's updates after the all-gather
    own: Tensor  # [s, rows, cols]: this rank's updates (a view of `updates` when W = 1)
    start: int
    momentum: Tensor | None = None  # [s, rows, cols], allocated at the bank's first gradient
    seen: list[bool] = field(default_factory=list)  # per parameter: has had a gradient (has state)
    has_grad: list[bool] = field(default_factory=list)  # this step
    work: Any = None  # the pending reduce-scatter / all-reduce, then the pending all-gather

    @property
    def n(self) -> int:
        return len(self.params)

    @property
    def size(self) -> int:
        return self.grads.numel()


class ParallelMuon(torch.optim.Optimizer):
    """Muon (same options, same update) with banks sharded over the ranks of torch.distributed.

    Under torch.distributed, the parameters' `.grad` must be each rank's own (not DDP-averaged):
    call `reduce_gradients()` after the backward pass(es) to start the reduce-scatters (step() does it
    when nobody did), optionally `grad_sq_norm()` / `scale_grads()` for clipping, then `step()`.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float, momentum: float = 0.95,
                 nesterov: bool = True, weight_decay: float = 0.0, ns_steps: int = 5,
                 ns_coefficients: str = "baseline", variant: str = "standard", ns_dtype: torch.dtype | None = None,
                 eps: float = 1e-7):
        super().__init__(params, muon_defaults(lr, momentum, nesterov, weight_decay, ns_steps, ns_coefficients,
                                               variant, eps))
        self.ns_dtype = ns_dtype
        check_matrices(self.param_groups, type(self).__name__)
        self._banks: list[_Bank] | None = None
        self._world, self._rank = 1, 0
        self._has_reduce_scatter: bool | None = None  # probed at the first distributed step
        self._launched = False  # reduce_gradients() ran for the coming step

    # ------------------------------------------------------------------------- banks

    def _build_banks(self) -> list[_Bank]:
        if self._banks is not None:
            return self._banks
        world, rank = _world()
        self._world, self._rank = world, rank
        index: dict[int, int] = {}
        for group in self.param_groups:
            for p in group["params"]:
                index[id(p)] = len(index)
        if world > 1 and self._has_reduce_scatter is None:
            first = next(p for g in self.param_groups for p in g["params"])
            self._has_reduce_scatter = _reduce_scatter_works(first.device, world)
        banks: list[_Bank] = []
        for gi, group in enumerate(self.param_groups):
            by_key: dict[tuple, list[Tensor]] = {}
            for p in group["params"]:
                by_key.setdefault((tuple(p.shape), p.dtype, p.device), []).append(p)
            for (shape, dtype, device), params in by_key.items():
                n_pad = -(-len(params) // world) * world
                s = n_pad // world
                start = rank * s
                grads = torch.zeros((n_pad, *shape), dtype=dtype, device=device)
                ns_dtype = self.ns_dtype or default_ns_dtype(device)
                updates = torch.zeros((n_pad, *shape), dtype=ns_dtype, device=device)
                if world == 1:
                    shard, own = grads, updates
                else:
                    shard = (torch.zeros((s, *shape), dtype=dtype, device=device) if self._has_reduce_scatter
                             else grads[start:start + s])
                    own = torch.zeros((s, *shape), dtype=ns_dtype, device=device)
                banks.append(_Bank(group=gi, params=params, index=[index[id(p)] for p in params], grads=grads,
                                   shard=shard, updates=updates, own=own, start=start, seen=[False] * len(params),
                                   has_grad=[False] * len(params)))
        banks.sort(key=lambda b: -b.size)  # the biggest reduce-scatter is launched first (stable: ties keep model order)
        self._banks = banks
        return banks

    def _active(self) -> list[_Bank]:
        return [b for b in self._build_banks() if any(b.has_grad)]

    # ------------------------------------------------------------------------- gradients

    @torch.no_grad()
    def reduce_gradients(self) -> None:
        """Stack each bank's gradients and launch its asynchronous reduce-scatter (biggest first)."""
        if self._launched:
            return
        for bank in self._build_banks():
            bank.has_grad = [p.grad is not None for p in bank.params]
            if not any(bank.has_grad):
                continue
            for i, p in enumerate(bank.params):
                if p.grad is None:
                    bank.grads[i].zero_()
                else:
                    bank.grads[i].copy_(p.grad)
            if self._world > 1:
                if self._has_reduce_scatter:
                    bank.work = _reduce_scatter(bank.shard, bank.grads, op=dist.ReduceOp.SUM, async_op=True)
                else:  # gloo without reduce-scatter: the whole bank, then this rank's rows (a view)
                    bank.work = dist.all_reduce(bank.grads, op=dist.ReduceOp.SUM, async_op=True)
        self._launched = True

    def _wait_gradient(self, bank: _Bank) -> None:
        if bank.work is not None:
            bank.work.wait()
            bank.work = None
            bank.shard.div_(self._world)  # SUM / W: for W = 2 exactly DDP's g/2 + g'/2

    def _wait_gradients(self) -> list[_Bank]:
        self.reduce_gradients()
        active = self._active()
        for bank in active:
            self._wait_gradient(bank)
        return active

    @torch.no_grad()
    def grad_sq_norm(self) -> Tensor:
        """Sum of squares of this rank's shards of the averaged gradients (waits for the reductions).
        The all-reduce (SUM) of it over ranks is the squared norm of all the Muon gradients."""
        total = torch.zeros((), device=self.param_groups[0]["params"][0].device)
        for bank in self._wait_gradients():  # in float32 at least, in float64 for float64 gradients
            total = total + bank.shard.to(torch.promote_types(bank.shard.dtype, torch.float32)).square().sum()
        return total

    @torch.no_grad()
    def scale_grads(self, coef: Tensor | float) -> None:
        """Multiply the averaged gradients by `coef` (gradient clipping), after the reductions."""
        for bank in self._wait_gradients():
            bank.shard.mul_(coef)

    # ------------------------------------------------------------------------- the step

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.reduce_gradients()
        active = self._active()
        for bank in active:  # the launch order: the biggest bank's reduce-scatter is the first to finish
            self._wait_gradient(bank)
            group = self.param_groups[bank.group]
            if bank.momentum is None:
                bank.momentum = torch.zeros_like(bank.shard)
            mu = group["momentum"]
            for j in range(bank.shard.size(0)):
                i = bank.start + j
                if i >= bank.n or not bank.has_grad[i]:  # padding, or no gradient this step
                    continue
                buf = bank.momentum[j]
                buf.mul_(mu).add_(bank.shard[j])
                bank.own[j].copy_(orthogonalized(bank.shard[j], buf, group, bank.own.dtype))
            bank.seen = [a or b for a, b in zip(bank.seen, bank.has_grad)]
            if self._world > 1:
                if self._has_reduce_scatter:
                    bank.work = _all_gather(bank.updates, bank.own, async_op=True)
                else:
                    bank.work = dist.all_gather(list(bank.updates.chunk(self._world)), bank.own, async_op=True)
        for bank in active:
            if bank.work is not None:
                bank.work.wait()
                bank.work = None
            group = self.param_groups[bank.group]
            for i, p in enumerate(bank.params):
                if bank.has_grad[i]:
                    apply_update(p, bank.updates[i], group["lr"], group["weight_decay"])
        self._launched = False
        return loss

    # ------------------------------------------------------------------------- state

    def _gather(self, shard: Tensor, n_pad: int) -> Tensor:
        if self._world == 1:
            return shard
        full = shard.new_empty((n_pad, *shard.shape[1:]))
        if self._has_reduce_scatter:
            _all_gather(full, shard.contiguous())
        else:
            dist.all_gather(list(full.chunk(self._world)), shard.contiguous())
        return full

    @torch.no_grad()
    def state_dict(self) -> dict[str, Any]:
        """Muon's layout: full per-parameter momentum buffers (gathered: every rank must call this)."""
        out = super().state_dict()
        state: dict[int, dict[str, Tensor]] = {}
        for bank in self._banks or []:  # the same banks in the same order on every rank
            if bank.momentum is None:
                continue
            full = self._gather(bank.momentum, bank.grads.size(0))
            for i, idx in enumerate(bank.index):
                if bank.seen[i]:
                    state[idx] = {"momentum_buffer": full[i].clone()}
        out["state"] = dict(sorted(state.items()))
        return out

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a full state dict (Muon's or ParallelMuon's, saved at any world size); keep the own rows."""
        saved = state_dict["state"]
        super().load_state_dict({**state_dict, "state": {}})
        self._launched = False
        for bank in self._build_banks():
            bank.work = None
            bank.seen = [idx in saved for idx in bank.index]
            bank.momentum = None
            if not any(bank.seen):
                continue
            bank.momentum = torch.zeros_like(bank.shard)
            for j in range(bank.shard.size(0)):
                i = bank.start + j
                if i < bank.n and bank.seen[i]:
                    bank.momentum[j].copy_(saved[bank.index[i]]["momentum_buffer"])


# ----------------------------------------------------------------------------- replicated parameters

def average_gradients(params: Iterable[Tensor]) -> Callable[[], None]:
    """Launch an asynchronous all-reduce that averages these parameters' gradients over the ranks (one
    flat buffer per dtype and device); returns the function that waits and writes them back. A no-op
    outside torch.distributed."""
    world, _ = _world()
    grads = [p.grad for p in params if p.grad is not None]
    if world == 1 or not grads:
        return lambda: None
    buckets: dict[tuple, list[Tensor]] = {}
    for g in grads:
        buckets.setdefault((g.dtype, g.device), []).append(g)
    pending = []
    for bucket in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in bucket])
        pending.append((bucket, flat, dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True)))

    def wait() -> None:
        for bucket, flat, work in pending:
            work.wait()
            flat.div_(world)
            for g, part in zip(bucket, flat.split([g.numel() for g in bucket])):
                g.copy_(part.view_as(g))

    return wait


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Every rank takes rank `src`'s parameters and buffers (what DDP does when it wraps a module)."""
    world, _ = _world()
    if world == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)
