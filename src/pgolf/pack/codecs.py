"""General-purpose byte codecs with fixed parameters (pure; bytes -> bytes, deterministic).

Each codec has a one-byte id and two parameter bytes that `model.bin` records in its header, so a
reader can check it knows how the bytes were made. The parameters are fixed: the same input always
gives the same bytes (for a given library version), and nothing is multi-threaded.

| id | name   | parameters                                   | source                        |
|----|--------|----------------------------------------------|-------------------------------|
| 0  | none   | -                                            | stored as is                  |
| 1  | zstd   | level 22, frame checksum, content size, no dictionary | SMEAR..GLITE records |
| 2  | lzma   | raw LZMA2, preset 9 + extreme, dictionary 2**b | ARGPTQ (preset 9)           |
| 3  | brotli | quality 11, window 2**24                     | SP8K (#1394)                  |

Codec id 4 (`rans`) is the code-specific entropy coder of `pgolf.pack.rans`; it is not a byte codec.
The modules of brotli and zstandard are imported only when used, so a reader needs only the
libraries its artifact names. Decoding goes through `pgolf.bounded`: never more output than
the size the caller expects.
"""

from __future__ import annotations

import lzma
from dataclasses import dataclass

from pgolf.bounded import decompress_bounded

NONE, ZSTD, LZMA, BROTLI, RANS = 0, 1, 2, 3, 4
NAMES = {NONE: "none", ZSTD: "zstd", LZMA: "lzma", BROTLI: "brotli", RANS: "rans"}
IDS = {name: i for i, name in NAMES.items()}
GENERAL = (ZSTD, LZMA, BROTLI)  # the byte codecs "auto" compares

ZSTD_LEVEL = 22
LZMA_PRESET, LZMA_EXTREME = 9, 0x80  # param a = preset | extreme flag
LZMA_MIN_LOG2_DICT, LZMA_MAX_LOG2_DICT = 12, 26  # preset 9's 64 MiB dictionary at most
BROTLI_QUALITY, BROTLI_LGWIN = 11, 24


@dataclass(frozen=True)
class CodecParams:
    """A codec id and its two parameter bytes as stored in the header."""

    codec: int
    a: int = 0
    b: int = 0


def default_params(codec: int, raw_len: int = 0) -> CodecParams:
    """The fixed parameters pgolf writes for a byte codec on `raw_len` input bytes.

    lzma's dictionary is the smallest power of two >= the input (4 KiB .. 64 MiB): the same output
    as preset 9's 64 MiB dictionary, without allocating ~700 MB to compress a few bytes.
    """
    if codec == ZSTD:
        return CodecParams(ZSTD, ZSTD_LEVEL, 0)
    if codec == LZMA:
        log2_dict = min(max(LZMA_MIN_LOG2_DICT, (max(raw_len, 1) - 1).bit_length()), LZMA_MAX_LOG2_DICT)
        return CodecParams(LZMA, LZMA_PRESET | LZMA_EXTREME, log2_dict)
    if codec == BROTLI:
        return CodecParams(BROTLI, BROTLI_QUALITY, BROTLI_LGWIN)
    if codec == NONE:
        return CodecParams(NONE)
    raise ValueError(f"codec {codec} is not a byte codec")


def valid_params(p: CodecParams) -> bool:
    """Whether a reader can decode with these recorded parameters."""
    if p.codec == LZMA:
        return (p.a & 0x7F) <= 9 and LZMA_MIN_LOG2_DICT <= p.b <= LZMA_MAX_LOG2_DICT
    return p.codec in (NONE, ZSTD, BROTLI)


def _lzma_filters(p: CodecParams) -> list[dict]:
    preset = (p.a & 0x7F) | (lzma.PRESET_EXTREME if p.a & LZMA_EXTREME else 0)
    return [{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": 1 << p.b}]


def compress(raw: bytes, p: CodecParams) -> bytes:
    """Compress `raw` with codec `p` (single-threaded, deterministic)."""
    if p.codec == NONE:
        return bytes(raw)
    if p.codec == ZSTD:
        import zstandard

        cctx = zstandard.ZstdCompressor(level=p.a, write_checksum=True, write_content_size=True, threads=0)
        return cctx.compress(raw)
    if p.codec == LZMA:
        return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_lzma_filters(p))
    if p.codec == BROTLI:
        import brotli

        return brotli.compress(raw, quality=p.a, lgwin=p.b)
    raise ValueError(f"codec {p.codec} is not a byte codec")


def decompress(stored: bytes, p: CodecParams, raw_len: int) -> bytes:
    """Inverse of `compress`; raises ValueError when the bytes do not decode to exactly `raw_len` bytes.

    Bounded by `raw_len`: decoding stops (OutputLimitError, a ValueError) as soon as the output
    would pass it, so a forged section costs at most about `raw_len` bytes of memory, never what
    the stored bytes would expand to. The caller bounds `raw_len` itself (model.bin's ceiling).
    """
    if p.codec == NONE:
        out = bytes(stored)
    elif p.codec in (ZSTD, BROTLI):
        out = decompress_bounded(stored, NAMES[p.codec], raw_len)
    elif p.codec == LZMA:
        out = decompress_bounded(stored, "lzma", raw_len, lzma_filters=_lzma_filters(p))
    else:
        raise ValueError(f"codec {p.codec} is not a byte codec")
    if len(out) != raw_len:
        raise ValueError(f"{NAMES[p.codec]}: decoded {len(out)} bytes, expected {raw_len}")
    return out
