"""2. time (TIME-1..4): training, post-training calibration and evaluation clocks, and the hardware they ran on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgolf.verify.checks.common import Results, env_contradictions, gptq_calibration, hardware, stage_of
from pgolf.verify.evidence import Evidence, first
from pgolf.verify.results import CheckResult, result, violation
from pgolf.verify.rules import INFO, PASS, WARN


def _time_verdict(ev: Evidence, rule: str, who: str, seconds: float | None, limit: float, explicit: bool,
                  env: Mapping[str, Any], what: str, slack: float = 0.0) -> CheckResult:
    is_h100, hw = hardware(env)
    if seconds is None:
        return result(rule, WARN, f"{who}: no {what} time recorded")
    if not explicit and not is_h100 and ev.options.track.hardware:
        return result(rule, WARN, f"{who}: {what} took {seconds:.1f} s on {hw}: not 8xH100, so the {limit:g} s "
                                  "limit is not verifiable here (pass explicit limits to judge it on this hardware)")
    if seconds > limit + slack:
        more = f" + one step ({slack:.3f} s)" if slack else ""
        return violation(rule, f"{who}: {what} {seconds:.3f} s > {limit:g} s{more}")
    if seconds > limit:
        return result(rule, INFO, f"{who}: {what} {seconds:.3f} s overshoots {limit:g} s by less than one step")
    return result(rule, PASS, f"{who}: {what} {seconds:.1f} s <= {limit:g} s")


def train_time(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        tr = stage_of(s, "train")
        if tr is None:
            out.append(result("TIME-1", INFO, f"{s.name}: no train artifact"))
            continue
        t, m = tr.timing, tr.metrics
        stop = first(t, "stop_reason", default=m.get("stop_reason"))
        if stop not in (None, "wallclock", "iterations"):
            out.append(violation("TIME-1", f"{s.name}: training was stopped by {stop!r}, not the clock or the "
                                           "configured step cap"))
        seconds = first(t, "train_time_s", default=m.get("train_time_s"))
        disagree = [f"{name} says {other:.3f} s" for name, other in sorted(s.train_clocks.items())
                    if isinstance(seconds, (int, float)) and abs(other - seconds) > max(0.5, 0.01 * other)]
        if disagree:
            out.append(violation("TIME-1", f"{s.name}: the train manifest says {seconds:.3f} s of training but "
                                           f"{' and '.join(disagree)}: the records disagree (an edited manifest?)"))
            continue
        r = _time_verdict(ev, "TIME-1", s.name, seconds, ev.options.max_train_s, ev.options.explicit_train, tr.env,
                          "training", slack=float(first(t, "last_step_s", default=0.0)))
        if r.verdict == PASS and stop:
            r = result("TIME-1", PASS, f"{r.detail} (stopped by {stop})")
        out.append(r)
    return out


def post_training_time(ev: Evidence) -> Results:
    out: Results = []
    limit = ev.options.max_train_s
    for s in ev.seeds:
        q, tr = stage_of(s, "quant"), stage_of(s, "train")
        if q is None:
            out.append(result("TIME-2", INFO, f"{s.name}: no quant artifact"))
            continue
        gptq, source, seconds = gptq_calibration(q)
        if not gptq:
            out.append(result("TIME-2", PASS, f"{s.name}: no data-dependent phase after training (no GPTQ "
                                              "calibration); quantize and pack only serialize"))
            continue
        train_s = first(tr.timing, "train_time_s", default=tr.metrics.get("train_time_s")) if tr else None
        if source == "train":
            if seconds is None or train_s is None or tr is None:  # train_s is None without tr
                out.append(result("TIME-2", WARN, f"{s.name}: GPTQ calibrated on training data but the calibration "
                                                  "time is not recorded: its end cannot be placed on the clock"))
                continue
            r = _time_verdict(ev, "TIME-2", s.name, train_s + seconds, limit, ev.options.explicit_train,
                              q.env or tr.env, f"training + train-data calibration ({train_s:.1f} + {seconds:.1f} s)")
            out.append(r)
        elif source == "self":
            end = (train_s or 0.0) + (seconds or 0.0)
            if seconds is not None and train_s is not None and end <= limit:
                out.append(result("TIME-2", PASS, f"{s.name}: self-generated calibration ends at {end:.1f} s"))
            else:
                out.append(result("TIME-2", WARN, f"{s.name}: self-generated calibration (no data read) runs after the "
                                                  f"training clock (accepted in #1019, contested)"))
        else:
            out.append(result("TIME-2", INFO, f"{s.name}: calibration source {source!r} (see DATA-7)"))
    return out


def eval_time(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        e = stage_of(s, "eval")
        if e is None:
            out.append(result("TIME-3", INFO, f"{s.name}: no eval artifact"))
            continue
        seconds = first(e.metrics, "eval_time_s", default=first(e.timing, "eval_time_s"))
        out.append(_time_verdict(ev, "TIME-3", s.name, seconds, ev.options.max_eval_s, ev.options.explicit_eval,
                                 e.env, "evaluation"))
    return out


def hardware_check(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:  # a self-contradicting env is an edited record, on any track
        for kind in ("train", "quant", "eval"):
            st = stage_of(s, kind)
            for problem in env_contradictions(st.env) if st is not None else ():
                out.append(violation("TIME-4", f"{s.name}: the {kind} manifest's env contradicts itself: {problem}"))
    if not ev.options.track.hardware:
        return [*out, result("TIME-4", INFO, f"the {ev.options.track.name} track has no hardware rule")]
    for s in ev.seeds:
        for kind in ("train", "eval"):
            st = stage_of(s, kind)
            if st is None:
                continue
            ok, hw = hardware(st.env)
            if ok:
                out.append(result("TIME-4", PASS, f"{s.name}: {kind} on {hw}"))
            elif ev.options.strict:
                out.append(violation("TIME-4", f"{s.name}: {kind} ran on {hw}; the record track needs 8xH100 SXM, "
                                               "world size 8"))
            else:
                out.append(result("TIME-4", WARN, f"{s.name}: {kind} ran on {hw}, not 8xH100: a development run, not "
                                                  "a record (FAIL with --track 10min_16mb)"))
    return out
