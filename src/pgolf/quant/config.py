"""`QuantizeConfig`: how `pgolf quantize` turns a float state dict into integer codes and scales.

Every key is documented in docs/quantize.md; the defaults reproduce the challenge baseline's
export (per-row int8, 0.9999984 quantile clip) except for the scale floor (see `scale_floor`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Literal

from pgolf.config import check
from pgolf.errors import ConfigError
from pgolf.model.rowquant import FP16_TINY

Scheme = Literal["int8", "int6", "int5mlp", "int4mlp"]
ClipMethod = Literal["rowmax", "quantile", "search", "sdclip"]
SCHEMES: tuple[str, ...] = ("int8", "int6", "int5mlp", "int4mlp")
CLIP_METHODS: tuple[str, ...] = ("rowmax", "quantile", "search", "sdclip")

# Storage widths an override or `embed_bits` may name: intN per row, or float passthrough.
INT_BITS = range(2, 9)
FLOAT_BITS = (16, 32)
FP16_SMALLEST_SUBNORMAL = 2.0**-24  # a smaller floor would round to a zero fp16 scale


def parse_override(text: str) -> tuple[str, int]:
    """Split one `"glob=bits"` override (e.g. `"*.mlp.*=5"`, `"blocks.8.attn.c_k.weight=16"`)."""
    pattern, sep, raw = text.rpartition("=")
    pattern, raw = pattern.strip(), raw.strip()
    if not sep or not pattern:
        raise ConfigError(
            f"config key 'overrides' has entry {text!r} that is not of the form glob=bits",
            "e.g. '*.mlp.*=5' or 'blocks.8.attn.c_k.weight=16'",
        )
    try:
        bits = int(raw)
    except ValueError:
        bits = -1
    if bits not in INT_BITS and bits not in FLOAT_BITS:
        raise ConfigError(
            f"config key 'overrides' has entry {text!r} with bits {raw!r}",
            "bits must be 2..8 (per-row integer), 16 (fp16 passthrough) or 32 (fp32 passthrough)",
        )
    return pattern, bits


def override_bits(name: str, overrides: tuple[tuple[str, int], ...]) -> int | None:
    """Bits of the LAST override whose glob matches `name` (later entries refine earlier ones), else None."""
    hit = None
    for pattern, bits in overrides:
        if fnmatch.fnmatchcase(name, pattern):
            hit = bits
    return hit


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    """Per-tensor quantization policy, clipping, GPTQ, calibration and pruning settings."""

    # Which width each tensor class gets (docs/quantize.md, "Schemes").
    scheme: Scheme = "int8"
    # Per-row clip c_r that sets the scale s_r = max(c_r / qmax, floor).
    clip: ClipMethod = "quantile"
    clip_quantile: float = 0.9999984  # the baseline's int8 clip (torch.quantile, linear interpolation)
    # GPTQ-lite (PR #414): candidate quantiles of |W_r|; 1.0 is the row max.
    search_quantiles: tuple[float, ...] = (0.999, 0.9995, 0.9999, 0.99999, 1.0)
    # "matrix": one candidate per matrix by whole-matrix error (as PR #414's code); "row": per row.
    search_granularity: Literal["matrix", "row"] = "matrix"
    sdclip_k: float = 12.85  # SDClip c_r = k * std(W_r) for matrices (SP8K #1394, int6)
    sdclip_k_embed: float = 20.0  # ... and for the embedding (SP8K #1394, int8)
    # Smallest stored scale. A float, or "1/qmax" for the records' floors (1/127 baseline int8,
    # 1/31 int6 records), which put every row whose clip is below 1 on a fixed grid of step 1/qmax.
    scale_floor: float | Literal["1/qmax"] = FP16_TINY
    # Full-Hessian GPTQ (Frantar et al.; PRs #535, #1019, #1060) on the integer matrices.
    gptq: bool = False
    gptq_damp: float = 0.01  # H += damp * mean(diag H) * I, applied once
    gptq_block: int = 128  # columns per lazy-update block
    gptq_act_order: bool = True  # sweep columns by decreasing diag(H)
    # Calibration for GPTQ: training tokens (inside the training budget) or self-generated (#1019).
    # Validation data is never a calibration source (rules DATA-7).
    calib: Literal["train", "self"] = "train"
    calib_tokens: int = 131_072  # 64 sequences x 2048 (ARGPTQ #1019)
    calib_seq_len: int = 2048
    calib_temperature: float = 0.8  # self-generation sampling temperature (#1019)
    calib_seed: int = 0
    # Magnitude pruning before quantization (INT5 #180: 3%): zero the smallest |w| of each matrix.
    prune_frac: float = 0.0
    prune_min_numel: int = 65_536  # only matrices with more elements are pruned (#180)
    # Float tensors with at most this many elements are stored as fp16 (control tensors as fp32).
    passthrough_numel: int = 65_536
    embed_bits: int = 8  # 8: per-row int8 (XSA4 onward); 16: fp16 passthrough (#180); 2..8 or 16
    # Per-tensor widths by name glob, "glob=bits" with bits 2..8, 16 (fp16) or 32 (fp32); last match wins.
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.scheme in SCHEMES, "scheme", f"must be one of {', '.join(SCHEMES)}; got {self.scheme!r}")
        check(self.clip in CLIP_METHODS, "clip", f"must be one of {', '.join(CLIP_METHODS)}; got {self.clip!r}")
        check(0.0 < self.clip_quantile <= 1.0, "clip_quantile", f"must be in (0, 1]; got {self.clip_quantile}")
        check(len(self.search_quantiles) > 0, "search_quantiles", "must name at least one quantile")
        check(
            all(0.0 < p <= 1.0 for p in self.search_quantiles),
            "search_quantiles",
            f"must all be in (0, 1]; got {list(self.search_quantiles)}",
        )
        check(
            self.search_granularity in ("matrix", "row"),
            "search_granularity",
            f"must be 'matrix' or 'row'; got {self.search_granularity!r}",
        )
        check(self.sdclip_k > 0, "sdclip_k", f"must be > 0; got {self.sdclip_k}")
        check(self.sdclip_k_embed > 0, "sdclip_k_embed", f"must be > 0; got {self.sdclip_k_embed}")
        check(
            self.scale_floor == "1/qmax"
            or (isinstance(self.scale_floor, float) and FP16_SMALLEST_SUBNORMAL <= self.scale_floor < 1.0),
            "scale_floor",
            f"must be '1/qmax' or a float in [2**-24, 1) (a smaller one rounds to a zero fp16 scale); "
            f"got {self.scale_floor!r}",
        )
        check(0.0 <= self.gptq_damp < 1.0, "gptq_damp", f"must be in [0, 1); got {self.gptq_damp}")
        check(self.gptq_block >= 1, "gptq_block", f"must be >= 1; got {self.gptq_block}")
        check(
            self.calib in ("train", "self"),
            "calib",
            f"must be 'train' or 'self' (calibrating on validation data is illegal, rules DATA-7); got {self.calib!r}",
        )
        check(self.calib_seq_len >= 2, "calib_seq_len", f"must be >= 2; got {self.calib_seq_len}")
        check(
            self.calib_tokens >= self.calib_seq_len,
            "calib_tokens",
            f"must be >= calib_seq_len ({self.calib_seq_len}); got {self.calib_tokens}",
        )
        check(self.calib_temperature > 0, "calib_temperature", f"must be > 0; got {self.calib_temperature}")
        check(0.0 <= self.prune_frac < 1.0, "prune_frac", f"must be in [0, 1); got {self.prune_frac}")
        check(self.prune_min_numel >= 0, "prune_min_numel", f"must be >= 0; got {self.prune_min_numel}")
        check(self.passthrough_numel >= 0, "passthrough_numel", f"must be >= 0; got {self.passthrough_numel}")
        check(
            self.embed_bits in INT_BITS or self.embed_bits == 16,
            "embed_bits",
            f"must be 2..8 (per-row integer) or 16 (fp16 passthrough); got {self.embed_bits}",
        )
        for text in self.overrides:  # a malformed entry raises a ConfigError naming 'overrides'
            parse_override(text)

    @property
    def parsed_overrides(self) -> tuple[tuple[str, int], ...]:
        """`overrides` as (glob, bits) pairs, in order."""
        return tuple(parse_override(text) for text in self.overrides)

    def floor_for(self, bits: int) -> float:
        """The scale floor for a `bits`-wide integer tensor."""
        if self.scale_floor == "1/qmax":
            return 1.0 / (2 ** (bits - 1) - 1)
        return float(self.scale_floor)
