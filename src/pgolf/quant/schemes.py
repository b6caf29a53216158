"""The scheme table: which storage each tensor gets, by name, shape, dtype and class (pure).

Storage ids are versioned so an artifact never changes meaning silently:

| id            | stored as                                      | bits         |
|---------------|------------------------------------------------|--------------|
| `intN_row_v1` | `NAME.q` int8 codes (+-qmax) + `NAME.scale` fp16 per row, N = 2..8 | N  |
| `intN_rowfull_v1` | the same with codes in [-(qmax+1), qmax], the records' grid | N    |
| `fp16_v1`     | `NAME` fp16                                    | 16           |
| `fp32_v1`     | `NAME` fp32                                    | 32           |
| `raw_v1`      | `NAME` unchanged (non-float tensors)           | element bits |

Decision order (techniques §5.2, first rule that applies wins):
1. non-float tensor -> raw;
2. an `overrides` glob matches the name -> its bits (the last matching entry);
3. control tensor (class "control": gains, scales, mixes) -> fp32 (with `control_first = false`
   this rule comes after rule 4, as in the records: a small control tensor is then fp16);
4. at most `passthrough_numel` elements -> fp16;
5. a `keep_float` glob matches -> fp16 (the records' FP16_KEEP_NAME_PATTERNS);
6. a `width_overrides` glob matches -> its bits (the records' name classes);
7. embedding (class "embed": `tok_emb`, `lm_head`) -> `embed_bits` (16 = fp16);
8. attention / MLP matrices -> the scheme's width (below); anything else large -> int8.

| scheme    | mlp | attn | bigram, value_embed, other |
|-----------|-----|------|----------------------------|
| `int8`    | 8   | 8    | 8                          |
| `int6`    | 6   | 6    | 8                          |
| `int5mlp` | 5   | 6    | 8                          |
| `int4mlp` | 4   | 6    | 8                          |
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Sequence

import torch

from pgolf.quant.config import QuantizeConfig, expand_last, override_bits

SCHEME_BITS: dict[str, dict[str, int]] = {
    "int8": {"mlp": 8, "attn": 8},
    "int6": {"mlp": 6, "attn": 6},
    "int5mlp": {"mlp": 5, "attn": 6},  # PR #180: int5 MLP funds a 10th layer
    "int4mlp": {"mlp": 4, "attn": 6},
}
OTHER_LARGE_BITS = 8  # §5.2 rule 5: any other large float tensor gets per-row int8

FP16_ID, FP32_ID, RAW_ID = "fp16_v1", "fp32_v1", "raw_v1"


INT_SUFFIXES = ("_row_v1", "_rowfull_v1")  # symmetric +-qmax; the records' [-(qmax+1), qmax]


def int_scheme_id(bits: int, full: bool = False) -> str:
    return f"int{bits}{INT_SUFFIXES[1] if full else INT_SUFFIXES[0]}"


def parse_scheme_id(scheme_id: str) -> int | None:
    """Bits of an `intN_row_v1` / `intN_rowfull_v1` id, or None for a passthrough id; ValueError for
    an unknown id."""
    if scheme_id in (FP16_ID, FP32_ID, RAW_ID):
        return None
    for suffix in INT_SUFFIXES:
        if scheme_id.startswith("int") and scheme_id.endswith(suffix):
            digits = scheme_id[3 : -len(suffix)]
            if digits.isdigit() and 2 <= int(digits) <= 8:
                return int(digits)
    raise ValueError(f"unknown scheme id {scheme_id!r}")


def code_range(scheme_id: str) -> tuple[int, int]:
    """(lowest, highest) code of an integer scheme id: (-qmax, qmax), or (-(qmax+1), qmax) for rowfull."""
    bits = parse_scheme_id(scheme_id)
    if bits is None:
        raise ValueError(f"{scheme_id!r} is not an integer scheme")
    qmax = 2 ** (bits - 1) - 1
    return (-(qmax + 1) if scheme_id.endswith(INT_SUFFIXES[1]) else -qmax), qmax


@dataclasses.dataclass(frozen=True)
class TensorPlan:
    """What one tensor gets: `scheme` id, `bits` (2..8 integer, 16/32 float, element bits for raw),
    and `reason`: the rule that decided (nonfloat | override | control | small | keep | width_override
    | embed | class)."""

    scheme: str
    bits: int
    reason: str

    @property
    def is_int(self) -> bool:
        return self.scheme.endswith(INT_SUFFIXES)


_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def count_blocks(names: Iterable[str]) -> int:
    """1 + the largest `blocks.{i}.` index among `names` (0 without blocks)."""
    found = [int(m.group(1)) for n in names if (m := _BLOCK.search(n))]
    return 1 + max(found) if found else 0


def _plan_for_bits(bits: int, reason: str, cfg: QuantizeConfig) -> TensorPlan:
    if bits == 16:
        return TensorPlan(FP16_ID, 16, reason)
    if bits == 32:
        return TensorPlan(FP32_ID, 32, reason)
    return TensorPlan(int_scheme_id(bits, cfg.width(bits).grid == "full"), bits, reason)


def plan_tensor(
    name: str,
    shape: Sequence[int],
    dtype: torch.dtype,
    tensor_class: str,
    cfg: QuantizeConfig,
    num_blocks: int = 0,
) -> TensorPlan:
    """The storage of tensor `name` of `shape`/`dtype` whose `pgolf.model.param_class` is `tensor_class`.

    `num_blocks`: the model's block count, for `{last}` in `keep_float` (see `count_blocks`).
    """
    if not dtype.is_floating_point:
        return TensorPlan(RAW_ID, torch.empty((), dtype=dtype).element_size() * 8, "nonfloat")
    bits = override_bits(name, cfg.parsed_overrides)
    if bits is not None:
        return _plan_for_bits(bits, "override", cfg)
    if tensor_class == "control" and cfg.control_first:
        return TensorPlan(FP32_ID, 32, "control")
    numel = 1
    for d in shape:
        numel *= int(d)
    if numel <= cfg.passthrough_numel:
        return TensorPlan(FP16_ID, 16, "small")
    if tensor_class == "control":
        return TensorPlan(FP32_ID, 32, "control")
    if any(fnmatch.fnmatchcase(name, expand_last(p, num_blocks)) for p in cfg.keep_float):
        return TensorPlan(FP16_ID, 16, "keep")
    bits = override_bits(name, cfg.parsed_width_overrides)
    if bits is not None:
        return _plan_for_bits(bits, "width_override", cfg)
    if tensor_class == "embed":
        return _plan_for_bits(cfg.embed_bits, "embed", cfg)
    return _plan_for_bits(SCHEME_BITS[cfg.scheme].get(tensor_class, OTHER_LARGE_BITS), "class", cfg)
