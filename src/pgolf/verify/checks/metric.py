"""5. metric (MET-1..8): the bpb denominator, the byte tables, the tokenizer, coverage, and the probes of the
scoring model."""

from __future__ import annotations

import math

from pgolf.verify.checks.common import (
    CLAIM_TOLERANCE,
    Results,
    claimed_values,
    duplicate_spans,
    find_probe,
    ledger_or,
    n,
    probe_results,
    stage_of,
)
from pgolf.verify.evidence import Evidence
from pgolf.verify.records import LN2, ledger_totals
from pgolf.verify.results import result, violation
from pgolf.verify.rules import INFO, PASS, WARN


def bpb_denominator(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = ledger_or(s, "MET-1", strict=False)
        if why is not None:
            out.append(why)
            continue
        totals = ledger_totals(s)
        d, facts = stage_of(s, "data"), s.data
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
        if facts is not None and facts.raw_bytes is not None and facts.raw_bytes != expected:
            bad.append(f"the CaseOps sidecar re-derived from the raw val documents sums to {n(facts.raw_bytes)} bytes, "
                       f"the data manifest says {n(expected)}")
        claims = dict(claimed_values(s))
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
            ways += " and the raw documents re-encoded and re-tokenized" if facts and facts.raw_bytes is not None \
                else ""
            out.append(result("MET-1", PASS, f"{s.name}: B = {n(totals.bytes)} bytes in {ways}; val_bpb "
                                             f"{totals.val_bpb:.8f} = Σnll / (ln2 · B)"))
    return out


def byte_table(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        f = s.data
        if f is None:
            continue
        if f.transform == "caseops":
            out.extend(_caseops_byte_rule(s.name, f))
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


def _caseops_byte_rule(name: str, f) -> Results:
    """MET-2 on CaseOps data: the lookup-table rule does not apply (it would charge each case-op token the 3 bytes
    of its private-use character). The sidecar is re-derived token by token from the raw documents instead (the
    transform, the tokenizer's surfaces, the inverse transform), and its control tokens checked from the tokens
    alone."""
    if f.transform_error is not None:
        return [violation("MET-2", f"{name}: CaseOps data, but {f.transform_error}")]
    if f.control_mismatch is None:
        return [result("MET-2", WARN, f"{name}: CaseOps data without a byte sidecar or tokenizer: the bytes cannot be "
                                      "re-derived")]
    bad = []
    if f.control_mismatch:
        ex = "; ".join(f"position {e['position']} {e['piece']!r}: the transform charges {e['charge']}, the sidecar "
                       f"{e['sidecar']}" for e in f.control_examples[:3])
        bad.append(f"{n(f.control_mismatch)} case-op tokens charged otherwise than the transform says ({ex})")
    if f.raw_error is not None:
        bad.append(f"the sidecar re-derived from the raw val documents disagrees: {f.raw_error}")
    if bad:
        return [violation("MET-2", f"{name}: {b}") for b in bad]
    decoded = (f"decoding the tokens and inverting the transform gives {n(f.decoded_bytes)} bytes of normalized text "
               f"(the sidecar charges the raw text's {n(f.sidecar_bytes)})") if f.decoded_bytes is not None else ""
    if f.raw_bytes is None:
        return [result("MET-2", WARN, f"{name}: CaseOps data: the sidecar's raw bytes cannot be re-derived here "
                                      f"({f.raw_note}); {n(f.control_tokens)} case-op tokens charged as the transform "
                                      f"says; {decoded}")]
    return [result("MET-2", PASS, f"{name}: CaseOps data (the lookup tables do not apply): the sidecar re-derived "
                                  f"from {n(f.raw_docs)} raw val documents on all {n(f.val_tokens - 1)} targets; "
                                  f"{n(f.control_tokens)} case-op tokens charged as the transform says; {decoded}")]


def lossless_tokenizer(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        f, d = s.data, stage_of(s, "data")
        if f is None:
            continue
        bad = []
        if f.unknown_tokens:
            bad.append(f"{n(f.unknown_tokens)} <unk> tokens in val: the tokenizer loses text")
        check = (d.metrics.get("bpb_check") if d is not None else None) or {}
        if f.transform == "caseops":
            out.extend(_caseops_lossless(s.name, f, check, bad))
            continue
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


def _caseops_lossless(name: str, f, check: dict, bad: list[str]) -> Results:
    """MET-3 on CaseOps data: the transform and the tokens are lossless when every val document's token surfaces,
    inverted, give back the raw document (the build checked it; verify again when the raw documents are here)."""
    built = check.get("docs_surfaces_vs_raw"), check.get("docs_decode_vs_normalized")
    if any(built):
        bad.append(f"the data build found {n(built[0] or 0)} val documents whose tokens do not invert to the raw "
                   f"text and {n(built[1] or 0)} that decode to other text than their normalization")
    if bad:
        return [violation("MET-3", f"{name}: {b}") for b in bad]
    if f.raw_bytes is not None:
        how = f"every one of {n(f.raw_docs)} val documents inverts from its tokens to the raw text (re-derived here)"
    elif built[0] is not None:
        why = f.raw_note or "the re-derivation stopped at the disagreement MET-2 reports"
        how = f"the data build inverted all {n(check.get('docs_checked', 0))} val documents to the raw text " \
              f"(not re-derived here: {why})"
    else:
        how = "the data manifest records no round-trip check"
    return [result("MET-3", PASS, f"{name}: no <unk> in val; CaseOps transform: {how}")]


def coverage(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led, why = ledger_or(s, "MET-4", strict=True)
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
        for a, b in duplicate_spans(led.entries):
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
    return probe_results(ev, "MET-5", ("P-norm",), "pgolf's GPT scores with a log-softmax over its whole vocabulary")


def causal(ev: Evidence) -> Results:
    return probe_results(ev, "MET-6", ("P-pre",), "pgolf's GPT uses causal attention")


def target_independent(ev: Evidence) -> Results:
    return probe_results(ev, "MET-7", ("P-tgt",), "pgolf's GPT reads the target only in the loss")


def doc_isolation(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        led = s.ledger if s.ledger is not None and s.ledger.error is None else None
        cfg = led.header.get("config", {}) if led is not None and isinstance(led.header.get("config"), dict) else {}
        per_doc = cfg.get("doc_independent") or cfg.get("doc_windows")
        what = ("document-independent eval" if cfg.get("doc_independent") else
                "per-document windows (doc_windows; the adapter may carry state across documents, no isolation "
                "claimed)")
        if led is not None and per_doc and s.data is not None:
            starts = set(s.data.doc_starts.tolist())
            crossing = [e for e in led.entries if any(p in starts for p in range(e.start + 1, e.end))] \
                if len(starts) < 1_000_000 else []
            if crossing:
                e = crossing[0]
                out.append(violation("MET-8", f"{s.name}: {what}, but chunk {e.index} "
                                              f"[{n(e.start)}, {n(e.end)}) crosses a document start"))
            else:
                out.append(result("MET-8", PASS, f"{s.name}: {what}: no chunk crosses a BOS (windows never do)"))
        p = find_probe(s, "P-doc")
        if p is not None:
            if p.violations:
                out.append(violation("MET-8", f"{s.name}: the model claims isolation at BOS, but P-doc fired at "
                                              f"{p.violations} of {n(p.positions)} windows ({p.detail})"))
            else:
                out.append(result("MET-8", PASS, f"{s.name}: P-doc held on {n(p.positions)} windows ({p.detail})"))
        elif s.probe_claims_isolation and s.probes is None:
            out.append(result("MET-8", INFO, f"{s.name}: the model claims isolation at BOS; not probed (pass --probe)"))
        if cfg.get("tilt", "none") != "none" and stage_of(s, "eval") is not None:
            out.append(result("MET-8", INFO, f"{s.name}: the {cfg.get('tilt')} tilt's state runs over the whole val "
                                             "stream in order (PR #2135): each position's tilt depends on earlier "
                                             "documents' scored tokens, so the scored distribution is not isolated "
                                             "at BOS (P-doc not claimed)"))
        if not per_doc and not s.probe_claims_isolation and stage_of(s, "eval") is not None:
            out.append(result("MET-8", INFO, f"{s.name}: flat-stream eval in val order; no isolation claimed"))
    return out or [result("MET-8", INFO, "no eval artifact")]
