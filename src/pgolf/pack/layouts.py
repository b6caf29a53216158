"""Byte layouts that make tensors easier to compress (pure numpy, exact inverses).

- **Bit packing** of integer codes: a tensor whose codes fit in `b` bits (two's complement range
  `[-2**(b-1), 2**(b-1) - 1]`) is stored as the offset values `q + 2**(b-1)`, `b` bits each, packed
  little-endian (the first code in the lowest bits of the first byte), padded with zero bits to a
  whole byte. The records never bit-pack (techniques §5.1); whether it helps a general codec is
  measured by `encode_model(..., layout="auto")`.
- **Byte shuffle** of multi-byte values: the bytes of an array of `itemsize`-byte elements are
  regrouped into `itemsize` planes (all first bytes, then all second bytes, ...), which puts the
  slowly varying exponent bytes of fp16/fp32 values next to each other (SP8K #1394, from PR #1089,
  shuffles the whole blob at stride 2 before brotli).
"""

from __future__ import annotations

import numpy as np


def code_bits(codes: np.ndarray) -> int:
    """Smallest two's complement width b in 1..8 that holds every int8 code of `codes`.

    Symmetric intN codes (+-qmax) give exactly N; the records' int5 range [-16, 15] also gives 5.
    An empty or all-zero tensor gives 1.
    """
    if codes.size == 0:
        return 1
    lo, hi = int(codes.min()), int(codes.max())
    for b in range(1, 9):
        if -(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1:
            return b
    raise AssertionError("int8 codes always fit in 8 bits")


def packed_size(numel: int, bits: int) -> int:
    """Bytes taken by `numel` codes packed at `bits` bits each."""
    return (numel * bits + 7) // 8


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack int8 `codes` (any shape, row-major) at `bits` bits per code; see the module docstring."""
    assert 1 <= bits <= 8
    u = (codes.reshape(-1).astype(np.int16) + (1 << (bits - 1))).astype(np.uint8)
    assert u.size == 0 or int(u.max()) < (1 << bits), "codes do not fit the bit width"
    planes = (u[:, None] >> np.arange(bits, dtype=np.uint8)) & 1  # [n, bits], lowest bit first
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes | memoryview, bits: int, numel: int) -> np.ndarray:
    """Inverse of `pack_bits`: int8 codes [numel] from `packed_size(numel, bits)` bytes."""
    assert 1 <= bits <= 8 and len(data) == packed_size(numel, bits)
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little", count=numel * bits)
    weights = (1 << np.arange(bits, dtype=np.int16)).astype(np.int16)
    u = flat.reshape(numel, bits).astype(np.int16) @ weights
    return (u - (1 << (bits - 1))).astype(np.int8)


def shuffle_bytes(raw: bytes | memoryview, itemsize: int) -> bytes:
    """Regroup the bytes of `itemsize`-byte elements into planes: [n, itemsize] -> [itemsize, n]."""
    if itemsize == 1:
        return bytes(raw)
    a = np.frombuffer(raw, dtype=np.uint8)
    assert a.size % itemsize == 0
    return a.reshape(-1, itemsize).T.tobytes()


def unshuffle_bytes(raw: bytes | memoryview, itemsize: int) -> bytes:
    """Inverse of `shuffle_bytes`."""
    if itemsize == 1:
        return bytes(raw)
    a = np.frombuffer(raw, dtype=np.uint8)
    assert a.size % itemsize == 0
    return a.reshape(itemsize, -1).T.tobytes()
