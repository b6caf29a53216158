"""Quantization: per-scheme quantize/dequantize, clip search, SDClip, GPTQ, pruning (pure)."""
