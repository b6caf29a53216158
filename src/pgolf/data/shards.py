"""The challenge's shard format, and pgolf's per-token byte sidecar beside it (pure: bytes in, bytes out).

Token shard (`fineweb_{train,val}_NNNNNN.bin`), unchanged from the challenge:
    header: 256 little-endian int32 = [20240520 (magic), 1 (version), num_tokens, 0, ...]  (1024 bytes)
    body:   num_tokens little-endian uint16 token ids
    file size == 1024 + 2 * num_tokens

Byte sidecar (`bytes_val_NNNNNN.bin`, one per val shard, same token count): the UTF-8 bytes each token
adds to the normalized text, written at data-build time from the decoded pieces (see `bpb.py`):
    header: 256 little-endian int32 = [20241121 (magic), 1 (version), num_tokens, itemsize (1 or 2), 0, ...]
    body:   num_tokens unsigned little-endian integers of `itemsize` bytes
The sidecar's name never matches the challenge loader's `fineweb_*_*.bin` globs.
"""

from __future__ import annotations

import numpy as np

from pgolf.errors import DataError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SIDECAR_MAGIC = 20241121
SIDECAR_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKENS = 2**31 - 1


def encode_header(magic: int, version: int, num_tokens: int, extra: int = 0) -> bytes:
    if not 0 <= num_tokens <= MAX_TOKENS:
        raise ValueError(f"token count {num_tokens} does not fit the shard header")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2], header[3] = magic, version, num_tokens, extra
    return header.tobytes()


def shard_bytes(tokens: np.ndarray) -> bytes:
    """A complete token shard for `tokens` (ids must fit uint16)."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise ValueError("token ids must be in [0, 65536) to fit a uint16 shard")
    return encode_header(SHARD_MAGIC, SHARD_VERSION, tokens.size) + tokens.astype(TOKEN_DTYPE).tobytes()


def sidecar_bytes(byte_counts: np.ndarray) -> bytes:
    """A complete byte sidecar; uint8 when every count fits, else uint16."""
    byte_counts = np.asarray(byte_counts)
    if byte_counts.size and byte_counts.min() < 0:
        raise ValueError("byte counts cannot be negative")
    if byte_counts.size and byte_counts.max() >= 2**16:
        raise ValueError(f"a byte count of {int(byte_counts.max())} does not fit the sidecar's uint16 entries")
    itemsize = 1 if (byte_counts.size == 0 or byte_counts.max() < 256) else 2
    dtype = "<u1" if itemsize == 1 else "<u2"
    return encode_header(SIDECAR_MAGIC, SIDECAR_VERSION, byte_counts.size, itemsize) + byte_counts.astype(dtype).tobytes()


def parse_shard_header(header: bytes, name: str, file_size: int) -> int:
    """Validate a token shard's header against its file size; returns num_tokens or raises DataError."""
    if file_size < HEADER_BYTES or len(header) < HEADER_BYTES:
        raise DataError(f"{name}: {file_size} bytes is shorter than the 1024-byte shard header (truncated file)",
                        "rebuild it with `pgolf data build` or re-download it")
    h = np.frombuffer(header[:HEADER_BYTES], dtype="<i4")
    if int(h[0]) != SHARD_MAGIC:
        raise DataError(f"{name}: magic {int(h[0])} is not the challenge shard magic {SHARD_MAGIC}; not a token shard",
                        "point at a directory of fineweb_*_NNNNNN.bin shards")
    if int(h[1]) != SHARD_VERSION:
        raise DataError(f"{name}: shard version {int(h[1])} is not supported (expected {SHARD_VERSION})")
    num_tokens = int(h[2])
    if num_tokens < 0:
        raise DataError(f"{name}: negative token count {num_tokens} in the header (corrupt file)")
    expected = HEADER_BYTES + 2 * num_tokens
    if file_size != expected:
        what = "truncated" if file_size < expected else "has trailing bytes"
        raise DataError(f"{name}: file size {file_size} != 1024 + 2 * {num_tokens} = {expected} ({what})",
                        "rebuild it with `pgolf data build` or re-download it")
    return num_tokens


def parse_sidecar_header(header: bytes, name: str, file_size: int) -> tuple[int, int]:
    """Validate a byte sidecar's header; returns (num_tokens, itemsize) or raises DataError."""
    if file_size < HEADER_BYTES or len(header) < HEADER_BYTES:
        raise DataError(f"{name}: {file_size} bytes is shorter than the 1024-byte sidecar header (truncated file)",
                        "rebuild the data directory with `pgolf data build`")
    h = np.frombuffer(header[:HEADER_BYTES], dtype="<i4")
    if int(h[0]) != SIDECAR_MAGIC:
        raise DataError(f"{name}: magic {int(h[0])} is not the byte-sidecar magic {SIDECAR_MAGIC}")
    if int(h[1]) != SIDECAR_VERSION:
        raise DataError(f"{name}: sidecar version {int(h[1])} is not supported (expected {SIDECAR_VERSION})")
    num_tokens, itemsize = int(h[2]), int(h[3])
    if itemsize not in (1, 2) or num_tokens < 0:
        raise DataError(f"{name}: corrupt sidecar header (count {num_tokens}, itemsize {itemsize})")
    expected = HEADER_BYTES + itemsize * num_tokens
    if file_size != expected:
        raise DataError(f"{name}: file size {file_size} != 1024 + {itemsize} * {num_tokens} = {expected} (truncated?)",
                        "rebuild the data directory with `pgolf data build`")
    return num_tokens, itemsize


def check_token_range(tokens: np.ndarray, vocab_size: int, name: str) -> None:
    """Every id must be < vocab_size; the first offender is named."""
    if tokens.size == 0:
        return
    top = int(tokens.max())
    if top >= vocab_size:
        pos = int(np.argmax(np.asarray(tokens) >= vocab_size))
        raise DataError(f"{name}: token id {top} at position {pos} is >= the vocabulary size {vocab_size}",
                        "use the tokenizer these shards were built with (or --vocab-size)")
