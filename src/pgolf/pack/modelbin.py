"""`model.bin`: the compressed quantized model, an exact round trip of `pgolf quantize`'s tensors + meta.

Layout (all integers little-endian):

    offset       size  field
    0            4     magic b"PGMB"
    4            1     format version (FORMAT_VERSION)
    5            1     number of sections n
    6            16*n  section table, one entry per section:
                         kind u8, codec u8, param a u8, param b u8,
                         raw_len u32, stored_len u32, crc32 of the raw (decoded) bytes u32
    6+16n        4     crc32 of the header bytes before it
    10+16n       ...   the sections' stored bytes, in table order, and nothing after them

Sections (`kind`), each compressed on its own with the codec its entry names:
- INDEX: UTF-8 JSON `{"meta": <quant meta>, "tensors": [[name, dtype, shape], ...]}` sorted by name.
- CODES / CODES_PACKED: every int8 tensor (the `NAME.q` codes) in index order, one code per byte,
  or bit-packed at each tensor's code width (`layouts.pack_bits`). Under codec `rans` the CODES
  section holds the rANS stream and the RANS_MODEL section its side information and tables.
- ROW_ORDER + CODES_GROUPED (codec "pergroup", PR #2135's layout, `pgolf.pack.pergroup`): ROW_ORDER
  holds the uint16 row order of every grouped code matrix (2-D `NAME.q`) in index order;
  CODES_GROUPED those matrices' codes, rows reordered and transposed, in index order, then every
  other int8 tensor one code per byte, in index order.
- DATA / DATA_SHUFFLED: every other tensor (fp16 scales, fp16/fp32 passthrough, ...) in index
  order, as raw bytes or byte-shuffled per tensor (`layouts.shuffle_bytes`).

Codec ids and their fixed parameters are in `pgolf.pack.codecs`. Every section's decoded bytes are
checked against their crc32, so a corrupt or truncated file raises ArtifactError, never returns
different weights. The same tensors and meta always give the same bytes: names are sorted, the
JSON is canonical and every codec runs with fixed parameters on one thread.

Decoding is bounded before it allocates: every declared raw length, and their sum, must stay under
a ceiling (MAX_RAW_BYTES; the index under MAX_INDEX_BYTES), the sizes the index's shapes imply
must match the declared lengths, and a section never decodes to more than it declares
(`pgolf.bounded`), so a forged file costs at most about the ceiling in memory.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from pgolf.bounded import CEILING, OutputLimitError, human_bytes
from pgolf.errors import ArtifactError, ConfigError
from pgolf.pack import codecs as C
from pgolf.pack import layouts, pergroup, rans

MAGIC = b"PGMB"
FORMAT_VERSION = 1
INDEX, CODES, CODES_PACKED, DATA, DATA_SHUFFLED, RANS_MODEL, ROW_ORDER, CODES_GROUPED = 1, 2, 3, 4, 5, 6, 7, 8
KIND_NAMES = {INDEX: "index", CODES: "codes", CODES_PACKED: "codes_packed", DATA: "data",
              DATA_SHUFFLED: "data_shuffled", RANS_MODEL: "rans_model", ROW_ORDER: "row_order",
              CODES_GROUPED: "codes_grouped"}
_ENTRY = struct.Struct("<BBBBIII")
_HEAD = struct.Struct("<4sBB")

CODECS = ("none", "zstd", "lzma", "brotli", "rans", "pergroup", "auto")
# codec "pergroup": the grouped codes' brotli call in PR #2135 (quality 11, brotli's default window 2**22)
PERGROUP_PARAMS = C.CodecParams(C.BROTLI, C.BROTLI_QUALITY, 22)
LAYOUTS = ("auto", "bytes", "bitpack")
SHUFFLES = ("auto", "on", "off")

# dtype names as safetensors spells them -> (torch dtype name, numpy dtype or None for bfloat16)
DTYPES = {
    "BOOL": ("bool", np.bool_), "U8": ("uint8", np.uint8), "I8": ("int8", np.int8),
    "I16": ("int16", np.int16), "I32": ("int32", np.int32), "I64": ("int64", np.int64),
    "F16": ("float16", np.float16), "BF16": ("bfloat16", None), "F32": ("float32", np.float32),
    "F64": ("float64", np.float64),
}
# Decoding ceilings. The challenge's artifact is 16 MB; even at 1 bit a weight that is 128M codes,
# 128 MB one code per byte: 1 GiB of raw sections in all leaves 8x headroom. The index (quant meta
# + the tensor listing) is a few KB to a few hundred KB; 16 MiB is far beyond any model's, and
# json.loads holds ~10x its text in objects.
MAX_RAW_BYTES = CEILING
MAX_INDEX_BYTES = 16 << 20
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "I32": 4, "I64": 8, "F16": 2, "BF16": 2, "F32": 4, "F64": 8}


# ----------------------------------------------------------------------------- tensors <-> bytes


def _tensor_bytes(name: str, t: Any) -> tuple[str, list[int], bytes]:
    """(dtype name, shape, little-endian C-order bytes) of a torch tensor or numpy array."""
    if isinstance(t, np.ndarray):
        native = t.dtype.newbyteorder("=")
        for dname, (_, npd) in DTYPES.items():
            if npd is not None and native == np.dtype(npd):
                return dname, list(t.shape), np.ascontiguousarray(t).astype(native.newbyteorder("<")).tobytes()
        raise ArtifactError(f"tensor '{name}' has dtype {t.dtype}, which model.bin cannot store",
                            f"use one of {', '.join(DTYPES)}")
    import torch

    if not isinstance(t, torch.Tensor):
        raise ArtifactError(f"tensor '{name}' is a {type(t).__name__}, not a tensor")
    tname = str(t.dtype).removeprefix("torch.")
    for dname, (tdn, _) in DTYPES.items():
        if tdn == tname:
            flat = t.detach().cpu().contiguous().reshape(-1)
            return dname, list(t.shape), flat.view(torch.uint8).numpy().tobytes()
    raise ArtifactError(f"tensor '{name}' has dtype {t.dtype}, which model.bin cannot store",
                        f"use one of {', '.join(DTYPES)}")


def _make_tensor(dname: str, shape: list[int], raw: bytes):
    import torch

    dtype = getattr(torch, DTYPES[dname][0])
    if len(raw) == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


def _numel(shape: list[int]) -> int:
    return math.prod(shape)  # Python ints: a forged shape cannot overflow to a small count


# ----------------------------------------------------------------------------- encoding


def _candidates(codec: str, section: str) -> list[int]:
    """Codec ids to try for a section ("codes" or "other") under the user's codec choice."""
    if codec == "auto":
        return [*C.GENERAL, C.RANS] if section == "codes" else list(C.GENERAL)
    if codec in ("rans", "pergroup"):
        return [C.RANS] if section == "codes" else list(C.GENERAL)
    return [C.IDS[codec]]


def _smallest(raw: bytes, codec_ids: list[int]) -> tuple[C.CodecParams, bytes]:
    """The first codec (in the given order) that stores `raw` smallest."""
    best = None
    for cid in codec_ids:
        p = C.default_params(cid, len(raw))
        stored = C.compress(raw, p)
        if best is None or len(stored) < len(best[1]):
            best = (p, stored)
    assert best is not None
    return best


def encode_model(tensors: Mapping[str, Any], meta: Mapping[str, Any], codec: str = "zstd",
                 layout: str = "auto", shuffle: str = "auto") -> bytes:
    """Compress quantized tensors + their meta into `model.bin` bytes (exact round trip, deterministic).

    tensors: name -> torch tensor or numpy array (int8 codes `NAME.q`, fp16 scales, passthrough);
        any shape, dtypes in DTYPES. Every int8 tensor is treated as codes.
    meta: the JSON-native quant meta (dicts, lists, str, int, float, bool, None), stored verbatim.
    codec: "zstd" (level 22), "lzma" (preset 9e), "brotli" (quality 11), "none", "rans" (the
        code entropy coder; the other sections get the smallest general codec), "pergroup" (PR
        #2135's row-reordered, transposed codes under brotli-11; the other sections as "rans"), or
        "auto" (per section the smallest of all). The choice per section is recorded in the header.
    layout: codes "bytes" (one per byte, as the records), "bitpack" (at each tensor's code width),
        or "auto" (the smaller once compressed). Not used by rans, which codes symbols directly.
    shuffle: other tensors byte-shuffled ("on"), raw ("off"), or "auto" (the smaller).
    """
    if codec not in CODECS:
        raise ConfigError(f"unknown codec '{codec}'; choose one of {', '.join(CODECS)}")
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout '{layout}'; choose one of {', '.join(LAYOUTS)}")
    if shuffle not in SHUFFLES:
        raise ConfigError(f"unknown shuffle '{shuffle}'; choose one of {', '.join(SHUFFLES)}")
    try:
        native = json.loads(json.dumps(meta, sort_keys=True, allow_nan=False)) == meta
    except (TypeError, ValueError):
        native = False
    if not native:
        raise ArtifactError("quant meta is not JSON-native (tuples, non-string keys, NaN or other types would not "
                            "round-trip)", "store lists, dicts with string keys, str, int, finite float, bool, None")

    entries = []
    for name in sorted(tensors):
        if not isinstance(name, str):
            raise ArtifactError(f"tensor name {name!r} is not a string")
        entries.append((name, *_tensor_bytes(name, tensors[name])))
    index = {"meta": meta, "tensors": [[n, d, s] for n, d, s, _ in entries]}
    index_raw = json.dumps(index, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

    code_entries = [(n, s, raw) for n, d, s, raw in entries if d == "I8"]
    data_entries = [(d, raw) for n, d, s, raw in entries if d != "I8"]
    sections: list[tuple[int, C.CodecParams, bytes, bytes]] = []  # kind, params, raw, stored

    general_other = _candidates(codec, "other")
    sections.append((INDEX, *_smallest_tuple(index_raw, general_other)))

    # data tensors: raw or shuffled per tensor, whichever the codec stores smaller
    plain = b"".join(raw for _, raw in data_entries)
    options = []
    if shuffle in ("auto", "off"):
        options.append((DATA, plain))
    if shuffle in ("auto", "on"):
        options.append((DATA_SHUFFLED, b"".join(layouts.shuffle_bytes(raw, _ITEMSIZE[d]) for d, raw in data_entries)))
    sections.append(min(((kind, *_smallest_tuple(raw, general_other)) for kind, raw in options),
                        key=lambda s: len(s[3])))

    sections.extend(_encode_codes(code_entries, codec, layout))
    return _assemble(sections)


def _smallest_tuple(raw: bytes, codec_ids: list[int]) -> tuple[C.CodecParams, bytes, bytes]:
    p, stored = _smallest(raw, codec_ids)
    return p, raw, stored


def _encode_pergroup(code_entries) -> list[tuple[int, C.CodecParams, bytes, bytes]]:
    """ROW_ORDER + CODES_GROUPED (see the module docstring)."""
    orders, grouped, rest = [], [], []
    for name, shape, raw in code_entries:
        if pergroup.grouped(name, shape):
            order, data = pergroup.reorder(np.frombuffer(raw, np.int8).reshape(shape))
            orders.append(order)
            grouped.append(data)
        else:
            rest.append(raw)
    order_raw, codes_raw = b"".join(orders), b"".join(grouped + rest)
    return [(ROW_ORDER, *_smallest_tuple(order_raw, [C.NONE, *C.GENERAL])),
            (CODES_GROUPED, PERGROUP_PARAMS, codes_raw, C.compress(codes_raw, PERGROUP_PARAMS))]


def _encode_codes(code_entries, codec: str, layout: str) -> list[tuple[int, C.CodecParams, bytes, bytes]]:
    """The code sections of the smallest candidate: one general-codec section, or rANS model + stream."""
    if codec == "pergroup":
        return _encode_pergroup(code_entries)
    as_bytes = b"".join(raw for _, _, raw in code_entries)
    candidates: list[list[tuple[int, C.CodecParams, bytes, bytes]]] = []
    general = [c for c in _candidates(codec, "codes") if c != C.RANS]
    if general:
        raws = []
        if layout in ("auto", "bytes"):
            raws.append((CODES, as_bytes))
        if layout in ("auto", "bitpack"):
            packed = b"".join(_pack_tensor(np.frombuffer(raw, np.int8)) for _, _, raw in code_entries)
            raws.append((CODES_PACKED, packed))
        for kind, raw in raws:
            for cid in general:
                p = C.default_params(cid, len(raw))
                candidates.append([(kind, p, raw, C.compress(raw, p))])
    if C.RANS in _candidates(codec, "codes"):
        arrays = [np.frombuffer(raw, np.int8).reshape(shape) for _, shape, raw in code_entries]
        model, stream, log2_lanes = rans.encode_codes(arrays)
        mp, mstored = _smallest(model, list(C.GENERAL))
        candidates.append([(RANS_MODEL, mp, model, mstored),
                           (CODES, C.CodecParams(C.RANS, rans.PROB_BITS, log2_lanes), as_bytes, stream)])
    return min(candidates, key=lambda secs: sum(len(s[3]) for s in secs))


def _pack_tensor(codes: np.ndarray) -> bytes:
    """One tensor of the CODES_PACKED section: its code width (1 byte), then the codes at that width."""
    b = layouts.code_bits(codes)
    return bytes([b]) + layouts.pack_bits(codes, b)


def _assemble(sections) -> bytes:
    head = [_HEAD.pack(MAGIC, FORMAT_VERSION, len(sections))]
    for kind, p, raw, stored in sections:
        head.append(_ENTRY.pack(kind, p.codec, p.a, p.b, len(raw), len(stored), zlib.crc32(raw)))
    header = b"".join(head)
    return header + struct.pack("<I", zlib.crc32(header)) + b"".join(s[3] for s in sections)


# ----------------------------------------------------------------------------- decoding


def _parse_header(blob: bytes) -> tuple[list[dict[str, Any]], int]:
    """Section entries and the payload offset; ArtifactError on a bad magic, version or checksum."""
    if len(blob) < _HEAD.size or blob[:4] != MAGIC:
        raise ArtifactError("not a pgolf model.bin (bad magic)", "pass the model.bin written by `pgolf pack`")
    _, version, count = _HEAD.unpack_from(blob, 0)
    if version > FORMAT_VERSION:
        raise ArtifactError(f"model.bin format version {version} is newer than this pgolf reads ({FORMAT_VERSION})",
                            "upgrade pgolf")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"model.bin format version {version} is unknown", "re-run `pgolf pack`")
    end = _HEAD.size + _ENTRY.size * count
    if len(blob) < end + 4:
        raise ArtifactError("model.bin is truncated inside its header", "re-run `pgolf pack`")
    (crc,) = struct.unpack_from("<I", blob, end)
    if zlib.crc32(blob[:end]) != crc:
        raise ArtifactError("model.bin header is corrupt (checksum mismatch)", "re-run `pgolf pack`")
    entries = []
    for i in range(count):
        kind, codec, a, b, raw_len, stored_len, raw_crc = _ENTRY.unpack_from(blob, _HEAD.size + i * _ENTRY.size)
        if kind not in KIND_NAMES or codec not in C.NAMES:
            raise ArtifactError(f"model.bin section {i} has unknown kind {kind} or codec {codec}", "upgrade pgolf")
        entries.append({"kind": kind, "codec": codec, "a": a, "b": b, "raw_len": raw_len,
                        "stored_len": stored_len, "crc32": raw_crc})
    return entries, end + 4


def inspect_model(blob: bytes) -> dict[str, Any]:
    """What a model.bin holds, from its header alone: version, sections (kind, codec, params, sizes)."""
    entries, offset = _parse_header(blob)
    return {
        "format_version": FORMAT_VERSION,
        "bytes": len(blob),
        "header_bytes": offset,
        "sections": [{"kind": KIND_NAMES[e["kind"]], "codec": C.NAMES[e["codec"]], "params": [e["a"], e["b"]],
                      "raw_bytes": e["raw_len"], "stored_bytes": e["stored_len"]} for e in entries],
    }


def _fail(what: str, detail: str) -> ArtifactError:
    return ArtifactError(f"model.bin {what} is corrupt ({detail})", "re-run `pgolf pack`")


_FORGED = "the file is corrupt or was not made by `pgolf pack`"
_RECREATE = "re-create it with `pgolf pack`"


def _too_large(kind: int, raw_len: int, limit: int, what: str) -> ArtifactError:
    return ArtifactError(f"model.bin section '{KIND_NAMES[kind]}' declares {raw_len:,} raw bytes, more than the "
                         f"{human_bytes(limit)} {what} ({_FORGED})", _RECREATE)


class _Sections:
    """The stored sections of a blob by kind; `raw(kind)` decompresses one and checks its crc32."""

    def __init__(self, blob: bytes, max_raw_bytes: int = MAX_RAW_BYTES):
        entries, offset = _parse_header(blob)
        expected = offset + sum(e["stored_len"] for e in entries)
        if len(blob) < expected:
            raise ArtifactError(f"model.bin is truncated: {len(blob):,} bytes, its header promises {expected:,}",
                                "re-run `pgolf pack`")
        if len(blob) > expected:
            raise ArtifactError(f"model.bin has {len(blob) - expected:,} stray bytes after its sections",
                                "re-run `pgolf pack`")
        self.entries: dict[int, dict[str, Any]] = {}
        self.stored: dict[int, bytes] = {}
        for e in entries:
            if e["kind"] in self.entries:
                raise _fail("section table", f"two {KIND_NAMES[e['kind']]} sections")
            self.entries[e["kind"]] = e
            self.stored[e["kind"]] = blob[offset : offset + e["stored_len"]]
            offset += e["stored_len"]
        kinds = set(self.entries)
        rans_codes = CODES in kinds and self.entries[CODES]["codec"] == C.RANS
        codes_kinds = kinds & {CODES, CODES_PACKED, CODES_GROUPED}
        valid = (len(kinds & {DATA, DATA_SHUFFLED}) == 1 and INDEX in kinds and len(codes_kinds) == 1
                 and (RANS_MODEL in kinds) == rans_codes and (ROW_ORDER in kinds) == (CODES_GROUPED in kinds))
        if not valid:
            raise _fail("section table", f"unexpected sections {sorted(KIND_NAMES[k] for k in kinds)}")
        # every declared size against the ceilings, before any section is decoded
        for e in entries:
            if e["kind"] == INDEX and e["raw_len"] > min(MAX_INDEX_BYTES, max_raw_bytes):
                raise _too_large(INDEX, e["raw_len"], min(MAX_INDEX_BYTES, max_raw_bytes), "any pgolf index holds")
            if e["raw_len"] > max_raw_bytes:
                raise _too_large(e["kind"], e["raw_len"], max_raw_bytes, "any pgolf model holds")
        total = sum(e["raw_len"] for e in entries)
        if total > max_raw_bytes:
            raise ArtifactError(f"model.bin sections declare {total:,} raw bytes in all, more than the "
                                f"{human_bytes(max_raw_bytes)} any pgolf model holds ({_FORGED})", _RECREATE)

    def check(self, kind: int, raw: bytes) -> bytes:
        if len(raw) != self.entries[kind]["raw_len"] or zlib.crc32(raw) != self.entries[kind]["crc32"]:
            raise _fail(KIND_NAMES[kind], "checksum mismatch")
        return raw

    def raw(self, kind: int) -> bytes:
        e = self.entries[kind]
        p = C.CodecParams(e["codec"], e["a"], e["b"])
        if not C.valid_params(p):
            raise _fail(KIND_NAMES[kind], f"codec {C.NAMES[p.codec]} with parameters {p.a}, {p.b}")
        try:
            raw = C.decompress(self.stored[kind], p, e["raw_len"])
        except OutputLimitError:
            raise ArtifactError(f"model.bin section '{KIND_NAMES[kind]}' decodes to more than the {e['raw_len']:,} "
                                f"raw bytes it declares ({C.NAMES[p.codec]}; {_FORGED})", _RECREATE) from None
        except ValueError as err:
            raise _fail(KIND_NAMES[kind], str(err)) from None
        return self.check(kind, raw)

    def expect(self, kind: int, size: int, what: str) -> None:
        """The index implies `size` raw bytes for a section: refuse a mismatch before decoding it."""
        if self.entries[kind]["raw_len"] != size:
            raise _fail(KIND_NAMES[kind], f"it declares {self.entries[kind]['raw_len']:,} raw bytes, "
                                          f"the index lists {what} of {size:,}")


def decode_model(blob: bytes, *, max_raw_bytes: int = MAX_RAW_BYTES) -> tuple[dict[str, Any], dict[str, Any]]:
    """Inverse of `encode_model`: (name -> torch tensor, meta), tensors in name order.

    Raises ArtifactError for a bad magic, an unknown or newer format version, a truncated or
    padded blob, a header or section checksum mismatch, a section that does not decode, declared
    sizes over `max_raw_bytes` (all sections together) or that disagree with the index's shapes.
    """
    sections = _Sections(bytes(blob), max_raw_bytes)
    try:
        index = json.loads(sections.raw(INDEX).decode())
        meta = index["meta"]
        listing = [(str(n), str(d), [int(x) for x in s]) for n, d, s in index["tensors"]]
    except (ValueError, KeyError, TypeError) as err:
        raise _fail("index", f"malformed JSON: {err}") from None
    for n, d, s in listing:
        if d not in DTYPES or any(x < 0 for x in s):
            raise _fail("index", f"tensor '{n}' has dtype {d} and shape {s}")

    codes_listing = [(n, s) for n, d, s in listing if d == "I8"]
    data_listing = [(n, d, s) for n, d, s in listing if d != "I8"]
    # the shapes against the declared section sizes, before those sections are decoded
    kind = DATA if DATA in sections.entries else DATA_SHUFFLED
    sizes = [_numel(s) * _ITEMSIZE[d] for _, d, s in data_listing]
    sections.expect(kind, sum(sizes), "tensors")
    out: dict[str, Any] = {}
    for (n, s), arr in zip(codes_listing, _decode_codes(sections, codes_listing, max_raw_bytes)):
        out[n] = _make_tensor("I8", s, arr.tobytes())

    data = sections.raw(kind)
    if sum(sizes) != len(data):
        raise _fail("data", f"{len(data)} bytes for tensors of {sum(sizes)} bytes")
    pos = 0
    for (n, d, s), size in zip(data_listing, sizes):
        raw = data[pos : pos + size]
        pos += size
        out[n] = _make_tensor(d, s, layouts.unshuffle_bytes(raw, _ITEMSIZE[d]) if kind == DATA_SHUFFLED else raw)
    return {n: out[n] for n, _, _ in listing}, meta


def _decode_codes(sections: _Sections, codes_listing: list[tuple[str, list[int]]],
                  max_raw_bytes: int) -> list[np.ndarray]:
    """int8 arrays of the code tensors, from whichever codes section the blob has."""
    numels = [_numel(s) for _, s in codes_listing]
    if CODES_GROUPED in sections.entries:
        return _decode_pergroup(sections, codes_listing, numels)
    if CODES_PACKED in sections.entries:
        # each tensor takes 1 + ceil(numel * bits / 8) bytes at a width of 1..8 bits
        least = sum(1 + layouts.packed_size(k, 1) for k in numels)
        most = sum(1 + layouts.packed_size(k, 8) for k in numels)
        if not least <= sections.entries[CODES_PACKED]["raw_len"] <= most:
            raise _fail("codes_packed", f"it declares {sections.entries[CODES_PACKED]['raw_len']:,} raw bytes, "
                                        f"the index lists codes that pack into {least:,} to {most:,}")
        raw = sections.raw(CODES_PACKED)
        arrays, pos = [], 0
        for (n, s), numel in zip(codes_listing, numels):
            b = raw[pos] if pos < len(raw) else 0  # each tensor: its code width (1 byte), then the packed codes
            size = layouts.packed_size(numel, b)
            if not 1 <= b <= 8 or pos + 1 + size > len(raw):
                raise _fail("codes_packed", f"tensor '{n}' does not fit")
            arrays.append(layouts.unpack_bits(raw[pos + 1 : pos + 1 + size], b, numel).reshape(s))
            pos += 1 + size
        if pos != len(raw):
            raise _fail("codes_packed", "stray bytes")
        return arrays
    e = sections.entries[CODES]
    sections.expect(CODES, sum(numels), "codes")  # one code per byte, also what rANS decodes to
    if e["codec"] == C.RANS:
        model = sections.raw(RANS_MODEL)
        try:
            arrays = rans.decode_codes(model, sections.stored[CODES], [s for _, s in codes_listing], e["a"], e["b"],
                                       max_symbols=max_raw_bytes)
        except rans.RansError as err:
            raise _fail("codes", str(err)) from None
        sections.check(CODES, b"".join(a.tobytes() for a in arrays))
        return arrays
    raw = sections.raw(CODES)
    if len(raw) != sum(numels):
        raise _fail("codes", f"{len(raw)} bytes for {sum(numels)} codes")
    offsets = np.cumsum([0, *numels])
    return [np.frombuffer(raw, np.int8, count=k, offset=int(o)).reshape(s)
            for (_, s), k, o in zip(codes_listing, numels, offsets)]


def _decode_pergroup(sections: _Sections, codes_listing: list[tuple[str, list[int]]],
                     numels: list[int]) -> list[np.ndarray]:
    """int8 arrays of the code tensors from ROW_ORDER + CODES_GROUPED (see `_encode_pergroup`)."""
    is_grouped = [pergroup.grouped(n, s) for n, s in codes_listing]
    sections.expect(ROW_ORDER, sum(2 * s[0] for (_, s), g in zip(codes_listing, is_grouped) if g), "row orders")
    sections.expect(CODES_GROUPED, sum(numels), "codes")
    orders, raw = sections.raw(ROW_ORDER), sections.raw(CODES_GROUPED)
    out: dict[int, np.ndarray] = {}
    pos = opos = 0
    for i, ((n, s), g) in enumerate(zip(codes_listing, is_grouped)):
        if not g:
            continue
        try:
            out[i] = pergroup.restore(orders[opos : opos + 2 * s[0]], raw[pos : pos + numels[i]], s[0], s[1])
        except ValueError as err:
            raise _fail("row_order", f"tensor '{n}': {err}") from None
        opos += 2 * s[0]
        pos += numels[i]
    for i, ((_, s), g) in enumerate(zip(codes_listing, is_grouped)):
        if not g:
            out[i] = np.frombuffer(raw, np.int8, count=numels[i], offset=pos).reshape(s)
            pos += numels[i]
    return [out[i] for i in range(len(codes_listing))]
