"""Quantize one matrix: round-to-nearest (RTN) or full-Hessian GPTQ, each with a clip choice (pure).

Both return a `RowQuant`: int8 codes [rows, cols] and fp16 scales [rows] such that the weights are
`codes * scale[:, None]` (`rowquant.dequantize_rows`). GPTQ follows Frantar et al. 2023 ("GPTQ:
Accurate Post-Training Quantization for Generative Pre-trained Transformers") as used by the
records FGPTQ (#1060), ARGPTQ (#1019) and SP8K (#1394); techniques §5.4.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from pgolf.model import rowquant
from pgolf.quant.clip import ClipSpec, choose, describe_choice


@dataclasses.dataclass
class RowQuant:
    """Per-row quantized matrix: `codes` int8 [rows, cols], `scale` fp16 [rows], `info` (JSON-able)."""

    codes: torch.Tensor
    scale: torch.Tensor
    info: dict[str, Any]

    def dequantize(self) -> torch.Tensor:
        """fp32 weights [rows, cols]."""
        return rowquant.dequantize_rows(self.codes, self.scale)


class GPTQFailure(RuntimeError):
    """H (after damping) is not positive definite, or the sweep produced non-finite values."""


def _pick_rows(cands: list[tuple[torch.Tensor, torch.Tensor]], pick: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Assemble codes/scales row by row from the candidate each row picked."""
    codes = torch.stack([c for c, _ in cands])  # [cands, rows, cols]
    scales = torch.stack([s for _, s in cands])  # [cands, rows]
    rows = torch.arange(pick.numel(), device=pick.device)
    return codes[pick, rows], scales[pick, rows]


def round_rows(w: torch.Tensor, scale: torch.Tensor, bits: int, low: int = 0) -> torch.Tensor:
    """int8 codes of `w` [rows, cols] on fp16 `scale` [rows]: `rowquant.quantize_rows`, with the
    lowest code -(qmax + low) (low = 1: the records' grid)."""
    if low == 0:
        return rowquant.quantize_rows(w, scale, bits)
    qmax = rowquant.qmax_for(bits)
    q = torch.round(w.float() / scale.float().unsqueeze(1))
    return q.clamp_(-(qmax + low), qmax).to(torch.int8)


def clamped_rows(w: torch.Tensor, bits: int, clip: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The records' int8 export (`quantize_float_tensor`, baseline onward): W clamped to +-clip per
    row, rounded on the fp32 scale max(clip / qmax, floor); the stored scale is that scale in fp16.
    Returns (int8 codes [rows, cols], fp16 scales [rows])."""
    qmax = rowquant.qmax_for(bits)
    c = clip.float().unsqueeze(1)
    s32 = (clip.float() / qmax).clamp_min(floor)
    q = torch.round(torch.maximum(torch.minimum(w.float(), c), -c) / s32.unsqueeze(1))
    return q.clamp_(-qmax, qmax).to(torch.int8), s32.to(torch.float16)


def rtn_quantize(w: torch.Tensor, bits: int, clip: ClipSpec = ClipSpec()) -> RowQuant:
    """Round-to-nearest per-row quantization of `w` [rows, cols] (any float dtype) at `bits`.

    With `clip.method == "search"` each candidate quantile is tried and the one with the smallest
    squared weight error wins (per matrix or per row, `clip.granularity`).
    """
    w32 = w.detach().float()
    descs, cands, errs = [], [], []
    for desc, c in clip.candidates(w32):
        if clip.rounding == "clamped":
            codes, scale = clamped_rows(w32, bits, c, clip.floor)
        else:
            scale = rowquant.row_scales(w32, bits, c, clip.floor)
            codes = round_rows(w32, scale, bits, clip.low_code)
        descs.append(desc)
        cands.append((codes, scale))
        errs.append((w32 - rowquant.dequantize_rows(codes, scale)).square().sum(dim=1))
    pick = choose(errs, clip.granularity)
    codes, scale = _pick_rows(cands, pick)
    info: dict[str, Any] = {"method": "rtn", "clip": describe_choice(descs, pick, clip.granularity)}
    if clip.rounding != "stored":
        info["rounding"] = clip.rounding
    return RowQuant(codes, scale, info)


def hessian_row_error(w: torch.Tensor, w_hat: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """Per-row output error (W - Ŵ) H (W - Ŵ)^T on its diagonal, fp32 [rows]: what GPTQ minimizes.

    With H = X^T X this is ||X (W_r - Ŵ_r)||^2 summed over the calibration rows of X.
    """
    e = w.float() - w_hat.float()
    return ((e @ hessian.float()) * e).sum(dim=1)


def prepare_hessian(hessian: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Damped copy of H [cols, cols] and the mask of dead inputs (diag 0: the input never fired).

    Dead inputs get H_jj = 1 so H stays invertible (their weights are zeroed by the caller); damping
    adds `damp * mean(diag H)` to the diagonal, once (FGPTQ/ARGPTQ add it twice, §8.7).
    """
    h = hessian.detach().float().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    # the mean of a contiguous copy of the diagonal, as the records compute it (torch.diag(H).mean()):
    # a strided view sums in another order, and one ulp of damping moves GPTQ codes (PR #1406 test)
    h.diagonal().add_(damp * torch.diag(h).mean())
    return h, dead


def gptq_codes(
    w: torch.Tensor,
    hessian: torch.Tensor,
    scale: torch.Tensor,
    bits: int,
    *,
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = True,
    keep_zero: torch.Tensor | None = None,
    low: int = 0,
    tie_order: str = "stable",
) -> torch.Tensor:
    """GPTQ sweep on a fixed per-row grid: int8 codes [rows, cols] for `w` [rows, cols].

    `hessian` [cols, cols] is the (undamped) sum or mean of x x^T over calibration inputs; `scale`
    fp16 [rows] the grid; `keep_zero` bool [rows, cols] marks entries forced to code 0 (pruned),
    whose error is still compensated. Columns are swept in blocks of `block_size`, in decreasing
    diag(H) order when `act_order` (equal diagonals in index order with `tie_order = "stable"`; in
    the order of the records' call, torch's default unstable sort on the CPU, with "record"); each column's rounding error, scaled by the Cholesky factor of
    H^-1, is pushed onto the columns not yet quantized. Raises `GPTQFailure` if H is not positive
    definite after damping.
    """
    qmax = rowquant.qmax_for(bits)
    W = w.detach().float().clone()
    rows, cols = W.shape
    if not torch.isfinite(hessian).all():
        raise GPTQFailure("the Hessian has non-finite entries")
    H, dead = prepare_hessian(hessian.to(W.device), damp)
    W[:, dead] = 0.0
    mask = keep_zero.to(W.device).clone() if keep_zero is not None else None
    if act_order:
        if tie_order == "record":  # PR #2135 (as its predecessors): torch.argsort(H.diag(), descending=True), on the CPU
            perm = torch.argsort(torch.diag(H).cpu(), descending=True).to(H.device)
        else:
            perm = torch.argsort(torch.diagonal(H), descending=True, stable=True)
        W, H = W[:, perm], H[perm][:, perm]
        mask = mask[:, perm] if mask is not None else None
    L, info = torch.linalg.cholesky_ex(H)
    if info.item() != 0:
        raise GPTQFailure(f"Cholesky of the damped Hessian failed at column {info.item()}")
    # U: upper Cholesky factor of H^-1; row j holds how column j's error spreads to later columns.
    U, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
    if info.item() != 0:
        raise GPTQFailure(f"Cholesky of the inverse Hessian failed at column {info.item()}")
    s = scale.to(W.device).float()
    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for j in range(i2 - i1):
            wj = W1[:, j]
            q = torch.round(wj / s).clamp_(-(qmax + low), qmax)
            if mask is not None:
                q = q.masked_fill(mask[:, i1 + j], 0.0)
            Q[:, i1 + j] = q
            err = (wj - q * s) / U1[j, j]
            W1[:, j:] -= err.unsqueeze(1) * U1[j, j:].unsqueeze(0)
            E1[:, j] = err
        # Lazy batch update (the "blocks" of GPTQ): one matmul for the columns after this block.
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    if act_order:
        Q = Q[:, torch.argsort(perm)]
    if not torch.isfinite(Q).all():
        raise GPTQFailure("the sweep produced non-finite values")
    return Q.to(torch.int8)


def gptq_quantize(
    w: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    clip: ClipSpec = ClipSpec(method="search"),
    *,
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = True,
    keep_zero: torch.Tensor | None = None,
    select: str = "hessian",
    tie_order: str = "stable",
) -> RowQuant:
    """Full-Hessian GPTQ of `w` [rows, cols] at `bits` with scales fixed from `clip` before the sweep.

    `hessian` [cols, cols]: x x^T accumulated over the layer's calibration inputs (any positive
    scale). With `clip.method == "search"` one sweep runs per candidate quantile and the winner has
    the smallest output error (W - Ŵ) H (W - Ŵ)^T, per matrix or per row (GPTQ treats rows
    independently, so a per-row choice is exact); `select = "weight"` picks by squared weight error
    instead (PR #1406). Dead inputs (diag H = 0) get weight 0.
    If H is not positive definite after damping, falls back to round-to-nearest with the clip search
    (FGPTQ's fallback) and says so in `info["fallback"]`.
    """
    w32 = w.detach().float()
    h = hessian.detach().to(w32.device).float()
    if h.shape != (w32.shape[1], w32.shape[1]):
        raise ValueError(f"Hessian shape {tuple(h.shape)} does not match {w32.shape[1]} input columns")
    dead = torch.diagonal(h) == 0
    w_live = w32.masked_fill(dead.unsqueeze(0), 0.0)  # clips come from the weights that can matter
    descs, scales = [], []
    for desc, c in clip.candidates(w_live):
        descs.append(desc)
        scales.append(rowquant.row_scales(w_live, bits, c, clip.floor))
    # GPTQ treats rows independently, so all candidates run as one sweep over stacked copies of W.
    n = len(scales)
    try:
        codes_all = gptq_codes(
            w_live.repeat(n, 1),
            h,
            torch.cat(scales),
            bits,
            damp=damp,
            block_size=block_size,
            act_order=act_order,
            keep_zero=keep_zero.repeat(n, 1) if keep_zero is not None else None,
            low=clip.low_code,
            tie_order=tie_order,
        )
    except GPTQFailure as e:
        search = dataclasses.replace(clip, method="search")
        fallback = rtn_quantize(w32, bits, search)
        fallback.info["fallback"] = f"gptq failed ({e}); used round-to-nearest with the clip search"
        return fallback
    cands = list(zip(codes_all.chunk(n), scales))
    if select == "weight":  # PR #1406: weight MSE against W with dead inputs zeroed
        errs = [(w_live - rowquant.dequantize_rows(codes, scale)).square().sum(dim=1) for codes, scale in cands]
    else:
        errs = [hessian_row_error(w32, rowquant.dequantize_rows(codes, scale), h) for codes, scale in cands]
    pick = choose(errs, clip.granularity)
    codes, scale = _pick_rows(cands, pick)
    info = {
        "method": "gptq",
        "clip": describe_choice(descs, pick, clip.granularity),
        "damp": damp,
        "block_size": block_size,
        "act_order": act_order,
        **({"tie_order": tie_order} if tie_order != "stable" else {}),
        "dead_inputs": int(dead.sum().item()),
        "select": select,
    }
    return RowQuant(codes, scale, info)
