"""Which tokens each forward pass sees and which positions it scores (pure numpy).

Vocabulary. The validation stream holds N tokens. Position p in [0, P), P = N - 1, predicts token
p + 1 from tokens 0..p: the positions are the scored targets, and every one of them is scored
(no truncation to a multiple of the window). A *window* is a row `(ctx, start, end)`: the model
reads tokens[ctx:end] and scores positions [start, end) (ctx <= start < end, end - ctx <= L).

Sliding windows over a segment [s, e) of positions (SP8K's canonical form, techniques.md §6.2),
with window L, stride S and context C = L - S: window k starts at s + k*S; window 0 scores
[s, s + L), window k >= 1 scores [s + (k-1)*S + L, s + k*S + L), all clipped to e. So every
position is scored exactly once, by the first window that reaches it, with at least C tokens of
context beyond the first window. Plain evaluation is the special case S = L (non-overlapping).

A segment is the whole stream, or one document in document-independent mode (positions from a
BOS up to and including the position that predicts the next BOS, as PR #77 counts them). Segments
are cut into *chunks* (the ledger's entries, TTT's units); a window that crosses a chunk boundary
is split in two with the same context start, so each position keeps the context it would have
had without chunking, and no forward pass reads a token beyond its chunk's last target.
"""

from __future__ import annotations

import numpy as np


def document_segments(tokens: np.ndarray, bos_id: int) -> np.ndarray:
    """[M, 2] int64 position ranges [start, end) of the documents of a stream of N tokens.

    A document starts at each BOS (token index p holds `bos_id`) and its last position predicts
    the next document's BOS, so the ranges tile [0, N - 1). Tokens before the first BOS, if any,
    form a segment of their own.
    """
    tokens = np.asarray(tokens)
    num_positions = tokens.shape[0] - 1
    assert num_positions >= 1
    bos = np.flatnonzero(tokens[1:num_positions] == bos_id) + 1  # a BOS at index 0 starts the first segment
    starts = np.concatenate(([0], bos)).astype(np.int64)
    ends = np.concatenate((bos, [num_positions])).astype(np.int64)
    return np.stack([starts, ends], axis=1)


def chunk_ranges(segments: np.ndarray, chunk_tokens: int) -> np.ndarray:
    """[K, 3] int64 rows (start, end, segment index): each segment cut into chunks of `chunk_tokens`.

    The last chunk of a segment is shorter when the segment length is not a multiple.
    """
    rows = []
    for i, (s, e) in enumerate(np.asarray(segments, dtype=np.int64)):
        starts = np.arange(s, e, chunk_tokens, dtype=np.int64)
        ends = np.minimum(starts + chunk_tokens, e)
        rows.append(np.stack([starts, ends, np.full_like(starts, i)], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)


def _window_index(rel: np.ndarray | int, seq_len: int, stride: int):
    """Index k of the sliding window that scores the position `rel` positions into its segment."""
    return np.where(np.asarray(rel) < seq_len, 0, (np.asarray(rel) - seq_len) // stride + 1)


def sliding_windows(segment: tuple[int, int], span: tuple[int, int], seq_len: int, stride: int) -> np.ndarray:
    """[W, 3] int64 windows (ctx, start, end) scoring exactly the positions of `span` in `segment`.

    `segment` = (s, e) is the stream or a document, `span` = (a, b) a chunk inside it. The rows are
    ordered, their scored ranges tile [a, b), and each has end - ctx <= seq_len.
    """
    s, e = segment
    a, b = span
    assert s <= a < b <= e and 1 <= stride <= seq_len
    k = np.arange(int(_window_index(a - s, seq_len, stride)), int(_window_index(b - 1 - s, seq_len, stride)) + 1,
                  dtype=np.int64)
    ctx = s + k * stride
    score_start = np.where(k == 0, s, s + (k - 1) * stride + seq_len)
    score_end = np.minimum(s + k * stride + seq_len, e)
    start = np.maximum(score_start, a)
    end = np.minimum(score_end, b)
    return np.stack([ctx, start, end], axis=1)


def chunk_window(segment: tuple[int, int], span: tuple[int, int], seq_len: int) -> np.ndarray:
    """[1, 3] int64: the one window that scores the chunk `span` = (a, b) of `segment` = (s, e) from the
    `seq_len` tokens (at most) that end at its end: (max(s, b - seq_len), a, b). PR #2135's TTT scoring
    (its `_compute_chunk_window`); needs b - a <= seq_len."""
    s, e = segment
    a, b = span
    assert s <= a < b <= e and b - a <= seq_len
    return np.array([[max(s, b - seq_len), a, b]], dtype=np.int64)


def count_windows(num_positions: int, seq_len: int, stride: int) -> int:
    """How many sliding windows cover a flat stream of `num_positions` positions (before chunking)."""
    return int(_window_index(num_positions - 1, seq_len, stride)) + 1
