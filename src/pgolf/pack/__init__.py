"""Compression of quantized models (pure): `model.bin` codecs and layouts, the code entropy coder,
the byte budget.

    blob = encode_model(tensors, meta, codec="rans")     # bytes of model.bin
    tensors, meta = decode_model(blob)                    # exact round trip
    budget(code_bytes, len(blob))["fits"]
"""

from pgolf.pack.budget import LIMIT_BYTES, budget, code_entropy_bits, entropy_report
from pgolf.pack.modelbin import CODECS, FORMAT_VERSION, LAYOUTS, SHUFFLES, decode_model, encode_model, inspect_model

__all__ = [
    "CODECS", "FORMAT_VERSION", "LAYOUTS", "LIMIT_BYTES", "SHUFFLES", "budget", "code_entropy_bits",
    "decode_model", "encode_model", "entropy_report", "inspect_model",
]
