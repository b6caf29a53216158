"""Training token streams over shards (pure: arrays in, arrays out; the stage memory-maps the files).

The challenge's loader, re-stated (techniques.md §2.7): the train shards are read in sorted order as
one sequential stream that wraps around forever. Each micro-step of a step consumes a contiguous
chunk of `(T + 1) * world_size` tokens, where `T = batch_tokens / (world_size * grad_accum)`; rank r
takes span `[r (T + 1), (r + 1)(T + 1))`, `x = span[:-1]`, `y = span[1:]`, reshaped to (T / L, L).
Sequences cross document boundaries. Because the chunk of one micro-step on W ranks is the chunks of
W micro-steps on one rank laid end to end, a 1-process run with grad_accum 8 and an 8-process run
with grad_accum 1 see exactly the same sequences each step.

The stream's position (shard index, offset) is all the state a checkpoint needs to resume it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pgolf.errors import DataError


@dataclass(frozen=True)
class StreamPosition:
    """Next token to read: `shards[shard][offset]` (offset may equal the shard's length: read on from the next)."""

    shard: int = 0
    offset: int = 0


class TokenStream:
    """Reads the shards in order, wrapping around; `take(n)` returns the next n tokens as int64."""

    def __init__(self, shards: Sequence[np.ndarray], position: StreamPosition = StreamPosition()):
        if not shards or sum(int(s.shape[0]) for s in shards) == 0:
            raise DataError("the training split holds no tokens", "rebuild the data directory with `pgolf data build`")
        if not (0 <= position.shard < len(shards) and 0 <= position.offset <= shards[position.shard].shape[0]):
            raise DataError(f"stream position {position} is outside the {len(shards)} training shards",
                            "the data directory changed since the checkpoint; resume with the same --data")
        self.shards = list(shards)
        self.shard = position.shard
        self.offset = position.offset

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.shard, self.offset)

    def take(self, n: int) -> np.ndarray:
        """The next `n` tokens (int64 [n]), crossing shard ends and wrapping from the last to the first."""
        out = np.empty(n, dtype=np.int64)
        filled = 0
        while filled < n:
            tokens = self.shards[self.shard]
            available = tokens.shape[0] - self.offset
            if available <= 0:
                self.shard = (self.shard + 1) % len(self.shards)
                self.offset = 0
                continue
            k = min(n - filled, available)
            out[filled : filled + k] = tokens[self.offset : self.offset + k]
            self.offset += k
            filled += k
        return out


class TokenBatches:
    """Per-rank (x, y) batches from one shared stream: the challenge's DistributedTokenLoader."""

    def __init__(self, stream: TokenStream, rank: int = 0, world_size: int = 1):
        assert 0 <= rank < world_size
        self.stream = stream
        self.rank = rank
        self.world_size = world_size

    def next_batch(self, batch_tokens: int, seq_len: int, grad_accum: int) -> tuple[np.ndarray, np.ndarray]:
        """One micro-batch for this rank: x, y int64 [T / seq_len, seq_len], y shifted by one token.

        `batch_tokens` is the global number of tokens per optimizer step (all ranks, all micro-steps).
        """
        local = batch_tokens // (self.world_size * grad_accum)
        assert local > 0 and local % seq_len == 0, "batch_tokens must split into whole sequences per micro-step"
        span = local + 1
        chunk = self.stream.take(span * self.world_size)
        mine = chunk[self.rank * span : (self.rank + 1) * span]
        return mine[:-1].reshape(-1, seq_len), mine[1:].reshape(-1, seq_len)
