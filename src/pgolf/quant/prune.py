"""Magnitude pruning before quantization (INT5 #180): zero the smallest |w| of a matrix (pure).

Exact zeros cost almost nothing after entropy coding, so pruning trades a little error for bytes.
Unlike #180 (which zeroed every |w| below the 3% quantile, a count that depends on ties), pgolf
zeroes exactly round(frac * numel) entries; among equal magnitudes the lower flat index goes first.
"""

from __future__ import annotations

import math

import torch


def prune_count(numel: int, frac: float) -> int:
    """How many entries `frac` of `numel` prunes: round half up, so the count never depends on ties."""
    return min(numel, math.floor(frac * numel + 0.5))


def magnitude_prune(w: torch.Tensor, frac: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the `prune_count(w.numel(), frac)` entries of smallest |w|.

    Returns (pruned copy of `w`, same shape and dtype; bool mask of the zeroed entries). Ties in |w|
    are broken by flat index (the lower index is pruned first), so the result is deterministic.
    """
    k = prune_count(w.numel(), frac)
    a = w.detach().float().abs().flatten()
    if k == 0:
        mask = torch.zeros_like(a, dtype=torch.bool)
    else:
        # Selection instead of a full sort: everything below the k-th smallest magnitude, then the
        # first ties at that magnitude (by flat index) until exactly k entries are marked.
        tau = a.kthvalue(k).values
        below = a < tau
        ties = a == tau
        mask = below | (ties & (ties.cumsum(0) <= k - below.sum()))
    mask = mask.view(w.shape)
    return w.detach().masked_fill(mask, 0), mask
