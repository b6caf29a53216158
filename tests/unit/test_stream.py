"""The training token stream: the challenge's order, wrapping, rank spans, and resumable positions."""

import numpy as np
import pytest

from pgolf.data.stream import StreamPosition, TokenBatches, TokenStream
from pgolf.errors import DataError


def _shards(*sizes):
    start = 0
    out = []
    for n in sizes:
        out.append(np.arange(start, start + n, dtype=np.uint16))
        start += n
    return out


def test_take_crosses_shards_and_wraps():
    stream = TokenStream(_shards(5, 0, 3))  # an empty shard is skipped
    np.testing.assert_array_equal(stream.take(4), [0, 1, 2, 3])
    np.testing.assert_array_equal(stream.take(6), [4, 5, 6, 7, 0, 1])
    assert stream.position == StreamPosition(0, 2)
    assert stream.take(3).dtype == np.int64


def test_position_resumes_exactly():
    a = TokenStream(_shards(7, 4))
    a.take(9)
    b = TokenStream(a.shards, a.position)
    np.testing.assert_array_equal(a.take(20), b.take(20))


def test_rank_spans_match_a_single_process_with_more_accumulation():
    """W ranks with grad_accum A/W see the sequences one rank sees with grad_accum A (§2.7)."""
    shards = _shards(1000, 777)
    single = TokenBatches(TokenStream(shards))
    ranks = [TokenBatches(TokenStream(shards), rank=r, world_size=2) for r in range(2)]
    for _ in range(5):  # steps
        one = [single.next_batch(64, 8, 4) for _ in range(4)]
        two = [[b.next_batch(64, 8, 2) for b in ranks] for _ in range(2)]
        flat_two = [xy for micro in two for xy in micro]
        for (x1, y1), (x2, y2) in zip(one, flat_two):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)


def test_batch_shapes_and_shift():
    x, y = TokenBatches(TokenStream(_shards(100))).next_batch(32, 8, 2)
    assert x.shape == y.shape == (2, 8)
    np.testing.assert_array_equal(x.reshape(-1)[1:], y.reshape(-1)[:-1])
    # the span is T + 1 tokens: the next micro-step starts one token after y's last token
    x2, _ = TokenBatches(TokenStream(_shards(100))).next_batch(32, 8, 2)
    assert x2[0, 0] == 0


def test_empty_or_bad_positions_are_data_errors():
    with pytest.raises(DataError, match="no tokens"):
        TokenStream(_shards(0, 0))
    with pytest.raises(DataError, match="outside"):
        TokenStream(_shards(5), StreamPosition(1, 0))
