"""Per-seed records: the numbers a result table, the statistics and submission.json report.

Every number comes from the evidence itself: the score from the ledger (recomputed, not the eval's
claim), sizes from the files on disk, times and steps from the stage manifests.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pgolf.verify.evidence import SeedEvidence, first

LN2 = math.log(2.0)


@dataclass(frozen=True)
class LedgerTotals:
    nll_sum: float  # nats, exactly rounded fp64 sum over the entries
    tokens: int  # scored positions
    bytes: int  # target bytes

    @property
    def val_loss(self) -> float:
        return self.nll_sum / self.tokens if self.tokens else math.nan

    @property
    def val_bpb(self) -> float:
        return self.nll_sum / (LN2 * self.bytes) if self.bytes else math.nan


def ledger_totals(seed: SeedEvidence) -> LedgerTotals | None:
    led = seed.ledger
    if led is None or led.error is not None or not led.entries:
        return None
    return LedgerTotals(math.fsum(e.nll_sum for e in led.entries), sum(e.count for e in led.entries),
                        sum(e.byte_sum for e in led.entries))


@dataclass(frozen=True)
class SeedRecord:
    """One seed's reported numbers (None where the evidence lacks them)."""

    label: str
    seed: int | None
    val_loss: float | None
    val_bpb: float | None
    val_tokens: int | None
    val_bytes: int | None
    artifact_bytes: int | None  # code + model, measured on disk
    bytes_code: int | None
    bytes_model: int | None
    steps: int | None
    train_time_s: float | None
    eval_time_s: float | None
    source: str  # where the score comes from: "ledger" or "eval manifest"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def bytes_per_token(self) -> float | None:
        return self.val_bytes / self.val_tokens if self.val_bytes and self.val_tokens else None


def file_bytes(seed: SeedEvidence, kind: str, name: str) -> int | None:
    stage = seed.stage(kind)
    fact = stage.file(name) if stage is not None else None
    return fact.bytes if fact is not None else None


def seed_record(seed: SeedEvidence) -> SeedRecord:
    totals = ledger_totals(seed)
    ev = seed.stage("eval")
    em = ev.metrics if ev is not None else {}
    loss: float | None
    bpb: float | None
    tokens: int | None
    nbytes: int | None
    if totals is not None:
        loss, bpb, tokens, nbytes, source = totals.val_loss, totals.val_bpb, totals.tokens, totals.bytes, "ledger"
    else:
        loss, bpb = em.get("val_loss"), em.get("val_bpb")
        tokens, nbytes, source = em.get("val_tokens"), em.get("val_bytes"), "eval manifest"
    code = file_bytes(seed, "pack", "train_gpt.py")
    model = file_bytes(seed, "pack", "model.bin")
    train = seed.stage("train")
    tm = train.metrics if train is not None else {}
    tt = train.timing if train is not None else {}
    eval_time = first(em, "eval_time_s", default=first(ev.timing, "eval_time_s") if ev is not None else None)
    return SeedRecord(
        label=seed.label, seed=seed.seed, val_loss=loss, val_bpb=bpb, val_tokens=tokens, val_bytes=nbytes,
        artifact_bytes=code + model if code is not None and model is not None else None, bytes_code=code,
        bytes_model=model, steps=tm.get("steps"),
        train_time_s=first(tt, "train_time_s", default=tm.get("train_time_s")),
        eval_time_s=eval_time, source=source)
