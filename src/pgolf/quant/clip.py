"""Per-row clips c_r for `W` [rows, cols], which set the scale s_r = max(c_r / qmax, floor) (pure).

Methods (techniques §5.1, §5.3, §5.5):
- rowmax:   c_r = max |W_r|; never saturates.
- quantile: c_r = quantile_p(|W_r|) with torch.quantile's linear interpolation (baseline int8: p = 0.9999984).
- sdclip:   c_r = k * std(W_r), unbiased (SP8K #1394). With k ~ 13-20 the clip usually lies above the row
            max, so k really sets the step k*std/qmax: the knob that trades error for compressed size.
- search:   GPTQ-lite (PR #414): try each candidate quantile, keep the one with the smallest error,
            either one per matrix (as #414's code does) or one per row.

The clip only sets the scale: codes are `clamp(round(W / s), -qmax, qmax)` for every method (as in the
int6 records and GPTQ). The baseline int8 export also clamped W to +-c before rounding, on the fp32
scale, and stored that scale's fp16 rounding: `rounding = "clamped"` reproduces it exactly (the two
differ where a scale floor lifts s above c / qmax, and where fp16 rounding moves W / s across a half).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from pgolf.model.rowquant import FP16_TINY


def sorted_abs_rows(w: torch.Tensor) -> torch.Tensor:
    """|W| sorted ascending along each row, fp32 [rows, cols]: computed once, shared by every quantile."""
    return torch.sort(w.detach().float().abs(), dim=1).values


def row_quantile(sorted_abs: torch.Tensor, p: float) -> torch.Tensor:
    """Per-row quantile p of rows already sorted ascending, fp32 [rows].

    Bit-identical to `torch.quantile(x, p, dim=1)` (linear interpolation, rank computed in fp32), with
    no 16M-element limit and one sort for many quantiles.
    """
    n = sorted_abs.shape[1]
    rank = torch.tensor(p, dtype=torch.float32, device=sorted_abs.device) * (n - 1)
    lo, hi = rank.floor(), rank.ceil()
    below = sorted_abs[:, int(lo.item())]
    above = sorted_abs[:, int(hi.item())]
    return torch.lerp(below, above, rank - lo)


def rowmax_clip(w: torch.Tensor) -> torch.Tensor:
    """max |W_r| per row, fp32 [rows]."""
    return w.detach().float().abs().amax(dim=1)


def quantile_clip(w: torch.Tensor, p: float) -> torch.Tensor:
    """quantile_p(|W_r|) per row, fp32 [rows]."""
    return row_quantile(sorted_abs_rows(w), p)


def sdclip_clip(w: torch.Tensor, k: float) -> torch.Tensor:
    """SDClip: k * std(W_r) per row (unbiased), fp32 [rows]; a single-column row falls back to |W_r|."""
    w32 = w.detach().float()
    if w32.shape[1] < 2:
        return k * w32.abs().amax(dim=1)
    return k * w32.std(dim=1, unbiased=True)


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """How to choose the per-row clip of one matrix.

    `method` is rowmax | quantile | sdclip | search; `quantile` is used by "quantile", `quantiles` and
    `granularity` ("matrix" | "row") by "search", `k` by "sdclip"; `floor` is the smallest scale;
    `rounding` "stored" (round on the stored fp16 scale) or "clamped" (the records' int8 export:
    clamp W to +-clip, round on the fp32 scale, store its fp16 rounding); `full_range`: codes in
    [-(qmax+1), qmax] instead of +-qmax.
    """

    method: str = "rowmax"
    quantile: float = 0.9999984
    quantiles: tuple[float, ...] = (0.999, 0.9995, 0.9999, 0.99999, 1.0)
    granularity: str = "matrix"
    k: float = 12.85
    floor: float = FP16_TINY
    rounding: str = "stored"
    full_range: bool = False  # codes may reach -(qmax+1) (the records' grid)

    @property
    def low_code(self) -> int:
        """How far below zero a code may go, as a positive offset over qmax: 1 on the full grid, else 0."""
        return 1 if self.full_range else 0

    def __post_init__(self) -> None:
        if self.method not in ("rowmax", "quantile", "sdclip", "search"):
            raise ValueError(f"unknown clip method {self.method!r}")
        if self.rounding not in ("stored", "clamped"):
            raise ValueError(f"unknown rounding {self.rounding!r}")
        if self.granularity not in ("matrix", "row"):
            raise ValueError(f"unknown search granularity {self.granularity!r}")

    def candidates(self, w: torch.Tensor) -> list[tuple[dict[str, Any], torch.Tensor]]:
        """(description, clip fp32 [rows]) per candidate; only "search" yields more than one."""
        if self.method == "rowmax":
            return [({"method": "rowmax"}, rowmax_clip(w))]
        if self.method == "quantile":
            return [({"method": "quantile", "quantile": self.quantile}, quantile_clip(w, self.quantile))]
        if self.method == "sdclip":
            return [({"method": "sdclip", "k": self.k}, sdclip_clip(w, self.k))]
        sorted_abs = sorted_abs_rows(w)
        return [({"method": "search", "quantile": p}, row_quantile(sorted_abs, p)) for p in self.quantiles]


def choose(row_errors: Sequence[torch.Tensor], granularity: str) -> torch.Tensor:
    """Index of the winning candidate per row, int64 [rows], from each candidate's per-row error [rows].

    "matrix": the candidate with the smallest total error, for every row; "row": each row's own best.
    Ties go to the earlier candidate, so the choice is deterministic.
    """
    errs = torch.stack([e.double() for e in row_errors])  # [candidates, rows]
    if granularity == "row":
        return errs.argmin(dim=0)
    best = int(errs.sum(dim=1).argmin().item())
    return torch.full((errs.shape[1],), best, dtype=torch.long, device=errs.device)


def describe_choice(descs: Sequence[dict[str, Any]], pick: torch.Tensor, granularity: str) -> dict[str, Any]:
    """JSON-able summary of a choice among candidates (the chosen quantile, or a count per quantile)."""
    if len(descs) == 1:
        return dict(descs[0])
    if granularity == "matrix":
        return {**descs[int(pick[0].item())], "granularity": "matrix", "candidates": [d["quantile"] for d in descs]}
    counts = torch.bincount(pick, minlength=len(descs)).tolist()
    return {
        "method": descs[0]["method"],
        "granularity": "row",
        "candidates": [d["quantile"] for d in descs],
        "rows_per_candidate": counts,
    }
