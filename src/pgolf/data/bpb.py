"""Exact bits-per-byte accounting (pure: numpy arrays and a SentencePiece processor in, numbers out).

The challenge scores `val_bpb = sum(nll) / (ln 2 * sum(bytes))` where `bytes` are the UTF-8 bytes of
the text *as the tokenizer normalizes it* (NFKC, collapsed whitespace), counted per target token.
pgolf computes that denominator two ways that must agree exactly:

1. The challenge's lookup tables (`build_byte_tables`, the baseline's `build_sentencepiece_luts`):
   base bytes per piece, a leading-'▁' flag and a boundary flag, and for a target `t` after `p`
   `bytes = base[t] + (leading_space[t] and not boundary[p])`.
2. A per-token byte sidecar written at data-build time from the decoded pieces (`decoded_byte_counts`):
   what each token adds to `sp.decode(ids)`, byte-fallback runs decoded together as UTF-8.

Where they disagree (no standalone '▁' piece, lone byte pieces that decode to U+FFFD, <unk> pieces
that decode to ' ⁇ ') `check_document` reports it; nothing silently picks one (rules.md MET-1, MET-2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SPACE_MARK = "\u2581"  # '▁', SentencePiece's escaped space
LN2 = math.log(2.0)

# Piece kinds for the decoded-piece rule.
NORMAL, BYTE, CONTROL, UNKNOWN = 0, 1, 2, 3


@dataclass(frozen=True)
class ByteTables:
    """The challenge's per-token lookup tables, indexed by token id (size >= the tokenizer's vocab)."""

    base_bytes: np.ndarray  # int16[S]: UTF-8 bytes of the piece without its leading '▁'; byte piece 1; specials 0
    leading_space: np.ndarray  # bool[S]: the piece starts with '▁' (worth one space byte unless after a boundary)
    is_boundary: np.ndarray  # bool[S]: control / unknown / unused / padding ids: no space byte after them

    @property
    def size(self) -> int:
        return int(self.base_bytes.shape[0])


def build_byte_tables(sp, size: int | None = None) -> ByteTables:
    """Lookup tables by the challenge's rule (techniques.md §2.6) from SentencePiece's piece APIs."""
    n = sp.vocab_size()
    size = max(n, size or 0)
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=bool)
    boundary = np.ones(size, dtype=bool)
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith(SPACE_MARK):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteTables(base, space, boundary)


def lut_target_bytes(tables: ByteTables, prev_ids: np.ndarray, tgt_ids: np.ndarray) -> np.ndarray:
    """Bytes of each target given its previous token, by the lookup-table rule. Shapes match; int32 out."""
    prev_ids = np.asarray(prev_ids, dtype=np.int64)
    tgt_ids = np.asarray(tgt_ids, dtype=np.int64)
    out = tables.base_bytes[tgt_ids].astype(np.int32)
    out += (tables.leading_space[tgt_ids] & ~tables.is_boundary[prev_ids]).astype(np.int32)
    return out


def lut_stream_bytes(tables: ByteTables, tokens: np.ndarray) -> np.ndarray:
    """Per-token bytes of a token stream by the table rule; entry 0 (never a target) is 0."""
    tokens = np.asarray(tokens)
    out = np.zeros(tokens.shape[0], dtype=np.int32)
    if tokens.shape[0] > 1:
        out[1:] = lut_target_bytes(tables, tokens[:-1], tokens[1:])
    return out


def has_standalone_space(sp) -> bool:
    """A standalone '▁' piece must exist, else spaces fall back to 3 byte pieces and bpb comes out ~20% low (#897)."""
    i = sp.piece_to_id(SPACE_MARK)
    return not sp.is_unknown(i)


# ----------------------------------------------------------------------------- the decoded-piece rule


@dataclass(frozen=True)
class PieceTable:
    """What each id decodes to: kind, bytes of its text ('▁' as a space), leading-space flag, byte value."""

    kind: np.ndarray  # int8[V]: NORMAL / BYTE / CONTROL / UNKNOWN
    text_bytes: np.ndarray  # int32[V]: UTF-8 length of the piece with '▁' -> ' ' (unknown: its surface)
    leading_spaces: np.ndarray  # int32[V]: how many leading spaces the decoded piece starts with
    byte_value: np.ndarray  # int16[V]: the raw byte of a byte-fallback piece, else -1
    all_space: np.ndarray  # bool[V]: the decoded piece is nothing but spaces


def build_piece_table(sp) -> PieceTable:
    n = sp.vocab_size()
    kind = np.zeros(n, dtype=np.int8)
    text_bytes = np.zeros(n, dtype=np.int32)
    lead = np.zeros(n, dtype=np.int32)
    byte_value = np.full(n, -1, dtype=np.int16)
    all_space = np.zeros(n, dtype=bool)
    unk_surface = sp.decode([sp.unk_id()]) if sp.unk_id() >= 0 else ""
    for i in range(n):
        if sp.is_control(i) or sp.is_unused(i):
            kind[i] = CONTROL
        elif sp.is_unknown(i):
            kind[i] = UNKNOWN
            text_bytes[i] = len(unk_surface.encode("utf-8"))
        elif sp.is_byte(i):
            kind[i] = BYTE
            byte_value[i] = int(sp.id_to_piece(i)[3:5], 16)  # '<0xNN>'
        else:
            text = sp.id_to_piece(i).replace(SPACE_MARK, " ")
            text_bytes[i] = len(text.encode("utf-8"))
            lead[i] = len(text) - len(text.lstrip(" "))
            all_space[i] = lead[i] == len(text)
    return PieceTable(kind, text_bytes, lead, byte_value, all_space)


def decoded_byte_counts(table: PieceTable, ids: np.ndarray) -> np.ndarray:
    """Bytes each token of one document adds to `sp.decode(ids)` (first id usually BOS: 0 bytes).

    Follows SentencePiece's decoder: control ids vanish, '▁' becomes a space, spaces at the very
    start of the text are dropped, consecutive byte pieces are decoded together as UTF-8 (an
    invalid sequence becomes U+FFFD, 3 bytes, which is how a lone byte piece can disagree with the
    table rule's 1 byte), and <unk> becomes its surface ' ⁇ '.
    """
    ids = np.asarray(ids, dtype=np.int64)
    kinds = table.kind[ids]
    out = table.text_bytes[ids].astype(np.int64)
    out[kinds == CONTROL] = 0

    # Byte-fallback runs: decode each maximal run together and spread its length over the run.
    is_byte = kinds == BYTE
    if is_byte.any():
        edges = np.flatnonzero(np.diff(np.concatenate(([0], is_byte.astype(np.int8), [0]))))
        for start, end in zip(edges[::2], edges[1::2]):
            raw = bytes(table.byte_value[ids[start:end]].astype(np.uint8).tolist())
            decoded = len(raw.decode("utf-8", errors="replace").encode("utf-8"))
            out[start:end] = 1
            out[end - 1] += decoded - (end - start)  # an invalid run shows up here, on its last piece

    # The decoder strips whitespace at the start of the text: drop leading spaces until the first
    # token that emits anything other than spaces.
    emitting = np.flatnonzero(out > 0)
    for j in emitting:
        if kinds[j] == NORMAL and table.all_space[ids[j]]:
            out[j] = 0
            continue
        if kinds[j] == NORMAL:
            out[j] -= table.leading_spaces[ids[j]]
        break
    return out


def normalized_text(sp, text: str) -> str:
    """The document as the tokenizer normalizes it, '▁' as a space (what `sp.decode(sp.encode(text))` gives)."""
    return sp.normalize(text).replace(SPACE_MARK, " ").lstrip(" ")


def normalized_text_bytes(sp, text: str) -> int:
    """UTF-8 bytes of the document as the tokenizer normalizes it (the true BPB denominator)."""
    return len(normalized_text(sp, text).encode("utf-8"))


# ----------------------------------------------------------------------------- the metric


def bits_per_byte(nll_sum: float, byte_sum: int | float) -> float:
    """val_bpb = sum(nll in nats) / (ln 2 * sum(bytes)); both sums should be float64 / exact ints."""
    if byte_sum <= 0:
        raise ValueError("cannot compute bits per byte over zero bytes")
    return float(nll_sum) / (LN2 * float(byte_sum))


def nats_to_bpb(val_loss: float, tokens: int, byte_sum: int) -> float:
    """Convert mean nats per token to bits per byte for the same scored positions."""
    return val_loss * tokens / (LN2 * byte_sum)
