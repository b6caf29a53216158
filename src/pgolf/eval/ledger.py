"""The score ledger: an append-only record of every scored position, from which val_bpb is computed.

One entry per chunk, committed in stream order: its position range [start, end) (position p
predicts token p + 1), the token count, the fp64 sum of the per-token NLL (nats; an exactly
rounded `math.fsum`, so it does not depend on summation order), the byte sum of its targets, the
sha256 of the per-token losses (fp32, little-endian), the parameter checksums before and after
the chunk was scored, and the adaptation steps that ran after it, each with the position spans
whose targets it trained on, its epoch and lr. The writer refuses what the rules forbid:

- a commit that does not start exactly where the last one ended (a second score of a position,
  rules TTT-4; an overlap or a gap, MET-4);
- a commit whose parameters changed while it was scored (TTT-1);
- an adaptation step over a span that is not yet committed (TTT-1, TTT-8).

Serialized as JSONL (a header line, one line per chunk, a summary line). `check_ledger` re-checks
a serialized ledger from its text alone: coverage of every position exactly once, parameters
unchanged during scoring and between entries that did not adapt, every step inside the prefix
committed before it, and the summary equal to the sums (what `pgolf verify` runs).

Stored compressed (`ledger.jsonl.zst`); `decode_ledger` turns the stored bytes into text, bounded:
decoding stops at MAX_LEDGER_BYTES, and `parse_ledger` refuses a line over MAX_LINE_CHARS before
json.loads builds its objects, so a small forged file cannot take gigabytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pgolf.bounded import OutputLimitError, human_bytes, iter_bounded
from pgolf.errors import ArtifactError, LegalityError

FORMAT = "pgolf.ledger"
VERSION = 1
LN2 = math.log(2.0)
# How far a claimed val_bpb may sit from the one recomputed from the ledger (rules MET-1: 1e-6).
BPB_TOLERANCE = 1e-9
# Reading bounds. A chunk line is ~450 bytes plus ~22 per span its adaptation steps trained on; the
# challenge's 62M-token validation set in chunks of 2,048 positions (16x finer than the records'
# 32,768) is ~30K lines of at most a few KB, ~60 MB: 256 MiB in all leaves 4x. One line holds one
# chunk's steps: a single chunk over the whole set, 3 epochs of 32-span steps, is ~2 MB of spans;
# 16 MiB a line leaves 8x (json.loads builds ~10x a line's text in objects).
MAX_LEDGER_BYTES = 256 << 20
MAX_LINE_CHARS = 16 << 20
_RECREATE = "re-create it with `pgolf ttt-eval`"


def loss_digest(losses: np.ndarray) -> str:
    """sha256 of per-token losses as little-endian fp32 bytes (what each ledger entry records)."""
    return hashlib.sha256(np.ascontiguousarray(losses, dtype="<f4").tobytes()).hexdigest()


def exact_sum(values: np.ndarray) -> float:
    """The correctly rounded fp64 sum (independent of order, hence of ranks and batching)."""
    return math.fsum(np.asarray(values, dtype=np.float64).tolist())


@dataclasses.dataclass(frozen=True)
class AdaptStep:
    """One optimizer step after a chunk: the position spans [a, b) whose targets it trained on.

    `committed` is the ledger's committed end when the step ran: every span ends at or before it.
    """

    spans: tuple[tuple[int, int], ...]
    epoch: int | None
    lr: float | None
    committed: int

    def to_dict(self) -> dict[str, Any]:
        return {"spans": [list(s) for s in self.spans], "epoch": self.epoch, "lr": self.lr,
                "committed": self.committed}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AdaptStep:
        return cls(tuple((int(a), int(b)) for a, b in raw["spans"]), raw.get("epoch"), raw.get("lr"),
                   int(raw["committed"]))


@dataclasses.dataclass
class LedgerEntry:
    """One committed chunk. `steps` grows while the adapter trains on committed spans after it."""

    index: int
    start: int
    end: int
    count: int
    nll_sum: float
    byte_sum: int
    loss_sha256: str
    params_before: str
    params_after: str
    reset: bool = False  # the adapter was reset to its initial state just before this entry was scored
    # The adapter dropped part of its state just before this entry (a new document under doc_windows: the
    # phased LoRA zeroes its B factors and optimizer moments); what it kept came from recorded steps.
    partial_reset: bool = False
    steps: list[AdaptStep] = dataclasses.field(default_factory=list)
    adapt: str = "none"  # what followed: "adapted", "none", or why not ("last", "deadline", ...)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["steps"] = [s.to_dict() for s in self.steps]
        if not self.partial_reset:  # written only where it happened (ledgers of other evals are unchanged)
            del d["partial_reset"]
        return {"kind": "chunk", **d}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LedgerEntry:
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in raw.items() if k in names}
        fields["steps"] = [AdaptStep.from_dict(s) for s in raw.get("steps", [])]
        return cls(**fields)


class ScoreLedger:
    """Append-only ledger of a scoring run over `num_positions` positions.

    `params_initial` is the parameter checksum before anything was scored (the first entry and every
    entry after a reset must start from it); `meta` goes into the header line and must be JSON-ready.
    """

    def __init__(self, num_positions: int, params_initial: str, meta: Mapping[str, Any] | None = None):
        if num_positions < 1:
            raise ValueError("a ledger needs at least one position")
        self.num_positions = int(num_positions)
        self.params_initial = params_initial
        self.meta = dict(meta or {})
        self._entries: list[LedgerEntry] = []

    # ------------------------------------------------------------------ state

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._entries)

    @property
    def committed_end(self) -> int:
        """Positions [0, committed_end) are scored and committed; nothing beyond may be trained on."""
        return self._entries[-1].end if self._entries else 0

    @property
    def complete(self) -> bool:
        return self.committed_end == self.num_positions

    # ------------------------------------------------------------------ writing

    def commit(self, start: int, end: int, losses: np.ndarray, target_bytes: np.ndarray,
               params_before: str, params_after: str, reset: bool = False,
               partial_reset: bool = False) -> LedgerEntry:
        """Commit the scores of positions [start, end): fp32 `losses` and int `target_bytes`, one per position.

        `reset`: the adapter was reset to its initial state just before (document-independent mode);
        `partial_reset`: it dropped part of its state (doc_windows mode, a new document).
        """
        start, end = int(start), int(end)
        if start != self.committed_end:
            what = "scored again" if start < self.committed_end else "skipped"
            raise LegalityError(
                f"ledger commit of positions [{start}, {end}) does not start at the committed end "
                f"{self.committed_end}: positions would be {what} (rules TTT-4, MET-4)")
        if not start < end <= self.num_positions:
            raise LegalityError(f"ledger commit [{start}, {end}) is empty or runs past the stream's "
                                f"{self.num_positions} positions")
        losses = np.asarray(losses)
        target_bytes = np.asarray(target_bytes)
        if losses.shape != (end - start,) or target_bytes.shape != (end - start,):
            raise LegalityError(f"ledger commit [{start}, {end}) has {losses.shape} losses and "
                                f"{target_bytes.shape} byte counts, expected one per position")
        if params_before != params_after:
            raise LegalityError(f"parameters changed while positions [{start}, {end}) were scored "
                                f"({params_before} -> {params_after}): scoring must not adapt (rules TTT-1)")
        if not np.isfinite(losses).all():
            raise LegalityError(f"non-finite loss among positions [{start}, {end}): the scorer is broken")
        entry = LedgerEntry(
            index=len(self._entries), start=start, end=end, count=end - start,
            nll_sum=exact_sum(losses), byte_sum=int(np.asarray(target_bytes, dtype=np.int64).sum()),
            loss_sha256=loss_digest(losses), params_before=params_before, params_after=params_after, reset=reset,
            partial_reset=bool(partial_reset))
        self._entries.append(entry)
        return entry

    def record_step(self, spans: Sequence[tuple[int, int]], epoch: int | None, lr: float | None) -> AdaptStep:
        """Record an adaptation step after the last commit; refuses any span not yet committed."""
        if not self._entries:
            raise LegalityError("adaptation before any position was scored (rules TTT-1)")
        spans = tuple((int(a), int(b)) for a, b in spans)
        for a, b in spans:
            if not 0 <= a < b <= self.committed_end:
                raise LegalityError(f"adaptation on positions [{a}, {b}) but only [0, {self.committed_end}) "
                                    f"are scored: the adapter may train only on committed spans (rules TTT-1)")
        step = AdaptStep(spans, epoch, None if lr is None else float(lr), self.committed_end)
        self._entries[-1].steps.append(step)
        self._entries[-1].adapt = "adapted"
        return step

    def mark(self, reason: str) -> None:
        """Say why the last entry was not followed by adaptation ("last", "deadline", ...)."""
        assert self._entries and not self._entries[-1].steps
        self._entries[-1].adapt = reason

    # ------------------------------------------------------------------ totals

    def totals(self) -> tuple[float, int, int]:
        """(sum of NLL in nats, scored positions, target bytes) over the committed entries."""
        return (math.fsum(e.nll_sum for e in self._entries), sum(e.count for e in self._entries),
                sum(e.byte_sum for e in self._entries))

    def summary(self) -> dict[str, Any]:
        """val_loss (nats per target), val_bpb, val_tokens (targets), val_bytes: computed from the entries."""
        nll, count, num_bytes = self.totals()
        return {
            "kind": "summary",
            "val_loss": nll / count if count else float("nan"),
            "val_bpb": nll / (LN2 * num_bytes) if num_bytes else float("nan"),
            "val_tokens": count,
            "val_bytes": num_bytes,
            "nll_sum": nll,
            "num_chunks": len(self._entries),
            "adapted_chunks": sum(1 for e in self._entries if e.steps),
            "adapt_steps": sum(len(e.steps) for e in self._entries),
        }

    # ------------------------------------------------------------------ serialization

    def header(self) -> dict[str, Any]:
        return {"kind": "header", "format": FORMAT, "version": VERSION, "num_positions": self.num_positions,
                "params_initial": self.params_initial, **self.meta}

    def lines(self) -> Iterable[str]:
        yield json.dumps(self.header(), sort_keys=True)
        for entry in self._entries:
            yield json.dumps(entry.to_dict(), sort_keys=True)
        yield json.dumps(self.summary(), sort_keys=True)

    def to_jsonl(self) -> str:
        """The whole ledger as JSONL text (header, one line per chunk, summary)."""
        return "\n".join(self.lines()) + "\n"


# ----------------------------------------------------------------------------- re-checking


@dataclasses.dataclass(frozen=True)
class LedgerCheck:
    """What `check_ledger` found: the recomputed metric and every problem (empty = the ledger holds)."""

    problems: tuple[str, ...]
    val_loss: float
    val_bpb: float
    val_tokens: int
    val_bytes: int
    num_chunks: int
    header: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_bad(self) -> None:
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise LegalityError(f"score ledger fails its check: {self.problems[0]}{more}")


def decode_ledger(data: bytes | bytearray | memoryview, codec: str | None = "zstd", *,
                  max_bytes: int = MAX_LEDGER_BYTES) -> str:
    """The JSONL text of a stored ledger: `data` compressed with `codec` ("zstd", as ttt-eval
    writes it; None for plain text), decoded at most `max_bytes` far.

    Raises ArtifactError (one line) when the data decodes to more than `max_bytes`, does not
    decode, or is not UTF-8. A caller that checks the file's sha256 does so before calling this.
    """
    out = io.BytesIO()
    try:
        if codec is None:
            if len(data) > max_bytes:
                raise OutputLimitError("plain", max_bytes)
            out.write(data)
        else:
            for piece in iter_bounded(data, codec, max_bytes):
                out.write(piece)
    except OutputLimitError:
        raise ArtifactError(f"score ledger expands beyond {human_bytes(max_bytes)}, more than any pgolf ledger "
                            "holds (the file is corrupt or was not made by `pgolf ttt-eval`); refusing to decode it",
                            _RECREATE) from None
    except ValueError as e:
        raise ArtifactError(f"score ledger does not decode ({e})", _RECREATE) from None
    try:
        return out.getvalue().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArtifactError(f"score ledger is not UTF-8 text ({e.reason} at byte {e.start:,})", _RECREATE) from None


def parse_ledger(text: str) -> tuple[dict[str, Any], list[LedgerEntry], dict[str, Any] | None]:
    """(header, entries, summary or None) from JSONL text; malformed text is an ArtifactError.

    A line longer than MAX_LINE_CHARS is refused before it is parsed.
    """
    header: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    entries: list[LedgerEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > MAX_LINE_CHARS:
            raise ArtifactError(f"score ledger line {number} is {len(line):,} characters long, more than the "
                                f"{MAX_LINE_CHARS:,} a pgolf ledger line holds (the file is corrupt or was not "
                                "made by `pgolf ttt-eval`)", _RECREATE)
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            kind = raw["kind"]
            if kind == "header":
                header = raw
            elif kind == "chunk":
                entries.append(LedgerEntry.from_dict(raw))
            elif kind == "summary":
                summary = raw
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"score ledger line {number} is malformed ({e})", _RECREATE) from None
    if header is None or header.get("format") != FORMAT:
        raise ArtifactError("score ledger has no pgolf.ledger header line", _RECREATE)
    if int(header.get("version", 0)) > VERSION:
        raise ArtifactError(f"score ledger version {header.get('version')} is newer than this pgolf reads "
                            f"({VERSION})", "upgrade pgolf")
    return header, entries, summary


def check_ledger(text: str, *, num_positions: int | None = None, val_bytes: int | None = None,
                 reported_bpb: float | None = None, tolerance: float = BPB_TOLERANCE) -> LedgerCheck:
    """Re-check a serialized ledger from its text alone (what `verify` runs).

    num_positions / val_bytes: the expected coverage and byte total from the data manifest
    (N - 1 and `val_bytes`); by default the header's. reported_bpb: a claimed val_bpb to compare.
    """
    header, entries, summary = parse_ledger(text)
    problems: list[str] = []
    expected_positions = int(num_positions if num_positions is not None else header["num_positions"])
    if num_positions is not None and int(header["num_positions"]) != num_positions:
        problems.append(f"header covers {header['num_positions']} positions, the data has {num_positions}")

    cursor = 0
    for i, e in enumerate(entries):
        where = f"entry {i} [{e.start}, {e.end})"
        if e.index != i:
            problems.append(f"{where} has index {e.index}: entries are out of order")
        if e.start != cursor:
            problems.append(f"{where} starts at {e.start}, expected {cursor}: "
                            + ("positions scored twice (TTT-4)" if e.start < cursor else "a gap (MET-4)"))
        if e.count != e.end - e.start or e.count <= 0:
            problems.append(f"{where} has count {e.count}")
        if e.params_before != e.params_after:
            problems.append(f"{where}: parameters changed while it was scored (TTT-1)")
        if (i == 0 or e.reset) and e.params_before != header.get("params_initial"):
            problems.append(f"{where}: scored from parameters other than the initial ones"
                            + (" after a reset" if i else ""))
        elif i > 0 and not (e.reset or e.partial_reset) and not entries[i - 1].steps \
                and entries[i - 1].params_after != e.params_before:
            problems.append(f"{where}: parameters changed after entry {i - 1} without a recorded adaptation step")
        for step in e.steps:
            if step.committed != e.end:
                problems.append(f"{where}: a step claims committed end {step.committed}, the entry ends at {e.end}")
            for a, b in step.spans:
                if not 0 <= a < b <= e.end:
                    problems.append(f"{where}: adaptation on [{a}, {b}) reaches past the committed end {e.end} (TTT-1)")
        if e.steps and e.end == expected_positions:
            problems.append(f"{where}: adaptation after the last chunk (the last chunk is never adapted on)")
        cursor = max(cursor, e.end)
    if cursor != expected_positions:
        problems.append(f"entries cover [0, {cursor}), the stream has {expected_positions} positions (MET-4)")

    nll = math.fsum(e.nll_sum for e in entries)
    count = sum(e.count for e in entries)
    num_bytes = sum(e.byte_sum for e in entries)
    val_loss = nll / count if count else float("nan")
    val_bpb = nll / (LN2 * num_bytes) if num_bytes else float("nan")
    if val_bytes is not None and num_bytes != val_bytes:
        problems.append(f"entries sum to {num_bytes} bytes, the data manifest says {val_bytes} (MET-1)")
    if summary is None:
        problems.append("no summary line (the run did not finish)")
    else:
        for key, value in (("val_bpb", val_bpb), ("val_loss", val_loss)):
            if not math.isclose(float(summary.get(key, math.nan)), value, rel_tol=0, abs_tol=tolerance):
                problems.append(f"summary {key} {summary.get(key)} differs from the entries' {value}")
        if summary.get("val_tokens") != count or summary.get("val_bytes") != num_bytes:
            problems.append("summary token or byte count differs from the entries'")
    if reported_bpb is not None and not math.isclose(reported_bpb, val_bpb, rel_tol=0, abs_tol=tolerance):
        problems.append(f"reported val_bpb {reported_bpb} differs from the ledger's {val_bpb} (TTT-2, STAT-4)")
    return LedgerCheck(tuple(problems), val_loss, val_bpb, count, num_bytes, len(entries), header)
