"""Every check of `pgolf verify`: pure functions from an `Evidence` to `CheckResult`s.

`run_checks(evidence)` walks the rule registry (`pgolf.verify.rules`) in order: a rule with a check
runs it, a rule without one gets an INFO line saying why it cannot be checked; then the track caps
apply. Each function is named in the registry and documented in docs/verify.md.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from pgolf.verify import significance as sig
from pgolf.verify.codescan import CodeScan, scan_code
from pgolf.verify.evidence import (
    CANONICAL_VAL_DOCS,
    Evidence,
    SeedEvidence,
    StageFacts,
    first,
)
from pgolf.verify.records import LN2, ledger_totals, seed_record
from pgolf.verify.results import CheckResult, cap, result, violation
from pgolf.verify.rules import ALL, FAIL, INFO, PASS, WARN

Results = list[CheckResult]
CLAIM_TOLERANCE = 1e-6  # rules MET-1 / STAT-4: a claimed bpb more than this from the ledger's is wrong
PAID_PREFIX_FAIL_HITS = 8  # 8 sampled 32-grams = at least 256 consecutive val tokens stored verbatim
# Verbatim duplicates of more than 10% of the val documents are an overlap, not chance (corpora repeat some pages).
OVERLAP_FAIL_FRACTION = 0.1
REQUIRED_JSON_KEYS = ("author", "github_id", "name", "blurb", "date", "track", "val_loss", "val_bpb", "val_loss_std",
                      "val_bpb_std", "seeds", "seed_results", "bytes_total", "bytes_code", "hardware",
                      "pytorch_version", "compliance")
FOLDER_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def n(x: int | float | None) -> str:
    """16,000,001 (or '?' when unknown)."""
    return "?" if x is None else f"{x:,}"


@functools.lru_cache(maxsize=16)
def _scan_text(text: str) -> CodeScan:
    return scan_code(text)


def code_groups(ev: Evidence) -> list[tuple[str, CodeScan]]:
    """The distinct shipped files (most runs ship one file for all seeds), each with the seeds it serves."""
    groups: dict[str, list[str]] = {}
    for s in ev.seeds:
        if s.code is not None:
            groups.setdefault(s.code, []).append(s.name)
    return [(", ".join(names), _scan_text(text)) for text, names in groups.items()]


def hardware(env: Mapping[str, Any]) -> tuple[bool, str]:
    """(is 8xH100 with world size 8, a description)."""
    ws = env.get("world_size")
    gpu = str(env.get("gpu") or "")
    device = str(env.get("device") or "?")
    if device.startswith("cuda") and gpu:
        desc = f"{env.get('gpu_count', '?')}x {gpu}, world size {ws}"
    else:
        desc = f"{device}{' (' + str(env['cpu']) + ')' if env.get('cpu') else ''}, world size {ws}"
    return ("H100" in gpu and ws == 8), desc


def _stage(seed: SeedEvidence, kind: str) -> StageFacts | None:
    s = seed.stage(kind)
    return s if s is not None and s.manifest is not None else None


# ============================================================================ lineage


def lineage(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        bad = 0
        for problem in s.problems:
            out.append(violation("LINEAGE", f"{s.name}: {problem}"))
            bad += 1
        files = inputs = 0
        for kind, st in s.stages.items():
            if st.manifest is None:
                out.append(violation("LINEAGE", f"{s.name}: the {kind} manifest in {st.dir} cannot be read "
                                                f"({st.error})"))
                bad += 1
                continue
            for f in st.files:
                files += 1
                if f.bytes is None:
                    out.append(violation("LINEAGE", f"{s.name}: {kind}/{f.path} is missing (listed in its manifest)"))
                elif f.bytes != f.listed_bytes:
                    out.append(violation("LINEAGE", f"{s.name}: {kind}/{f.path} has {n(f.bytes)} bytes, its manifest "
                                                    f"says {n(f.listed_bytes)} (truncated or modified)"))
                elif f.sha256 != f.listed_sha256:
                    out.append(violation("LINEAGE", f"{s.name}: {kind}/{f.path} does not match its sha256 in the "
                                                    "manifest (modified)"))
                else:
                    continue
                bad += 1
            for i in st.inputs:
                inputs += 1
                if i.ok:
                    continue
                if i.actual is None and i.external:
                    out.append(result("LINEAGE", INFO, f"{s.name}: {kind} input {i.kind} {i.path} is not on this "
                                                       "machine; its sha256 is recorded, not re-checked"))
                    continue
                what = "is missing" if i.actual is None else \
                    f"changed since the {kind} stage read it (sha256 {i.actual[:12]}…, recorded {i.expected[:12]}…)"
                out.append(violation("LINEAGE", f"{s.name}: {kind} input {i.kind} {i.path} {what}"))
                bad += 1
        if not bad:
            out.append(result("LINEAGE", PASS, f"{s.name}: {len(s.stages)} manifests ({', '.join(s.stages)}), "
                                               f"{files} files and {inputs} inputs re-hashed"))
    return out


# ============================================================================ 1. size


def size_cap(ev: Evidence) -> Results:
    out: Results = []
    limit = ev.options.max_bytes
    totals = []
    for s in ev.seeds:
        pack = _stage(s, "pack")
        if pack is None:
            out.append(result("SIZE-1", INFO, f"{s.name}: no pack artifact in the lineage; size not measured"))
            continue
        code, model = pack.file("train_gpt.py"), pack.file("model.bin")
        if code is None or model is None or code.bytes is None or model.bytes is None:
            missing = [name for name, f in (("train_gpt.py", code), ("model.bin", model))
                       if f is None or f.bytes is None]
            out.append(violation("SIZE-1", f"{s.name}: {' and '.join(missing)} missing from the pack: the artifact "
                                           "cannot be measured"))
            continue
        total = code.bytes + model.bytes
        totals.append(total)
        parts = f"(code {n(code.bytes)} + model {n(model.bytes)})"
        if total > limit:
            out.append(violation("SIZE-1", f"{s.name}: {n(total)} > {n(limit)} {parts}"))
        else:
            out.append(result("SIZE-1", PASS, f"{s.name}: {n(total)} <= {n(limit)} {parts}, margin {n(limit - total)}"))
        extra = [f.path for f in pack.files if f.path not in ("train_gpt.py", "model.bin", "report.json")]
        if extra:
            out.append(result("SIZE-1", INFO, f"{s.name}: the pack also holds {', '.join(extra)} (not shipped, "
                                              "not counted)"))
    if len(totals) > 1:
        out.append(result("SIZE-1", INFO, f"bytes_total (max over {len(totals)} seeds) {n(max(totals))}"))
    return out


def counted_code(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        pack = _stage(s, "pack")
        if pack is None:
            continue
        m = pack.metrics
        bad = []
        for key, name in (("code_bytes", "train_gpt.py"), ("model_bytes", "model.bin")):
            f = pack.file(name)
            actual = f.bytes if f is not None else None
            claimed = m.get(key)
            if claimed is None:
                bad.append(f"the pack manifest claims no {key}")
            elif claimed != actual:
                bad.append(f"the pack manifest claims {key} {n(claimed)}, the shipped {name} has {n(actual)}")
        code, model = pack.file("train_gpt.py"), pack.file("model.bin")
        if m.get("total_bytes") is not None and code and model and code.bytes is not None and model.bytes is not None \
                and m["total_bytes"] != code.bytes + model.bytes:
            bad.append(f"the pack manifest claims total_bytes {n(m['total_bytes'])}, the files add up to "
                       f"{n(code.bytes + model.bytes)}")
        if bad:
            out.extend(violation("SIZE-2", f"{s.name}: {b}") for b in bad)
        else:
            out.append(result("SIZE-2", PASS, f"{s.name}: counted code is the shipped train_gpt.py "
                                              f"({n(m.get('code_bytes'))} bytes); claims equal the files"))
    return out or [result("SIZE-2", INFO, "no pack artifact")]


def uncounted_code(ev: Evidence) -> Results:
    out: Results = []
    for who, scan in code_groups(ev):
        hits = scan.by_rule("SIZE-3")
        out.extend(result("SIZE-3", f.verdict, f"{who}: {f.text()}") for f in hits)
        if not hits:
            followed = f"; {scan.payloads} embedded payload(s) decoded and scanned" if scan.payloads else ""
            out.append(result("SIZE-3", PASS, f"{who}: train_gpt.py loads no uncounted file, library or dynamic "
                                              f"code (static scan{followed})"))
    return out or [result("SIZE-3", INFO, "no shipped code in the lineage (no pack artifact)")]


def dependencies(ev: Evidence) -> Results:
    out: Results = []
    declared = ev.folder.requirements if ev.folder is not None else ()
    for who, scan in code_groups(ev):
        extra = scan.third_party(declared)
        if extra:
            where = "the folder's requirements.txt" if ev.folder is not None else "a requirements.txt"
            out.append(violation("SIZE-4", f"{who}: imports {', '.join(extra)}, not in the upstream requirements.txt; "
                                           f"declare them in {where}"))
        out.extend(result("SIZE-4", f.verdict, f"{who}: {f.text()}") for f in scan.by_rule("SIZE-4"))
        if not extra and not scan.by_rule("SIZE-4"):
            out.append(result("SIZE-4", PASS, f"{who}: imports {', '.join(sorted(scan.imports)) or 'nothing'}: stdlib "
                                              "or declared"))
    return out or [result("SIZE-4", INFO, "no shipped code in the lineage")]


def scored_artifact(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        evs, pack = _stage(s, "eval"), s.stage("pack")
        if evs is None:
            out.append(result("SIZE-5", INFO, f"{s.name}: no eval artifact"))
            continue
        inp = evs.input("pack")
        if inp is None:
            out.append(violation("SIZE-5", f"{s.name}: the eval manifest names no pack input: what it scored is "
                                           "unknown"))
            continue
        if not inp.ok:
            now = "is missing" if inp.actual is None else f"is {inp.actual[:12]}… on disk"
            out.append(violation("SIZE-5", f"{s.name}: the eval scored the pack manifest with sha256 "
                                           f"{inp.expected[:12]}…, which {now}: the score is not of the measured "
                                           "artifact"))
            continue
        blob = pack.file("model.bin") if pack is not None and pack.manifest is not None else None
        if blob is None:
            out.append(violation("SIZE-5", f"{s.name}: the scored pack lists no model.bin"))
        elif not blob.ok:
            out.append(violation("SIZE-5", f"{s.name}: model.bin on disk ({n(blob.bytes)} bytes) is not the blob the "
                                           f"pack recorded and the eval scored ({n(blob.listed_bytes)} bytes, sha256 "
                                           f"{str(blob.listed_sha256)[:12]}…)"))
        else:
            # What the eval decoded: its model.bin input (sha256 of the bytes it read) or its metrics.
            read = evs.input_file("pack", "model.bin")
            claimed = read.expected if read is not None else \
                first(evs.metrics, "model_sha256", default=(s.eval_report or {}).get("model_sha256"))
            if claimed is not None and claimed != blob.sha256:
                out.append(violation("SIZE-5", f"{s.name}: the eval decoded model.bin {claimed[:12]}…, the "
                                               f"measured one is {str(blob.sha256)[:12]}…"))
            else:
                out.append(result("SIZE-5", PASS, f"{s.name}: the eval scored the measured model.bin (sha256 "
                                                  f"{str(blob.sha256)[:12]}…, {n(blob.bytes)} bytes)"))
    return out


# ============================================================================ 2. time


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
        tr = _stage(s, "train")
        if tr is None:
            out.append(result("TIME-1", INFO, f"{s.name}: no train artifact"))
            continue
        t, m = tr.timing, tr.metrics
        stop = first(t, "stop_reason", default=m.get("stop_reason"))
        if stop not in (None, "wallclock", "iterations"):
            out.append(violation("TIME-1", f"{s.name}: training was stopped by {stop!r}, not the clock or the "
                                           "configured step cap"))
        seconds = first(t, "train_time_s", default=m.get("train_time_s"))
        r = _time_verdict(ev, "TIME-1", s.name, seconds, ev.options.max_train_s, ev.options.explicit_train, tr.env,
                          "training", slack=float(first(t, "last_step_s", default=0.0)))
        if r.verdict == PASS and stop:
            r = result("TIME-1", PASS, f"{r.detail} (stopped by {stop})")
        out.append(r)
    return out


CALIB_TIME_KEYS = ("calib_s", "calib_time_s", "calibration_s", "hessian_s", "gptq_calib_s")


def _calibration(quant: StageFacts) -> tuple[bool, str | None, float | None]:
    """(GPTQ on, calibration source, calibration seconds) as the quant manifest declares them."""
    cfg, metrics = quant.config, quant.metrics
    calib = cfg.get("calib", metrics.get("calib"))
    source = calib.get("source") if isinstance(calib, dict) else calib
    source = first(metrics, "calib_source", default=source)
    seconds = first(quant.timing, *CALIB_TIME_KEYS, default=first(metrics, *CALIB_TIME_KEYS))
    return bool(cfg.get("gptq", metrics.get("gptq", False))), source, seconds


def post_training_time(ev: Evidence) -> Results:
    out: Results = []
    limit = ev.options.max_train_s
    for s in ev.seeds:
        q, tr = _stage(s, "quant"), _stage(s, "train")
        if q is None:
            out.append(result("TIME-2", INFO, f"{s.name}: no quant artifact"))
            continue
        gptq, source, seconds = _calibration(q)
        if not gptq:
            out.append(result("TIME-2", PASS, f"{s.name}: no data-dependent phase after training (no GPTQ "
                                              "calibration); quantize and pack only serialize"))
            continue
        train_s = first(tr.timing, "train_time_s", default=tr.metrics.get("train_time_s")) if tr else None
        if source == "train":
            if seconds is None or train_s is None:
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
        e = _stage(s, "eval")
        if e is None:
            out.append(result("TIME-3", INFO, f"{s.name}: no eval artifact"))
            continue
        seconds = first(e.metrics, "eval_time_s", default=first(e.timing, "eval_time_s"))
        out.append(_time_verdict(ev, "TIME-3", s.name, seconds, ev.options.max_eval_s, ev.options.explicit_eval,
                                 e.env, "evaluation"))
    return out


def hardware_check(ev: Evidence) -> Results:
    if not ev.options.track.hardware:
        return [result("TIME-4", INFO, f"the {ev.options.track.name} track has no hardware rule")]
    out: Results = []
    for s in ev.seeds:
        for kind in ("train", "eval"):
            st = _stage(s, kind)
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


# ============================================================================ 3. data


def validation_set(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        if _stage(s, "eval") is None and s.data is None:
            out.append(result("DATA-1", INFO, f"{s.name}: no eval artifact"))
            continue
        d, facts = _stage(s, "data"), s.data
        if facts is None:
            out.append(violation("DATA-1", f"{s.name}: the eval's lineage reaches no readable validation data: "
                                           "the validation set cannot be verified"))
            continue
        if d is None:  # official challenge shards: named by sha256 in the stages' inputs (LINEAGE)
            out.append(result("DATA-1", WARN, f"{s.name}: val shards without a pgolf data manifest: "
                                              f"{n(facts.val_tokens)} tokens, {n(facts.val_docs)} documents; their "
                                              "document range and source cannot be verified"))
            continue
        m, bad = d.metrics, []
        for f in d.files:
            if f.path.startswith(("fineweb_val_", "bytes_val_")) and not f.ok:
                bad.append(f"{f.path} differs from the data manifest")
        if m.get("val_tokens") != facts.val_tokens:
            bad.append(f"the val shards hold {n(facts.val_tokens)} tokens, the data manifest says "
                       f"{n(m.get('val_tokens'))}")
        if m.get("val_docs") != facts.val_docs:
            bad.append(f"the val shards hold {n(facts.val_docs)} documents, the data manifest says "
                       f"{n(m.get('val_docs'))}")
        rng = m.get("val_doc_range")
        if rng is not None and list(rng) != [0, m.get("val_docs")]:
            bad.append(f"val documents are {rng}, not the first {n(m.get('val_docs'))} documents")
        if not facts.starts_with_bos:
            bad.append("the val stream does not start with BOS")
        header = s.ledger.header if s.ledger is not None and s.ledger.error is None else {}
        if header.get("num_tokens") is not None and header["num_tokens"] != facts.val_tokens:
            bad.append(f"the eval scored a stream of {n(header['num_tokens'])} tokens, the val set has "
                       f"{n(facts.val_tokens)}")
        if bad:
            out.extend(violation("DATA-1", f"{s.name}: {b}") for b in bad)
            continue
        docs = m.get("val_docs")
        out.append(result("DATA-1", PASS, f"{s.name}: {n(facts.val_tokens)} val tokens, documents [0, {n(docs)}), "
                                          "shards and sidecar as the data manifest records them"))
        if ev.options.track.canonical_val and docs != CANONICAL_VAL_DOCS:
            out.append(result("DATA-1", WARN, f"{s.name}: val is the first {n(docs)} documents of "
                                              f"{_corpus(d)}; the challenge's is the first {n(CANONICAL_VAL_DOCS)} "
                                              "FineWeb documents: scores are not comparable"))
    return out


def _corpus(d: StageFacts) -> str:
    paths = [i.path for i in d.inputs if i.kind == "corpus"]
    return ", ".join(paths) or "an unnamed corpus"


def _overlap(a: Iterable[int] | None, b: Iterable[int] | None) -> tuple[int, int] | None:
    if a is None or b is None:
        return None
    (a0, a1), (b0, b1) = a, b
    lo, hi = max(a0, b0), min(a1, b1)
    return (lo, hi) if lo < hi else None


def _data_identity(d: StageFacts) -> tuple[Any, ...]:
    m = d.metrics
    return tuple(m.get(k) for k in ("val_docs_sha256", "tokenizer_sha256", "val_docs")) + \
        tuple(i.expected for i in d.inputs if i.kind == "corpus")


def train_val_disjoint(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        d = _stage(s, "data")
        td = _stage(s, "train_data") or d
        if d is None:
            tr = _stage(s, "train")
            if tr is not None:
                out.append(result("DATA-2", WARN, f"{s.name}: no data manifest: the training data's provenance is "
                                                  "unknown"))
            continue
        val = d.metrics.get("val_doc_range")
        if td is not d and _data_identity(td) != _data_identity(d):
            out.append(result("DATA-2", WARN, f"{s.name}: trained on other data ({td.dir}) than it was scored on: "
                                              "disjointness cannot be shown"))
            continue
        train = td.metrics.get("train_doc_range")
        both = _overlap(val, train)
        if both is not None:
            out.append(violation("DATA-2", f"{s.name}: documents [{n(both[0])}, {n(both[1])}) are in both val {val} "
                                           f"and train {train}"))
            continue
        if val is None or train is None:
            out.append(result("DATA-2", WARN, f"{s.name}: the data manifest records no document ranges"))
            continue
        facts = s.data
        if facts is not None and facts.overlap_docs:
            frac = facts.overlap_docs / max(1, facts.val_docs)
            msg = (f"{s.name}: {n(facts.overlap_docs)} of {n(facts.val_docs)} val documents occur verbatim in the "
                   "training shards")
            out.append(violation("DATA-2", msg) if frac > OVERLAP_FAIL_FRACTION else
                       result("DATA-2", WARN, f"{msg} (duplicates within the corpus?)"))
            continue
        scanned = ("; no val document found in the training shards" if facts is not None and facts.overlap_docs == 0
                   else f"; {facts.overlap_note}" if facts is not None and facts.overlap_note else "")
        out.append(result("DATA-2", PASS, f"{s.name}: val documents {val}, train documents {train}{scanned}"))
    return out or [result("DATA-2", INFO, "no data or train artifact")]


def no_val_in_training(ev: Evidence) -> Results:
    out: Results = []
    for who, scan in code_groups(ev):
        out.extend(result("DATA-3", f.verdict, f"{who}: {f.text()}") for f in scan.by_rule("DATA-3"))
    for s in ev.seeds:
        tr = _stage(s, "train")
        if tr is None:
            continue
        kinds = sorted({i.kind for i in tr.inputs})
        every = tr.config.get("val_every")
        diag = (f"periodic val loss every {every} steps is a diagnostic that selects nothing "
                f"(weights: {tr.metrics.get('weights', '?')})" if every else "no periodic validation")
        if kinds and not set(kinds) <= {"data", "val_shard", "tokenizer"}:
            out.append(result("DATA-3", WARN, f"{s.name}: the train manifest has inputs {kinds}: check what they are"))
        out.append(result("DATA-3", PASS, f"{s.name}: the trainer reads fineweb_train_* only; {diag}"))
    return out or [result("DATA-3", INFO, "no train artifact")]


def _reads_val(i) -> bool:
    """An input that is validation data: a val shard or sidecar by kind or by file name."""
    name = i.path.replace("\\", "/").rsplit("/", 1)[-1]
    return i.kind.startswith("val") or name.startswith(("fineweb_val_", "bytes_val_"))


def paid_prefix(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        for kind in ("quant", "pack"):
            st = _stage(s, kind)
            for i in st.inputs if st is not None else []:
                if _reads_val(i):
                    out.append(violation("DATA-4", f"{s.name}: the {kind} stage read validation data ({i.kind} "
                                                   f"{i.path}): the artifact may carry it"))
        pp = s.paid_prefix
        if pp is None:
            if _stage(s, "pack") is not None:
                out.append(result("DATA-4", INFO, f"{s.name}: the model was not searched for val text"))
            continue
        if pp.error is not None:
            out.append(result("DATA-4", WARN, f"{s.name}: model.bin could not be decoded for the search ({pp.error})"))
        elif pp.total >= PAID_PREFIX_FAIL_HITS:
            where = ", ".join(f"{k} ({v})" for k, v in sorted(pp.hits.items(), key=lambda kv: -kv[1])[:3])
            out.append(violation("DATA-4", f"{s.name}: {pp.total} sampled val {pp.ngram}-grams stored verbatim in the "
                                           f"model (at least {PAID_PREFIX_FAIL_HITS * pp.ngram} val tokens): {where}"))
        elif pp.total:
            out.append(result("DATA-4", WARN, f"{s.name}: {pp.total} sampled val {pp.ngram}-gram(s) found in "
                                              f"{', '.join(pp.hits)} (heuristic hit)"))
        else:
            out.append(result("DATA-4", PASS, f"{s.name}: none of {n(pp.sampled)} sampled val {pp.ngram}-grams occurs "
                                              "in the decoded model; the pack descends from train only"))
    return out or [result("DATA-4", INFO, "no pack artifact")]


def no_train_in_eval(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        e = _stage(s, "eval")
        if e is None:
            continue
        other = [f"{i.kind} {i.path}" for i in e.inputs if i.kind not in ("pack", "data", "val_shard", "tokenizer")
                 or "fineweb_train_" in i.path]
        if other:
            out.append(violation("DATA-5", f"{s.name}: the eval read {', '.join(other)}, not only the artifact and "
                                           "the val data"))
        else:
            out.append(result("DATA-5", PASS, f"{s.name}: the eval's inputs are the pack and the val data only "
                                              "(file opens are not audited)"))
    return out or [result("DATA-5", INFO, "no eval artifact")]


def no_network(ev: Evidence) -> Results:
    out: Results = []
    for who, scan in code_groups(ev):
        hits = scan.by_rule("DATA-6")
        out.extend(result("DATA-6", WARN, f"{who}: {f.text()} (static hit)") for f in hits)
        if not hits:
            out.append(result("DATA-6", PASS, f"{who}: no network module or download in train_gpt.py (static; "
                                              "sockets are not audited)"))
    return out or [result("DATA-6", INFO, "no shipped code in the lineage")]


def calibration_source(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        q = _stage(s, "quant")
        if q is None:
            continue
        gptq, source, _ = _calibration(q)
        val_inputs = [i.path for i in q.inputs if _reads_val(i)]
        # The provenance the quantize stage records: every shard read, by name and sha256.
        prov = q.config.get("calibration") if isinstance(q.config.get("calibration"), dict) else {}
        d = _stage(s, "data")
        val_files = {f.listed_sha256: f.path for f in d.files
                     if f.path.startswith(("fineweb_val_", "bytes_val_"))} if d is not None else {}
        val_inputs += [str(sh.get("name")) for sh in prov.get("shards") or [] if isinstance(sh, dict) and (
            str(sh.get("name", "")).startswith(("fineweb_val_", "bytes_val_")) or sh.get("sha256") in val_files)]
        if str(source).lower() in ("val", "validation") or val_inputs:
            what = f"source {source!r}" if not val_inputs else f"{val_inputs[0]}"
            out.append(violation("DATA-7", f"{s.name}: calibration from validation data ({what}); only training data "
                                           "or self-generated tokens may calibrate"))
        elif not gptq:
            out.append(result("DATA-7", PASS, f"{s.name}: no calibration (GPTQ off)"))
        elif source not in ("train", "self"):
            out.append(violation("DATA-7", f"{s.name}: GPTQ calibration from an undeclared source ({source!r})"))
        else:
            tokens = first(q.config, "calib_tokens", default=first(q.metrics, "calib_tokens"))
            what = "training data" if source == "train" else "self-generated tokens"
            out.append(result("DATA-7", PASS, f"{s.name}: GPTQ calibrated on {what} ({n(tokens)} tokens)"))
    return out or [result("DATA-7", INFO, "no quant artifact")]


# ============================================================================ 4. TTT (the ledger)


def _ledger_or(s: SeedEvidence, rule: str, strict: bool) -> tuple[Any, CheckResult | None]:
    """(ledger, None) when readable; else (None, a result saying why for this rule)."""
    if _stage(s, "eval") is None:
        return None, result(rule, INFO, f"{s.name}: no eval artifact")
    if s.ledger is None or s.ledger.error is not None:
        why = s.ledger.error if s.ledger is not None else "no ledger file"
        if strict:
            return None, violation(rule, f"{s.name}: the score ledger cannot be read ({why}): the score is unproven")
        return None, result(rule, INFO, f"{s.name}: no readable score ledger (see TTT-2)")
    return s.ledger, None


def _probe(s: SeedEvidence, name: str):
    return next((p for p in s.probes or [] if p.name == name), None)


def score_before_update(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = _ledger_or(s, "TTT-1", strict=False)
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
        mut = _probe(s, "P-mut")
        if mut is not None:
            out.append(violation("TTT-1", f"{s.name}: P-mut: {mut.detail}") if mut.violations else
                       result("TTT-1", PASS, f"{s.name}: P-mut: {mut.detail}"))
    return out


def _claims(s: SeedEvidence) -> list[tuple[str, float]]:
    """The val_bpb/val_loss values the eval reports (manifest metrics, report.json), by source."""
    out = []
    e = _stage(s, "eval")
    for source, data in (("eval manifest", e.metrics if e else {}), ("eval report.json", s.eval_report or {})):
        for key in ("val_bpb", "val_loss"):
            if isinstance(data.get(key), (int, float)):
                out.append((f"{source} {key}", float(data[key])))
    return out


def _reported_mismatch(s: SeedEvidence) -> list[str]:
    totals = ledger_totals(s)
    if totals is None:
        return []
    bad = []
    for what, value in _claims(s):
        truth = totals.val_bpb if what.endswith("val_bpb") else totals.val_loss
        if not math.isclose(value, truth, rel_tol=0, abs_tol=CLAIM_TOLERANCE):
            bad.append(f"{what} {value:.8f} differs from the ledger's {truth:.8f}")
    return bad


def _duplicates(entries) -> list[tuple[int, int]]:
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


def first_pass(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = _ledger_or(s, "TTT-2", strict=True)
        if why is not None:
            out.append(why)
            continue
        bad = [f"positions [{n(a)}, {n(b)}) have more than one committed score" for a, b in _duplicates(led.entries)]
        bad += _reported_mismatch(s)
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
        led, why = _ledger_or(s, "TTT-3", strict=False)
        if why is not None:
            out.append(why)
            continue
        bad = _reported_mismatch(s)
        if bad:
            out.append(violation("TTT-3", f"{s.name}: the reported score is not the ledger's single pass ({bad[0]})"))
        else:
            out.append(result("TTT-3", PASS, f"{s.name}: one ledger, one pass of {len(led.entries)} chunks; the "
                                             "reported score is its sum"))
        e = _stage(s, "eval")
        if e is not None and "plain_val_bpb" in e.metrics:
            out.append(result("TTT-3", INFO, f"{s.name}: a diagnostic plain pass ran after the reported one "
                                             f"(plain_val_bpb {e.metrics['plain_val_bpb']:.6f}); it is not the score"))
        replay = _probe(s, "R-replay")
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
        led, why = _ledger_or(s, "TTT-4", strict=False)
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
        led, why = _ledger_or(s, "TTT-5", strict=False)
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
        e = _stage(s, "eval")
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


def _probe_results(ev: Evidence, rule: str, names: tuple[str, ...], what: str) -> Results:
    out: Results = []
    for s in ev.seeds:
        if s.probes is None:
            if _stage(s, "pack") is not None:
                out.append(result(rule, INFO, f"{s.name}: {what}; not probed (pass --probe)"))
            continue
        for name in names:
            p = _probe(s, name)
            if p is None:
                continue
            if p.violations:
                out.append(violation(rule, f"{s.name}: {name} fired at {p.violations} of {n(p.positions)} probed "
                                           f"positions ({p.detail})"))
            else:
                out.append(result(rule, PASS, f"{s.name}: {name} held at {n(p.positions)} positions ({p.detail})"))
    return out or [result(rule, INFO, "no packed model to probe")]


def no_slot(ev: Evidence) -> Results:
    return _probe_results(ev, "TTT-7", ("P-tgt", "P-pre"), "adaptation spans are checked under TTT-1")


def state_from_scored(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = _ledger_or(s, "TTT-8", strict=False)
        if why is not None:
            out.append(why)
            continue
        bad = []
        entries, initial = led.entries, led.header.get("params_initial")
        cfg = led.header.get("config") if isinstance(led.header.get("config"), dict) else {}
        doc_mode = bool(cfg.get("doc_independent"))
        starts = s.data.doc_starts if s.data is not None else np.zeros(0, np.int64)
        doc_of = lambda p: int(np.searchsorted(starts, p, side="right")) - 1  # noqa: E731
        adapted_on: int | None = None  # the document whose spans shaped the current state (doc mode)
        for i, e in enumerate(entries):
            where = f"chunk {i} [{n(e.start)}, {n(e.end)})"
            if i > 0 and not e.reset and not entries[i - 1].steps and entries[i - 1].params_after != e.params_before:
                bad.append(f"{where}: parameters changed after chunk {i - 1} with no recorded adaptation step: eval "
                           "state from tokens the ledger does not show")
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


# ============================================================================ 5. metric


def bpb_denominator(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = _ledger_or(s, "MET-1", strict=False)
        if why is not None:
            out.append(why)
            continue
        totals = ledger_totals(s)
        d, facts = _stage(s, "data"), s.data
        # B: the data manifest's (pgolf data), else the lookup tables rebuilt from the tokenizer (official shards).
        m = d.metrics if d is not None else {"val_bytes": facts.lut_bytes if facts is not None else None}
        if totals is None or m.get("val_bytes") is None:
            what = "ledger entries" if totals is None else "data manifest or tokenizer"
            out.append(violation("MET-1", f"{s.name}: no {what}: the denominator cannot be checked"))
            continue
        bad = []
        expected = m.get("val_bytes")
        if totals.bytes != expected:
            raw = m.get("val_bytes_raw")
            hint = " (the raw UTF-8 bytes of the documents, not the normalized text)" if totals.bytes == raw else ""
            gain = ""
            if expected:
                gain = f"; with the right denominator val_bpb is {totals.nll_sum / (LN2 * expected):.6f}, not " \
                       f"{totals.val_bpb:.6f}"
            source = "the data manifest's val_bytes" if d is not None else "the lookup tables' total"
            bad.append(f"the ledger's byte total {n(totals.bytes)} differs from {source} {n(expected)}{hint}{gain}")
        if facts is not None and facts.sidecar_bytes is not None and facts.sidecar_bytes != expected:
            bad.append(f"the byte sidecar on disk sums to {n(facts.sidecar_bytes)}, the data manifest says "
                       f"{n(expected)}")
        if facts is not None and facts.lut_bytes is not None and facts.lut_bytes != expected:
            bad.append(f"the lookup tables rebuilt from tokenizer.model give {n(facts.lut_bytes)} bytes, the data "
                       f"manifest {n(expected)}")
        claims = dict(_claims(s))
        bpb, loss = claims.get("eval manifest val_bpb"), claims.get("eval manifest val_loss")
        if bpb is not None and not math.isclose(bpb, totals.val_bpb, rel_tol=0, abs_tol=CLAIM_TOLERANCE):
            bad.append(f"the claimed val_bpb {bpb:.8f} is more than 1e-6 from the ledger's {totals.val_bpb:.8f}")
        if bpb is not None and loss is not None and totals.bytes:
            implied = loss / LN2 * totals.tokens / totals.bytes
            if not math.isclose(bpb, implied, rel_tol=0, abs_tol=CLAIM_TOLERANCE):
                bad.append(f"val_bpb {bpb:.8f} != val_loss / ln2 * n / B = {implied:.8f}")
        if bad:
            out.extend(violation("MET-1", f"{s.name}: {b}") for b in bad)
        else:
            ways = "the ledger, " + ("the data manifest" if d is not None else "the lookup tables")
            ways += ", the sidecar" if facts and facts.sidecar_bytes is not None else ""
            ways += " and the rebuilt lookup tables" if facts and facts.lut_bytes is not None and d is not None else ""
            out.append(result("MET-1", PASS, f"{s.name}: B = {n(totals.bytes)} bytes in {ways}; val_bpb "
                                             f"{totals.val_bpb:.8f} = Σnll / (ln2 · B)"))
    return out


def byte_table(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        f = s.data
        if f is None:
            continue
        if f.lut_bytes is None:
            out.append(result("MET-2", WARN, f"{s.name}: no tokenizer.model with the data: the lookup tables cannot "
                                             "be rebuilt"))
            continue
        bad = []
        if f.standalone_space is False:
            bad.append("the tokenizer has no standalone '▁' piece: spaces become byte pieces and bpb reads ~20% low "
                       "(#897)")
        if f.lut_sidecar_mismatch:
            ex = "; ".join(f"position {e['position']} {e['piece']!r}: table {e['lut']}, sidecar {e['sidecar']}"
                           for e in f.mismatch_examples[:3])
            bad.append(f"{n(f.lut_sidecar_mismatch)} val targets where the rebuilt lookup table and the sidecar "
                       f"disagree ({ex})")
        if f.docs_decode_mismatch:
            bad.append(f"{n(f.docs_decode_mismatch)} of {n(f.docs_checked)} val documents whose byte counts differ "
                       "from len(decode(ids))")
        if bad:
            out.extend(violation("MET-2", f"{s.name}: {b}") for b in bad)
        elif f.lut_sidecar_mismatch is None:
            out.append(result("MET-2", INFO, f"{s.name}: no byte sidecar: the lookup tables are the only count"))
        else:
            out.append(result("MET-2", PASS, f"{s.name}: tables rebuilt from tokenizer.model agree with the sidecar on "
                                             f"all {n(f.val_tokens - 1)} targets; {n(f.docs_checked)} documents decode "
                                             "to their byte counts; '▁' is a piece"))
    return out or [result("MET-2", INFO, "no data to check")]


def lossless_tokenizer(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        f, d = s.data, _stage(s, "data")
        if f is None:
            continue
        bad = []
        if f.unknown_tokens:
            bad.append(f"{n(f.unknown_tokens)} <unk> tokens in val: the tokenizer loses text")
        check = (d.metrics.get("bpb_check") if d is not None else None) or {}
        lossy = check.get("docs_sidecar_vs_normalized")
        if lossy:
            bad.append(f"{n(lossy)} val documents decode to other text than their normalization (data build check)")
        if bad:
            out.extend(violation("MET-3", f"{s.name}: {b}") for b in bad)
        else:
            note = "" if lossy is not None else " (the data manifest has no build-time text check)"
            out.append(result("MET-3", PASS, f"{s.name}: no <unk> in val; every val document decodes to its normalized "
                                             f"text{note}"))
    return out or [result("MET-3", INFO, "no data to check")]


def coverage(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = _ledger_or(s, "MET-4", strict=True)
        if why is not None:
            out.append(why)
            continue
        P = s.data.val_tokens - 1 if s.data is not None else int(led.header.get("num_positions", 0))
        bad = []
        if led.header.get("num_positions") is not None and led.header["num_positions"] != P:
            bad.append(f"the eval covered a stream of {n(led.header['num_positions'])} positions, the val set has "
                       f"{n(P)}")
        covered, cursor = 0, 0
        for a, b in sorted((e.start, e.end) for e in led.entries):
            if a > cursor:
                bad.append(f"positions [{n(cursor)}, {n(a)}) were never scored (a gap)")
            covered += max(0, b - max(a, cursor))
            cursor = max(cursor, b)
        if cursor < P:
            bad.append(f"the last {n(P - cursor)} positions [{n(cursor)}, {n(P)}) were never scored (a dropped tail)")
        if cursor > P:
            bad.append(f"positions up to {n(cursor)} were scored, the val set has {n(P)}")
        for a, b in _duplicates(led.entries):
            bad.append(f"positions [{n(a)}, {n(b)}) scored more than once")
        if bad:
            frac = covered / P if P else 0.0
            out.extend(violation("MET-4", f"{s.name}: {b}") for b in bad[:10])
            out.append(result("MET-4", INFO, f"{s.name}: {n(covered)} of {n(P)} positions covered ({frac:.2%})"))
        else:
            out.append(result("MET-4", PASS, f"{s.name}: all {n(P)} positions scored exactly once in "
                                             f"{len(led.entries)} chunks"))
    return out


def normalized(ev: Evidence) -> Results:
    return _probe_results(ev, "MET-5", ("P-norm",), "pgolf's GPT scores with a log-softmax over its whole vocabulary")


def causal(ev: Evidence) -> Results:
    return _probe_results(ev, "MET-6", ("P-pre",), "pgolf's GPT uses causal attention")


def target_independent(ev: Evidence) -> Results:
    return _probe_results(ev, "MET-7", ("P-tgt",), "pgolf's GPT reads the target only in the loss")


def doc_isolation(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led = s.ledger if s.ledger is not None and s.ledger.error is None else None
        cfg = led.header.get("config", {}) if led is not None and isinstance(led.header.get("config"), dict) else {}
        if cfg.get("doc_independent") and s.data is not None:
            starts = set(s.data.doc_starts.tolist())
            crossing = [e for e in led.entries if any(p in starts for p in range(e.start + 1, e.end))] \
                if len(starts) < 1_000_000 else []
            if crossing:
                e = crossing[0]
                out.append(violation("MET-8", f"{s.name}: document-independent eval, but chunk {e.index} "
                                              f"[{n(e.start)}, {n(e.end)}) crosses a document start"))
            else:
                out.append(result("MET-8", PASS, f"{s.name}: document-independent eval: no chunk crosses a BOS "
                                                 "(windows never do)"))
        p = _probe(s, "P-doc")
        if p is not None:
            if p.violations:
                out.append(violation("MET-8", f"{s.name}: the model claims isolation at BOS, but P-doc fired at "
                                              f"{p.violations} of {n(p.positions)} windows ({p.detail})"))
            else:
                out.append(result("MET-8", PASS, f"{s.name}: P-doc held on {n(p.positions)} windows ({p.detail})"))
        elif s.probe_claims_isolation and s.probes is None:
            out.append(result("MET-8", INFO, f"{s.name}: the model claims isolation at BOS; not probed (pass --probe)"))
        if not cfg.get("doc_independent") and not s.probe_claims_isolation and _stage(s, "eval") is not None:
            out.append(result("MET-8", INFO, f"{s.name}: flat-stream eval in val order; no isolation claimed"))
    return out or [result("MET-8", INFO, "no eval artifact")]


# ============================================================================ 6. statistics


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


# What may differ between seeds of one config: the seed, and the quantize stage's calibration
# provenance recorded beside its config (paths and hashes of what it read; its settings are compared).
NOT_CONFIG = {("train", "seed"), ("quant", "calibration")}


def config_signature(s: SeedEvidence) -> dict[str, Any]:
    """Everything that must agree between seeds of one config: stage configs (train seed removed) and data identity."""
    sig_: dict[str, Any] = {}
    for kind in ("train", "quant", "pack", "eval"):
        st = _stage(s, kind)
        if st is None:
            continue
        cfg = {k: v for k, v in st.config.items() if (kind, k) not in NOT_CONFIG}
        sig_.update(_flat(cfg, kind))
    d = _stage(s, "data")
    if d is not None:
        for k in ("val_docs_sha256", "train_docs_sha256", "tokenizer_sha256", "val_tokens", "val_docs"):
            sig_[f"data.{k}"] = d.metrics.get(k)
    return sig_


def _trained_on(s: SeedEvidence) -> tuple[Any, ...]:
    """What a seed's launch trained on: when its data_sha256 is the data manifest the lineage reaches, the
    files that manifest lists (two builds of the same data are the same data); else its data_sha256 as is."""
    launched = s.launch.record.get("data_sha256")
    data = _stage(s, "train_data") or _stage(s, "data")
    if data is None or data.manifest is None or data.manifest_sha256 != launched:
        return ("data_sha256", launched)
    return ("files", tuple(sorted((f.path, f.sha256) for f in data.files)))


def _launch_consistency(ev: Evidence) -> Results:
    """STAT-1 from the launch ledger, for several seeds: each launch records the config its train manifest
    holds, and the seeds were launched with one config (config_sha256) on one data (data_sha256). Nothing
    when fewer than two seeds have a launch record: the manifests alone judge STAT-1 then."""
    found = [s for s in ev.seeds if s.launch is not None]
    if not ev.multi or len(found) < 2:
        return []
    out: Results = []
    for s in found:
        if s.launch.record.get("config_sha256") != s.launch.config_sha256:
            out.append(violation("STAT-1", f"{s.name}: its launch record in {s.launch.ledger} names another config "
                                           "than its train manifest"))
    s0 = found[0]
    config0, data0 = s0.launch.record.get("config_sha256"), _trained_on(s0)
    for s in found[1:]:
        config = s.launch.record.get("config_sha256")
        if config != config0:
            out.append(violation("STAT-1", f"{s.name} was launched with another config than {s0.name} (run.json "
                                           f"config_sha256 {str(config)[:12]} vs {str(config0)[:12]})"))
        if _trained_on(s) != data0:
            out.append(violation("STAT-1", f"{s.name} was launched on other data than {s0.name} (run.json "
                                           f"data_sha256 {str(s.launch.record.get('data_sha256'))[:12]} vs "
                                           f"{str(s0.launch.record.get('data_sha256'))[:12]})"))
    if not out:
        unrecorded = [s.name for s in ev.seeds if s.launch is None]
        out.append(result("STAT-1", PASS, f"the launch ledger records {', '.join(s.name for s in found)} launched "
                                          f"with one config (config_sha256 {str(config0)[:12]}) on one data"
                                          + (f"; no launch record for {', '.join(unrecorded)}" if unrecorded else "")))
    return out


def seeds_check(ev: Evidence) -> Results:
    """STAT-1: the manifests' configs and data agree across seeds, the seeds are distinct (at least 3 on a
    claim); then the launch ledger's view of the same (`_launch_consistency`)."""
    out: Results = []
    runs = ev.seeds
    seeds = [s.seed for s in runs]
    if len(runs) > 1:
        base = config_signature(runs[0])
        for s in runs[1:]:
            other = config_signature(s)
            diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            if diff:
                shown = "; ".join(f"{k}: {base.get(k)!r} vs {other.get(k)!r}" for k in diff[:4])
                out.append(violation("STAT-1", f"{s.name} is from another config than {runs[0].name} ({shown}"
                                               f"{'; ...' if len(diff) > 4 else ''})"))
        dup = sorted({x for x in seeds if x is not None and seeds.count(x) > 1})
        if dup:
            out.append(violation("STAT-1", f"seed(s) {dup} appear more than once: repeated seeds are not "
                                           "independent runs"))
    distinct = len({x if x is not None else id(s) for x, s in zip(seeds, runs)})
    if ev.options.claim and distinct < 3:
        out.append(violation("STAT-1", f"{distinct} seed(s); a record needs at least 3 from one config"))
    elif not out:
        if distinct >= 3:
            out.append(result("STAT-1", PASS, f"{distinct} seeds {seeds} from one config"))
        else:
            out.append(result("STAT-1", INFO, f"{distinct} seed(s) {seeds}: a record claim needs at least 3 (pass one "
                                              "DIR per seed)"))
    return out + _launch_consistency(ev)


def significance_check(ev: Evidence) -> Results:
    records = [seed_record(s) for s in ev.seeds]
    block = sig.significance(records, ev.options.reference_bpb)
    if not ev.options.reference_bpb:
        return [result("STAT-2", INFO, "no reference given (--reference-bpb): significance not tested")]
    if block["verdict"] is None:
        return [violation("STAT-2", f"cannot test: {block['problem']}")]
    out = [result("STAT-2", block["verdict"], sig.describe(block))]
    if len(ev.options.reference_bpb) == 1:
        out.append(result("STAT-2", WARN, "the reference is a single number, not per-seed values: one-sample test "
                                          "against it (rules.md §8.6)"))
    return out


def _seed_list(seeds: Iterable[Any]) -> str:
    """`7, 8, 10`: seeds in order (a malformed one, not an int, after them)."""
    return ", ".join(str(x) for x in sorted(seeds, key=lambda x: (not isinstance(x, int),
                                                                   x if isinstance(x, int) else str(x))))


def launched_seeds(ev: Evidence) -> Results:
    """STAT-3: every seed the launch ledger (run.json) records as launched with the claimed config is among
    the runs verified. Without a ledger a hidden seed cannot be seen: a claim gets the rulebook's WARN."""
    claimed = ev.options.claim or ev.options.strict
    recorded = [s for s in ev.seeds if s.launch is not None]
    unrecorded = [s.name for s in ev.seeds if s.launch is None]
    if not recorded:
        if ev.options.claim:
            return [result("STAT-3", WARN, f"no launch ledger (the run.json of `pgolf run`) records these runs: every "
                                           f"run launched with this config must be reported (here: {len(ev.seeds)})")]
        return [result("STAT-3", INFO, "no record claim, and no launch ledger (the run.json of `pgolf run`) records "
                                       "this run")]
    launched: set[Any] = set()
    for s in recorded:
        launched |= s.launch.seeds_launched(s.launch.config_sha256)
    reported = {s.seed for s in ev.seeds}
    missing = launched - reported
    ledgers = ", ".join(sorted({s.launch.ledger for s in recorded}))
    out: Results = []
    if missing and claimed:
        out.append(violation("STAT-3", f"seed(s) {_seed_list(missing)} launched with this config ({ledgers}) are not "
                                       "among the runs verified: every launched seed must be reported"))
    elif missing:
        out.append(result("STAT-3", INFO, f"no record claim; seed(s) {_seed_list(missing)} launched with this config "
                                          f"({ledgers}) are not among the runs verified"))
    if unrecorded and ev.options.claim:
        out.append(result("STAT-3", WARN, f"no launch ledger records {', '.join(unrecorded)}: every run launched "
                                          "with its config must be reported"))
    if not out:
        out.append(result("STAT-3", PASS if claimed else INFO,
                          f"every seed the launch ledger ({ledgers}) records as launched with this config "
                          f"({_seed_list(launched)}) is among the runs verified"))
    return out


def reported_numbers(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        bad = _reported_mismatch(s)
        totals, e = ledger_totals(s), _stage(s, "eval")
        if totals is not None and e is not None:
            for key, truth in (("val_tokens", totals.tokens), ("val_bytes", totals.bytes)):
                if e.metrics.get(key) is not None and e.metrics[key] != truth:
                    bad.append(f"eval manifest {key} {n(e.metrics[key])} differs from the ledger's {n(truth)}")
        tr = _stage(s, "train")
        if tr is not None and tr.file("log.txt") is None:
            bad.append("the train artifact lists no log.txt: the run's log is missing")
        if e is not None and s.eval_report is None and any(f.path == "report.json" for f in e.files):
            bad.append("eval/report.json cannot be read")
        out.extend(violation("STAT-4", f"{s.name}: {b}") for b in bad)
        if not bad and e is not None:
            out.append(result("STAT-4", PASS, f"{s.name}: the eval's numbers equal the ledger's; the train log is "
                                              "kept"))
    if ev.folder is not None:
        out.extend(_folder_numbers(ev))
    return out or [result("STAT-4", INFO, "no eval artifact")]


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=CLAIM_TOLERANCE)
    return a == b


def _folder_numbers(ev: Evidence) -> Results:
    f = ev.folder
    sub = f.submission
    if sub is None:
        return [violation("STAT-4", f"{f.name}/submission.json cannot be read ({f.error})")]
    records = [seed_record(s) for s in ev.seeds]
    block = sig.per_seed(records)
    bad = []
    expect = {"val_bpb": block["mean_bpb"], "val_loss": block["mean_loss"], "val_bpb_std": block["std_bpb"],
              "val_loss_std": block["std_loss"],
              "bytes_total": max((r.artifact_bytes or 0) for r in records),
              "seeds": [r.seed for r in records]}
    for key, value in expect.items():
        if not _close(sub.get(key), value):
            bad.append(f"submission.json {key} {sub.get(key)!r} differs from the evidence's {value!r}")
    results = sub.get("seed_results") or {}
    for r in records:
        got = results.get(str(r.seed if r.seed is not None else r.label))
        if got is None:
            bad.append(f"submission.json has no seed_results entry for {r.seed}")
            continue
        for key in ("val_bpb", "val_loss", "artifact_bytes", "bytes_code", "train_time_s", "eval_time_s", "steps"):
            if not _close(got.get(key), getattr(r, key)):
                bad.append(f"seed {r.seed}: submission.json {key} {got.get(key)!r} differs from the evidence's "
                           f"{getattr(r, key)!r}")
    codes = {s.code for s in ev.seeds if s.code is not None}
    if len(codes) == 1 and f.code_sha256 is not None:
        import hashlib

        if hashlib.sha256(next(iter(codes)).encode("utf-8")).hexdigest() != f.code_sha256:
            bad.append("the folder's train_gpt.py is not the packed one")
    if bad:
        return [violation("STAT-4", f"{f.name}: {b}") for b in bad]
    return [result("STAT-4", PASS, f"{f.name}: submission.json matches the per-seed evidence")]


# ============================================================================ 7. folder


def log_name(seed: SeedEvidence) -> str:
    return f"train_seed{seed.seed}.log" if seed.seed is not None else f"train_{seed.label}.log"


def required_files(ev: Evidence) -> Results:
    f = ev.folder
    if f is None:
        return [result("FMT-2", INFO, "no submission folder written (pass --submission OUT)")]
    need = ["README.md", "submission.json", "train_gpt.py", *(log_name(s) for s in ev.seeds)]
    missing = [x for x in need if x not in f.files]
    extra = sorted({m for _, scan in code_groups(ev) for m in scan.third_party()})
    if extra and "requirements.txt" not in f.files:
        missing.append(f"requirements.txt (for {', '.join(extra)})")
    if missing:
        return [violation("FMT-2", f"{f.name}: missing {', '.join(missing)}")]
    return [result("FMT-2", PASS, f"{f.name}: {', '.join(sorted(f.files))}")]


def runs_in_folder(ev: Evidence) -> Results:
    out: Results = []
    for who, scan in code_groups(ev):
        hits = scan.by_rule("FMT-3")
        out.extend(violation("FMT-3", f"{who}: {h.text()}") for h in hits)
        if not hits:
            out.append(result("FMT-3", PASS, f"{who}: train_gpt.py compiles; no absolute path in its literals"))
    return out or [result("FMT-3", INFO, "no shipped code in the lineage")]


def naming(ev: Evidence) -> Results:
    f = ev.folder
    if f is None:
        return [result("FMT-4", INFO, "no submission folder written")]
    out: Results = []
    if not FOLDER_NAME.match(f.name):
        out.append(violation("FMT-4", f"folder {f.name!r} is not named YYYY-MM-DD_Descriptive_Name"))
    missing = [k for k in REQUIRED_JSON_KEYS if k not in (f.submission or {})]
    if missing:
        out.append(violation("FMT-4", f"submission.json lacks {', '.join(missing)}"))
    return out or [result("FMT-4", PASS, f"{f.name}: dated name; submission.json on the pgolf schema")]


# ============================================================================ registry and driver

CHECKS: dict[str, Callable[[Evidence], Results]] = {
    "lineage": lineage,
    "size_cap": size_cap, "counted_code": counted_code, "uncounted_code": uncounted_code,
    "dependencies": dependencies, "scored_artifact": scored_artifact,
    "train_time": train_time, "post_training_time": post_training_time, "eval_time": eval_time,
    "hardware": hardware_check,
    "validation_set": validation_set, "train_val_disjoint": train_val_disjoint,
    "no_val_in_training": no_val_in_training, "paid_prefix": paid_prefix, "no_train_in_eval": no_train_in_eval,
    "no_network": no_network, "calibration_source": calibration_source,
    "score_before_update": score_before_update, "first_pass": first_pass, "no_selection": no_selection,
    "no_rescoring": no_rescoring, "epochs": epochs, "warmup": warmup, "no_slot": no_slot,
    "state_from_scored": state_from_scored,
    "bpb_denominator": bpb_denominator, "byte_table": byte_table, "lossless_tokenizer": lossless_tokenizer,
    "coverage": coverage, "normalized": normalized, "causal": causal, "target_independent": target_independent,
    "doc_isolation": doc_isolation,
    "seeds": seeds_check, "significance": significance_check, "launched_seeds": launched_seeds,
    "reported_numbers": reported_numbers,
    "required_files": required_files, "runs_in_folder": runs_in_folder, "naming": naming,
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


__all__ = ["CHECKS", "FAIL", "INFO", "PASS", "WARN", "config_signature", "log_name", "run_checks"]
