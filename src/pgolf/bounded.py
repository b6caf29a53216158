"""Bounded decompression: decoders that stop as soon as their output would pass a limit (pure).

A few KB of zstd, brotli, lzma, bz2, zlib or gzip can expand to gigabytes. Every decoder here
streams its output in pieces (at most CHUNK bytes for lzma, bz2, zlib and gzip, about 2 * CHUNK
for brotli and zstd) and raises `OutputLimitError` as soon as the total passes `limit`, so a
hostile input costs at most about `limit` + one piece of memory, never what it would expand to.
A size the input declares (a zstd frame's content size) is checked against the limit before
anything of that size is allocated.

    decompress_bounded(data, "zstd", limit)          # bytes, or OutputLimitError / ValueError
    for piece in iter_bounded(data, "gzip", limit):  # the same output, piece by piece
        ...

Semantics follow the standard one-shot functions (`lzma.decompress`, `bz2.decompress`,
`gzip.decompress`: concatenated streams; `zlib.decompress`: one zlib stream; zstd: the first
frame; brotli: one stream), except that a later lzma/bz2 stream that fails part-way leaves the
output of its first pieces in place (the stdlib drops it). Any malformed or truncated input is a
ValueError naming the codec.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Iterator

CODECS = ("zstd", "brotli", "lzma", "bz2", "zlib", "gzip")
CHUNK = 1 << 20  # output piece size asked of the decoders
CEILING = 1 << 30  # the global default ceiling callers start from (model.bin: every section together)
_IN_CHUNK = 1 << 16  # input piece fed to decoders whose output is bounded per call (brotli)
# zstd: a block regenerates at most 128 KiB and takes at least 4 input bytes (an RLE block), so
# n input bytes yield at most n << 15 bytes; feeding a frame of no declared size in pieces of
# room >> 15 bytes (64 at least) keeps every call's output within the room left, or 2 MiB.
_ZSTD_MAX_RATIO_LOG2 = 15
# lzma: the decoder allocates the dictionary its header declares; a stream needs no dictionary
# larger than its output, and pgolf and the records use at most preset 9's 64 MiB.
_LZMA_MIN_MEMLIMIT = 1 << 27


class OutputLimitError(ValueError):
    """The input decodes (or declares it decodes) to more than the allowed number of bytes."""

    def __init__(self, codec: str, limit: int, declared: int | None = None):
        self.codec, self.limit, self.declared = codec, limit, declared
        if declared is None:
            super().__init__(f"{codec} data expands beyond {limit:,} bytes")
        else:
            super().__init__(f"{codec} data declares {declared:,} bytes, more than the {limit:,} allowed")


def _error(codec: str, e: Exception) -> ValueError:
    """ValueError "codec: what went wrong" from a decoder's own exception."""
    text = str(e).strip() or type(e).__name__
    return ValueError(text if text.startswith(f"{codec}:") else f"{codec}: {text}")


def human_bytes(n: int) -> str:
    """1 GiB, 64 MiB, 512 KiB, 1,000 bytes: the limits as people read them."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def decompress_bounded(data: bytes | bytearray | memoryview, codec: str, limit: int, *,
                       lzma_filters: list[dict] | None = None) -> bytes:
    """The decoded bytes of `data` under `codec` (one of CODECS), at most `limit` of them.

    Raises OutputLimitError as soon as the output would pass `limit` (before materializing more
    than about `limit` + CHUNK bytes), ValueError when the data is malformed or truncated.
    `lzma_filters`: decode a raw LZMA stream with these filters (one stream, no container, and
    nothing may follow it) instead of .xz / .lzma.
    """
    out = io.BytesIO()  # grows in place; getvalue() hands its buffer over without a copy
    for piece in iter_bounded(data, codec, limit, lzma_filters=lzma_filters):
        out.write(piece)
    return out.getvalue()


def iter_bounded(data: bytes | bytearray | memoryview, codec: str, limit: int, *,
                 lzma_filters: list[dict] | None = None) -> Iterator[bytes]:
    """The decoded bytes of `data` in pieces; raises OutputLimitError once they pass `limit`."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec '{codec}'; choose one of {', '.join(CODECS)}")
    if limit < 0:
        raise ValueError("the output limit must be >= 0")
    view = memoryview(data).cast("B")
    decoders = {"zstd": _zstd, "brotli": _brotli, "bz2": _bz2, "zlib": _zlib, "gzip": _gzip}
    pieces = _lzma(view, limit, lzma_filters) if codec == "lzma" else decoders[codec](view, limit)
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > limit:
            raise OutputLimitError(codec, limit)
        if piece:
            yield piece


# ----------------------------------------------------------------------------- codecs
# Each generator yields pieces of at most about CHUNK bytes, or fewer when the room left under
# `limit` is smaller (it asks its decoder for room + 1 bytes, so the caller sees the overflow).


def _zstd(view: memoryview, limit: int) -> Iterator[bytes]:
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    try:
        declared = zstandard.frame_content_size(view)
    except zstandard.ZstdError as e:
        raise _error("zstd", e) from None
    if declared >= 0:  # the frame states its size: refuse it before zstd allocates that much
        if declared > limit:
            raise OutputLimitError("zstd", limit, declared)
        try:  # one allocation of the declared size; zstd fails if the frame would overrun it
            yield dctx.decompress(view)
        except zstandard.ZstdError as e:
            raise _error("zstd", e) from None
        return
    # no declared size: stream, feeding input in pieces whose worst-case output fits the room left
    obj = dctx.decompressobj()
    pos, produced = 0, 0
    try:
        while pos < len(view) and not obj.eof:
            room = max(limit - produced, 0)
            step = min(max(room >> _ZSTD_MAX_RATIO_LOG2, 64), _IN_CHUNK)
            out = obj.decompress(view[pos : pos + step])
            pos += step
            produced += len(out)
            yield out
    except zstandard.ZstdError as e:
        raise _error("zstd", e) from None
    if not obj.eof:
        raise ValueError("zstd: the frame is truncated")


def _brotli(view: memoryview, limit: int) -> Iterator[bytes]:
    import brotli

    d = brotli.Decompressor()
    if not hasattr(d, "can_accept_more_data"):  # brotli < 1.2: no output limit, feed tiny pieces
        yield from _brotli_small_steps(d, view, brotli.error)
        return
    pos = 0
    try:
        while not d.is_finished():
            piece = view[pos : pos + _IN_CHUNK] if d.can_accept_more_data() else view[:0]
            pos += len(piece)
            # the output buffer stops growing at the limit (it may end up to ~2x CHUNK)
            out = d.process(piece, output_buffer_limit=CHUNK)
            if not out and not piece and not d.is_finished():
                raise ValueError("brotli: the stream is truncated")
            yield out
    except brotli.error as e:
        raise _error("brotli", e) from None
    if pos < len(view):
        raise ValueError("brotli: stray bytes after the end of the stream")


def _brotli_small_steps(d, view: memoryview, error) -> Iterator[bytes]:
    """Older brotli: 16 input bytes at a time (one step can still expand a lot; the caller stops it)."""
    try:
        for pos in range(0, len(view), 16):
            yield d.process(bytes(view[pos : pos + 16]))
        if not d.is_finished():
            raise ValueError("brotli: the stream is truncated")
    except error as e:
        raise _error("brotli", e) from None


def _drain(d, data, room: int) -> Iterator[bytes]:
    """An lzma/bz2 decompressor over `data`, in pieces of at most min(CHUNK, room + 1) bytes."""
    produced = 0
    out = d.decompress(data, max_length=min(CHUNK, room + 1))
    produced += len(out)
    yield out
    while not d.eof and not d.needs_input:
        out = d.decompress(b"", max_length=min(CHUNK, max(room - produced, 0) + 1))
        produced += len(out)
        yield out


def _lzma(view: memoryview, limit: int, filters: list[dict] | None) -> Iterator[bytes]:
    if filters is not None:  # raw LZMA (model.bin): exactly one stream and nothing after it
        d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=filters)
        try:
            yield from _drain(d, view, limit)
        except lzma.LZMAError as e:
            raise _error("lzma", e) from None
        if not d.eof or d.unused_data:
            raise ValueError("lzma: the stream is truncated or followed by stray bytes")
        return
    memlimit = max(limit + (1 << 20), _LZMA_MIN_MEMLIMIT)
    rest: bytes | memoryview = view
    produced, first = 0, True
    while True:  # concatenated .xz/.lzma streams, as lzma.decompress reads them
        d = lzma.LZMADecompressor(memlimit=memlimit)
        try:
            for out in _drain(d, rest, max(limit - produced, 0)):
                produced += len(out)
                yield out
        except lzma.LZMAError as e:
            if first:
                raise _error("lzma", e) from None
            return  # what follows the first stream is not a stream: ignored, as lzma.decompress does
        if not d.eof:
            raise ValueError("lzma: the stream is truncated")
        rest, first = d.unused_data, False
        if not rest:
            return


def _bz2(view: memoryview, limit: int) -> Iterator[bytes]:
    rest: bytes | memoryview = view
    produced, first = 0, True
    while rest:  # concatenated streams, as bz2.decompress reads them (b"" decodes to b"")
        d = bz2.BZ2Decompressor()
        try:
            for out in _drain(d, rest, max(limit - produced, 0)):
                produced += len(out)
                yield out
        except OSError as e:
            if first:
                raise _error("bz2", e) from None
            return  # trailing data that is not a stream: ignored, as bz2.decompress does
        if not d.eof:
            raise ValueError("bz2: the stream is truncated")
        rest, first = d.unused_data, False


def _inflate(d, data, limit: int, codec: str) -> Iterator[bytes]:
    """One zlib/gzip stream through a zlib decompressobj, in bounded pieces."""
    produced, tail = 0, data
    try:
        while True:
            step = min(CHUNK, max(limit - produced, 0) + 1)
            out = d.decompress(tail, step)
            produced += len(out)
            yield out
            tail = d.unconsumed_tail
            if d.eof:
                return
            if not tail and len(out) < step:  # all input used, the decoder has nothing more
                raise ValueError(f"{codec}: the stream is truncated")
    except zlib.error as e:
        raise _error(codec, e) from None


def _zlib(view: memoryview, limit: int) -> Iterator[bytes]:
    # one zlib stream; like zlib.decompress, whatever follows its end is ignored
    yield from _inflate(zlib.decompressobj(), view, limit, "zlib")


def _gzip(view: memoryview, limit: int) -> Iterator[bytes]:
    rest, produced = bytes(view), 0
    while rest:  # members, as gzip.decompress reads them; zlib checks each member's CRC and size
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        for out in _inflate(d, rest, max(limit - produced, 0), "gzip"):
            produced += len(out)
            yield out
        rest = d.unused_data.lstrip(b"\0")
