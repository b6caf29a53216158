"""The scheme table: which storage each tensor gets, by name, shape, dtype and class (pure).

Storage ids are versioned so an artifact never changes meaning silently:

| id            | stored as                                      | bits         |
|---------------|------------------------------------------------|--------------|
| `intN_row_v1` | `NAME.q` int8 codes (+-qmax) + `NAME.scale` fp16 per row, N = 2..8 | N  |
| `fp16_v1`     | `NAME` fp16                                    | 16           |
| `fp32_v1`     | `NAME` fp32                                    | 32           |
| `raw_v1`      | `NAME` unchanged (non-float tensors)           | element bits |

Decision order (techniques §5.2, first rule that applies wins):
1. non-float tensor -> raw;
2. an `overrides` glob matches the name -> its bits (the last matching entry);
3. control tensor (class "control": gains, scales, mixes) -> fp32;
4. at most `passthrough_numel` elements -> fp16;
5. embedding (class "embed": `tok_emb`, `lm_head`) -> `embed_bits` (16 = fp16);
6. attention / MLP matrices -> the scheme's width (below); anything else large -> int8.

| scheme    | mlp | attn | bigram, value_embed, other |
|-----------|-----|------|----------------------------|
| `int8`    | 8   | 8    | 8                          |
| `int6`    | 6   | 6    | 8                          |
| `int5mlp` | 5   | 6    | 8                          |
| `int4mlp` | 4   | 6    | 8                          |
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from pgolf.quant.config import QuantizeConfig, override_bits

SCHEME_BITS: dict[str, dict[str, int]] = {
    "int8": {"mlp": 8, "attn": 8},
    "int6": {"mlp": 6, "attn": 6},
    "int5mlp": {"mlp": 5, "attn": 6},  # PR #180: int5 MLP funds a 10th layer
    "int4mlp": {"mlp": 4, "attn": 6},
}
OTHER_LARGE_BITS = 8  # §5.2 rule 5: any other large float tensor gets per-row int8

FP16_ID, FP32_ID, RAW_ID = "fp16_v1", "fp32_v1", "raw_v1"


def int_scheme_id(bits: int) -> str:
    return f"int{bits}_row_v1"


def parse_scheme_id(scheme_id: str) -> int | None:
    """Bits of an `intN_row_v1` id, or None for a passthrough id; ValueError for an unknown id."""
    if scheme_id in (FP16_ID, FP32_ID, RAW_ID):
        return None
    if scheme_id.startswith("int") and scheme_id.endswith("_row_v1"):
        digits = scheme_id[3 : -len("_row_v1")]
        if digits.isdigit() and 2 <= int(digits) <= 8:
            return int(digits)
    raise ValueError(f"unknown scheme id {scheme_id!r}")


@dataclasses.dataclass(frozen=True)
class TensorPlan:
    """What one tensor gets: `scheme` id, `bits` (2..8 integer, 16/32 float, element bits for raw),
    and `reason`: the rule that decided (nonfloat | override | control | small | embed | class)."""

    scheme: str
    bits: int
    reason: str

    @property
    def is_int(self) -> bool:
        return self.scheme.endswith("_row_v1")


def _plan_for_bits(bits: int, reason: str) -> TensorPlan:
    if bits == 16:
        return TensorPlan(FP16_ID, 16, reason)
    if bits == 32:
        return TensorPlan(FP32_ID, 32, reason)
    return TensorPlan(int_scheme_id(bits), bits, reason)


def plan_tensor(
    name: str, shape: Sequence[int], dtype: torch.dtype, tensor_class: str, cfg: QuantizeConfig
) -> TensorPlan:
    """The storage of tensor `name` of `shape`/`dtype` whose `pgolf.model.param_class` is `tensor_class`."""
    if not dtype.is_floating_point:
        return TensorPlan(RAW_ID, torch.empty((), dtype=dtype).element_size() * 8, "nonfloat")
    bits = override_bits(name, cfg.parsed_overrides)
    if bits is not None:
        return _plan_for_bits(bits, "override")
    if tensor_class == "control":
        return TensorPlan(FP32_ID, 32, "control")
    numel = 1
    for d in shape:
        numel *= int(d)
    if numel <= cfg.passthrough_numel:
        return TensorPlan(FP16_ID, 16, "small")
    if tensor_class == "embed":
        return _plan_for_bits(cfg.embed_bits, "embed")
    return _plan_for_bits(SCHEME_BITS[cfg.scheme].get(tensor_class, OTHER_LARGE_BITS), "class")
