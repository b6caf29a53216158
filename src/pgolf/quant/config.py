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
CALIB_TOKENS_DEFAULT = 131_072
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


def parse_width_override(text: str) -> tuple[str, int]:
    """Split one `width_overrides` entry `"glob=bits"` (bits 2..8: these only pick an integer width)."""
    pattern, sep, raw = text.rpartition("=")
    pattern, raw = pattern.strip(), raw.strip()
    bits = int(raw) if raw.isdigit() else -1
    if not sep or not pattern or bits not in INT_BITS:
        raise ConfigError(
            f"config key 'width_overrides' has entry {text!r} that is not of the form glob=bits with bits 2..8",
            "e.g. 'bigram.*=6' (fp16 keeps go in keep_float)",
        )
    return pattern, bits


def expand_last(pattern: str, num_blocks: int) -> str:
    """`{last}` in a name glob -> the index of the model's last block (PR #1216's last-layer c_k keep)."""
    return pattern.replace("{last}", str(max(num_blocks - 1, 0)))


def override_bits(name: str, overrides: tuple[tuple[str, int], ...]) -> int | None:
    """Bits of the LAST override whose glob matches `name` (later entries refine earlier ones), else None."""
    hit = None
    for pattern, bits in overrides:
        if fnmatch.fnmatchcase(name, pattern):
            hit = bits
    return hit


@dataclasses.dataclass(frozen=True)
class WidthRecipe:
    """How the integer tensors of one bit width are clipped and rounded (the records mix recipes by
    width: PR #264 rounds int5/int6 on the row max and int8 on a quantile clip with a 1/127 floor).

    bits: the width this applies to (2..8). clip / clip_quantile / scale_floor: as QuantizeConfig's
    keys, for this width only (unset: the run's). rounding: "stored" (pgolf: codes round on the
    stored fp16 scale) or "clamped" (the records' int8 export, `quantize_float_tensor`: W is clamped
    to +-clip and rounded on the fp32 scale; the fp16 rounding of that scale is what is stored).
    grid: "symmetric" (pgolf: codes in +-qmax) or "full" (the records' `quantize_intN_per_row`:
    codes in [-(qmax+1), qmax], storage id intN_rowfull_v1; reached only under a clip below the row
    max, e.g. PR #1216's quantile search).
    """

    bits: int
    clip: ClipMethod | None = None
    clip_quantile: float | None = None
    scale_floor: float | Literal["1/qmax"] | None = None
    rounding: Literal["stored", "clamped"] = "stored"
    grid: Literal["symmetric", "full"] = "symmetric"

    def __post_init__(self) -> None:
        check(self.bits in INT_BITS, "widths.bits", f"must be 2..8; got {self.bits}")
        check(self.clip is None or self.clip in CLIP_METHODS, "widths.clip",
              f"must be one of {', '.join(CLIP_METHODS)}; got {self.clip!r}")
        check(self.clip_quantile is None or 0.0 < self.clip_quantile <= 1.0, "widths.clip_quantile",
              f"must be in (0, 1]; got {self.clip_quantile}")
        check(_valid_floor(self.scale_floor) or self.scale_floor is None, "widths.scale_floor",
              f"must be '1/qmax' or a float in [2**-24, 1); got {self.scale_floor!r}")
        check(self.rounding in ("stored", "clamped"), "widths.rounding",
              f"must be 'stored' or 'clamped'; got {self.rounding!r}")
        check(self.rounding == "stored" or (self.clip or "quantile") != "search", "widths.rounding",
              "'clamped' needs a single clip (not 'search')")
        check(self.grid in ("symmetric", "full"), "widths.grid", f"must be 'symmetric' or 'full'; got {self.grid!r}")
        check(self.grid == "symmetric" or self.rounding == "stored", "widths.grid",
              "'full' goes with rounding = 'stored' (the records' clamped export is symmetric)")


def _valid_floor(floor: object) -> bool:
    return floor == "1/qmax" or (isinstance(floor, float) and FP16_SMALLEST_SUBNORMAL <= floor < 1.0)


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
    # SDClip k of the attention / MLP matrices; unset: sdclip_k (PR #2135: 13.0 and 11.5 beside 12.85).
    sdclip_k_attn: float | None = None
    sdclip_k_mlp: float | None = None
    # Smallest stored scale. A float, or "1/qmax" for the records' floors (1/127 baseline int8,
    # 1/31 int6 records), which put every row whose clip is below 1 on a fixed grid of step 1/qmax.
    scale_floor: float | Literal["1/qmax"] = FP16_TINY
    # Full-Hessian GPTQ (Frantar et al.; PRs #535, #1019, #1060) on the integer matrices.
    gptq: bool = False
    gptq_damp: float = 0.01  # H += damp * mean(diag H) * I, applied once
    gptq_block: int = 128  # columns per lazy-update block
    gptq_act_order: bool = True  # sweep columns by decreasing diag(H)
    # Columns of equal diag(H): in index order ("stable") or in the order of the records' own call,
    # torch's default (unstable) sort on the CPU ("record"; PR #2135). Ties are common: every dead input has 1.
    gptq_tie_order: Literal["stable", "record"] = "stable"
    # Calibration for GPTQ: training tokens (inside the training budget) or self-generated (#1019).
    # Validation data is never a calibration source (rules DATA-7).
    calib: Literal["train", "self"] = "train"
    calib_tokens: int = CALIB_TOKENS_DEFAULT  # 64 sequences x 2048 (ARGPTQ #1019)
    calib_seq_len: int = 2048
    calib_temperature: float = 0.8  # self-generation sampling temperature (#1019)
    calib_seed: int = 0
    # Calibration as the records count it: calib_batches forward batches of calib_batch_tokens tokens
    # each (PR #2135: GPTQ_CALIBRATION_BATCHES=32 of 98,304 tokens per rank). 0: calib_tokens decides;
    # > 0 sets calib_tokens to calib_batches * calib_batch_tokens.
    calib_batches: int = 0
    calib_batch_tokens: int = 32_768  # tokens per calibration forward pass
    # Magnitude pruning before quantization (INT5 #180: 3%): zero the smallest |w| of each matrix.
    prune_frac: float = 0.0
    prune_min_numel: int = 65_536  # only matrices with more elements are pruned (#180)
    # Float tensors with at most this many elements are stored as fp16 (control tensors as fp32).
    passthrough_numel: int = 65_536
    embed_bits: int = 8  # 8: per-row int8 (XSA4 onward); 16: fp16 passthrough (#180); 2..8 or 16
    # Per-tensor widths by name glob, "glob=bits" with bits 2..8, 16 (fp16) or 32 (fp32); last match wins.
    overrides: tuple[str, ...] = ()
    # --- The records' export rules (docs/quantize.md, "Record recipes"); the defaults change nothing.
    # Per-width clip, floor and rounding, e.g. [{bits = 8, clip = "quantile", scale_floor = "1/qmax",
    # rounding = "clamped"}] (PR #264's int8 embedding beside row-max int5/int6).
    widths: tuple[WidthRecipe, ...] = ()
    # fp16 keep-list by name glob, applied after the control and size rules (the records'
    # FP16_KEEP_NAME_PATTERNS: PR #366 "tok_emb.*", "blocks.8.attn.c_k.*"); `{last}` is the last
    # block's index (PR #1216). An entry may match nothing (a shrunk model).
    keep_float: tuple[str, ...] = ()
    # Integer widths by name glob for tensors the control, size and keep rules leave to be quantized
    # ("glob=bits", bits 2..8, last match wins, may match nothing): the records' name classes.
    width_overrides: tuple[str, ...] = ()
    # True: control tensors are fp32 whatever their size (pgolf). False: the records' order, where
    # the size rule comes first and a small control tensor is fp16 like any small tensor.
    control_first: bool = True
    # "count": zero exactly round(frac * numel) entries (pgolf); "quantile": zero every |w| strictly
    # below torch.quantile(|W|, frac) (PRs #366, #861, #1216).
    prune_method: Literal["count", "quantile"] = "count"
    # GPTQ's clip candidate: the smallest output error (W - Ŵ) H (W - Ŵ)^T ("hessian", pgolf) or the
    # smallest weight MSE ("weight", PR #1406's quantize_int6_gptq).
    gptq_select: Literal["hessian", "weight"] = "hessian"
    # LQER (PR #1530, as PR #2135 runs it): the lqer_top_k integer matrices with the largest
    # quantization error ||W - Ŵ||_F get a rank-lqer_rank correction A @ B of that error (its SVD),
    # stored quantized beside the codes and added back at dequantization. lqer_asym: A on one int2
    # scale per matrix, B int4 in groups of lqer_group (when B's size divides); otherwise both
    # per-row at lqer_factor_bits.
    lqer: bool = False
    lqer_rank: int = 4
    lqer_top_k: int = 3
    lqer_factor_bits: int = 4
    lqer_asym: bool = True
    lqer_group: int = 64

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
        for key in ("sdclip_k_attn", "sdclip_k_mlp"):
            k = getattr(self, key)
            check(k is None or k > 0, key, f"must be > 0 (or unset: sdclip_k); got {k}")
        check(
            _valid_floor(self.scale_floor),
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
        check(self.calib_batch_tokens >= self.calib_seq_len, "calib_batch_tokens",
              f"must be >= calib_seq_len ({self.calib_seq_len}); got {self.calib_batch_tokens}")
        check(self.calib_batches >= 0, "calib_batches", f"must be >= 0 (0: calib_tokens decides); got {self.calib_batches}")
        if self.calib_batches > 0:
            total = self.calib_batches * self.calib_batch_tokens
            check(self.calib_tokens in (total, CALIB_TOKENS_DEFAULT), "calib_tokens",
                  f"is {self.calib_tokens} but calib_batches x calib_batch_tokens is {total}; set one or the other")
            object.__setattr__(self, "calib_tokens", total)
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
        for text in self.width_overrides:
            parse_width_override(text)
        for w in self.widths:
            self.width(w.bits)  # the filled-in recipe must be valid too ('clamped' needs a single clip)
        seen = [w.bits for w in self.widths]
        check(len(seen) == len(set(seen)), "widths", f"names a width twice: {seen}")
        check(self.prune_method in ("count", "quantile"), "prune_method",
              f"must be 'count' or 'quantile'; got {self.prune_method!r}")
        check(self.gptq_select in ("hessian", "weight"), "gptq_select",
              f"must be 'hessian' or 'weight'; got {self.gptq_select!r}")
        check(self.gptq_tie_order in ("stable", "record"), "gptq_tie_order",
              f"must be 'stable' or 'record'; got {self.gptq_tie_order!r}")
        check(self.lqer_rank >= 1, "lqer_rank", f"must be >= 1; got {self.lqer_rank}")
        check(self.lqer_top_k >= 1, "lqer_top_k", f"must be >= 1; got {self.lqer_top_k}")
        check(self.lqer_factor_bits in INT_BITS, "lqer_factor_bits", f"must be 2..8; got {self.lqer_factor_bits}")
        check(self.lqer_group >= 1, "lqer_group", f"must be >= 1; got {self.lqer_group}")

    @property
    def parsed_overrides(self) -> tuple[tuple[str, int], ...]:
        """`overrides` as (glob, bits) pairs, in order."""
        return tuple(parse_override(text) for text in self.overrides)

    @property
    def parsed_width_overrides(self) -> tuple[tuple[str, int], ...]:
        return tuple(parse_width_override(text) for text in self.width_overrides)

    def width(self, bits: int) -> WidthRecipe:
        """The recipe of `bits`-wide tensors, unset fields filled from the run's keys."""
        w = next((w for w in self.widths if w.bits == bits), WidthRecipe(bits))
        return WidthRecipe(
            bits,
            clip=w.clip or self.clip,
            clip_quantile=self.clip_quantile if w.clip_quantile is None else w.clip_quantile,
            scale_floor=self.scale_floor if w.scale_floor is None else w.scale_floor,
            rounding=w.rounding,
            grid=w.grid,
        )

    def sdclip_k_for(self, tensor_class: str) -> float:
        """SDClip's k for a tensor of `tensor_class` (pgolf.model.param_class)."""
        k = {"embed": self.sdclip_k_embed, "attn": self.sdclip_k_attn, "mlp": self.sdclip_k_mlp}.get(tensor_class)
        return self.sdclip_k if k is None else k

    def floor_for(self, bits: int) -> float:
        """The scale floor for a `bits`-wide integer tensor."""
        floor = self.width(bits).scale_floor
        if floor == "1/qmax":
            return 1.0 / (2 ** (bits - 1) - 1)
        assert floor is not None  # width() fills it from the run's scale_floor
        return float(floor)
