"""Seeds and random-number-generator state: set once per run, captured in checkpoints, restored on resume.

The training loop itself draws no random numbers (no dropout, a sequential data stream), but the
state is saved and restored anyway, so a feature that does draw one cannot silently break the
guarantee that an interrupted and resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, numpy and torch (CPU and every CUDA device)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON-able state, tensors) of every generator, for a checkpoint without pickles."""
    import torch

    version, keys, gauss = random.getstate()[0], random.getstate()[1], random.getstate()[2]
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    meta = {"python": [version, list(keys), gauss], "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
    tensors = {"rng.torch": torch.get_rng_state(), "rng.numpy_keys": torch.from_numpy(np.asarray(np_keys).astype(np.int64))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    return meta, tensors


def set_rng_state(meta: dict[str, Any], tensors: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    import torch

    version, keys, gauss = meta["python"]
    random.setstate((version, tuple(keys), gauss))
    kind, pos, has_gauss, cached = meta["numpy"]
    np_keys = tensors["rng.numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((kind, np_keys, pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
