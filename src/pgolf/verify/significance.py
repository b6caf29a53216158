"""The significance block of `verify` (rules.md §8, STAT-2), built on `pgolf.verify.stats`.

Per-seed val_loss (nats) and val_bpb of the new run against the reference's per-seed val_bpb. The
reference is given in bpb (what records report comparably across tokenizers); its nats are derived
with this run's bytes per token r = sum(bytes) / sum(tokens), so the two units give the same t:
Δnats = Δbpb · ln2 · r. Two tests, both one-sided: the README test (margin 0.005 nats, alpha 0.01)
and the progression test (margin 0, alpha 0.25) that the leaderboard used in practice (#1902).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pgolf.verify.records import SeedRecord
from pgolf.verify.stats import LN2, RECORD_MARGIN_NATS, margin_bpb, mean_std, welch_test

README_ALPHA = 0.01
PROGRESSION_ALPHA = 0.25


def per_seed(records: Sequence[SeedRecord]) -> dict[str, Any]:
    """Per-seed values with their means and sample standard deviations."""
    bpb = [r.val_bpb for r in records if r.val_bpb is not None]
    loss = [r.val_loss for r in records if r.val_loss is not None]
    tokens = sum(r.val_tokens or 0 for r in records)
    nbytes = sum(r.val_bytes or 0 for r in records)
    out: dict[str, Any] = {"n": len(records), "seeds": [r.seed for r in records], "val_bpb": bpb, "val_loss": loss,
                           "bytes_per_token": nbytes / tokens if tokens and nbytes else None}
    for key, values in (("bpb", bpb), ("loss", loss)):
        mean, std = mean_std(values) if values else (None, None)
        out[f"mean_{key}"], out[f"std_{key}"] = mean, std
    return out


def significance(records: Sequence[SeedRecord], reference_bpb: Sequence[float]) -> dict[str, Any]:
    """The statistics block: per-seed values, and with a reference the two tests in nats and bpb.

    `verdict`: PASS (README test), WARN (progression test only), FAIL (neither), or None without a
    reference or with fewer than 2 seeds (`problem` says why).
    """
    block = per_seed(records)
    block.update(reference_bpb=list(reference_bpb), verdict=None, problem=None)
    if not reference_bpb:
        block["problem"] = "no reference given"
        return block
    r = block["bytes_per_token"]
    if len(block["val_bpb"]) < 2 or len(block["val_loss"]) < 2 or r is None:
        block["problem"] = f"{len(block['val_bpb'])} seed(s) with a score: a t-test needs at least 2"
        return block
    ref_bpb = [float(x) for x in reference_bpb]
    ref_loss = [x * LN2 * r for x in ref_bpb]
    tests: dict[str, dict[str, Any]] = {}
    for name, margin, alpha in (("readme", RECORD_MARGIN_NATS, README_ALPHA), ("progression", 0.0, PROGRESSION_ALPHA)):
        nats = welch_test(block["val_loss"], ref_loss, margin, alpha, "nats")
        bpb = welch_test(block["val_bpb"], ref_bpb, margin_bpb(margin, r), alpha, "bpb")
        tests[name] = {"nats": nats.to_dict(), "bpb": bpb.to_dict(), "passed": nats.passed and bpb.passed}
    block.update(reference_loss=ref_loss, margin_nats=RECORD_MARGIN_NATS,
                 margin_bpb=margin_bpb(RECORD_MARGIN_NATS, r), kind=tests["readme"]["nats"]["kind"], tests=tests,
                 delta_nats=tests["readme"]["nats"]["delta"], delta_bpb=tests["readme"]["bpb"]["delta"],
                 nats_note="reference nats derived from its bpb with this run's bytes per token")
    block["verdict"] = ("PASS" if tests["readme"]["passed"] else "WARN" if tests["progression"]["passed"] else "FAIL")
    return block


def describe(block: dict[str, Any]) -> str:
    """One line for the STAT-2 result."""
    t = block["tests"]
    p = lambda x: "0" if x == 0 else f"{x:.3g}"  # noqa: E731
    return (f"Δ {block['delta_nats']:+.5f} nats ({block['delta_bpb']:+.5f} bpb) over {block['n']} seeds vs "
            f"{len(block['reference_bpb'])} reference value(s), {block['kind']}; README test (0.005 nats = "
            f"{block['margin_bpb']:.5f} bpb, p < 0.01): p = {p(t['readme']['nats']['p'])} nats / "
            f"{p(t['readme']['bpb']['p'])} bpb; progression test (p < 0.25): p = {p(t['progression']['nats']['p'])}")


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
