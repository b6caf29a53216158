"""REPRO-1: the evaluation, re-executed from the packed artifact (`pgolf verify --reproduce`), writes the
claimed ledger. REPRO-2: the training, re-executed from the recorded recipe and data (`--reproduce-train`),
gives the claimed loss curve and the claimed weights (see `train_reproduction`).

Every other check reads the files alone, so a ledger whose per-chunk NLLs were all scaled by 0.95, with
every claim and hash recomputed to match, passes them. The re-execution (`pgolf.stages.verify.reproduce`,
a fresh `pgolf ttt-eval` process on the eval's data with the recorded eval config) is the ground truth;
this check compares its ledger with the claimed one chunk by chunk.

Tolerance. On CPU, in one process, with the same torch build as the claimed eval, scoring is
deterministic: every entry must be bit-identical (ranges, byte sums, the sha256 of the per-token fp32
losses, the exact nll sums and, with TTT, the parameter checksums; the re-execution gets the recorded
`num_threads`). Entries that are not bit-identical but agree within `REL_TOL_FP32` give a WARN (another
CPU's kernels), anything further a FAIL. Otherwise (another torch build,
another machine's kernels, several ranks, a GPU) the per-token losses differ in the last bits: byte
sums and ranges must still be equal, and each chunk's nll sum must agree within `REL_TOL_FP32` (1e-4
relative) for an fp32 eval, or `REL_TOL_BF16` (2e-3 relative) for a bf16-autocast CUDA eval, whose
kernels round differently across GPUs and whose TTT trajectory drifts accordingly. A forgery that
scales NLLs by 0.95 is off by 5e-2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pgolf.eval.ledger import LN2, LedgerEntry
from pgolf.verify.checks.common import Results, n, stage_of
from pgolf.verify.evidence import Evidence, ReproductionFacts, SeedEvidence, TrainReproductionFacts
from pgolf.verify.results import CheckResult, result, violation
from pgolf.verify.rules import INFO, PASS, WARN

RULE = "REPRO-1"
REL_TOL_FP32 = 1e-4  # per chunk, relative, on nll_sum: fp32 on another build or machine
REL_TOL_BF16 = 2e-3  # per chunk, relative, on nll_sum: a bf16-autocast CUDA eval
BPB_EXACT_TOL = 1e-9  # the ledger's own (pgolf.eval.ledger.BPB_TOLERANCE): val_bpb of bit-identical entries
SHOW_CHUNKS = 3  # chunks named in a FAIL


def tolerance(exact: bool, claimed_env: Mapping[str, Any], claimed_cfg: Mapping[str, Any]) -> float:
    """The relative tolerance on each chunk's nll sum (0: bit-identical entries are required)."""
    if exact:
        return 0.0
    bf16 = str(claimed_env.get("device", "")).startswith("cuda") and bool(claimed_cfg.get("autocast", True))
    return REL_TOL_BF16 if bf16 else REL_TOL_FP32


def chunk_diffs(claimed: Sequence[LedgerEntry], fresh: Sequence[LedgerEntry], exact: bool, rel_tol: float,
                until: int | None = None) -> list[tuple[LedgerEntry, LedgerEntry | None, str]]:
    """(claimed entry, reproduced entry, what differs) for every claimed chunk (up to index `until`) that the
    re-execution does not reproduce."""
    out: list[tuple[LedgerEntry, LedgerEntry | None, str]] = []
    for i, c in enumerate(claimed):
        if until is not None and i > until:
            break
        r = fresh[i] if i < len(fresh) else None
        if r is None:
            out.append((c, None, "not reproduced (the fresh ledger has fewer chunks)"))
            continue
        what = []
        if (c.start, c.end, c.count) != (r.start, r.end, r.count):
            what.append(f"range [{r.start}, {r.end})")
        if c.byte_sum != r.byte_sum:
            what.append(f"bytes {n(c.byte_sum)} vs {n(r.byte_sum)}")
        off = f"nll off by {abs(c.nll_sum - r.nll_sum) / max(abs(r.nll_sum), 1e-300):.1e} relative"
        if exact:
            if c.nll_sum != r.nll_sum or c.loss_sha256 != r.loss_sha256:
                what.append(f"per-token losses differ, {off}" if c.nll_sum != r.nll_sum else "per-token losses differ")
            if c.params_before != r.params_before or c.params_after != r.params_after:
                what.append("parameter checksums")
        elif not math.isclose(c.nll_sum, r.nll_sum, rel_tol=rel_tol, abs_tol=0.0):
            what.append(off)
        if what:
            out.append((c, r, ", ".join(what)))
    return out


def _describe(diffs: list[tuple[LedgerEntry, LedgerEntry | None, str]]) -> str:
    parts = []
    for c, r, what in diffs[:SHOW_CHUNKS]:
        fresh = f"{r.nll_sum:.6f}" if r is not None else "-"
        parts.append(f"chunk {c.index} [{n(c.start)}, {n(c.end)}): claimed nll {c.nll_sum:.6f} vs reproduced {fresh} "
                     f"({what})")
    more = f"; and {len(diffs) - SHOW_CHUNKS} more" if len(diffs) > SHOW_CHUNKS else ""
    return "; ".join(parts) + more


def _bpb(entries: Sequence[LedgerEntry]) -> float | None:
    b = sum(e.byte_sum for e in entries)
    return math.fsum(e.nll_sum for e in entries) / (LN2 * b) if b else None


def _judge(s: SeedEvidence, rep: ReproductionFacts) -> CheckResult:
    name = s.name
    if rep.status == "cannot":
        return result(RULE, WARN, f"{name}: cannot re-execute here ({rep.reason}); run: {rep.command}")
    if rep.status != "ran":
        return violation(RULE, f"{name}: the evaluation does not re-execute from the packed artifact: {rep.reason} "
                               f"(command: {rep.command})")
    led = s.ledger
    if led is None or led.error is not None:
        return result(RULE, INFO, f"{name}: re-executed in {rep.seconds or 0:.1f} s, but the claimed ledger is "
                                  "unreadable (see TTT-2): nothing to compare")
    claimed, fresh = led.entries, rep.entries
    until = rep.compare_until
    how = "bit-identical (ranges, bytes, per-token loss digests, nll sums, parameter checksums)" if rep.exact \
        else f"nll sums within {rep.rel_tol:g} relative, ranges and bytes equal"
    diffs = chunk_diffs(claimed, fresh, rep.exact, rep.rel_tol, until)
    if until is None and len(fresh) != len(claimed):
        return violation(RULE, f"{name}: the claimed ledger has {n(len(claimed))} chunks, the re-execution wrote "
                               f"{n(len(fresh))}" + (f"; {_describe(diffs)}" if diffs else ""))
    if diffs and rep.exact and not chunk_diffs(claimed, fresh, False, REL_TOL_FP32, until):
        return result(RULE, WARN, f"{name}: {n(len(diffs))} of {n(len(claimed))} chunks are not bit-identical although "
                                  f"the claimed eval ran on CPU with this torch build, but every nll sum is within "
                                  f"{REL_TOL_FP32:g} relative (another CPU's kernels?): {_describe(diffs)}")
    if diffs:
        return violation(RULE, f"{name}: {n(len(diffs))} of {n(len(claimed))} chunks do not reproduce "
                               f"(required: {how}): {_describe(diffs)}")
    where = f"re-executed on {rep.device} in {rep.seconds or 0:.1f} s"
    if until is not None:
        return result(RULE, WARN, f"{name}: {where}: chunks 0..{until} reproduce ({how}); the {n(len(claimed) - until - 1)} "
                                  f"after chunk {until} are not compared: the claimed run's clock stopped adaptation "
                                  "there and the re-execution runs without a budget")
    ev = stage_of(s, "eval")
    claimed_bpb = ev.metrics.get("val_bpb") if ev is not None else None
    fresh_bpb = rep.val_bpb if rep.val_bpb is not None else _bpb(fresh)
    tol = BPB_EXACT_TOL if rep.exact else rep.rel_tol * abs(fresh_bpb or 0.0)
    for what, value in (("the claimed ledger's val_bpb", _bpb(claimed)), ("the eval manifest's val_bpb", claimed_bpb)):
        if not isinstance(value, (int, float)) or fresh_bpb is None:
            continue
        if not math.isclose(float(value), fresh_bpb, rel_tol=0.0, abs_tol=tol):
            return violation(RULE, f"{name}: {what} {float(value):.8f} is not the reproduced {fresh_bpb:.8f} "
                                   f"(tolerance {tol:.1e})")
    bpb = f"{fresh_bpb:.8f}" if fresh_bpb is not None else "?"
    return result(RULE, PASS, f"{name}: {where}: {n(len(claimed))} chunks {how}; val_bpb {bpb} reproduced")


def reproduction(ev: Evidence) -> Results:
    """REPRO-1 per seed: PASS (with the seconds), FAIL naming the chunks, WARN when this machine cannot
    re-execute the evaluation (with the command to run), INFO without --reproduce."""
    out: Results = []
    for s in ev.seeds:
        if stage_of(s, "eval") is None:
            continue
        if s.reproduction is None:
            out.append(result(RULE, INFO, f"{s.name}: not run (pass --reproduce to re-execute the evaluation "
                                          "and compare the ledger chunk by chunk)"))
        else:
            out.append(_judge(s, s.reproduction))
    return out or [result(RULE, INFO, "no eval artifact to re-execute")]


# ----------------------------------------------------------------------------- REPRO-2

RULE_TRAIN = "REPRO-2"
# Not bit-identical (another torch build or CPU): a step's loss within this relative tolerance, a weight tensor
# within TRAIN_TENSOR_TOL of the largest |weight| of that tensor. Training amplifies last-bit differences, so
# these are loose; a model fine-tuned on val moves its weights by far more (tests: ~1e-1).
TRAIN_LOSS_REL_TOL = 1e-3
TRAIN_TENSOR_TOL = 1e-2


def curve_diff(claimed: Mapping[int, float], fresh: Mapping[int, float], rel_tol: float
               ) -> tuple[tuple[int, float | None, float | None] | None, float, int]:
    """(first differing step (step, claimed, reproduced) or None, max relative difference, steps compared) of two
    loss curves {step: loss}: every claimed step must be reproduced (a missing step differs)."""
    worst = 0.0
    first: tuple[int, float | None, float | None] | None = None
    for step in sorted(claimed):
        c, r = claimed[step], fresh.get(step)
        if r is None:
            first = first or (step, c, None)
            continue
        rel = abs(c - r) / max(abs(r), 1e-12)
        worst = max(worst, rel)
        if (rel > rel_tol if rel_tol > 0 else c != r) and first is None:
            first = (step, c, r)
    return first, worst, len(claimed)


def tensor_diff(claimed: Mapping[str, Any], fresh: Mapping[str, Any], tol: float) -> tuple[tuple[str, float] | None,
                                                                                           float]:
    """(first differing tensor by name (name, max |difference|; inf: missing or another shape) or None, the
    largest max |difference| relative to the tensor's scale) over torch tensors by name."""
    worst = 0.0
    first: tuple[str, float] | None = None
    for name in sorted(set(claimed) | set(fresh)):
        a, b = claimed.get(name), fresh.get(name)
        if a is None or b is None or tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            first = first or (name, math.inf)
            continue
        if a.dtype.is_floating_point:
            diff = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
            scale = float(b.double().abs().max()) if b.numel() else 0.0
        else:
            diff, scale = (0.0 if bool((a == b).all()) else math.inf), 1.0
        rel = diff / max(scale, 1e-12)
        worst = max(worst, rel)
        if (rel > tol if tol > 0 else diff != 0.0) and first is None:
            first = (name, diff)
    return first, worst


def _judge_train(s: SeedEvidence, rep: TrainReproductionFacts) -> CheckResult:
    res = _judge_train_run(s, rep)
    return result(res.id, res.verdict, f"{res.detail}; {rep.note}") if rep.note else res


def _judge_train_run(s: SeedEvidence, rep: TrainReproductionFacts) -> CheckResult:
    name = s.name
    if rep.status == "cannot":
        return result(RULE_TRAIN, WARN, f"{name}: training not re-executed here ({rep.reason}); run: {rep.command}")
    if rep.status != "ran":
        return violation(RULE_TRAIN, f"{name}: the training does not re-execute from its recorded recipe: {rep.reason} "
                                     f"(command: {rep.command})")
    how = "bit-identical" if rep.exact else (f"losses within {rep.rel_tol:g} relative, tensors within "
                                             f"{TRAIN_TENSOR_TOL:g} of their scale")
    if rep.loss_diff is not None:
        step, c, r = rep.loss_diff
        got = f"{r:.6f}" if r is not None else "not logged"
        return violation(RULE_TRAIN, f"{name}: the loss curve does not reproduce (required: {how}): first at step "
                                     f"{step}, claimed {c} vs reproduced {got} (command: {rep.command})")
    if rep.tensor_diff is not None:
        tensor, diff = rep.tensor_diff
        return violation(RULE_TRAIN, f"{name}: the loss curve reproduces ({rep.steps} logged steps) but the trained "
                                     f"weights do not (required: {how}): first tensor {tensor}, max |difference| "
                                     f"{diff:.3g}: the model was changed after training (e.g. tuned on validation) "
                                     f"(command: {rep.command})")
    return result(RULE_TRAIN, PASS, f"{name}: re-trained in {rep.seconds or 0:.1f} s: {rep.steps} logged losses and "
                                    f"{rep.tensors} weight tensors {how} (max relative differences {rep.max_loss_rel:.1e}, "
                                    f"{rep.max_tensor_abs:.1e})")


def train_reproduction(ev: Evidence) -> Results:
    """REPRO-2 per seed with a train stage: PASS, FAIL naming the first differing step or tensor, WARN when this
    machine does not re-train it (CUDA, several ranks, over the time cap: the command to run), INFO without
    --reproduce-train."""
    out: Results = []
    for s in ev.seeds:
        if stage_of(s, "train") is None:
            continue
        if s.train_reproduction is None:
            out.append(result(RULE_TRAIN, INFO, f"{s.name}: not run (pass --reproduce-train to re-train from the "
                                                "recorded recipe and compare the loss curve and the weights)"))
        else:
            out.append(_judge_train(s, s.train_reproduction))
    return out or [result(RULE_TRAIN, INFO, "no train artifact to re-execute")]


__all__ = ["REL_TOL_BF16", "REL_TOL_FP32", "TRAIN_LOSS_REL_TOL", "TRAIN_TENSOR_TOL", "chunk_diffs", "curve_diff",
           "reproduction", "tensor_diff", "tolerance", "train_reproduction"]
