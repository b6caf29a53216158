"""Per-row symmetric integer quantization: the primitive every scheme and QAT share (pure, CPU/GPU).

It lives in the model package because the model's QAT forward (`CastedLinear`, `CastedEmbedding`)
rounds with it; `pgolf.quant` stores exactly these codes and scales, so training sees the rounding
export gives. Imports go one way: `pgolf.quant` -> `pgolf.model`, never back.

For a matrix W [rows, cols] and bit width b, `qmax = 2**(b-1) - 1` (int5: 15, int6: 31, int8: 127);
per row r a clip c_r (row max |W_r| by default), a scale `s_r = max(c_r / qmax, floor)` rounded to
fp16 (the stored scale), and codes `q = clamp(round(W / s_r), -qmax, qmax)` in an int8 container.
Dequantization is `q * s_r` in fp32. The range is symmetric: the records' int5 "[-16, 15]" can never
reach -16 under a row-max clip, so pgolf defines int5 as +-15 (31 levels), int6 as +-31 (techniques §5.1, §8.5).
"""

from __future__ import annotations

import torch

FP16_TINY = float(torch.finfo(torch.float16).tiny)  # smallest normal fp16: the default scale floor


def qmax_for(bits: int) -> int:
    if not 2 <= bits <= 8:
        raise ValueError(f"bit width {bits} is outside 2..8")
    return 2 ** (bits - 1) - 1


def row_scales(w: torch.Tensor, bits: int, clip: torch.Tensor | None = None, floor: float = FP16_TINY) -> torch.Tensor:
    """fp16 scales [rows] for `w` [rows, cols]; `clip` [rows] defaults to each row's max |w|."""
    c = w.detach().float().abs().amax(dim=1) if clip is None else clip.float()
    return (c / qmax_for(bits)).clamp_min(floor).to(torch.float16)


def quantize_rows(w: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """int8 codes of `w` [rows, cols] on the grid of fp16 `scale` [rows] (round half to even)."""
    qmax = qmax_for(bits)
    q = torch.round(w.float() / scale.float().unsqueeze(1))
    return q.clamp_(-qmax, qmax).to(torch.int8)


def dequantize_rows(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """fp32 weights from int8 codes [rows, cols] and fp16 scales [rows]."""
    return codes.float() * scale.float().unsqueeze(1)


def fake_quantize_rows(w: torch.Tensor, bits: int, floor: float = FP16_TINY) -> torch.Tensor:
    """Quantize-dequantize `w` in the forward pass; the gradient passes straight through (STE).

    Used by QAT so training sees the rounding it will get from `pgolf quantize` (row-max clip).
    `floor` bounds the scales from below (PR #861 QAT: 1/15 at int5; PR #1406: 1/31 at int6).
    """
    with torch.no_grad():
        scale = row_scales(w, bits, floor=max(floor, FP16_TINY))
        wq = dequantize_rows(quantize_rows(w, scale, bits), scale).to(w.dtype)
    return w + (wq - w).detach()
