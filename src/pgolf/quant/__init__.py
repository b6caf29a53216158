"""Quantization: per-scheme quantize/dequantize, clip search, SDClip, GPTQ, pruning (pure).

Public API (docs/quantize.md):
- `QuantizeConfig`; `quantize_state(state, cfg, hessians=None) -> QuantResult`;
  `dequantize_state(tensors, meta) -> state_dict`; `plan_tensor` (the scheme table);
- `rtn_quantize`, `gptq_quantize`, `ClipSpec`, `RowQuant` (one matrix); `magnitude_prune`;
- `HessianCollector`, `collect_hessians`, `generate_calibration` (GPTQ calibration).
"""

from pgolf.quant.calib import HessianCollector, collect_hessians, generate_calibration
from pgolf.quant.clip import ClipSpec
from pgolf.quant.config import QuantizeConfig
from pgolf.quant.matrix import RowQuant, gptq_quantize, rtn_quantize
from pgolf.quant.prune import magnitude_prune
from pgolf.quant.schemes import TensorPlan, plan_tensor
from pgolf.quant.state import FORMAT, QuantResult, dequantize_state, quantize_state

__all__ = [
    "FORMAT",
    "ClipSpec",
    "HessianCollector",
    "QuantResult",
    "QuantizeConfig",
    "RowQuant",
    "TensorPlan",
    "collect_hessians",
    "dequantize_state",
    "generate_calibration",
    "gptq_quantize",
    "magnitude_prune",
    "plan_tensor",
    "quantize_state",
    "rtn_quantize",
]
