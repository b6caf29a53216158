"""The per-group code layout of PR #2135's `COMPRESSOR=pergroup` (pure numpy, exact inverse).

Each grouped code matrix Q [rows, cols] (a `NAME.q` tensor of two dimensions) is stored as its rows
in a greedy similarity order, transposed: Q[perm].T, cols x rows int8, so that neighbouring bytes
come from rows that are close in L1 distance. The order starts at row 0 and repeatedly takes the
unused row nearest (L1 on the int codes, ties to the lowest index) to the one taken last. The
permutation is stored as uint16 per row (hence at most 65,536 rows).

The record concatenates the grouped matrices in name order and compresses them with lrzip's ZPAQ
(`lrzip -z -L 9`), or brotli quality 11 when lrzip is absent; its scales, LQER factors and small
tensors go through torch.save, a stride-2 byte shuffle and brotli. pgolf keeps the layout and stores
the grouped codes with brotli quality 11 (window 2**22, the record's brotli call), everything else in
model.bin's own sections (`pgolf.pack.modelbin`).
"""

from __future__ import annotations

import numpy as np

MAX_ROWS = 1 << 16  # the permutation is uint16


def grouped(name: str, shape: list[int] | tuple[int, ...]) -> bool:
    """Whether the int8 tensor `name` of `shape` is laid out per group: a 2-D `NAME.q` code matrix."""
    return name.endswith(".q") and len(shape) == 2 and 1 <= shape[0] <= MAX_ROWS and shape[1] >= 1


def similarity_order(codes: np.ndarray) -> np.ndarray:
    """Greedy nearest-neighbour row order of int8 `codes` [rows, cols] (L1 distance), uint16 [rows]."""
    n = codes.shape[0]
    w = codes.astype(np.int16)
    order = np.empty(n, dtype=np.int64)
    order[0] = 0
    left = np.arange(1, n)  # unused rows, ascending: argmin's first hit is the lowest index
    for i in range(1, n):
        d = np.abs(w[left] - w[order[i - 1]]).sum(axis=1)
        k = int(d.argmin())
        order[i] = left[k]
        left = np.delete(left, k)
    return order.astype(np.uint16)


def reorder(codes: np.ndarray) -> tuple[bytes, bytes]:
    """(permutation bytes, little-endian uint16 [rows]; the reordered codes Q[perm].T as bytes)."""
    perm = similarity_order(codes)
    return perm.astype("<u2").tobytes(), np.ascontiguousarray(codes[perm.astype(np.int64)].T).tobytes()


def restore(perm_raw: bytes, data: bytes, rows: int, cols: int) -> np.ndarray:
    """Inverse of `reorder`: int8 [rows, cols]. ValueError when the permutation is not one."""
    perm = np.frombuffer(perm_raw, dtype="<u2").astype(np.int64)
    if perm.shape != (rows,) or len(data) != rows * cols:
        raise ValueError("sizes do not match the tensor")
    if not np.array_equal(np.sort(perm), np.arange(rows)):
        raise ValueError("the row order is not a permutation")
    out = np.empty((rows, cols), dtype=np.int8)
    out[perm] = np.frombuffer(data, dtype=np.int8).reshape(cols, rows).T
    return out
