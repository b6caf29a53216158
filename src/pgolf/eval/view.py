"""What an adapter sees of the validation stream: only spans the score ledger has committed.

The TTT loop never hands the adapter the token stream. After a chunk is scored and committed it
opens a `CommittedView` for the adaptation phase and closes it before the next chunk is scored.
The view gives out copies of token spans, and only spans whose targets are all committed; every
span it gives out is recorded in the ledger with the step that used it. Asking for anything else
(a position not yet scored, a previous document in document-independent mode, or any read once
the view is closed) raises a `LegalityError` (rules TTT-1, TTT-8).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pgolf.errors import LegalityError
from pgolf.eval.dist import World
from pgolf.eval.ledger import ScoreLedger


class CommittedView:
    """Committed token spans of the validation stream, for one adaptation phase.

    A span (a, b) stands for positions [a, b): inputs tokens[a:b], targets tokens[a+1:b+1].
    `floor` is the first position the adapter may read (its document's start in
    document-independent mode, else 0).
    """

    def __init__(self, tokens: torch.Tensor, ledger: ScoreLedger, device: torch.device,
                 world: World = World(), floor: int = 0):
        # The loop passes a buffer holding only the committed prefix (zeros beyond it), so not even this
        # private attribute holds an unscored token; and it is never handed out, only copies of spans.
        self.__tokens = tokens
        self._ledger = ledger
        self._device = device
        self._world = world
        self._floor = floor
        self._pending: list[tuple[int, int]] = []
        self._open = True

    @property
    def committed_end(self) -> int:
        """Positions [floor, committed_end) may be read."""
        return self._ledger.committed_end

    @property
    def floor(self) -> int:
        return self._floor

    def _check(self, a: int, b: int) -> None:
        if not self._open:
            raise LegalityError("the committed view was used outside its adaptation phase "
                                "(an adapter may read tokens only between scoring a chunk and the next)")
        if not a < b:
            raise LegalityError(f"empty or reversed span [{a}, {b})")
        if b > self.committed_end:
            raise LegalityError(f"adapter asked for positions [{a}, {b}) but only [0, {self.committed_end}) "
                                f"are scored: training on unscored tokens is not allowed (rules TTT-1)")
        if a < self._floor:
            raise LegalityError(f"adapter asked for positions [{a}, {b}) before its document's start "
                                f"{self._floor}: document-independent adaptation sees one document (rules TTT-8)")

    def take(self, spans: Sequence[tuple[int, int]], shard: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets [B, T] (int64, on the device) of equal-length committed spans.

        With `shard` (default), `spans` is one global batch and this rank receives its contiguous
        share (possibly empty, [0, T]); all of the batch is checked and recorded.
        """
        spans = [(int(a), int(b)) for a, b in spans]
        if not spans:
            raise LegalityError("take() needs at least one span")
        for a, b in spans:
            self._check(a, b)
        length = spans[0][1] - spans[0][0]
        if any(b - a != length for a, b in spans):
            raise ValueError("spans of one batch must have equal lengths")
        self._pending.extend(spans)
        lo, hi = self._world.share(len(spans)) if shard else (0, len(spans))
        mine = spans[lo:hi]
        if not mine:
            empty = torch.zeros((0, length), dtype=torch.int64, device=self._device)
            return empty, empty.clone()
        rows = torch.stack([self.__tokens[a : b + 1] for a, b in mine]).to(self._device, torch.int64, copy=True)
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

    def step(self, epoch: int | None = None, lr: float | None = None) -> None:
        """Record one optimizer step over the spans taken since the last step."""
        if not self._open:
            raise LegalityError("the committed view was used outside its adaptation phase")
        if self._pending:
            self._ledger.record_step(self._pending, epoch, lr)
            self._pending = []

    def close(self) -> None:
        """End the adaptation phase: spans read but not stepped on are still recorded."""
        if self._open and self._pending:
            self._ledger.record_step(self._pending, None, None)
        self._pending = []
        self._open = False
