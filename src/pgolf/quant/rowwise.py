"""The per-row quantization primitive under its former name: it lives in `pgolf.model.rowquant`
(the model's QAT uses it, and `pgolf.model` never imports `pgolf.quant`). Kept for callers of the
old name (bench/compression.py); pgolf's own modules import `pgolf.model.rowquant`."""

from pgolf.model.rowquant import FP16_TINY, dequantize_rows, fake_quantize_rows, qmax_for, quantize_rows, row_scales

__all__ = ["FP16_TINY", "dequantize_rows", "fake_quantize_rows", "qmax_for", "quantize_rows", "row_scales"]
