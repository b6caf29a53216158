"""LQER: a low-rank correction of the quantization error of a few matrices (pure).

For a matrix W [rows, cols] quantized to Ŵ (codes x per-row scales), E = W - Ŵ is factored by its
SVD, E ~ A @ B with A = U_r diag(S_r) [rows, r] and B = V_r^T [r, cols], and A, B are stored
quantized; dequantization adds A_q @ B_q back to Ŵ. Only the `top_k` matrices with the largest
||E||_F get one (PR #1530's LQER, in the asymmetric form PR #2135 runs with rank 4, top 3).

Factor storage (`NAME.lqer_a`, `NAME.lqer_a_scale`, `NAME.lqer_b`, `NAME.lqer_b_scale`):
- "asym": A int2 in [-2, 1] on one fp16 scale max|A| / 1.5 (shape [1]); B int4 in [-8, 7] on one fp16
  scale max|g| / 7.5 per group of `group` consecutive entries of B flattened row-major
  (shape [r * cols / group]). Used when r * cols divides by `group`.
- "sym": A and B each int`bits` in +-(2**(bits-1) - 1) on one fp16 scale per row (max |row| / qmax).
Scales are computed in fp32, floored at 1e-10 and rounded to fp16; codes round half to even on the
fp16 scale, as the record does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

SUFFIXES = (".lqer_a", ".lqer_a_scale", ".lqer_b", ".lqer_b_scale")
ASYM_A_LEVELS = (-2, 1)  # int2 signed
ASYM_B_LEVELS = (-8, 7)  # int4 signed
_FLOOR = 1e-10


def error_norm(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """||W - Ŵ||_F in fp32: the ranking key of `top_errors`."""
    return float((w.float() - w_hat.float()).norm())


def top_errors(norms: Mapping[str, float], top_k: int) -> list[str]:
    """The `top_k` names of the largest error norm; ties keep the mapping's order (a stable sort)."""
    return [n for n, _ in sorted(norms.items(), key=lambda kv: -kv[1])[:top_k]]


def factors(err: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A [rows, r], B [r, cols]) fp32 from the thin SVD of `err` [rows, cols], r = min(rank, min(rows, cols))."""
    u, s, vh = torch.linalg.svd(err.float(), full_matrices=False)
    r = min(rank, s.numel())
    return (u[:, :r] * s[:r]).contiguous(), vh[:r, :].contiguous()


def mode_for(b_numel: int, asym: bool, group: int) -> str:
    """"asym" when asked for and B's size divides into groups, else "sym"."""
    return "asym" if asym and b_numel % group == 0 else "sym"


def quantize_factors(a: torch.Tensor, b: torch.Tensor, mode: str, *, bits: int = 4,
                     group: int = 64) -> dict[str, torch.Tensor]:
    """{suffix: tensor} of A and B stored as `mode` says (see the module docstring)."""
    if mode == "asym":
        sa = (a.abs().amax().clamp_min(_FLOOR) / 1.5).to(torch.float16)
        qa = torch.clamp(torch.round(a / sa.float()), *ASYM_A_LEVELS).to(torch.int8)
        bg = b.reshape(-1, group)
        sb = (bg.abs().amax(dim=-1, keepdim=True).clamp_min(_FLOOR) / 7.5).to(torch.float16).reshape(-1)
        qb = torch.clamp(torch.round(bg / sb.float().reshape(-1, 1)), *ASYM_B_LEVELS).to(torch.int8).reshape(b.shape)
        sa = sa.reshape(1)
    else:
        qmax = 2 ** (bits - 1) - 1
        sa = (a.abs().amax(dim=1).clamp_min(_FLOOR) / qmax).to(torch.float16)
        sb = (b.abs().amax(dim=1).clamp_min(_FLOOR) / qmax).to(torch.float16)
        qa = torch.clamp(torch.round(a / sa.float().view(-1, 1)), -qmax, qmax).to(torch.int8)
        qb = torch.clamp(torch.round(b / sb.float().view(-1, 1)), -qmax, qmax).to(torch.int8)
    return dict(zip(SUFFIXES, (qa, sa, qb, sb)))


def meta_entry(mode: str, rank: int, *, bits: int, group: int) -> dict[str, Any]:
    """The `lqer` entry of a tensor's quant meta."""
    return {"mode": mode, "rank": rank, **({"group": group} if mode == "asym" else {"bits": bits})}


def expected(entry: Mapping[str, Any], rows: int, cols: int) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """{suffix: (dtype, shape)} the four stored factor tensors must have; ValueError on a bad entry."""
    mode, r = entry["mode"], int(entry["rank"])
    if mode not in ("asym", "sym") or not 1 <= r <= min(rows, cols):
        raise ValueError(f"lqer mode {mode!r} rank {r}")
    if mode == "asym":
        g = int(entry["group"])
        if g < 1 or (r * cols) % g:
            raise ValueError(f"lqer group {g} does not divide {r} x {cols}")
        scales = ((1,), ((r * cols) // g,))
    else:
        if not 2 <= int(entry["bits"]) <= 8:
            raise ValueError(f"lqer bits {entry['bits']}")
        scales = ((rows,), (r,))
    return {SUFFIXES[0]: (torch.int8, (rows, r)), SUFFIXES[1]: (torch.float16, scales[0]),
            SUFFIXES[2]: (torch.int8, (r, cols)), SUFFIXES[3]: (torch.float16, scales[1])}


def levels(entry: Mapping[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((lowest, highest) code of A, the same of B) for a checked `lqer` entry."""
    if entry["mode"] == "asym":
        return ASYM_A_LEVELS, ASYM_B_LEVELS
    qmax = 2 ** (int(entry["bits"]) - 1) - 1
    return (-qmax, qmax), (-qmax, qmax)


def correction(stored: Mapping[str, torch.Tensor], mode: str) -> torch.Tensor:
    """A_q @ B_q, fp32 [rows, cols], from the four factor tensors (keys: SUFFIXES)."""
    qa, sa, qb, sb = (stored[s] for s in SUFFIXES)
    if mode == "asym":
        a = qa.float() * float(sa.reshape(-1)[0])
        g = qb.numel() // sb.numel()
        b = (qb.reshape(-1, g).float() * sb.float().view(-1, 1)).reshape(qb.shape)
    else:
        a = qa.float() * sa.float().view(-1, 1)
        b = qb.float() * sb.float().view(-1, 1)
    return a @ b
