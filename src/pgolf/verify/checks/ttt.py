"""4. TTT (TTT-1..8), from the score ledger: score before update, one pass, no rescoring, adaptation only on
committed spans."""

from __future__ import annotations

import math

import numpy as np

from pgolf.verify.checks.common import (
    CLAIM_TOLERANCE,
    Results,
    duplicate_spans,
    find_probe,
    ledger_or,
    n,
    probe_results,
    reported_mismatch,
    stage_of,
)
from pgolf.verify.evidence import Evidence, first
from pgolf.verify.records import ledger_totals
from pgolf.verify.results import result, violation
from pgolf.verify.rules import FAIL, INFO, PASS


def score_before_update(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = ledger_or(s, "TTT-1", strict=False)
        if why is not None:
            out.append(why)
        else:
            bad = []
            initial = led.header.get("params_initial")
            for i, e in enumerate(led.entries):
                where = f"chunk {i} [{n(e.start)}, {n(e.end)})"
                if e.params_before != e.params_after:
                    bad.append(f"{where}: parameters changed while it was scored")
                if i == 0 and initial is not None and e.params_before != initial:
                    bad.append(f"{where}: the first chunk was scored with parameters other than the loaded ones")
                for step in e.steps:
                    for a, b in step.spans:
                        if not 0 <= a < b <= e.end:
                            bad.append(f"{where}: an adaptation step trained on [{n(a)}, {n(b)}), past the committed "
                                       f"end {n(e.end)}: adaptation before scoring")
                    if step.committed != e.end:
                        bad.append(f"{where}: a step ran with committed end {n(step.committed)}, not {n(e.end)}")
            if bad:
                out.extend(violation("TTT-1", f"{s.name}: {b}") for b in bad[:10])
                if len(bad) > 10:
                    out.append(violation("TTT-1", f"{s.name}: and {len(bad) - 10} more"))
            else:
                steps = sum(len(e.steps) for e in led.entries)
                out.append(result("TTT-1", PASS, f"{s.name}: {len(led.entries)} chunks scored with unchanged "
                                                 f"parameters; {steps} adaptation steps, all on committed spans"))
        mut = find_probe(s, "P-mut")
        if mut is not None:
            out.append(violation("TTT-1", f"{s.name}: P-mut: {mut.detail}") if mut.violations else
                       result("TTT-1", PASS, f"{s.name}: P-mut: {mut.detail}"))
    return out


def first_pass(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = ledger_or(s, "TTT-2", strict=True)
        if why is not None:
            out.append(why)
            continue
        bad = [f"positions [{n(a)}, {n(b)}) have more than one committed score"
               for a, b in duplicate_spans(led.entries)]
        bad += reported_mismatch(s)
        totals = ledger_totals(s)
        if led.summary is None:
            bad.append("the ledger has no summary line (the eval did not finish)")
        elif totals is not None:
            for key, truth in (("val_bpb", totals.val_bpb), ("val_loss", totals.val_loss)):
                v = led.summary.get(key)
                if not isinstance(v, (int, float)) or not math.isclose(v, truth, rel_tol=0, abs_tol=CLAIM_TOLERANCE):
                    bad.append(f"the ledger's summary {key} {v} differs from its entries' {truth:.8f}")
        if bad:
            out.extend(violation("TTT-2", f"{s.name}: {b}") for b in bad)
        elif totals is not None:
            out.append(result("TTT-2", PASS, f"{s.name}: one committed score per position; reported val_bpb equals "
                                             f"the ledger's {totals.val_bpb:.8f}"))
    return out


def no_selection(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = ledger_or(s, "TTT-3", strict=False)
        if why is not None:
            out.append(why)
            continue
        bad = reported_mismatch(s)
        if bad:
            out.append(violation("TTT-3", f"{s.name}: the reported score is not the ledger's single pass ({bad[0]})"))
        else:
            out.append(result("TTT-3", PASS, f"{s.name}: one ledger, one pass of {len(led.entries)} chunks; the "
                                             "reported score is its sum"))
        e = stage_of(s, "eval")
        if e is not None and "plain_val_bpb" in e.metrics:
            out.append(result("TTT-3", INFO, f"{s.name}: a diagnostic plain pass ran after the reported one "
                                             f"(plain_val_bpb {e.metrics['plain_val_bpb']:.6f}); it is not the score"))
        replay = find_probe(s, "R-replay")
        if replay is not None:
            if replay.violations:
                out.append(violation("TTT-3", f"{s.name}: chunks scored from the loaded weights do not replay from "
                                              f"the artifact: {replay.detail}"))
            else:
                out.append(result("TTT-3", PASS, f"{s.name}: R-replay: {replay.detail}"))
    return out


def no_rescoring(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = ledger_or(s, "TTT-4", strict=False)
        if why is not None:
            out.append(why)
            continue
        bad, cursor = [], 0
        for i, e in enumerate(led.entries):
            if e.index != i:
                bad.append(f"entry {i} carries commit number {e.index}: commits are out of order")
            if e.start < cursor:
                bad.append(f"chunk {i} scores positions [{n(e.start)}, {n(min(e.end, cursor))}) again after they "
                           "were committed")
            cursor = max(cursor, e.end)
        if bad:
            out.extend(violation("TTT-4", f"{s.name}: {b}") for b in bad[:10])
        else:
            out.append(result("TTT-4", PASS, f"{s.name}: {len(led.entries)} commits in order, none rescoring a "
                                             "position"))
    return out


def epochs(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = ledger_or(s, "TTT-5", strict=False)
        if why is not None:
            out.append(why)
            continue
        steps = [(e, st) for e in led.entries for st in e.steps]
        if not steps:
            out.append(result("TTT-5", INFO, f"{s.name}: no adaptation (mode {led.header.get('mode', '?')})"))
            continue
        beyond = [(e, st) for e, st in steps if any(b > e.end for _, b in st.spans)]
        for e, st in beyond[:5]:
            out.append(result("TTT-5", FAIL, f"{s.name}: epoch {st.epoch} after chunk {e.index} reaches past its "
                                          f"committed end {n(e.end)} into unscored positions"))
        per_chunk = [len({st.epoch for st in e.steps}) for e in led.entries if e.steps]
        out.append(result("TTT-5", INFO, f"{s.name}: up to {max(per_chunk)} epoch(s) over each scored chunk; "
                                         f"{len(steps)} steps after {len(per_chunk)} chunks"))
    return out


def warmup(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        e = stage_of(s, "eval")
        if e is None:
            continue
        cfg = e.config or (s.ledger.header.get("config", {}) if s.ledger is not None else {})
        declared = first(e.metrics, "warmup_source", default=(s.eval_report or {}).get("warmup_source"))
        if declared is not None and declared != "synthetic":
            out.append(violation("TTT-6", f"{s.name}: the eval declares a warm-up on {declared!r} tokens"))
        elif declared == "synthetic":
            out.append(result("TTT-6", PASS, f"{s.name}: the eval declares its warm-up on synthetic ids"
                                             + (" (compile off: none ran)" if cfg.get("compile") is False else "")))
        elif cfg.get("compile") is False:
            out.append(result("TTT-6", PASS, f"{s.name}: no warm-up ran (compile off)"))
        else:
            out.append(result("TTT-6", INFO, f"{s.name}: the warm-up runs on synthetic ids (ttt-eval's "
                                             "synthetic_warmup); tensor provenance is not recorded"))
    return out or [result("TTT-6", INFO, "no eval artifact")]


def no_slot(ev: Evidence) -> Results:
    return probe_results(ev, "TTT-7", ("P-tgt", "P-pre"), "adaptation spans are checked under TTT-1")


def state_from_scored(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = ledger_or(s, "TTT-8", strict=False)
        if why is not None:
            out.append(why)
            continue
        bad = []
        entries, initial = led.entries, led.header.get("params_initial")
        cfg = led.header.get("config") if isinstance(led.header.get("config"), dict) else {}
        doc_mode = bool(cfg.get("doc_independent"))
        starts = s.data.doc_starts if s.data is not None else np.zeros(0, np.int64)
        # B023: doc_of is called within this iteration only, with this seed's starts
        doc_of = lambda p: int(np.searchsorted(starts, p, side="right")) - 1  # noqa: E731, B023
        adapted_on: int | None = None  # the document whose spans shaped the current state (doc mode)
        start_set = set(starts.tolist()) if any(e.partial_reset for e in entries) else set()
        for i, e in enumerate(entries):
            where = f"chunk {i} [{n(e.start)}, {n(e.end)})"
            if i > 0 and not (e.reset or e.partial_reset) and not entries[i - 1].steps \
                    and entries[i - 1].params_after != e.params_before:
                bad.append(f"{where}: parameters changed after chunk {i - 1} with no recorded adaptation step: eval "
                           "state from tokens the ledger does not show")
            if e.partial_reset and not (cfg.get("doc_windows") and e.start in start_set):
                bad.append(f"{where}: a partial reset (a state change without a step) that is not at a document "
                           "start of a doc_windows eval")
            if e.reset:
                adapted_on = None
                if initial is not None and e.params_before != initial:
                    bad.append(f"{where}: a reset that did not restore the loaded parameters")
            if doc_mode and s.data is not None:
                doc = doc_of(e.start)
                if adapted_on is not None and adapted_on != doc:
                    bad.append(f"{where}: document {doc} scored with a state adapted on document {adapted_on} "
                               "(document-independent mode resets at every document)")
                first_pos = int(starts[doc]) if doc >= 0 else 0
                for st in e.steps:
                    if any(a < first_pos for a, _ in st.spans):
                        bad.append(f"{where}: adaptation on positions before its document's start {n(first_pos)}")
                if e.steps:
                    adapted_on = doc
        if bad:
            out.extend(violation("TTT-8", f"{s.name}: {b}") for b in bad[:10])
        else:
            mode = "document-independent, reset at every document" if doc_mode else "one stream"
            out.append(result("TTT-8", PASS, f"{s.name}: every state change is a recorded step on committed spans "
                                             f"({mode})"))
    return out
