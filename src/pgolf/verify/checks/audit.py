"""AUDIT-1: what the shipped code does at run time (`pgolf verify --audit`).

The audited run (`pgolf.stages.verify.audit_seed`) logged every file the packed train_gpt.py opened, every network
and process event and every compile of code from outside Python's own library; `pgolf.verify.audit.judge`
names what falls outside the counted bytes and the declared data. One FAIL per kind of finding (files,
network, processes, code, native libraries), naming the first few and the rulebook rule each breaks; a
run that exits nonzero is a WARN (its events up to then are still judged), a run that could not start
an INFO with the reason.
"""

from __future__ import annotations

from pgolf.verify.audit import SHOW, judge, summarize, writes
from pgolf.verify.checks.common import Results, n, stage_of
from pgolf.verify.codescan import scan_code
from pgolf.verify.evidence import Evidence
from pgolf.verify.results import result, violation
from pgolf.verify.rules import INFO, PASS, WARN

RULE = "AUDIT-1"
KIND_WORDS = {"file": "opened files outside the counted bytes and the declared data",
              "network": "used the network", "process": "started processes",
              "code": "compiled code that is not in the counted bytes", "native": "loaded native libraries"}


def runtime_audit(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        if stage_of(s, "pack") is None:
            continue
        a = s.audit
        if a is None:
            out.append(result(RULE, INFO, f"{s.name}: the code was not run under the audit hook (pass --audit)"))
            continue
        if a.status == "cannot":
            out.append(result(RULE, WARN if ev.options.strict else INFO, f"{s.name}: not audited: {a.reason}"))
            continue
        sources = scan_code(s.code).sources if s.code is not None else set()
        findings = judge(a, sources)
        for kind, found in summarize(findings).items():
            rules = ", ".join(sorted({f.rule for f in found}))
            shown = "; ".join(f.what for f in found[:SHOW]) + (f"; and {len(found) - SHOW} more"
                                                                  if len(found) > SHOW else "")
            out.append(violation(RULE, f"{s.name}: at run time train_gpt.py {KIND_WORDS[kind]} ({rules}): {shown}"))
        ran = f"on {n(a.tokens)} val tokens in {a.seconds or 0:.1f} s"
        if a.status == "error":
            out.append(result(RULE, WARN, f"{s.name}: the audited run did not finish ({a.reason}); judged on the "
                                          f"events until then"))
        if not findings and a.status == "ran":
            wrote = writes(a)
            note = f"; it wrote {len(wrote)} file(s)" if wrote else ""
            out.append(result(RULE, PASS, f"{s.name}: train_gpt.py {ran} opened only the counted bytes, the declared "
                                          f"data and Python's library; no network, no process, no code from "
                                          f"outside the file{note}"))
    return out or [result(RULE, INFO, "no packed artifact to audit")]
