"""Adapters: what trains on committed spans between scored chunks (score-first TTT).

An adapter never holds the validation stream. The evaluation loop calls `adapt(view, chunk)` after
a chunk is committed; the adapter reads committed spans through the `CommittedView` (which records
each one in the ledger with its step) and updates its parameters. `state()` returns any tensors it
keeps outside the model (LoRA factors), so the parameter checksums cover them too.

`GradientAdapter` is the records' recipe (PR #461 -> #549, techniques.md §6.3): the chunk is cut
into full sequences of `seq_len` from its start; for each epoch, global batches of `batch_seqs`
sequences, split across ranks; mean NLL -> backward -> gradients summed over ranks -> global-norm
clip -> SGD (momentum persists across chunks) or AdamW step; lr decays over chunks by a cosine.
Which parameters move: all of them, the MLP weights only, those named by globs (PR #861), or rank-r
LoRA factors attached to the model's Linear layers by forward hooks (PR #77), never changing the
model's own modules. Per-block lr: geometric decay or PR #1406's linear ramp.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from typing import Protocol

import torch
from torch import nn

from pgolf.errors import ConfigError
from pgolf.eval.config import TTTConfig
from pgolf.eval.dist import World
from pgolf.eval.scoring import autocast_for, token_nll_of
from pgolf.eval.view import CommittedView
from pgolf.model.params import param_class

_BLOCK_RE = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


@dataclasses.dataclass(frozen=True)
class ChunkInfo:
    """The chunk just committed: positions [start, end), its index among `num_chunks`, and
    `progress` in [0, 1] for the lr schedule (it depends on positions only, never on tokens)."""

    index: int
    start: int
    end: int
    num_chunks: int
    progress: float
    segment: tuple[int, int] = (0, 0)  # the positions [start, end) of its segment (document or stream)
    segment_index: int = 0

    @property
    def segment_end(self) -> bool:
        """The chunk is its segment's last (an adapter that `adapts_at_document_end` is called for it)."""
        return self.end == self.segment[1]


class Adapter(Protocol):
    """What the score-first loop drives. Implementations must read tokens only through the view."""

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors kept outside the model (covered by the parameter checksums)."""
        ...

    def adapt(self, view: CommittedView, chunk: ChunkInfo) -> None:
        """Train on committed spans after `chunk` was scored."""
        ...

    def reset(self) -> None:
        """Back to the initial state (document-independent mode, at every document)."""
        ...

    def warmup(self, vocab_size: int) -> None:
        """Compile/autotune the training step on synthetic tokens, leaving every parameter unchanged."""
        ...

    def close(self) -> None:
        """Leave the model as it was given (weights, hooks, requires_grad)."""
        ...


def adapts_at_document_end(adapter: Adapter) -> bool:
    """Whether the loop calls `adapt` after a document's last chunk too (in per-document modes): an adapter
    whose phase ends there (PR #2135's global pass over the scored prefix). Default: no."""
    return bool(getattr(adapter, "adapts_at_document_end", False))


def block_index(name: str) -> int | None:
    """The transformer block a parameter belongs to (`blocks.{i}.`), or None."""
    m = _BLOCK_RE.search(name)
    return int(m.group(1)) if m else None




def select_params(model: nn.Module, cfg: TTTConfig) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs that adapt for params "all", "mlp" or "names", frozen blocks left out.

    A glob of `param_globs` that matches no parameter of the model is a ConfigError (a typo would
    otherwise adapt nothing it names)."""
    named = list(model.named_parameters())
    if cfg.params == "names":
        for glob in cfg.param_globs:
            if not any(fnmatch.fnmatchcase(n, glob) for n, _ in named):
                raise ConfigError(f"ttt.param_globs entry {glob!r} matches no parameter of the model",
                                  f"parameter names look like: {', '.join(n for n, _ in named[:6])} ...")
    chosen = []
    for name, p in named:
        i = block_index(name)
        if i is not None and i < cfg.freeze_blocks:
            continue
        if cfg.params == "mlp" and param_class(name) != "mlp":
            continue
        if cfg.params == "names" and not any(fnmatch.fnmatchcase(name, g) for g in cfg.param_globs):
            continue
        chosen.append((name, p))
    return chosen


def block_lr_scale(name: str, cfg: TTTConfig, num_blocks: int) -> float:
    """The lr multiplier of parameter `name`: geometric `block_lr_decay` and linear `block_lr_floor`
    over the blocks (PR #1406: 0.3 for the first trainable block .. 1.0 for the last); 1 outside them."""
    i = block_index(name)
    if i is None or (cfg.block_lr_classes and param_class(name) not in cfg.block_lr_classes):
        return 1.0
    scale = cfg.block_lr_decay ** (num_blocks - 1 - i) if cfg.block_lr_decay != 1.0 else 1.0
    if cfg.block_lr_floor != 1.0:
        trainable = num_blocks - cfg.freeze_blocks
        frac = (i - cfg.freeze_blocks) / max(trainable - 1, 1)
        scale *= cfg.block_lr_floor + (1.0 - cfg.block_lr_floor) * frac
    return scale


class _LoRA(nn.Module):
    """Low-rank update y += (x A^T) B^T of one Linear layer; B starts at 0 so nothing changes at first."""

    def __init__(self, linear: nn.Linear, rank: int, gen: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(linear.in_features)
        a = (torch.rand(rank, linear.in_features, generator=gen) * 2 - 1) * bound  # U(+-1/sqrt(in)), PR #77
        self.A = nn.Parameter(a.to(linear.weight.device))
        self.B = nn.Parameter(torch.zeros(linear.out_features, rank, device=linear.weight.device))

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        delta = nn.functional.linear(nn.functional.linear(x, self.A.to(x.dtype)), self.B.to(x.dtype))
        return output + delta.to(output.dtype)


class GradientAdapter:
    """Score-first TTT by gradient steps (options in `TTTConfig`; see the module docstring)."""

    def __init__(self, model: nn.Module, cfg: TTTConfig, seq_len: int, *, world: World = World(),
                 autocast: bool = True, compile: bool = False):
        self.model = model
        self.cfg = cfg
        self.seq_len = seq_len
        self.world = world
        self.autocast = autocast
        self.device = next(model.parameters()).device
        self._saved_requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
        self._hooks: list = []
        self.lora = nn.ModuleDict()
        self.named_params = self._select()
        if not self.named_params:
            raise ConfigError(f"TTT with params={cfg.params!r} and freeze_blocks={cfg.freeze_blocks} "
                              "leaves no parameter to adapt", "unfreeze some blocks or choose other params")
        for p in self.model.parameters():
            p.requires_grad_(False)
        for _, p in self.named_params:
            p.requires_grad_(True)
        self._initial = [p.detach().clone() for _, p in self.named_params]
        self.num_blocks = 1 + max((block_index(n) or 0) for n, _ in model.named_parameters())
        self.optimizer = self._make_optimizer()
        forward = token_nll_of(model)
        self.forward = torch.compile(forward, dynamic=False) if compile else forward

    # ------------------------------------------------------------------ set-up

    def _frozen(self, name: str) -> bool:
        i = block_index(name)
        return i is not None and i < self.cfg.freeze_blocks

    def _select(self) -> list[tuple[str, nn.Parameter]]:
        cfg = self.cfg
        if cfg.params == "lora":
            gen = torch.Generator().manual_seed(cfg.seed)
            for name, module in self.model.named_modules():
                targeted = any(name == t or name.endswith("." + t) for t in cfg.lora_targets)
                if isinstance(module, nn.Linear) and targeted and not self._frozen(name + "."):
                    lora = _LoRA(module, cfg.lora_rank, gen)
                    self.lora[name.replace(".", "/")] = lora
                    self._hooks.append(module.register_forward_hook(lora.hook))
            if not self.lora:
                linear = [n for n, m in self.model.named_modules() if isinstance(m, nn.Linear)]
                raise ConfigError(f"ttt.lora_targets {list(cfg.lora_targets)} match no Linear layer of the model",
                                  f"name suffixes of: {', '.join(linear[:8])}{' ...' if len(linear) > 8 else ''}")
            return [(f"{key.replace('/', '.')}.{n}", p) for key, mod in self.lora.items()
                    for n, p in mod.named_parameters()]
        return select_params(self.model, cfg)

    def _lr_scale(self, name: str) -> float:
        return block_lr_scale(name, self.cfg, self.num_blocks)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        groups: dict[float, list[nn.Parameter]] = {}
        for name, p in self.named_params:
            groups.setdefault(self._lr_scale(name), []).append(p)
        param_groups = [{"params": ps, "lr": cfg.lr * s, "lr_scale": s} for s, ps in sorted(groups.items())]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=(cfg.momentum, cfg.beta2),
                                 weight_decay=cfg.weight_decay)

    # ------------------------------------------------------------------ the Adapter protocol

    def state(self) -> dict[str, torch.Tensor]:
        return dict(self.lora.named_parameters())

    def lr_at(self, progress: float) -> float:
        if self.cfg.schedule == "constant":
            return self.cfg.lr
        return self.cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine over chunks (PR #549)

    def adapt(self, view: CommittedView, chunk: ChunkInfo) -> None:
        T = self.seq_len
        num_seqs = (chunk.end - chunk.start) // T
        if num_seqs == 0 or self.cfg.epochs == 0:
            return
        lr = self.lr_at(chunk.progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        starts = [chunk.start + i * T for i in range(num_seqs)]
        self.model.train()
        try:
            for epoch in range(self.cfg.epochs):
                for b in range(0, num_seqs, self.cfg.batch_seqs):
                    spans = [(s, s + T) for s in starts[b : b + self.cfg.batch_seqs]]
                    x, y = view.take(spans)
                    self._step(x, y, num_targets=len(spans) * T)
                    view.step(epoch=epoch, lr=lr)
        finally:
            self.model.eval()

    def _step(self, x: torch.Tensor, y: torch.Tensor, num_targets: int) -> None:
        params = [p for _, p in self.named_params]
        self.optimizer.zero_grad(set_to_none=False)
        if x.shape[0]:
            with autocast_for(self.device, self.autocast):
                nll = self.forward(x, y)
            # Sum over this rank's targets / all ranks' targets: after the all-reduce the gradient is
            # that of the global batch mean, whatever the split.
            (nll.float().sum() / num_targets).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if self.world.size > 1:  # one all-reduce over a flat buffer instead of one per tensor
            flat = self.world.all_reduce_sum_(torch.cat([g.reshape(-1) for g in grads]))
            grads = [g.view_as(p) for g, p in zip(flat.split([p.numel() for p in params]), params)]
        for p, g in zip(params, grads):
            p.grad = g
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.optimizer.step()

    @torch.no_grad()
    def reset(self) -> None:
        for (_, p), p0 in zip(self.named_params, self._initial):
            p.copy_(p0)
        self.optimizer = self._make_optimizer()

    def warmup(self, vocab_size: int) -> None:
        """Forward + backward on synthetic ids at the training shape; no optimizer step (rules TTT-6)."""
        gen = torch.Generator().manual_seed(0)
        rows = max(1, math.ceil(self.cfg.batch_seqs / self.world.size))
        x = torch.randint(0, vocab_size, (rows, self.seq_len), generator=gen).to(self.device)
        y = torch.randint(0, vocab_size, (rows, self.seq_len), generator=gen).to(self.device)
        self.model.train()
        try:
            with autocast_for(self.device, self.autocast):
                nll = self.forward(x, y)
            nll.float().mean().backward()
        finally:
            self.model.eval()
            for _, p in self.named_params:
                p.grad = None

    def close(self) -> None:
        """Leave the model as it was given: weights restored, hooks removed, flags back."""
        self.reset()
        for h in self._hooks:
            h.remove()
        self._hooks = []
        for name, p in self.model.named_parameters():
            p.requires_grad_(self._saved_requires_grad.get(name, True))
            p.grad = None
        self.model.eval()
