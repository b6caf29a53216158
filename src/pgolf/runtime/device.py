"""Devices and precision: which device a run uses, its autocast dtype, and GPU peak throughput for MFU."""

from __future__ import annotations

import contextlib
from typing import Literal

from pgolf.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda"]
DtypeName = Literal["auto", "fp32", "bf16"]

# Dense (no sparsity) bf16 tensor-core peak in FLOP/s, from the vendors' datasheets; the MFU
# denominator of the throughput benchmark. Matched by substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),  # SXM
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362.05e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("RTX 4090", 165.2e12),
)


def resolve_device(name: str, local_rank: int = 0):
    """`auto` -> this rank's GPU when CUDA is available, else the CPU; `cuda` without a GPU is an error."""
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"config key 'device' must be 'auto', 'cpu' or 'cuda'; got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is available", "use --set device=cpu")
    device = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def autocast_dtype(dtype: str, device):
    """The autocast dtype of the forward pass, or None for plain fp32.

    `auto` is bf16 autocast on GPU (the challenge's setting) and fp32 on CPU, where bf16 matmuls are
    slow without AMX and fp32 keeps runs bit-reproducible.
    """
    import torch

    if dtype == "fp32" or (dtype == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast(device, dtype) -> contextlib.AbstractContextManager:
    """An autocast context for `dtype` (None: a no-op context)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device) -> None:
    """Wait for queued GPU work, so wall-clock readings measure it (a no-op on CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_bf16_flops(device) -> float | None:
    """Dense bf16 peak FLOP/s of a known GPU, else None."""
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS:
        if key in name:
            return flops
    return None


def describe(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
