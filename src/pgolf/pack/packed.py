"""The packed model: what `model.bin` carries besides the codes, and how a model is rebuilt from it (pure).

`model.bin`'s meta (stored verbatim by `encode_model`) holds everything evaluation needs, so the
submission file and `pgolf ttt-eval` rebuild the model from model.bin alone (rules SIZE-5):

    {"format": "pgolf.packed/1",
     "model_config": ModelConfig as a dict (every field: no default is assumed),
     "train_seq_len": the training sequence length L (the default evaluation window),
     "eval": the EvalConfig `train_gpt.py` evaluates with (seq_len resolved),
     "quant": {"format": "pgolf.quant/1", "tensors": {NAME: {"scheme", "shape", "dtype"[, "lqer"]}}}}

The quant meta keeps only what dequantization reads; the full record (clips, GPTQ details, errors)
stays in quant.safetensors and report.json, which the pack manifest names by sha256.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgolf.errors import ArtifactError, ConfigError

FORMAT = "pgolf.packed/1"
QUANT_KEYS = ("scheme", "shape", "dtype")  # what `dequantize_state` reads per tensor
OPTIONAL_KEYS = ("lqer",)  # ... and, where a tensor has one, its LQER correction


def packed_meta(quant_meta: Mapping[str, Any], model_config: Mapping[str, Any], train_seq_len: int,
                eval_config: Mapping[str, Any]) -> dict[str, Any]:
    """The meta `encode_model` stores in model.bin (JSON-native; see the module docstring)."""
    tensors = quant_meta.get("tensors")
    if not isinstance(tensors, Mapping):
        raise ArtifactError("the quantization metadata lists no tensors", "rerun pgolf quantize")
    slim = {}
    for name, entry in tensors.items():
        missing = [k for k in QUANT_KEYS if k not in entry]
        if missing:
            raise ArtifactError(f"quantization metadata of '{name}' lacks {', '.join(missing)}", "rerun pgolf quantize")
        slim[name] = {k: entry[k] for k in (*QUANT_KEYS, *OPTIONAL_KEYS) if k in entry}
    return {"format": FORMAT, "model_config": dict(model_config), "train_seq_len": int(train_seq_len),
            "eval": dict(eval_config), "quant": {"format": quant_meta.get("format"), "tensors": slim}}


def check_meta(meta: Any) -> dict[str, Any]:
    """The meta of a decoded model.bin, checked for the keys evaluation needs."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ArtifactError(f"model.bin holds meta of format {got!r}, expected {FORMAT!r}",
                            "re-run `pgolf pack` (or upgrade pgolf)")
    for key, kind in (("model_config", dict), ("train_seq_len", int), ("eval", dict), ("quant", dict)):
        if not isinstance(meta.get(key), kind):
            raise ArtifactError(f"model.bin meta has no valid '{key}'", "re-run `pgolf pack`")
    return meta


def unpack_model(blob: bytes):
    """(GPT in eval mode on the CPU, meta) from the bytes of a model.bin.

    Decodes (every section checked against its crc32), dequantizes (bit-exact) and loads the
    weights into a `GPT` built from the recorded config. A corrupt or truncated blob, or weights
    that do not fit the config, raise ArtifactError: never a model with other weights.
    """
    from pgolf.config import from_dict
    from pgolf.model.build import build_with_state
    from pgolf.model.config import ModelConfig
    from pgolf.pack.modelbin import decode_model
    from pgolf.quant.state import dequantize_state

    tensors, meta = decode_model(blob)
    meta = check_meta(meta)
    state = dequantize_state(tensors, meta["quant"])
    try:
        cfg = from_dict(ModelConfig, meta["model_config"])
    except ConfigError as e:
        raise ArtifactError(f"model.bin records a model config this pgolf cannot build ({e})",
                            "re-run `pgolf pack` with this pgolf") from None
    # shapes checked on the meta device before the model is allocated: the config is read from the file
    return build_with_state(cfg, state, "model.bin", "re-run `pgolf pack`"), meta
