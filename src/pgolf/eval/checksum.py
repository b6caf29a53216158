"""A cheap, deterministic checksum of a model's state, taken before and after every scored chunk.

Hashing ~100 MB of weights with sha256 for each of ~2,000 chunks would cost minutes; this costs a
few kernels on the device. The raw bits of every parameter and persistent buffer (plus any adapter
tensors) are read as 16-bit words, concatenated in name order, and reduced to two exact integer
sums: the plain sum and a sum weighted by a fixed pseudo-random vector tiled along the words. Any
change of a weight changes the plain sum unless others compensate exactly, and moving values around
changes the weighted one. It detects accidents and hooks that adapt during scoring (rules TTT-1);
it is not a cryptographic commitment. Integer sums are exact, so the result is the same on every
device, rank and run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch

_TILE = 4096  # the weight vector's period
_weights: dict[torch.device, torch.Tensor] = {}


def _tile_weights(device: torch.device) -> torch.Tensor:
    if device not in _weights:
        gen = torch.Generator().manual_seed(20240520)
        _weights[device] = torch.randint(1, 2**15, (_TILE,), generator=gen, dtype=torch.int32).to(device)
    return _weights[device]


def _words(t: torch.Tensor) -> torch.Tensor:
    """The raw bits of `t` as int16 words (1-byte dtypes are widened value by value)."""
    flat = t.detach().contiguous().reshape(-1)
    if flat.element_size() == 1:
        return flat.view(torch.uint8).to(torch.int16)
    return flat.view(torch.int16)


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers by name (tied tensors once): what scoring must not change."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        if t.data_ptr() in seen and t.numel():
            continue
        seen.add(t.data_ptr())
        out[name] = t
    return out


@torch.no_grad()
def tensor_checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    """32 hex digits identifying the exact bits of `tensors` (names, shapes and dtypes included)."""
    names = sorted(tensors)
    described = hashlib.sha256()
    for name in names:
        t = tensors[name]
        described.update(f"{name}|{tuple(t.shape)}|{t.dtype};".encode())
    if not names:
        return described.hexdigest()[:32]
    device = tensors[names[0]].device
    words = [_words(tensors[n]).to(device) for n in names]
    num_words = sum(w.numel() for w in words)
    pad = -num_words % _TILE
    if pad:
        words.append(torch.zeros(pad, dtype=torch.int16, device=device))
    flat = torch.cat(words).view(-1, _TILE).to(torch.int32)
    plain = flat.sum(dtype=torch.int64)
    weighted = (flat * _tile_weights(device)).sum(dtype=torch.int64)
    sums = torch.stack([plain, weighted]).cpu().tolist()
    described.update(f"{num_words}|{sums[0]}|{sums[1]}".encode())
    return described.hexdigest()[:32]


def model_checksum(model: torch.nn.Module, extra: Mapping[str, torch.Tensor] | None = None) -> str:
    """Checksum of a model's parameters and persistent buffers plus `extra` (e.g. LoRA adapters)."""
    tensors = state_tensors(model)
    for name, t in (extra or {}).items():
        tensors[f"adapter.{name}"] = t
    return tensor_checksum(tensors)
