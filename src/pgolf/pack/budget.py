"""The challenge's byte budget and the order-0 entropy of the codes (pure).

`total_bytes = code_bytes + model_bytes <= 16,000,000`: decimal bytes, never MiB (rules.md SIZE-1;
16 MiB = 16,777,216 and ARGPTQ's "15.9 MB" target of 16,672,358 bytes are both over the cap).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

LIMIT_BYTES = 16_000_000


def budget(code_bytes: int, model_bytes: int, limit: int = LIMIT_BYTES) -> dict[str, Any]:
    """The artifact budget: {code_bytes, model_bytes, total_bytes, limit_bytes, margin_bytes, fits}.

    code_bytes: UTF-8 length of the submitted `train_gpt.py`; model_bytes: length of `model.bin`;
    limit: the cap in decimal bytes. `fits` is `total_bytes <= limit_bytes`; `margin_bytes` is
    `limit_bytes - total_bytes` (negative when over).
    """
    for key, value in (("code_bytes", code_bytes), ("model_bytes", model_bytes), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer number of bytes, got {value!r}")
    total = int(code_bytes) + int(model_bytes)
    return {
        "code_bytes": int(code_bytes),
        "model_bytes": int(model_bytes),
        "total_bytes": total,
        "limit_bytes": int(limit),
        "margin_bytes": int(limit) - total,
        "fits": total <= int(limit),
    }


def code_entropy_bits(codes: np.ndarray) -> float:
    """Order-0 Shannon entropy of int8 `codes`, in bits per code (0 for an empty or constant tensor)."""
    counts = np.bincount(codes.reshape(-1).view(np.uint8), minlength=256)
    n = counts.sum()
    if n == 0:
        return 0.0
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


def entropy_report(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """Per int8 (code) tensor: numel, order-0 entropy in bits per code and in bytes; and their sum.

    Returns {"tensors": {name: {"numel", "bits_per_code", "entropy_bytes"}}, "entropy_bytes": float}.
    The sum is what an ideal coder with one static distribution per tensor would need (tables not
    counted); pgolf's `rans` codec can go below it because it models rows and columns separately.
    """
    per: dict[str, dict[str, Any]] = {}
    for name in sorted(tensors):
        t = tensors[name]
        arr = t if isinstance(t, np.ndarray) else t.detach().cpu().numpy()
        if arr.dtype != np.int8:
            continue
        h = code_entropy_bits(arr)
        per[name] = {"numel": int(arr.size), "bits_per_code": h, "entropy_bytes": h * arr.size / 8}
    return {"tensors": per, "entropy_bytes": float(sum(v["entropy_bytes"] for v in per.values()))}
