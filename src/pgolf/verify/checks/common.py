"""What the check modules share: `Results`, number formatting, a seed's readable stages, the scans of the
shipped code, GPTQ calibration as the quant manifest declares it, and the ledger, claims and probes that
several rule families read (TTT, MET, STAT)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from pgolf.verify.codescan import CodeScan, scan_code
from pgolf.verify.evidence import Evidence, SeedEvidence, StageFacts, first
from pgolf.verify.records import ledger_totals
from pgolf.verify.results import CheckResult, result, violation
from pgolf.verify.rules import INFO, PASS

Results = list[CheckResult]
CLAIM_TOLERANCE = 1e-6  # rules MET-1 / STAT-4: a claimed bpb more than this from the ledger's is wrong
CALIB_TIME_KEYS = ("calib_s", "calib_time_s", "calibration_s", "hessian_s", "gptq_calib_s")


def n(x: int | float | None) -> str:
    """16,000,001 (or '?' when unknown)."""
    return "?" if x is None else f"{x:,}"


@functools.lru_cache(maxsize=16)
def _scan_text(text: str, local: frozenset[str] = frozenset()) -> CodeScan:
    return scan_code(text, local_modules=local)


def local_modules(ev: Evidence, s: SeedEvidence) -> frozenset[str]:
    """The module names of the .py files shipped beside train_gpt.py (its pack directory, the --submission
    folder): importing one runs code the artifact does not count (SIZE-3)."""
    pack = s.stage("pack")
    names = [f.path for f in pack.files] if pack is not None else []
    names += s.shipped  # a side file the pack manifest does not list counts too
    if ev.folder is not None:
        names += list(ev.folder.files)
    return frozenset(n[:-3] for n in names if n.endswith(".py") and n != "train_gpt.py" and "/" not in n)


def code_groups(ev: Evidence) -> list[tuple[str, CodeScan]]:
    """The distinct shipped files (most runs ship one file for all seeds), each with the seeds it serves."""
    groups: dict[tuple[str, frozenset[str]], list[str]] = {}
    for s in ev.seeds:
        if s.code is not None:
            groups.setdefault((s.code, local_modules(ev, s)), []).append(s.name)
    return [(", ".join(names), _scan_text(text, local)) for (text, local), names in groups.items()]


def env_contradictions(env: Mapping[str, Any]) -> list[str]:
    """What a stage's `env` says that its own other fields deny: `env_info` writes them together, so a
    contradiction means the record was edited (a GPU claimed beside a CPU build of torch)."""
    problems = []
    device = str(env.get("device") or "")
    torch_v = str(env.get("torch") or "")
    claims_gpu = device.startswith("cuda") or bool(env.get("gpu"))
    if claims_gpu and "+cpu" in torch_v:
        problems.append(f"a GPU is claimed ({env.get('gpu') or device}) but torch is a CPU build ({torch_v})")
    if env.get("gpu") and not device.startswith("cuda"):
        problems.append(f"a GPU ({env['gpu']}) is named but the device is {device or 'not recorded'}")
    count, ws = env.get("gpu_count"), env.get("world_size")
    if device.startswith("cuda") and isinstance(count, int) and isinstance(ws, int) and ws > count:
        problems.append(f"world size {ws} on {count} GPU(s): one process per GPU is the only layout pgolf runs")
    return problems


def hardware(env: Mapping[str, Any]) -> tuple[bool, str]:
    """(is 8xH100 with world size 8 and a self-consistent record, a description)."""
    ws = env.get("world_size")
    gpu = str(env.get("gpu") or "")
    device = str(env.get("device") or "?")
    if device.startswith("cuda") and gpu:
        desc = f"{env.get('gpu_count', '?')}x {gpu}, world size {ws}"
    else:
        desc = f"{device}{' (' + str(env['cpu']) + ')' if env.get('cpu') else ''}, world size {ws}"
    return ("H100" in gpu and ws == 8 and not env_contradictions(env)), desc


def stage_of(seed: SeedEvidence, kind: str) -> StageFacts | None:
    """The seed's `kind` stage when its manifest could be read, else None."""
    s = seed.stage(kind)
    return s if s is not None and s.manifest is not None else None


# ----------------------------------------------------------------------------- calibration (TIME-2, DATA-7)


def gptq_calibration(quant: StageFacts) -> tuple[bool, str | None, float | None]:
    """(GPTQ on, calibration source, calibration seconds) as the quant manifest declares them."""
    cfg, metrics = quant.config, quant.metrics
    calib = cfg.get("calib", metrics.get("calib"))
    source = calib.get("source") if isinstance(calib, dict) else calib
    source = first(metrics, "calib_source", default=source)
    seconds = first(quant.timing, *CALIB_TIME_KEYS, default=first(metrics, *CALIB_TIME_KEYS))
    return bool(cfg.get("gptq", metrics.get("gptq", False))), source, seconds


# ----------------------------------------------------------------------------- ledger, claims, probes (TTT, MET, STAT)


def ledger_or(s: SeedEvidence, rule: str, strict: bool) -> tuple[Any, CheckResult | None]:
    """(ledger, None) when readable; else (None, a result saying why for this rule)."""
    if stage_of(s, "eval") is None:
        return None, result(rule, INFO, f"{s.name}: no eval artifact")
    if s.ledger is None or s.ledger.error is not None:
        why = s.ledger.error if s.ledger is not None else "no ledger file"
        if strict:
            return None, violation(rule, f"{s.name}: the score ledger cannot be read ({why}): the score is unproven")
        return None, result(rule, INFO, f"{s.name}: no readable score ledger (see TTT-2)")
    return s.ledger, None


def find_probe(s: SeedEvidence, name: str):
    return next((p for p in s.probes or [] if p.name == name), None)


def claimed_values(s: SeedEvidence) -> list[tuple[str, float]]:
    """The val_bpb/val_loss values the eval reports (manifest metrics, report.json), by source."""
    out = []
    e = stage_of(s, "eval")
    for source, data in (("eval manifest", e.metrics if e else {}), ("eval report.json", s.eval_report or {})):
        for key in ("val_bpb", "val_loss"):
            if isinstance(data.get(key), (int, float)):
                out.append((f"{source} {key}", float(data[key])))
    return out


def reported_mismatch(s: SeedEvidence) -> list[str]:
    totals = ledger_totals(s)
    if totals is None:
        return []
    bad = []
    for what, value in claimed_values(s):
        truth = totals.val_bpb if what.endswith("val_bpb") else totals.val_loss
        if not math.isclose(value, truth, rel_tol=0, abs_tol=CLAIM_TOLERANCE):
            bad.append(f"{what} {value:.8f} differs from the ledger's {truth:.8f}")
    return bad


def duplicate_spans(entries) -> list[tuple[int, int]]:
    """Position ranges committed more than once."""
    if not entries:
        return []
    spans = sorted((e.start, e.end) for e in entries)
    dup, reach = [], spans[0][1]
    for a, b in spans[1:]:
        if a < reach:
            dup.append((a, min(b, reach)))
        reach = max(reach, b)
    return dup


def probe_results(ev: Evidence, rule: str, names: tuple[str, ...], what: str) -> Results:
    """A rule judged by probes alone: each probe's verdict per seed, or an INFO saying why none ran (`what`)."""
    out: Results = []
    for s in ev.seeds:
        if s.probes is None:
            if stage_of(s, "pack") is not None:
                out.append(result(rule, INFO, f"{s.name}: {what}; not probed (pass --probe)"))
            continue
        for name in names:
            p = find_probe(s, name)
            if p is None:
                continue
            if p.violations:
                out.append(violation(rule, f"{s.name}: {name} fired at {p.violations} of {n(p.positions)} probed "
                                           f"positions ({p.detail})"))
            else:
                out.append(result(rule, PASS, f"{s.name}: {name} held at {n(p.positions)} positions ({p.detail})"))
    return out or [result(rule, INFO, "no packed model to probe")]
