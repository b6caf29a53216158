"""CaseOps: the lossless case transform of the SP8192 CaseOps records, and its original-byte sidecar (pure).

The transform (#2135's `lossless_caps_caseops_v1`, which is its `lossless_caps_v2` rule set; lineage
PR #1729 / #1736) rewrites ASCII capital letters as lowercase letters plus four private-use control
characters, so a tokenizer can share one set of lowercase subwords across case variants:

- every maximal run of ASCII letters `[A-Za-z]+` is a word; all-lowercase words are unchanged;
- a word of two or more letters, all upper case, becomes ALLCAPS + the lowercased word;
- a word whose first letter alone is upper case (a single capital included) becomes TITLE + lowercased;
- any other mixed-case word becomes (TITLE if its first letter is upper) + its letters lowercased, with
  CAPNEXT before every later letter that was upper case ("iPhone" -> "i" CAPNEXT "phone");
- a control character already in the text is escaped as ESC + itself; nothing else is touched
  (non-ASCII letters keep their case).

`encode` and `decode` are exact inverses, and `decode` accepts only what `encode` produces.

The byte sidecar charges each token the UTF-8 bytes of the ORIGINAL text it stands for, so bits per
byte stay on the untransformed text: a control character costs 0 bytes, an escaped control character
its 3 bytes, any other character its own UTF-8 length (a lowercased capital 1). A token's text is its
SentencePiece *surface*, the span of the (encoded) input it was cut from; surfaces tile the input
except what the tokenizer's normalizer deletes at the start and end of a document (whitespace,
zero-width characters), which no token is charged for; what it deletes or rewrites inside the text
(collapsed spaces, NFKC) is charged to the surrounding token at its original bytes. A token whose surface is empty (the leading pieces of a byte-fallback run, the
first pieces of an NFKC expansion like "½" -> "1⁄2") costs 0 bytes. BOS costs 0 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pgolf.errors import DataError

TITLE = "\ue001"
ALLCAPS = "\ue002"
CAPNEXT = "\ue003"
ESC = "\ue004"
CONTROLS = (TITLE, ALLCAPS, CAPNEXT, ESC)
TRANSFORM_NAME = "lossless_caps_caseops_v1"  # the records' name for this rule set
BOS_ID = 1

_ESCAPE_TABLE = str.maketrans({c: ESC + c for c in CONTROLS})
_WORD = re.compile(r"[A-Za-z]+")
# Lenient single-pass inverse; `decode` then re-encodes to reject anything `encode` cannot produce.
_MARK = re.compile(r"\ue004([\s\S])|\ue002([a-z]+)|[\ue001\ue003]([a-z])")


class CaseOpsError(DataError):
    """Text that is not a valid CaseOps encoding, or tokens/sidecar that do not match their document."""


def _encode_word(m: re.Match[str]) -> str:
    word = m.group(0)
    if word.islower():
        return word
    low = word.lower()
    if len(word) >= 2 and word.isupper():
        return ALLCAPS + low
    head = TITLE if word[0].isupper() else ""
    if not any(c.isupper() for c in word[1:]):
        return head + low
    return head + low[0] + "".join(CAPNEXT + c.lower() if c.isupper() else c for c in word[1:])


def encode(text: str) -> str:
    """The CaseOps form of `text` (only ASCII capitals and the four control characters change)."""
    return _WORD.sub(_encode_word, text.translate(_ESCAPE_TABLE))


def _decode_mark(m: re.Match[str]) -> str:
    escaped, allcaps, capital = m.groups()
    if escaped is not None:
        return escaped
    return (allcaps if allcaps is not None else capital).upper()


def decode_lenient(encoded: str) -> str:
    """The inverse rules applied to text that need not be an exact encoding: a tokenizer's normalized output,
    where NFKC may have made ASCII capitals of other characters ("™" -> "TM") that the strict `decode` rejects."""
    return _MARK.sub(_decode_mark, encoded)


def decode(encoded: str) -> str:
    """The original text of a CaseOps encoding; a malformed encoding is a CaseOpsError at its first bad spot."""
    text = _MARK.sub(_decode_mark, encoded)
    again = encode(text)
    if again != encoded:
        at = next((i for i, (a, b) in enumerate(zip(again, encoded)) if a != b), min(len(again), len(encoded)))
        raise CaseOpsError(f"not a valid CaseOps encoding at character {at}: {encoded[max(0, at - 8):at + 8]!r}",
                           "decode only text produced by caseops.encode")
    return text


def char_original_bytes(encoded: str) -> np.ndarray:
    """int64[len(encoded)]: the original UTF-8 bytes each character of a CaseOps encoding stands for.

    Control characters cost 0, the character after an ESC (an escaped control) and every other
    character its UTF-8 length. The encoding is assumed valid (see `decode`).
    """
    cps = np.frombuffer(encoded.encode("utf-32-le"), dtype="<u4")
    out = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
    is_ctl = (cps >= 0xE001) & (cps <= 0xE004)
    pending_escape = False
    prev = -2
    for i in np.flatnonzero(is_ctl).tolist():  # controls are rare: walk only them
        if pending_escape and prev == i - 1:
            pending_escape = False  # this one is the escaped literal: it keeps its 3 bytes
        else:
            out[i] = 0
            pending_escape = cps[i] == 0xE004
        prev = i
    return out


def surfaces_of(sp, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of `text` and each token's surface as a (begin, end) character span of `text`."""
    try:
        enc = sp.encode(text, out_type="offset_mapping")  # sentencepiece >= 0.2.1
        return list(enc["ids"]), [tuple(o) for o in enc["offsets"]]
    except (ValueError, TypeError):
        pass
    # Older sentencepiece: the immutable proto has byte offsets into the UTF-8 input.
    proto = sp.encode_as_immutable_proto(text)
    raw = text.encode("utf-8")
    ids, spans = [], []
    for p in proto.pieces:
        ids.append(p.id)
        spans.append((len(raw[: p.begin].decode("utf-8")), len(raw[: p.end].decode("utf-8"))))
    return ids, spans


def sidecar_from_spans(encoded: str, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Original bytes of each token given its surface span in the encoded text (int64[len(spans)])."""
    csum = np.concatenate(([0], np.cumsum(char_original_bytes(encoded))))
    if not spans:
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    return csum[arr[:, 1]] - csum[arr[:, 0]]


def surface_original_bytes(surfaces: Sequence[str]) -> list[int]:
    """Original bytes of each surface string, read in order as pieces of one CaseOps encoding.

    The same rule as `sidecar_from_spans` for callers that only have surface strings (a surface may
    end between an ESC and the character it escapes, so the pieces are weighed together).
    """
    weights = char_original_bytes("".join(surfaces))
    bounds = np.cumsum([0] + [len(s) for s in surfaces])
    csum = np.concatenate(([0], np.cumsum(weights)))
    return [int(csum[b]) - int(csum[a]) for a, b in zip(bounds[:-1], bounds[1:])]


def document_tokens(sp, text: str) -> tuple[np.ndarray, np.ndarray]:
    """One document for the shards: BOS + the tokens of `encode(text)`, and the byte sidecar (BOS: 0)."""
    encoded = encode(text)
    ids, spans = surfaces_of(sp, encoded)
    counts = sidecar_from_spans(encoded, spans)
    return (np.array([BOS_ID] + ids, dtype=np.int64),
            np.concatenate(([0], counts)).astype(np.int64))


def check_document(sp, text: str, ids: np.ndarray, counts: np.ndarray, doc: int = 0) -> int:
    """Cross-check one document's tokens and sidecar against its original text; returns its charged bytes.

    - the transform round-trips: decode(encode(text)) == text;
    - `ids` is BOS + the tokenization of encode(text), and `counts` has one entry per id (BOS 0);
    - the token surfaces tile the encoded text, leaving out only what the tokenizer's normalizer deletes
      at its ends (whitespace, zero-width characters), and decoded together with those ends they give
      back `text` exactly;
    - each count is the original bytes of its token's surface, so they sum to the UTF-8 bytes of
      `text` less the uncovered ends.
    Any failure is a CaseOpsError naming document `doc` and the first mismatching token.
    """
    ids = np.asarray(ids, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    where = f"document {doc}"
    encoded = encode(text)
    if decode(encoded) != text:
        raise CaseOpsError(f"{where}: the CaseOps transform does not round-trip", "report this as a bug")
    if ids.shape != counts.shape:
        raise CaseOpsError(f"{where}: {ids.shape[0]} tokens but {counts.shape[0]} sidecar entries",
                           "rebuild the data: tokens and sidecar must be written together")
    if ids.size == 0 or ids[0] != BOS_ID or counts[0] != 0:
        raise CaseOpsError(f"{where}: does not start with BOS (id {BOS_ID}, 0 bytes)", "rebuild the data")
    want_ids, spans = surfaces_of(sp, encoded)
    got = ids[1:]
    if got.size != len(want_ids) or not np.array_equal(got, want_ids):
        k = next((i for i, (a, b) in enumerate(zip(got.tolist(), want_ids)) if a != b), min(got.size, len(want_ids)))
        raise CaseOpsError(f"{where}, token {k + 1}: ids differ from the tokenization of the encoded text "
                           f"({got.size} tokens vs {len(want_ids)})", "rebuild the data with the same tokenizer")
    begin = spans[0][0] if spans else len(encoded)
    end = spans[-1][1] if spans else len(encoded)
    pos = begin
    for k, (a, b) in enumerate(spans):
        if a != pos:
            raise CaseOpsError(f"{where}, token {k + 1}: surface starts at character {a}, expected {pos}",
                               "the tokenizer's surfaces do not tile the text")
        pos = b
    for part in (encoded[:begin], encoded[end:]):
        if part and sp.normalize(part):  # only what the normalizer deletes (edge whitespace, U+200B...) may be left out
            raise CaseOpsError(f"{where}: the tokens leave text uncovered: {part[:16]!r}",
                               "the tokenizer drops text, so its bytes would never be charged")
    if decode(encoded[:begin]) + decode(encoded[begin:end]) + decode(encoded[end:]) != text:
        raise CaseOpsError(f"{where}: the token surfaces do not decode to the original text", "report this as a bug")
    want = sidecar_from_spans(encoded, spans)
    bad = np.flatnonzero(counts[1:] != want)
    if bad.size:
        k = int(bad[0])
        raise CaseOpsError(f"{where}, token {k + 1}: sidecar says {int(counts[k + 1])} original bytes, "
                           f"its surface {encoded[spans[k][0]:spans[k][1]]!r} stands for {int(want[k])}",
                           "rebuild the byte sidecar from the original text")
    total = int(counts.sum())
    uncovered = len(encoded[:begin].encode("utf-8")) + len(encoded[end:].encode("utf-8"))
    if total != len(text.encode("utf-8")) - uncovered:
        raise CaseOpsError(f"{where}: sidecar sums to {total} bytes, the original text has "
                           f"{len(text.encode('utf-8'))} ({uncovered} uncovered)", "rebuild the byte sidecar")
    return total


def check_documents(sp, texts: Sequence[str], tokens: np.ndarray, counts: np.ndarray) -> int:
    """Cross-check a BOS-separated token stream and its sidecar against the documents; total charged bytes."""
    tokens = np.asarray(tokens, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if tokens.shape != counts.shape:
        raise CaseOpsError(f"{tokens.shape[0]} tokens but {counts.shape[0]} sidecar entries",
                           "rebuild the data: tokens and sidecar must be written together")
    starts = np.flatnonzero(tokens == BOS_ID)
    if len(starts) != len(texts) or (tokens.size and (starts.size == 0 or starts[0] != 0)):
        raise CaseOpsError(f"the stream has {len(starts)} documents (BOS at its start: "
                           f"{bool(starts.size and starts[0] == 0)}), expected {len(texts)}",
                           "pass the documents the stream was built from, in order")
    bounds = np.append(starts, tokens.size)
    return sum(check_document(sp, text, tokens[a:b], counts[a:b], doc=i)
               for i, (text, a, b) in enumerate(zip(texts, bounds[:-1], bounds[1:])))


# ----------------------------------------------------------------------------- tokenizers and token streams


def control_ids(sp, name: str = "the tokenizer") -> tuple[int, ...]:
    """Ids of the four control characters (TITLE, ALLCAPS, CAPNEXT, ESC) in a tokenizer trained for CaseOps.

    Each must be one reserved piece that the tokenizer emits for the character alone (#2135's tokenizer
    reserves them as user-defined symbols, ids 4 to 7). A tokenizer without them would spell every case
    mark as three byte-fallback pieces (or <unk>): it was not trained for CaseOps, and is refused.
    """
    ids = []
    for ch, label in zip(CONTROLS, ("TITLE", "ALLCAPS", "CAPNEXT", "ESC")):
        i = sp.piece_to_id(ch)
        if sp.is_unknown(i) or sp.id_to_piece(i) != ch or list(sp.encode(ch)) != [i]:
            raise CaseOpsError(f"{name} has no piece for the CaseOps control character U+{ord(ch):04X} ({label}): "
                               "it was not trained for CaseOps",
                               "pass a CaseOps tokenizer (PR #2135's fineweb_8192_bpe_lossless_caps_caseops_v1_"
                               "reserved.model) or build without --transform caseops")
        ids.append(int(i))
    return tuple(ids)


def control_charges(tokens: np.ndarray, ctl_ids: Sequence[int]) -> np.ndarray:
    """int64[N]: what each control token of a CaseOps token stream is charged, -1 for every other token.

    A control token stands for no original text (0 bytes), except the one right after an active ESC: that
    is an escaped literal control character, its 3 UTF-8 bytes. (Each control is its own piece, so a
    token holds at most one.)
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    out = np.full(tokens.shape[0], -1, dtype=np.int64)
    is_ctl = np.isin(tokens, np.asarray(ctl_ids, dtype=np.int64))
    out[is_ctl] = 0
    esc = int(ctl_ids[3])
    after_esc = np.flatnonzero(is_ctl[1:] & (tokens[:-1] == esc)) + 1
    escaped = -2
    for p in after_esc.tolist():  # rare: literal control characters in the original text
        if escaped != p - 1:  # the ESC at p - 1 is active (not itself an escaped literal)
            out[p] = 3
            escaped = p
    return out


def decoded_original_bytes(table, tokens: np.ndarray, ctl_ids: Sequence[int]) -> np.ndarray:
    """int64[N]: per token, the UTF-8 bytes of the original text recovered by decoding the tokens and inverting
    the transform (`table`: `bpb.build_piece_table(sp)`; entry 0, BOS, is 0).

    This is the text as the tokenizer normalized it: whitespace runs the normalizer collapsed, NFKC forms and
    edge whitespace count as they decode, so it differs from the sidecar's raw bytes wherever normalization
    changed the text. Both splits of a data directory can be counted alike with it (the held-out split has no
    sidecar).
    """
    from pgolf.data import bpb

    tokens = np.asarray(tokens, dtype=np.int64)
    out = bpb.decoded_byte_counts(table, tokens)
    charge = control_charges(tokens, ctl_ids)
    ctl = charge >= 0
    out[ctl] = charge[ctl]
    return out
