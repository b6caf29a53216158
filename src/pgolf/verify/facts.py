"""Recomputations `verify` runs on arrays the stage reads from disk (pure: arrays in, facts out).

- `data_facts`: the BPB denominator both ways (lookup tables rebuilt from the tokenizer vs the byte
  sidecar), per-document decode checks, <unk> counts, document starts (rules MET-1..3, DATA-1); for CaseOps
  data the tables do not apply: control tokens against the transform's charges and the decoded recount.
- `caseops_recount`: the CaseOps sidecar re-derived from the raw val documents (MET-1..3).
- `document_overlap` / `document_overlap_by_source`: val documents found verbatim in training or
  calibration shards (DATA-2, DATA-7).
- `paid_prefix`: sampled val n-grams searched in the decoded model tensors (DATA-4 heuristic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np

from pgolf.data import bpb, caseops
from pgolf.errors import PgolfError
from pgolf.verify.evidence import DataFacts, PaidPrefixFacts

MAX_EXAMPLES = 5


def document_bounds(tokens: np.ndarray, bos_id: int) -> np.ndarray:
    """[D, 2] (start, end) of each document: a document starts at every BOS (and at 0 if there is none)."""
    starts = np.flatnonzero(np.asarray(tokens) == bos_id).astype(np.int64)
    if starts.size == 0 or starts[0] != 0:
        starts = np.concatenate(([0], starts))
    ends = np.concatenate((starts[1:], [len(tokens)]))
    return np.stack([starts, ends], axis=1)


def data_facts(tokens: np.ndarray, sidecar: np.ndarray | None, sp=None, *, bos_id: int = 1,
               transform: str = "none") -> DataFacts:
    """Re-count the validation data.

    tokens [N]: the val stream in shard order; sidecar [N] or None: bytes each token adds to the
    normalized text (entry 0 is never a target; CaseOps data: the original text's bytes); sp: the
    SentencePiece processor of the data's tokenizer.model, or None. The denominator B is the sum over
    targets, i.e. over tokens[1:]. `transform`: the data manifest's ("caseops": see `_caseops_facts`).
    """
    tokens = np.asarray(tokens)
    n = int(tokens.shape[0])
    bos_positions = np.flatnonzero(tokens == bos_id).astype(np.int64)
    facts = DataFacts(val_tokens=n, val_docs=int(bos_positions.size), starts_with_bos=bool(n and tokens[0] == bos_id),
                      doc_starts=bos_positions, sidecar_bytes=None, lut_bytes=None, lut_sidecar_mismatch=None)
    side = None
    if sidecar is not None:
        side = np.asarray(sidecar, dtype=np.int64)
        facts.sidecar_bytes = int(side[1:].sum()) if n > 1 else 0
    if sp is None:
        return facts
    facts.vocab_size = int(sp.vocab_size())
    facts.standalone_space = bpb.has_standalone_space(sp)
    facts.unknown_tokens = int((tokens == sp.unk_id()).sum()) if sp.unk_id() >= 0 else 0
    if transform == "caseops":
        return _caseops_facts(facts, tokens, side, sp)
    tables = bpb.build_byte_tables(sp, int(tokens.max()) + 1 if n else 0)
    lut = bpb.lut_stream_bytes(tables, tokens).astype(np.int64)
    facts.lut_bytes = int(lut[1:].sum()) if n > 1 else 0
    if side is not None and side.shape == lut.shape:
        diff = np.flatnonzero(lut[1:] != side[1:]) + 1
        facts.lut_sidecar_mismatch = int(diff.size)
        for p in diff[:MAX_EXAMPLES].tolist():
            tid = int(tokens[p])
            piece = sp.id_to_piece(tid) if tid < sp.vocab_size() else f"<id {tid}>"
            facts.mismatch_examples.append({"position": p, "token": tid, "piece": piece, "lut": int(lut[p]),
                                            "sidecar": int(side[p])})
    if side is not None:
        # Per document: what the sidecar says it adds against the UTF-8 length of decode(ids).
        bounds = document_bounds(tokens, bos_id)
        docs = [tokens[a:b].astype(np.int64).tolist() for a, b in bounds.tolist()]
        texts = sp.decode(docs) if docs else []
        side_sums = np.add.reduceat(side, bounds[:, 0]) if n else np.zeros(0, np.int64)
        decoded = np.array([len(t.encode("utf-8")) for t in texts], dtype=np.int64)
        facts.docs_checked = len(docs)
        facts.docs_decode_mismatch = int((side_sums != decoded).sum())
    return facts


def _caseops_facts(facts: DataFacts, tokens: np.ndarray, side: np.ndarray | None, sp) -> DataFacts:
    """CaseOps data: the lookup-table rule would charge a case-op token its 3 bytes of U+E00x, so it is not
    used. Instead: every control token's sidecar entry against what the transform charges (0; 3 for an escaped
    literal), and the targets' bytes by decoding the tokens and inverting the transform (`decoded_bytes`: the
    normalized text, which differs from the sidecar's raw bytes where the normalizer collapsed whitespace)."""
    facts.transform = "caseops"
    try:
        ctl = caseops.control_ids(sp, "the data's tokenizer.model")
    except caseops.CaseOpsError as e:
        facts.transform_error = e.message
        return facts
    n = int(tokens.shape[0])
    decoded = caseops.decoded_original_bytes(bpb.build_piece_table(sp), tokens, ctl) if n else np.zeros(0, np.int64)
    facts.decoded_bytes = int(decoded[1:].sum()) if n > 1 else 0
    charge = caseops.control_charges(tokens, ctl)
    charge[:1] = -1  # entry 0 is never a target
    is_ctl = charge >= 0
    facts.control_tokens = int(is_ctl.sum())
    if side is not None and side.shape == charge.shape:
        bad = np.flatnonzero(is_ctl & (side != charge))
        facts.control_mismatch = int(bad.size)
        for p in bad[:MAX_EXAMPLES].tolist():
            facts.control_examples.append({"position": p, "token": int(tokens[p]), "piece": sp.id_to_piece(int(tokens[p])),
                                           "charge": int(charge[p]), "sidecar": int(side[p])})
    return facts


def caseops_recount(sp, documents: Iterable[str], tokens: np.ndarray, sidecar: np.ndarray, bos_id: int = 1
                    ) -> tuple[int | None, int, str | None]:
    """Re-derive a CaseOps val split from its raw documents: (bytes charged, documents checked, first problem).

    Each document is transformed, tokenized and its surfaces inverted back to the raw text; its tokens and
    every sidecar entry must be what that gives (`caseops.check_document`). Bytes are over the targets
    (tokens[1:]); None when a problem was found.
    """
    tokens = np.asarray(tokens)
    side = np.asarray(sidecar, dtype=np.int64)
    bounds = document_bounds(tokens, bos_id).tolist()
    total, count = 0, 0
    it = iter(documents)
    for i, (a, b) in enumerate(bounds):
        text = next(it, None)
        if text is None:
            return None, count, f"the val shards hold {len(bounds)} documents, the corpus only {count}"
        try:
            total += caseops.check_document(sp, text, tokens[a:b], side[a:b], doc=i)
        except PgolfError as e:
            return None, count, e.message
        count += 1
    return total, count, None  # every BOS is charged 0: the documents' totals are the targets'


def document_hashes(tokens: np.ndarray, bos_id: int) -> set[bytes]:
    """16-byte digests of every complete document (from one BOS to the next) of a token stream."""
    tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.uint16))
    out: set[bytes] = set()
    for a, b in document_bounds(tokens, bos_id).tolist():
        if tokens[a] == bos_id and b - a > 1:
            out.add(hashlib.blake2b(tokens[a:b].tobytes(), digest_size=16).digest())
    return out


def document_overlap(val_tokens: np.ndarray, train_shards: Iterable[np.ndarray], bos_id: int = 1) -> int:
    """How many val documents occur verbatim (as token sequences) among the training documents.

    Documents straddle shard boundaries, so the shards are scanned as one stream (carrying the
    unfinished document over).
    """
    val = document_hashes(val_tokens, bos_id)
    found: set[bytes] = set()
    carry = np.zeros(0, dtype=np.uint16)
    for shard in train_shards:
        stream = np.concatenate((carry, np.asarray(shard, dtype=np.uint16)))
        last = np.flatnonzero(stream == bos_id)
        cut = int(last[-1]) if last.size else 0
        found |= document_hashes(stream[:cut], bos_id) & val
        carry = stream[cut:]
    found |= document_hashes(carry, bos_id) & val
    return len(found)


def document_overlap_by_source(val_tokens: np.ndarray, sources: Iterable[tuple[str, np.ndarray]],
                               bos_id: int = 1) -> tuple[int, dict[str, int]]:
    """(distinct val documents found, {source name: val documents found in it}) over named token
    streams (training shards, calibration shards), scanned as one stream like `document_overlap`; a
    document straddling two sources is counted in the one where it ends."""
    val = document_hashes(val_tokens, bos_id)
    found: set[bytes] = set()
    per: dict[str, int] = {}
    carry = np.zeros(0, dtype=np.uint16)
    name = ""
    for name, shard in sources:
        stream = np.concatenate((carry, np.asarray(shard, dtype=np.uint16)))
        last = np.flatnonzero(stream == bos_id)
        cut = int(last[-1]) if last.size else 0
        hit = document_hashes(stream[:cut], bos_id) & val
        if hit:
            per[name] = per.get(name, 0) + len(hit)
        found |= hit
        carry = stream[cut:]
    hit = document_hashes(carry, bos_id) & val
    if hit:
        per[name] = per.get(name, 0) + len(hit)
    return len(found | hit), per


# ----------------------------------------------------------------------------- paid prefix (DATA-4)

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial n-gram hash (mod 2**64)
_CHUNK = 1 << 22


def ngram_hashes(values: np.ndarray, n: int) -> np.ndarray:
    """Hash of every length-n window of `values` (any integer array), mod 2**64: uint64 [len - n + 1]."""
    v = np.asarray(values).reshape(-1).astype(np.int64).view(np.uint64)
    m = v.shape[0] - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    out = np.empty(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in range(0, m, _CHUNK):  # Horner over the window, a chunk of windows at a time
            k = min(_CHUNK, m - c)
            h = np.zeros(k, dtype=np.uint64)
            for j in range(n):
                h *= _BASE
                h += v[c + j : c + j + k]
            out[c : c + k] = h
    return out


def sampled_ngrams(tokens: np.ndarray, n: int, stride: int, min_distinct: int = 4) -> np.ndarray:
    """Hashes of the val n-grams starting every `stride` tokens, skipping near-constant ones
    (fewer than `min_distinct` distinct tokens), which a run of equal weights could match by chance."""
    tokens = np.asarray(tokens).astype(np.int64)
    starts = np.arange(0, tokens.shape[0] - n + 1, stride)
    if starts.size == 0:
        return np.zeros(0, dtype=np.uint64)
    grams = np.lib.stride_tricks.sliding_window_view(tokens, n)[starts]
    srt = np.sort(grams, axis=1)
    distinct = 1 + (np.diff(srt, axis=1) != 0).sum(axis=1)
    grams = grams[distinct >= min_distinct]
    h = np.zeros(grams.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h *= _BASE
            h += grams[:, j].view(np.uint64)
    return np.unique(h)


def _streams(arr: np.ndarray) -> list[np.ndarray]:
    """The integer sequences a tensor could hide tokens in: its values (integer dtypes), else its
    raw bytes read as little-endian uint16 at both byte alignments."""
    arr = np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return [arr.reshape(-1).astype(np.int64)]
    raw = arr.reshape(-1).view(np.uint8)
    out = []
    for offset in (0, 1):
        usable = (raw.shape[0] - offset) // 2 * 2
        if usable >= 2:
            out.append(raw[offset : offset + usable].view("<u2").astype(np.int64))
    return out


def paid_prefix(tensors: Mapping[str, np.ndarray], val_tokens: np.ndarray, n: int = 32,
                stride: int = 32) -> PaidPrefixFacts:
    """Search the model's decoded tensors for val n-grams sampled every `stride` tokens.

    Any stored run of at least n + stride - 1 consecutive val tokens contains a sampled n-gram, so a
    stored prefix of val text cannot hide; returns how many sampled n-grams each tensor holds.
    """
    sample = sampled_ngrams(val_tokens, n, stride)
    hits: dict[str, int] = {}
    if sample.size:
        for name in sorted(tensors):
            found = np.zeros(sample.shape[0], dtype=bool)
            for stream in _streams(tensors[name]):
                if stream.shape[0] >= n:
                    found |= np.isin(sample, ngram_hashes(stream, n))
            if found.any():
                hits[name] = int(found.sum())
    return PaidPrefixFacts(ngram=n, sampled=int(sample.shape[0]), hits=hits)
