"""Magnitude pruning before quantization (INT5 #180): zero the smallest |w| of a matrix (pure).

Exact zeros cost almost nothing after entropy coding, so pruning trades a little error for bytes.
Unlike #180 (which zeroed every |w| below the 3% quantile, a count that depends on ties), pgolf
zeroes exactly round(frac * numel) entries by default; among equal magnitudes the lower flat index
goes first. `method = "quantile"` is the records' rule (PRs #366, #861, #1216): every |w| strictly
below torch.quantile(|W|, frac), computed here without torch.quantile's 16M-element limit.
"""

from __future__ import annotations

import math

import torch

from pgolf.quant.clip import row_quantile


def prune_count(numel: int, frac: float) -> int:
    """How many entries `frac` of `numel` prunes: round half up, so the count never depends on ties."""
    return min(numel, math.floor(frac * numel + 0.5))


def magnitude_prune(w: torch.Tensor, frac: float, method: str = "count") -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the `prune_count(w.numel(), frac)` entries of smallest |w| ("count"), or every |w| below
    the `frac` quantile of |W| ("quantile", the records' rule).

    Returns (pruned copy of `w`, same shape and dtype; bool mask of the zeroed entries). Ties in |w|
    are broken by flat index (the lower index is pruned first), so the result is deterministic.
    """
    a = w.detach().float().abs().flatten()
    if method == "quantile":
        if a.numel() == 0 or frac <= 0:
            mask = torch.zeros_like(a, dtype=torch.bool)
        else:
            mask = a < row_quantile(torch.sort(a).values.unsqueeze(0), frac)[0]
        mask = mask.view(w.shape)
        return w.detach().masked_fill(mask, 0), mask
    if method != "count":
        raise ValueError(f"unknown prune method {method!r}")
    k = prune_count(w.numel(), frac)
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
