"""Decompression bombs: every decoder stops at its bound, with one clear error, in bounded memory.

The bombs are real (hundreds of MB of zeros in a few KB), built cheaply: streaming compressors fed
the same zero block, or one small stream repeated (lzma, bz2 and gzip read concatenated streams as
one). Peak memory is measured with tracemalloc, which sees every output buffer the decoders return.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import lzma
import struct
import tracemalloc
import zlib

import brotli
import numpy as np
import pytest
import torch
import zstandard

from pgolf.bounded import CODECS, OutputLimitError, decompress_bounded, human_bytes
from pgolf.errors import ArtifactError
from pgolf.eval.ledger import MAX_LEDGER_BYTES, ScoreLedger, decode_ledger, parse_ledger
from pgolf.pack import codecs as C
from pgolf.pack import decode_model, encode_model, rans
from pgolf.pack.modelbin import CODES, INDEX, MAX_RAW_BYTES
from pgolf.verify import codescan
from pgolf.verify.codescan import scan_code

MiB = 1 << 20
ZEROS = bytes(MiB)
META = {"format": "pgolf.quant/1", "tensors": {"w": {"scheme": "int6_row_v1", "bits": 6, "qmax": 31, "shape": [40, 36]}}}


# ----------------------------------------------------------------------------- bombs


def _stream(process, finish, mib: int) -> bytes:
    return b"".join([*(process(ZEROS) for _ in range(mib)), finish()])


def bomb(codec: str, mib: int, *, content_size: bool = True) -> bytes:
    """`mib` MiB of zeros compressed with `codec` (a few KB at most)."""
    if codec == "zstd":
        cctx = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
        obj = cctx.compressobj(size=mib * MiB if content_size else -1)
        return _stream(obj.compress, obj.flush, mib)
    if codec == "brotli":
        c = brotli.Compressor(quality=1)
        return _stream(c.process, c.finish, mib)
    if codec == "zlib":  # one stream: ~1 KB per MiB, ~4 ms per MiB to make
        obj = zlib.compressobj(9)
        return _stream(obj.compress, obj.flush, mib)
    one = {"lzma": lzma.compress, "bz2": bz2.compress, "gzip": gzip.compress}[codec](ZEROS)
    return one * mib  # concatenated streams: lzma/bz2/gzip.decompress read them all


def raw_lzma_bomb(p: C.CodecParams, mib: int) -> bytes:
    """One raw LZMA2 stream as model.bin stores it (a fast preset; the decoder needs only the dictionary)."""
    obj = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 0,
                                                                 "dict_size": 1 << p.b}])
    return _stream(obj.compress, obj.flush, mib)


def peak_of(fn):
    """(what fn returned, or the exception it raised; the tracemalloc peak in bytes while it ran)."""
    tracemalloc.start()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - the caller asserts on it
        out = e
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out, peak


# ----------------------------------------------------------------------------- the decoders


STDLIB = {"lzma": (lzma.compress, lzma.decompress), "bz2": (bz2.compress, bz2.decompress),
          "zlib": (zlib.compress, zlib.decompress), "gzip": (gzip.compress, gzip.decompress),
          "brotli": (brotli.compress, brotli.decompress),
          "zstd": (zstandard.ZstdCompressor().compress, zstandard.ZstdDecompressor().decompress)}


@pytest.mark.parametrize("codec", CODECS)
def test_bounded_decoders_give_what_the_standard_ones_give(codec):
    compress, decompress = STDLIB[codec]
    rng = np.random.default_rng(0)
    for raw in (b"", b"x", b"hello " * 5000, rng.integers(0, 256, 300_000, dtype=np.uint8).tobytes()):
        blob = compress(raw)
        assert decompress_bounded(blob, codec, len(raw)) == decompress(blob) == raw
        if raw:
            with pytest.raises(OutputLimitError, match=f"{codec} data"):
                decompress_bounded(blob, codec, len(raw) - 1)
            with pytest.raises(ValueError, match=codec):
                decompress_bounded(blob[: len(blob) // 2], codec, 10 * len(raw))
    twice = compress(b"abc" * 100) + compress(b"def" * 100)
    if codec in ("lzma", "bz2", "gzip", "zstd"):  # concatenated streams as the one-shot functions read them
        assert decompress_bounded(twice, codec, 1000) == decompress(twice)


@pytest.mark.parametrize("codec,content_size", [("zstd", True), ("zstd", False), ("brotli", True), ("lzma", True),
                                                ("bz2", True), ("zlib", True), ("gzip", True)])
def test_a_bomb_stops_at_the_limit_in_bounded_memory(codec, content_size):
    blob = bomb(codec, 64 if codec == "zlib" else 256, content_size=content_size)  # 256 MiB of zeros
    assert len(blob) < 300_000
    err, peak = peak_of(lambda: decompress_bounded(blob, codec, 4 * MiB))
    assert isinstance(err, OutputLimitError) and f"{codec} data" in str(err) and "4,194,304" in str(err)
    assert peak < 16 * MiB, f"{codec}: {peak / MiB:.0f} MiB held to refuse a 256 MiB bomb"


# ----------------------------------------------------------------------------- model.bin


def small_model():
    rng = np.random.default_rng(0)
    return {"w.q": torch.from_numpy(rng.integers(-31, 32, (40, 36)).astype(np.int8)),
            "w.scale": torch.from_numpy(rng.random(40).astype(np.float16)),
            "c": torch.from_numpy(rng.normal(size=36).astype(np.float32))}


def split(blob: bytes) -> tuple[list[list[int]], list[bytes]]:
    """model.bin -> (section table rows [kind, codec, a, b, raw_len, stored_len, crc32], stored bytes)."""
    n = blob[5]
    rows = [list(struct.unpack_from("<BBBBIII", blob, 6 + 16 * i)) for i in range(n)]
    pos, stored = 10 + 16 * n, []
    for r in rows:
        stored.append(blob[pos : pos + r[5]])
        pos += r[5]
    return rows, stored


def join(rows, stored) -> bytes:
    """Reassemble as a forger would: stored lengths and the header crc32 made consistent again."""
    head = struct.pack("<4sBB", b"PGMB", 1, len(rows))
    for r, s in zip(rows, stored):
        r[5] = len(s)
        head += struct.pack("<BBBBIII", *r)
    return head + struct.pack("<I", zlib.crc32(head)) + b"".join(stored)


def forge(blob: bytes, kind: int, **fields) -> bytes:
    rows, stored = split(blob)
    i = [r[0] for r in rows].index(kind)
    if "stored" in fields:
        stored[i] = fields["stored"]
    if "raw_len" in fields:
        rows[i][4] = fields["raw_len"]
    if "raw" in fields:  # new raw bytes, recompressed with the section's own codec, crc32 fixed
        raw = fields["raw"]
        stored[i] = C.compress(raw, C.CodecParams(*rows[i][1:4]))
        rows[i][4], rows[i][6] = len(raw), zlib.crc32(raw)
    return join(rows, stored)


@pytest.mark.parametrize("codec,content_size", [("zstd", True), ("zstd", False), ("brotli", True), ("lzma", True)])
def test_model_bin_section_bomb_is_refused_in_bounded_memory(codec, content_size):
    blob = encode_model(small_model(), META, codec=codec, layout="bytes")
    rows, _ = split(blob)
    codes = next(r for r in rows if r[0] == CODES)
    assert codes[1] == C.IDS[codec] and codes[4] == 40 * 36
    p = C.CodecParams(*codes[1:4])
    payload = raw_lzma_bomb(p, 64) if codec == "lzma" else bomb(codec, 256, content_size=content_size)
    bad = forge(blob, CODES, stored=payload)  # the declared raw_len stays the true 1,440 bytes
    err, peak = peak_of(lambda: decode_model(bad))
    assert isinstance(err, ArtifactError), err
    assert str(err).startswith("model.bin section 'codes' decodes to more than the 1,440 raw bytes it declares")
    assert "re-create it with `pgolf pack`" in str(err) and "\n" not in str(err)
    assert peak < 16 * MiB, f"{peak / MiB:.0f} MiB"


def test_model_bin_declared_sizes_over_the_ceiling_are_refused_before_decoding():
    blob = encode_model(small_model(), META, codec="zstd", layout="bytes")
    # a zstd frame that really declares (and holds) 4,000,000,000 bytes: never decoded
    frame = zstandard.ZstdCompressor(level=1).compressobj(size=4_000_000_000)
    head = frame.compress(ZEROS)  # the frame header comes first; the rest is never read
    err, peak = peak_of(lambda: decode_model(forge(blob, CODES, raw_len=4_000_000_000, stored=head)))
    assert isinstance(err, ArtifactError)
    assert str(err) == ("model.bin section 'codes' declares 4,000,000,000 raw bytes, more than the 1 GiB any pgolf "
                        "model holds (the file is corrupt or was not made by `pgolf pack`); re-create it with "
                        "`pgolf pack`")
    assert peak < 16 * MiB
    # each section under the ceiling, their sum over it
    rows, stored = split(blob)
    for r in rows:
        r[4] = MAX_RAW_BYTES // 2 + 1 if r[0] != INDEX else r[4]
    with pytest.raises(ArtifactError, match=r"sections declare [\d,]+ raw bytes in all, more than the 1 GiB"):
        decode_model(join(rows, stored))
    with pytest.raises(ArtifactError, match="section 'index' declares 17,000,000 raw bytes, more than the 16 MiB"):
        decode_model(forge(blob, INDEX, raw_len=17_000_000))
    # the ceiling is an argument
    with pytest.raises(ArtifactError, match="section 'codes' declares 1,440 raw bytes, more than the 1 KiB"):
        decode_model(blob, max_raw_bytes=1024)


@pytest.mark.parametrize("codec,layout", [("zstd", "bytes"), ("zstd", "bitpack"), ("rans", "auto"),
                                          ("brotli", "bytes")])
def test_model_bin_index_shapes_must_match_the_declared_sizes_before_anything_is_built(codec, layout):
    t = small_model()
    blob = encode_model(t, META, codec=codec, layout=layout)
    rows, stored = split(blob)
    irow = next(r for r in rows if r[0] == INDEX)
    index = json.loads(C.decompress(stored[[r[0] for r in rows].index(INDEX)], C.CodecParams(*irow[1:4]), irow[4]))
    for entry in index["tensors"]:
        if entry[0] == "w.q":
            entry[2] = [1 << 31, 1 << 31]  # 2**62 codes: allocating them is what a decoder must not try
    raw = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    err, peak = peak_of(lambda: decode_model(forge(blob, INDEX, raw=raw)))
    assert isinstance(err, ArtifactError), repr(err)
    packed = "that pack into 576,460,752,303,423,489 to 4,611,686,018,427,387,905"
    assert f"the index lists codes {packed if layout == 'bitpack' else 'of 4,611,686,018,427,387,904'}" in str(err)
    assert peak < 16 * MiB


def test_rans_refuses_declared_counts_over_its_ceilings_before_allocating():
    rng = np.random.default_rng(1)
    codes = [rng.integers(-7, 8, (64, 48)).astype(np.int8)]
    model, stream, lanes = rans.encode_codes(codes)
    err, peak = peak_of(lambda: rans.decode_codes(model, stream, [[1 << 20, 1 << 20]], rans.PROB_BITS, lanes))
    assert isinstance(err, rans.RansError) and "1,099,511,627,776 codes, more than" in str(err)
    assert peak < 16 * MiB
    with pytest.raises(rans.RansError, match="3,072 codes, more than the 3,000 allowed"):
        rans.decode_codes(model, stream, [c.shape for c in codes], rans.PROB_BITS, lanes, max_symbols=3000)
    # a model of 1,040 contexts: tables of 17M slots, over MAX_TABLE_SLOTS (about 700 MB to build before)
    forged = rans._Model([8], [0], [np.zeros(1, np.int8)], [np.zeros(0, np.int8)], [(8, 0, 1040)],
                         np.ones((1040, 256), np.uint8)).to_bytes()
    err, peak = peak_of(lambda: rans.decode_codes(forged, bytes(4), [[1, 1]], rans.PROB_BITS, 0))
    assert isinstance(err, rans.RansError) and "1040 contexts" in str(err) and "table slots" in str(err)
    assert peak < 16 * MiB


# ----------------------------------------------------------------------------- the ledger


def ledger_text() -> str:
    led = ScoreLedger(4, "a" * 32)
    led.commit(0, 4, np.ones(4, np.float32), np.array([1, 2, 3, 4]), "a" * 32, "a" * 32)
    led.mark("last")
    return led.to_jsonl()


def test_ledger_decodes_and_a_zstd_bomb_is_one_clear_error():
    text = ledger_text()
    assert decode_ledger(zstandard.ZstdCompressor().compress(text.encode())) == text
    assert decode_ledger(text.encode(), None) == text
    # a frame declaring 512 MiB: refused from its header
    err, peak = peak_of(lambda: decode_ledger(bomb("zstd", 512)))
    assert isinstance(err, ArtifactError) and peak < 16 * MiB
    assert str(err) == (f"score ledger expands beyond {human_bytes(MAX_LEDGER_BYTES)}, more than any pgolf ledger "
                        "holds (the file is corrupt or was not made by `pgolf ttt-eval`); refusing to decode it; "
                        "re-create it with `pgolf ttt-eval`")
    # no declared size: decoding stops at the bound (a small one here, to stay fast)
    err, peak = peak_of(lambda: decode_ledger(bomb("zstd", 256, content_size=False), max_bytes=4 * MiB))
    assert isinstance(err, ArtifactError) and "expands beyond 4 MiB" in str(err)
    assert peak < 16 * MiB
    with pytest.raises(ArtifactError, match="score ledger does not decode"):
        decode_ledger(zstandard.ZstdCompressor().compress(text.encode())[:-6])
    with pytest.raises(ArtifactError, match="not UTF-8"):
        decode_ledger(zstandard.ZstdCompressor().compress(b"\xff\xfe" + text.encode()))


def test_ledger_line_over_the_bound_is_refused_before_json_parses_it():
    header, rest = ledger_text().split("\n", 1)
    padded = json.dumps({**json.loads(header), "pad": "x" * (17 * MiB)})  # valid JSON, 17 MiB long
    with pytest.raises(ArtifactError, match=r"score ledger line 1 is [\d,]+ characters long, more than the "
                                            r"16,777,216 a pgolf ledger line holds"):
        parse_ledger(padded + "\n" + rest)


# ----------------------------------------------------------------------------- the code scan


def payload_file(codec: str, blob: bytes) -> str:
    return f"import {codec}, base64\nexec({codec}.decompress(base64.b85decode('{base64.b85encode(blob).decode()}')))\n"


def test_code_scan_refuses_a_bz2_bomb_payload_as_a_warning():
    blob = bomb("bz2", 1024)  # 1 GiB of zeros in 46 KB
    text = payload_file("bz2", blob)
    scan, peak = peak_of(lambda: scan_code(text))
    assert isinstance(scan, codescan.CodeScan), scan
    hits = scan.by_rule("SIZE-3")
    assert [h.verdict for h in hits] == ["WARN"] and scan.payloads == 0
    assert hits[0].message == ("exec(...) of a compressed payload that expands beyond 64 MiB; refusing to decode it "
                               "(the static scan cannot see that code)")
    assert peak < 128 * MiB, f"{peak / MiB:.0f} MiB"  # the 64 MiB bound plus a piece, not 1 GiB


@pytest.mark.parametrize("codec", ["lzma", "zlib", "gzip", "bz2"])
def test_code_scan_bound_for_every_decompressor(codec, monkeypatch):
    monkeypatch.setattr(codescan, "MAX_PAYLOAD_BYTES", MiB)
    scan = scan_code(payload_file(codec, bomb(codec, 8)))
    assert [f.message for f in scan.by_rule("SIZE-3")] == [
        "exec(...) of a compressed payload that expands beyond 1 MiB; refusing to decode it (the static scan cannot "
        "see that code)"]
    # a legal packed program under the bound is still followed and passes
    ok = scan_code(payload_file(codec, {"lzma": lzma.compress, "zlib": zlib.compress, "gzip": gzip.compress,
                                        "bz2": bz2.compress}[codec](b"import math\nx = math.pi\n")))
    assert ok.payloads == 1 and ok.findings == [] and "math" in ok.imports


def test_code_scan_bounds_what_all_payloads_decode_together(monkeypatch):
    monkeypatch.setattr(codescan, "MAX_DECODED_BYTES", 3 * MiB)
    blob = zlib.compress(b"x = 1\n" + b"#" * (MiB - 8192))  # each payload just under 1 MiB: the fourth is refused
    one = f"exec(zlib.decompress(base64.b85decode('{base64.b85encode(blob).decode()}')))\n"
    text = "import zlib, base64\n" + one * 4
    scan = scan_code(text)
    assert scan.payloads == 3 and scan.decoded_bytes <= 3 * MiB
    assert [f.message for f in scan.by_rule("SIZE-3")] == [
        "exec(...) of a payload past the 3 MiB the scan decodes in all; refusing to decode it (the static scan cannot "
        "see that code)"]
