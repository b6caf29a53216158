"""Quantize a whole state dict into the `pgolf.quant/1` tensors + metadata, and back (pure).

`quantize_state(state, cfg, hessians)` -> `QuantResult`:
- `tensors`: what quant.safetensors holds. Integer tensors as `NAME.q` (int8 codes, the tensor's own
  shape) + `NAME.scale` (fp16, one per row: dim 0 of a matrix, a single row for a vector);
  passthrough tensors as `NAME` (fp16, fp32, or unchanged for non-float tensors). All on the CPU.
- `meta`: `{"format": "pgolf.quant/1", "tensors": {NAME: {...}}}`, JSON-able; per tensor the scheme
  id, bits, qmax, shape, original dtype, class, method, clip, scale floor, pruned fraction.
- `report`: per tensor error and payload, plus totals (see `quantize_state`).

`dequantize_state(tensors, meta)` rebuilds the float state dict with the original dtypes; it is a
pure function of its inputs, so dequantizing the same artifact twice gives identical tensors.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from pgolf.errors import ArtifactError, ConfigError
from pgolf.model import rowquant
from pgolf.model.params import param_class
from pgolf.quant import lqer
from pgolf.quant.clip import ClipSpec
from pgolf.quant.config import QuantizeConfig
from pgolf.quant.matrix import RowQuant, gptq_quantize, rtn_quantize
from pgolf.quant.prune import magnitude_prune
from pgolf.quant.schemes import (
    FP16_ID,
    FP32_ID,
    RAW_ID,
    TensorPlan,
    code_range,
    count_blocks,
    parse_scheme_id,
    plan_tensor,
)

FORMAT = "pgolf.quant/1"
DTYPES = {  # names stored in meta["tensors"][NAME]["dtype"]
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclasses.dataclass
class QuantResult:
    """`tensors` for quant.safetensors, `meta` for its `pgolf.quant` metadata, `report` for report.json."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    report: dict[str, Any]


def rows_view(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) an integer tensor of `shape` is quantized as: rows along dim 0; a vector is one row."""
    if len(shape) >= 2:
        rows = shape[0]
        return rows, math.prod(shape[1:])
    return 1, math.prod(shape)


def default_classifier() -> Callable[[str], str]:
    """`pgolf.model.param_class`: the one classification optimizers, QAT and quantization share."""
    return param_class


def clip_spec(cfg: QuantizeConfig, bits: int, tensor_class: str) -> ClipSpec:
    """The clip settings for one integer tensor: the run's, refined by its width's recipe (`widths`);
    SDClip uses its own k for the embedding."""
    recipe = cfg.width(bits)
    return ClipSpec(
        method=recipe.clip or cfg.clip,
        quantile=cfg.clip_quantile if recipe.clip_quantile is None else recipe.clip_quantile,
        quantiles=cfg.search_quantiles,
        granularity=cfg.search_granularity,
        k=cfg.sdclip_k_for(tensor_class),
        floor=cfg.floor_for(bits),
        rounding=recipe.rounding,
        full_range=recipe.grid == "full",
    )


def _code_entropy(codes: torch.Tensor, qmax: int) -> float:
    """Zeroth-order entropy of the codes, bits per entry: about what an order-0 entropy coder reaches."""
    counts = torch.bincount((codes.flatten().long() + qmax + 1), minlength=2 * qmax + 2).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum().item()) if p.numel() else 0.0


def _error_stats(orig: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
    o, r = orig.detach().double().cpu(), recon.detach().double().cpu()
    sq = float((o - r).square().sum().item())
    norm = float(o.square().sum().item())
    n = max(o.numel(), 1)
    return {"mse": sq / n, "rel_err": math.sqrt(sq / norm) if norm > 0 else (0.0 if sq == 0 else math.inf)}


def quantize_state(
    state: Mapping[str, torch.Tensor],
    cfg: QuantizeConfig,
    hessians: Mapping[str, torch.Tensor] | None = None,
    *,
    classify: Callable[[str], str] | None = None,
) -> QuantResult:
    """Quantize every tensor of `state` as `cfg` says (storage per `schemes.plan_tensor`).

    `hessians` maps weight names to H [cols, cols] (from `calib.HessianCollector`); with `cfg.gptq`
    the integer matrices that have one are quantized by GPTQ, the others by round-to-nearest (the
    report says which). `classify(name)` defaults to `pgolf.model.param_class`.
    Work happens on each tensor's device (GPTQ on a GPU when the caller moved the state there).

    Report: `{"tensors": {NAME: {scheme, bits, class, method, numel, mse, rel_err, clipped_frac,
    pruned_frac, payload_bits, code_entropy}}, "totals": {params, quantized_params, payload_bits,
    bits_per_param, entropy_bits_per_param, container_bytes, num_tensors, num_int_tensors}}`, where
    payload bits count codes at their bit width, scales at 16, passthrough at 16/32/element bits;
    `entropy_bits_per_param` replaces code bits by their zeroth-order entropy; `container_bytes` is
    the tensor bytes quant.safetensors actually stores (int8 containers).
    """
    if cfg.gptq and hessians is None:
        raise ConfigError("config key 'gptq' is true but no Hessians were given", "collect them with HessianCollector")
    classify = classify or default_classifier()
    float_names = [n for n, t in state.items() if t.is_floating_point()]
    for text, (glob, _) in zip(cfg.overrides, cfg.parsed_overrides):
        if not any(fnmatch.fnmatchcase(n, glob) for n in float_names):
            raise ConfigError(f"config key 'overrides' has entry {text!r} that matches no float tensor of the model")

    blocks = count_blocks(state)
    tensors: dict[str, torch.Tensor] = {}
    meta_tensors: dict[str, dict[str, Any]] = {}
    report_tensors: dict[str, dict[str, Any]] = {}
    lqer_norms: dict[str, float] = {}  # ||W - Ŵ||_F of every integer matrix, in state order
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ArtifactError(f"tensor '{name}' has NaN or infinite values", "the checkpoint is corrupt; retrain")
        stored, entry, stats = _quantize_tensor(name, t.detach(), classify(name), cfg, hessians, blocks)
        tensors.update(stored)
        meta_tensors[name] = entry
        recon = _dequantize_one(name, entry, stored)
        if cfg.lqer and t.ndim == 2 and parse_scheme_id(entry["scheme"]) is not None:  # in fp32, as PR #2135
            lqer_norms[name] = lqer.error_norm(t.cpu(), rowquant.dequantize_rows(stored[f"{name}.q"], stored[f"{name}.scale"]))
        errors = _error_stats(t, recon) if t.is_floating_point() else {"mse": 0.0, "rel_err": 0.0}
        report_tensors[name] = {
            **{k: entry[k] for k in ("scheme", "bits", "class", "method")},
            "numel": t.numel(),
            **errors,
            "pruned_frac": entry["pruned_frac"],
            **stats,
        }
    for name in lqer.top_errors(lqer_norms, cfg.lqer_top_k) if cfg.lqer else []:
        _add_lqer(name, state[name], cfg, tensors, meta_tensors[name], report_tensors[name])
    meta = {"format": FORMAT, "tensors": meta_tensors}
    return QuantResult(tensors, meta, {"tensors": report_tensors, "totals": _totals(report_tensors, tensors)})


def _quantize_tensor(
    name: str,
    t: torch.Tensor,
    tensor_class: str,
    cfg: QuantizeConfig,
    hessians: Mapping[str, torch.Tensor] | None,
    num_blocks: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(stored tensors on the CPU, metadata entry, report statistics) of one tensor."""
    shape = tuple(int(d) for d in t.shape)
    plan = plan_tensor(name, shape, t.dtype, tensor_class, cfg, num_blocks)
    entry: dict[str, Any] = {
        "scheme": plan.scheme,
        "bits": plan.bits,
        "shape": list(shape),
        "dtype": dtype_name(t.dtype),
        "class": tensor_class,
    }
    # Pruning applies to large matrices whatever their storage, except fp32 (control) tensors.
    w, keep_zero = t, None
    prunable = t.is_floating_point() and t.ndim == 2 and t.numel() > cfg.prune_min_numel and plan.scheme != FP32_ID
    if cfg.prune_frac > 0 and prunable:
        w, keep_zero = magnitude_prune(t, cfg.prune_frac, cfg.prune_method)
    entry["pruned_frac"] = int(keep_zero.sum().item()) / t.numel() if keep_zero is not None else 0.0

    if not plan.is_int:
        entry["method"] = "passthrough"
        stats = {"clipped_frac": 0.0, "payload_bits": plan.bits * t.numel(), "code_entropy": None}
        return {name: _passthrough(name, w, plan).cpu().contiguous()}, entry, stats

    rq = _quantize_int(name, w, plan, tensor_class, cfg, hessians, keep_zero)
    qmax = rowquant.qmax_for(plan.bits)
    entry.update(qmax=qmax, method=rq.info["method"], clip=rq.info["clip"], scale_floor=cfg.floor_for(plan.bits))
    entry.update({k: v for k, v in rq.info.items() if k not in ("method", "clip")})  # GPTQ details, fallback
    rows, cols = rows_view(shape)
    # Entries beyond the saturated grid (|w| > (qmax + 1/2) s): what the clip cut off.
    saturated = (w.float().reshape(rows, cols).abs() > (qmax + 0.5) * rq.scale.float().unsqueeze(1)).sum().item()
    stats = {
        "clipped_frac": saturated / max(t.numel(), 1),
        "payload_bits": plan.bits * t.numel() + 16 * rows,
        "code_entropy": _code_entropy(rq.codes, qmax),
    }
    stored = {f"{name}.q": rq.codes.reshape(shape).cpu().contiguous(), f"{name}.scale": rq.scale.cpu().contiguous()}
    return stored, entry, stats


def _add_lqer(name: str, t: torch.Tensor, cfg: QuantizeConfig, tensors: dict[str, torch.Tensor],
              entry: dict[str, Any], report: dict[str, Any]) -> None:
    """Give `name` its LQER correction of rank cfg.lqer_rank (factors of W - Ŵ, on the CPU as PR #2135)."""
    w = t.detach().cpu().float()
    w_hat = rowquant.dequantize_rows(tensors[f"{name}.q"].reshape(w.shape[0], -1), tensors[f"{name}.scale"])
    a, b = lqer.factors(w - w_hat.reshape(w.shape), cfg.lqer_rank)
    mode = lqer.mode_for(b.numel(), cfg.lqer_asym, cfg.lqer_group)
    stored = lqer.quantize_factors(a, b, mode, bits=cfg.lqer_factor_bits, group=cfg.lqer_group)
    tensors.update({name + suffix: v.contiguous() for suffix, v in stored.items()})
    entry["lqer"] = lqer.meta_entry(mode, a.shape[1], bits=cfg.lqer_factor_bits, group=cfg.lqer_group)
    qa, sa, qb, sb = (stored[suffix] for suffix in lqer.SUFFIXES)
    (alo, ahi), (blo, bhi) = lqer.levels(entry["lqer"])
    factor_bits = (ahi - alo).bit_length() * qa.numel() + (bhi - blo).bit_length() * qb.numel() \
        + 16 * (sa.numel() + sb.numel())
    report.update(_error_stats(t, _dequantize_one(name, entry, tensors)), lqer=entry["lqer"],
                  payload_bits=report["payload_bits"] + factor_bits)


def _quantize_int(
    name: str,
    w: torch.Tensor,
    plan: TensorPlan,
    tensor_class: str,
    cfg: QuantizeConfig,
    hessians: Mapping[str, torch.Tensor] | None,
    keep_zero: torch.Tensor | None,
) -> RowQuant:
    rows, cols = rows_view(tuple(w.shape))
    w2 = w.float().reshape(rows, cols)
    spec = clip_spec(cfg, plan.bits, tensor_class)
    h = hessians.get(name) if (cfg.gptq and hessians is not None and w.ndim == 2) else None
    if h is None or spec.rounding == "clamped":  # the records' int8 path is never GPTQ'd (PR #1406)
        rq = rtn_quantize(w2, plan.bits, spec)
        if cfg.gptq:
            rq.info["gptq_skipped"] = "no Hessian for this tensor" if h is None else "rounding = 'clamped'"
        return rq
    if tuple(h.shape) != (cols, cols):
        raise ArtifactError(f"Hessian for '{name}' has shape {tuple(h.shape)}, expected ({cols}, {cols})")
    return gptq_quantize(
        w2,
        h,
        plan.bits,
        spec,
        damp=cfg.gptq_damp,
        block_size=cfg.gptq_block,
        act_order=cfg.gptq_act_order,
        tie_order=cfg.gptq_tie_order,
        select=cfg.gptq_select,
        keep_zero=keep_zero,
    )


def _passthrough(name: str, w: torch.Tensor, plan: TensorPlan) -> torch.Tensor:
    if plan.scheme == RAW_ID:
        return w.clone()
    stored = w.to(torch.float16 if plan.scheme == FP16_ID else torch.float32)
    if not torch.isfinite(stored).all():
        raise ConfigError(
            f"tensor '{name}' has values outside the fp16 range",
            f"store it as fp32 with overrides = ['{name}=32']",
        )
    return stored


def _entropy_bits(r: Mapping[str, Any]) -> float:
    """Payload bits of one tensor with its integer codes counted at their measured entropy."""
    if r["code_entropy"] is None:
        return r["payload_bits"]
    scale_bits = r["payload_bits"] - r["bits"] * r["numel"]
    return r["code_entropy"] * r["numel"] + scale_bits


def _totals(report: Mapping[str, Mapping[str, Any]], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    params = sum(r["numel"] for r in report.values())
    payload = sum(r["payload_bits"] for r in report.values())
    int_reports = [r for r in report.values() if r["code_entropy"] is not None]
    return {
        "params": params,
        "quantized_params": sum(r["numel"] for r in int_reports),
        "payload_bits": payload,
        "bits_per_param": payload / params if params else 0.0,
        "entropy_bits_per_param": sum(_entropy_bits(r) for r in report.values()) / params if params else 0.0,
        "container_bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
        "num_tensors": len(report),
        "num_int_tensors": len(int_reports),
    }


# ----------------------------------------------------------------------------- dequantization


def _need(
    tensors: Mapping[str, torch.Tensor], key: str, dtype: torch.dtype, shape: tuple[int, ...], owner: str
) -> torch.Tensor:
    if key not in tensors:
        raise ArtifactError(
            f"quantized tensor '{owner}' has no '{key}' in quant.safetensors",
            "the file is incomplete; rerun pgolf quantize",
        )
    t = tensors[key]
    if t.dtype != dtype or tuple(t.shape) != shape:
        raise ArtifactError(
            f"'{key}' is {dtype_name(t.dtype)} {list(t.shape)}, expected {dtype_name(dtype)} {list(shape)}",
            "quant.safetensors does not match its metadata; rerun pgolf quantize",
        )
    return t


def _dequantize_one(name: str, entry: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The original-dtype tensor `name` from its stored tensors and metadata `entry`."""
    try:
        shape = tuple(int(d) for d in entry["shape"])
        dtype = DTYPES[entry["dtype"]]
        bits = parse_scheme_id(entry["scheme"])
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(
            f"metadata of tensor '{name}' is malformed ({e})", "rerun pgolf quantize or upgrade pgolf"
        ) from None
    if bits is None:
        stored_dtype = {FP16_ID: torch.float16, FP32_ID: torch.float32, RAW_ID: dtype}[entry["scheme"]]
        return _need(tensors, name, stored_dtype, shape, name).to(dtype)
    rows, _ = rows_view(shape)
    codes = _need(tensors, f"{name}.q", torch.int8, shape, name)
    scale = _need(tensors, f"{name}.scale", torch.float16, (rows,), name)
    lo, hi = code_range(entry["scheme"])
    if codes.numel() and (int(codes.min().item()) < lo or int(codes.max().item()) > hi):
        where = f"beyond +-{hi}" if lo == -hi else f"outside [{lo}, {hi}]"
        raise ArtifactError(
            f"'{name}.q' has codes {where} for {entry['scheme']}", "the file is corrupt; rerun pgolf quantize"
        )
    flat = rowquant.dequantize_rows(codes.reshape(rows, -1), scale)
    if "lqer" in entry:
        flat = flat + _lqer_correction(name, entry["lqer"], tensors, rows, flat.shape[1])
    return flat.reshape(shape).to(dtype)


def _lqer_correction(name: str, entry: Any, tensors: Mapping[str, torch.Tensor], rows: int, cols: int) -> torch.Tensor:
    """A_q @ B_q of `name` from its four stored factor tensors, checked against its `lqer` entry."""
    try:
        want = lqer.expected(entry, rows, cols)
        limits = lqer.levels(entry)
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"LQER metadata of tensor '{name}' is malformed ({e})",
                            "rerun pgolf quantize or upgrade pgolf") from None
    stored = {suffix: _need(tensors, name + suffix, dtype, shape, name) for suffix, (dtype, shape) in want.items()}
    for suffix, (lo, hi) in zip((lqer.SUFFIXES[0], lqer.SUFFIXES[2]), limits):
        codes = stored[suffix]
        if codes.numel() and (int(codes.min().item()) < lo or int(codes.max().item()) > hi):
            raise ArtifactError(f"'{name}{suffix}' has codes outside [{lo}, {hi}]", "the file is corrupt; rerun pgolf quantize")
    return lqer.correction(stored, entry["mode"])


def dequantize_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The float state dict (original dtypes and shapes, CPU if the inputs are) of a `pgolf.quant/1` artifact.

    Raises `ArtifactError` for a wrong format, a tensor missing or of the wrong dtype/shape, codes
    beyond the scheme's range, or stored tensors that the metadata does not describe.
    """
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT or not isinstance(meta.get("tensors"), Mapping):
        got = meta.get("format") if isinstance(meta, Mapping) else type(meta).__name__
        raise ArtifactError(
            f"quantization metadata has format {got!r}, expected {FORMAT!r}", "rerun pgolf quantize or upgrade pgolf"
        )
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, entry in meta["tensors"].items():
        out[name] = _dequantize_one(name, entry, tensors)
        is_int = parse_scheme_id(entry["scheme"]) is not None
        used |= {f"{name}.q", f"{name}.scale"} if is_int else {name}
        if is_int and "lqer" in entry:  # its factors (a passthrough tensor's "lqer" is never read)
            used |= {name + suffix for suffix in lqer.SUFFIXES}
    extra = sorted(set(tensors) - used)
    if extra:
        raise ArtifactError(
            f"quant.safetensors holds tensors its metadata does not describe: {', '.join(extra[:5])}",
            "the file and its metadata do not belong together; rerun pgolf quantize",
        )
    return out
