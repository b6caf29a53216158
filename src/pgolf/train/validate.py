"""Validation during training: exact val_loss and val_bpb over non-overlapping windows (the
baseline's `eval_val`, techniques.md §2.6, §6.1). A diagnostic only: nothing in training reads it
(rules DATA-3).

val_bpb = sum of per-token NLL (float64) / (ln 2 * sum of the targets' bytes), where a target's
bytes come from the data directory's byte sidecar or, without one, the tokenizer's lookup tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from pgolf.data.bpb import bits_per_byte
from pgolf.runtime.device import autocast

if TYPE_CHECKING:
    from pgolf.model.gpt import GPT


@dataclass(frozen=True)
class ValData:
    """The validation stream and, per token, its bytes as a target (entry 0 is never a target)."""

    tokens: np.ndarray  # [N] token ids
    target_bytes: np.ndarray | None  # [N] int, or None when no byte count is available (val_bpb unknown)


@dataclass(frozen=True)
class ValResult:
    loss: float  # mean NLL, nats per token
    bpb: float | None  # bits per byte, None without byte counts
    tokens: int  # scored targets
    bytes: int  # their bytes
    seconds: float


def scored_tokens(num_tokens: int, seq_len: int, max_tokens: int = 0) -> int:
    """Targets scored: whole windows of seq_len over the N - 1 targets, capped to max_tokens (0 = all)."""
    usable = (num_tokens - 1) // seq_len * seq_len
    if max_tokens > 0:
        usable = min(usable, max_tokens // seq_len * seq_len)
    return usable


@torch.no_grad()
def evaluate(model: GPT, val: ValData, seq_len: int, batch_tokens: int, device: torch.device,
             amp_dtype: torch.dtype | None = None, max_tokens: int = 0, rank: int = 0, world_size: int = 1) -> ValResult:
    """Score the first `scored_tokens(...)` targets of `val` with `model.token_nll`.

    `model` must have `token_nll(idx_BT, tgt_BT) -> nll_BT`. Windows are split across ranks and the
    sums all-reduced, so every rank returns the same result.
    """
    t0 = time.perf_counter()
    usable = scored_tokens(len(val.tokens), seq_len, max_tokens)
    if usable <= 0:
        raise ValueError(f"the validation split has fewer than seq_len + 1 = {seq_len + 1} tokens")
    num_seqs = usable // seq_len
    first, last = num_seqs * rank // world_size, num_seqs * (rank + 1) // world_size
    per_batch = max(1, batch_tokens // (world_size * seq_len))
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    for s in range(first, last, per_batch):
        e = min(s + per_batch, last)
        window = np.asarray(val.tokens[s * seq_len : e * seq_len + 1], dtype=np.int64)
        window_t = torch.from_numpy(window).to(device, non_blocking=True)
        x, y = window_t[:-1].view(-1, seq_len), window_t[1:].view(-1, seq_len)
        with autocast(device, amp_dtype):
            nll = model.token_nll(x, y)
        nll_sum += nll.double().sum()
    model.train(was_training)
    byte_sum = torch.zeros((), dtype=torch.float64, device=device)
    if val.target_bytes is not None and last > first:
        byte_sum += float(np.asarray(val.target_bytes[first * seq_len + 1 : last * seq_len + 1], dtype=np.int64).sum())
    import torch.distributed as dist

    if world_size > 1 and dist.is_initialized():
        totals = torch.stack([nll_sum, byte_sum])
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        nll_sum, byte_sum = totals[0], totals[1]
    total_nll, total_bytes = float(nll_sum.item()), int(byte_sum.item())
    bpb = bits_per_byte(total_nll, total_bytes) if val.target_bytes is not None else None
    return ValResult(loss=total_nll / usable, bpb=bpb, tokens=usable, bytes=total_bytes,
                     seconds=time.perf_counter() - t0)
