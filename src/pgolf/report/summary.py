"""What one run's artifacts say, as plain data: loss curves, val_bpb at each stage, sizes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from pgolf.report.budget import Budget


@dataclasses.dataclass(frozen=True)
class Curves:
    """Loss curves from a train stage's metrics.jsonl (losses in nats per token).

    train: (step, train_loss) of the logged steps. val: (step, val_loss, val_bpb) of every
    validation, the last one of the saved weights (`final_weights`: final, ema or swa).
    """

    train: tuple[tuple[int, float], ...]
    val: tuple[tuple[int, float, float | None], ...]
    final_weights: str | None = None


def loss_curves(events: Iterable[Mapping[str, Any]]) -> Curves:
    """The train and val loss curves of metrics.jsonl events (`{"event": "step" | "val", ...}`)."""
    train: list[tuple[int, float]] = []
    val: list[tuple[int, float, float | None]] = []
    final = None
    for e in events:
        if e.get("event") == "step" and e.get("train_loss") is not None:
            train.append((int(e["step"]), float(e["train_loss"])))
        elif e.get("event") == "val" and e.get("val_loss") is not None:
            bpb = e.get("val_bpb")
            val.append((int(e["step"]), float(e["val_loss"]), float(bpb) if bpb is not None else None))
            if e.get("weights") not in (None, "live"):
                final = str(e["weights"])
    return Curves(tuple(train), tuple(val), final)


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """One run as its manifests describe it. Stage dicts are the manifests' `metrics` (None: stage absent).

    label: how the run is named in tables and legends; path: its directory; seed: the training seed.
    """

    label: str
    path: str
    seed: int | None = None
    curves: Curves | None = None
    train: Mapping[str, Any] | None = None
    train_config: Mapping[str, Any] | None = None
    quant: Mapping[str, Any] | None = None
    pack: Mapping[str, Any] | None = None
    eval: Mapping[str, Any] | None = None
    budget: Budget | None = None

    @property
    def val_bpb(self) -> float | None:
        """The run's score: the eval stage's val_bpb."""
        return _num(self.eval, "val_bpb")

    @property
    def total_bytes(self) -> int | None:
        value = _num(self.pack, "total_bytes")
        return int(value) if value is not None else None


def _num(metrics: Mapping[str, Any] | None, key: str) -> float | None:
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclasses.dataclass(frozen=True)
class StagePoint:
    """val_bpb measured at one stage: `stage` (float / quantized / the eval mode), what it was measured
    on, and `float_bpb`: the float model's val_bpb on the same tokens when the stage measured it too
    (quantize scores both on its prefix of the validation set)."""

    stage: str
    detail: str
    val_bpb: float
    float_bpb: float | None = None


def stage_bpb(run: RunSummary) -> list[StagePoint]:
    """val_bpb after training (float weights), after quantization (quantize's own check, when it ran
    one) and of the packed artifact (the eval stage): whichever the run has."""
    out: list[StagePoint] = []

    def targets(metrics: Mapping[str, Any] | None, key: str) -> str:
        n = _num(metrics, key)
        return f"{int(n):,} val targets" if n is not None else "val"

    bpb = _num(run.train, "val_bpb")
    if bpb is not None:  # the training loop scores whole windows: the tail of the split is left out
        out.append(StagePoint("float", f"train: {targets(run.train, 'val_tokens')}, plain windows", bpb))
    bpb = _num(run.quant, "val_bpb_quant")
    if bpb is not None:
        out.append(StagePoint("quantized", f"quantize: {targets(run.quant, 'eval_tokens')}, plain windows", bpb,
                              _num(run.quant, "val_bpb_float")))
    plain = _num(run.eval, "plain_val_bpb")  # --compare-plain: the same windows scored without adaptation
    if plain is not None:
        out.append(StagePoint("no TTT", f"ttt-eval: all {targets(run.eval, 'val_tokens')}, sliding, no adaptation",
                              plain))
    bpb = _num(run.eval, "val_bpb")
    if bpb is not None:
        mode = str((run.eval or {}).get("mode", "eval"))
        how = "sliding windows + score-first TTT" if mode == "ttt" else f"{mode} windows"
        out.append(StagePoint(mode, f"ttt-eval: all {targets(run.eval, 'val_tokens')}, {how}", bpb))
    return out
