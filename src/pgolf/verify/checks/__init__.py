"""Every check of `pgolf verify`: pure functions from an `Evidence` to `CheckResult`s.

`run_checks(evidence)` walks the rule registry (`pgolf.verify.rules`) in order: a rule with a check
runs it, a rule without one gets an INFO line saying why it cannot be checked; then the track caps
apply. Each function is named in the registry (`CHECKS`) and documented in docs/verify.md.

One module per section of the rulebook, each check a function of the evidence:

    lineage.py     LINEAGE     manifests, files and inputs re-hashed
    size.py        SIZE-1..5   artifact bytes, counted code, dependencies, the scored artifact
    timing.py      TIME-1..4   training, calibration and evaluation clocks, hardware
    data.py        DATA-1..7   the val set, train/val disjointness, what each stage read; CONTAM-1 (--probe)
    ttt.py         TTT-1..8    the score ledger: score before update, one pass, no rescoring
    metric.py      MET-1..8    the bpb denominator, byte tables, coverage, probes
    statistics.py  STAT-1..4   seeds, significance, launched seeds, reported numbers
    folder.py      FMT-2..4    the records folder
    reproduce.py   REPRO-1/2   the evaluation re-executed (--reproduce), its ledger compared chunk by chunk;
                               the training re-executed (--reproduce-train), its losses and weights compared
    audit.py       AUDIT-1     the shipped code run under an audit hook (--audit): files, network, processes, code
    common.py      what several sections share (`Results`, `n`, `stage_of`, the ledger and probe helpers)

This module holds the registry and the driver and re-exports every public name of the sections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pgolf.verify.checks.audit import runtime_audit
from pgolf.verify.checks.common import (
    CALIB_TIME_KEYS,
    CLAIM_TOLERANCE,
    Results,
    code_groups,
    hardware,
    n,
)
from pgolf.verify.checks.data import (
    OVERLAP_FAIL_FRACTION,
    PAID_PREFIX_FAIL_HITS,
    calibration_source,
    no_network,
    no_train_in_eval,
    no_val_in_training,
    paid_prefix,
    train_val_disjoint,
    validation_fit,
    validation_set,
)
from pgolf.verify.checks.folder import FOLDER_NAME, REQUIRED_JSON_KEYS, log_name, naming, required_files, runs_in_folder
from pgolf.verify.checks.lineage import lineage
from pgolf.verify.checks.metric import (
    bpb_denominator,
    byte_table,
    causal,
    coverage,
    doc_isolation,
    lossless_tokenizer,
    normalized,
    target_independent,
)
from pgolf.verify.checks.reproduce import reproduction, train_reproduction
from pgolf.verify.checks.size import counted_code, dependencies, scored_artifact, size_cap, uncounted_code
from pgolf.verify.checks.statistics import (
    NOT_CONFIG,
    config_signature,
    launched_seeds,
    reported_numbers,
    seeds_check,
    significance_check,
)
from pgolf.verify.checks.timing import eval_time, hardware_check, post_training_time, train_time
from pgolf.verify.checks.ttt import (
    epochs,
    first_pass,
    no_rescoring,
    no_selection,
    no_slot,
    score_before_update,
    state_from_scored,
    warmup,
)
from pgolf.verify.evidence import Evidence
from pgolf.verify.results import CheckResult, cap, result
from pgolf.verify.rules import ALL, FAIL, INFO, PASS, WARN

CHECKS: dict[str, Callable[[Evidence], Results]] = {
    "lineage": lineage,
    "size_cap": size_cap, "counted_code": counted_code, "uncounted_code": uncounted_code,
    "dependencies": dependencies, "scored_artifact": scored_artifact,
    "train_time": train_time, "post_training_time": post_training_time, "eval_time": eval_time,
    "hardware": hardware_check,
    "validation_set": validation_set, "train_val_disjoint": train_val_disjoint,
    "no_val_in_training": no_val_in_training, "paid_prefix": paid_prefix, "no_train_in_eval": no_train_in_eval,
    "no_network": no_network, "calibration_source": calibration_source, "validation_fit": validation_fit,
    "score_before_update": score_before_update, "first_pass": first_pass, "no_selection": no_selection,
    "no_rescoring": no_rescoring, "epochs": epochs, "warmup": warmup, "no_slot": no_slot,
    "state_from_scored": state_from_scored,
    "bpb_denominator": bpb_denominator, "byte_table": byte_table, "lossless_tokenizer": lossless_tokenizer,
    "coverage": coverage, "normalized": normalized, "causal": causal, "target_independent": target_independent,
    "doc_isolation": doc_isolation,
    "seeds": seeds_check, "significance": significance_check, "launched_seeds": launched_seeds,
    "reported_numbers": reported_numbers,
    "required_files": required_files, "runs_in_folder": runs_in_folder, "naming": naming,
    "reproduction": reproduction, "train_reproduction": train_reproduction,
    "runtime_audit": runtime_audit,
}


def run_checks(ev: Evidence, only: Iterable[str] | None = None) -> list[CheckResult]:
    """Every rule in registry order (LINEAGE first): its check's results, or an INFO saying why none.

    `only` limits the run to those rule ids (the submission writer re-checks the folder rules).
    """
    wanted = set(only) if only is not None else None
    order = ["LINEAGE", *(r for r in ALL if r != "LINEAGE")]
    out: list[CheckResult] = []
    for rule_id in order:
        if wanted is not None and rule_id not in wanted:
            continue
        rule = ALL[rule_id]
        if rule.check is None:
            out.append(result(rule_id, INFO, f"not checkable: {rule.not_checkable}"))
            continue
        out.extend(CHECKS[rule.check](ev))
    return cap(out, ev.options.non_record)


__all__ = [
    "CALIB_TIME_KEYS", "CHECKS", "CLAIM_TOLERANCE", "FAIL", "FOLDER_NAME", "INFO", "NOT_CONFIG",
    "OVERLAP_FAIL_FRACTION", "PAID_PREFIX_FAIL_HITS", "PASS", "REQUIRED_JSON_KEYS", "Results", "WARN",
    "bpb_denominator", "byte_table", "calibration_source", "causal", "code_groups", "config_signature",
    "counted_code", "coverage", "dependencies", "doc_isolation", "epochs", "eval_time", "first_pass", "hardware",
    "hardware_check", "launched_seeds", "lineage", "log_name", "lossless_tokenizer", "n", "naming", "no_network",
    "no_rescoring", "no_selection", "no_slot", "no_train_in_eval", "no_val_in_training", "normalized",
    "paid_prefix", "post_training_time", "reported_numbers", "reproduction", "required_files", "run_checks", "runs_in_folder", "runtime_audit",
    "score_before_update", "scored_artifact", "seeds_check", "significance_check", "size_cap",
    "state_from_scored", "target_independent", "train_time", "train_val_disjoint", "uncounted_code",
    "train_reproduction", "validation_fit", "validation_set", "warmup",
]
