"""A `TrainState` as (tensors, JSON metadata) and back, for a checkpoint file without pickles (pure).

Nested containers (optimizer state dicts: int-keyed dicts, tuples, Python numbers) become JSON in
which every tensor is replaced by `{"__tensor__": name}`; the tensors go to a flat dict for
safetensors. Decoding restores int keys and tuples, so `torch.optim.Optimizer.load_state_dict`
receives exactly what `state_dict()` produced.
"""

from __future__ import annotations

from typing import Any

import torch

from pgolf.data.stream import StreamPosition
from pgolf.train.loop import TrainState

CHECKPOINT_FORMAT = "pgolf.train.checkpoint/1"


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def encode(self, obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            name = f"obj.{len(self.tensors)}"
            self.tensors[name] = obj.detach()
            return {"__tensor__": name}
        if isinstance(obj, dict):
            return {"__dict__": [[k, self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def _prefixed(prefix: str, tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach() for k, v in (tensors or {}).items()}


def _unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def encode_state(state: TrainState, extra: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, metadata) for `artifacts.save_safetensors`; `extra` is stored beside the state."""
    enc = _Encoder()
    optimizers = enc.encode(state.optimizers)
    tensors = {**_prefixed("model", state.model), **_prefixed("ema", state.ema), **_prefixed("swa", state.swa),
               **_prefixed("opt", enc.tensors), **state.rng_tensors}
    meta = {
        "format": CHECKPOINT_FORMAT, "step": state.step, "train_time_s": state.train_time_s,
        "stream": [state.stream.shard, state.stream.offset], "qat_on": state.qat_on,
        "has_ema": state.ema is not None, "has_swa": state.swa is not None, "swa_count": state.swa_count,
        "rng": state.rng_meta, "last_train_loss": state.last_train_loss, "switches": state.switches,
        "optimizers": optimizers, "extra": extra or {},
    }
    return tensors, meta


def decode_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> tuple[TrainState, dict[str, Any]]:
    """Inverse of `encode_state`: the state and the `extra` stored with it."""
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"not a {CHECKPOINT_FORMAT} checkpoint (format {meta.get('format')!r})")
    state = TrainState(
        step=meta["step"], train_time_s=meta["train_time_s"], model=_unprefixed("model", tensors),
        optimizers=_decode(meta["optimizers"], _unprefixed("opt", tensors)),
        stream=StreamPosition(*meta["stream"]), qat_on=meta["qat_on"],
        ema=_unprefixed("ema", tensors) if meta["has_ema"] else None,
        swa=_unprefixed("swa", tensors) if meta["has_swa"] else None, swa_count=meta["swa_count"],
        rng_meta=meta["rng"], rng_tensors={k: v for k, v in tensors.items() if k.startswith("rng.")},
        last_train_loss=meta["last_train_loss"], switches=dict(meta.get("switches", {})))
    return state, meta["extra"]
