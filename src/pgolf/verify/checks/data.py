"""3. data (DATA-1..7): the validation set, train/val disjointness, what each stage read, calibration data."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pgolf.verify.checks.common import Results, code_groups, gptq_calibration, n, stage_of
from pgolf.verify.evidence import (
    CANONICAL_CASEOPS_EVAL_LEN,
    CANONICAL_CASEOPS_VAL_TARGETS,
    CANONICAL_VAL_DOCS,
    Evidence,
    StageFacts,
    first,
)
from pgolf.verify.results import result, violation
from pgolf.verify.rules import INFO, PASS, WARN

PAID_PREFIX_FAIL_HITS = 8  # 8 sampled 32-grams = at least 256 consecutive val tokens stored verbatim
# Verbatim duplicates of more than 10% of the val documents are an overlap, not chance (corpora repeat some pages).
OVERLAP_FAIL_FRACTION = 0.1


def validation_set(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        if stage_of(s, "eval") is None and s.data is None:
            out.append(result("DATA-1", INFO, f"{s.name}: no eval artifact"))
            continue
        d, facts = stage_of(s, "data"), s.data
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
        # A record claim on another validation set is not a record (a development run only WARNs).
        record = ev.options.strict and ev.options.track.record
        if ev.options.track.canonical_val and docs != CANONICAL_VAL_DOCS:
            what = (f"{s.name}: val is the first {n(docs)} documents of {_corpus(d)}; the challenge's is the first "
                    f"{n(CANONICAL_VAL_DOCS)} FineWeb documents: scores are not comparable")
            out.append(violation("DATA-1", what) if record else result("DATA-1", WARN, what))
        elif ev.options.track.canonical_val and m.get("transform") == "caseops":
            out.append(_caseops_val_count(s.name, facts.val_tokens, record))
    return out


def _caseops_val_count(name: str, val_tokens: int, record: bool):
    """The canonical CaseOps val set (PR #2135's logs: val_tokens == target_tokens == 47,851,520 for 50,000
    documents, the stream cut to a multiple of 2,560): a rebuild of it must give that many targets once cut."""
    cut = (val_tokens - 1) // CANONICAL_CASEOPS_EVAL_LEN * CANONICAL_CASEOPS_EVAL_LEN
    if cut == CANONICAL_CASEOPS_VAL_TARGETS:
        return result("DATA-1", PASS, f"{name}: CaseOps val: {n(val_tokens - 1)} targets, "
                                      f"{n(CANONICAL_CASEOPS_VAL_TARGETS)} in multiples of "
                                      f"{n(CANONICAL_CASEOPS_EVAL_LEN)}, as the canonical CaseOps records score")
    what = (f"{name}: CaseOps val has {n(val_tokens - 1)} targets ({n(cut)} in multiples of "
            f"{n(CANONICAL_CASEOPS_EVAL_LEN)}); the canonical CaseOps val set scores "
            f"{n(CANONICAL_CASEOPS_VAL_TARGETS)} (PR #2135): another document set, tokenizer or transform")
    return violation("DATA-1", what) if record else result("DATA-1", WARN, what)


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


def _where(per: dict[str, int]) -> str:
    top = sorted(per.items(), key=lambda kv: -kv[1])
    more = f" and {len(top) - 3} more" if len(top) > 3 else ""
    return ", ".join(f"{k} ({n(v)})" for k, v in top[:3]) + more


def train_val_disjoint(ev: Evidence) -> Results:
    """Val documents against every training shard the train manifest's lineage names (its `train_shard`
    inputs and the train split of its data directory), plus the data manifests' document ranges."""
    out: Results = []
    for s in ev.seeds:
        d, tr, facts = stage_of(s, "data"), stage_of(s, "train"), s.data
        if d is None and tr is None:
            continue
        # The data the trainer read: its own data directory, the eval's (same directory or no train stage).
        td = stage_of(s, "train_data") or (d if tr is None or tr.input("data") is not None else None)
        notes: list[str] = []
        if d is not None and td is not None:
            val, train = d.metrics.get("val_doc_range"), td.metrics.get("train_doc_range")
            if td is not d and _data_identity(td) != _data_identity(d):
                notes.append(f"trained on other data ({td.dir}) than it was scored on")
            else:
                both = _overlap(val, train)
                if both is not None:
                    out.append(violation("DATA-2", f"{s.name}: documents [{n(both[0])}, {n(both[1])}) are in both val "
                                                   f"{val} and train {train}"))
                    continue
                if val is not None and train is not None:
                    notes.append(f"val documents {val}, train documents {train}")
        if facts is None:
            out.append(result("DATA-2", WARN, f"{s.name}: the validation data cannot be read: the training data "
                                              "was not scanned for val documents"))
            continue
        for why in facts.train_unreadable:
            out.append(violation("DATA-2", f"{s.name}: training input {why}: it cannot be scanned for val documents "
                                           "(LINEAGE re-hashes it too)"))
        if facts.overlap_docs:
            frac = facts.overlap_docs / max(1, facts.val_docs)
            msg = (f"{s.name}: {n(facts.overlap_docs)} of {n(facts.val_docs)} val documents occur verbatim in the "
                   f"training data: {_where(facts.overlap_by_source) or 'the training shards'}")
            if frac > OVERLAP_FAIL_FRACTION or ev.options.strict:
                out.append(violation("DATA-2", msg))
            else:
                out.append(result("DATA-2", WARN, f"{msg} (duplicates within the corpus? a record claim FAILs)"))
            continue
        if facts.train_unreadable:
            continue
        if facts.overlap_docs is None:
            why = facts.overlap_note or "the training shards were not scanned for val documents"
            if not facts.train_sources and tr is not None:
                why = "the train manifest names no training shard: the training data's provenance is unknown"
            # Disjoint document ranges of one data build still say something; a scan that did not run is no PASS.
            level = INFO if notes and notes[-1].startswith("val documents") else WARN
            out.append(result("DATA-2", level, f"{s.name}: {'; '.join([*notes, why])}"))
            continue
        scanned = (f"no val document in the {n(len(facts.train_sources))} training shard(s) of the lineage "
                   f"({n(facts.train_tokens)} tokens)")
        out.append(result("DATA-2", PASS, f"{s.name}: {'; '.join([*notes, scanned])}"))
    return out or [result("DATA-2", INFO, "no data or train artifact")]


def no_val_in_training(ev: Evidence) -> Results:
    out: Results = []
    for who, scan in code_groups(ev):
        out.extend(result("DATA-3", f.verdict, f"{who}: {f.text()}") for f in scan.by_rule("DATA-3"))
    for s in ev.seeds:
        tr = stage_of(s, "train")
        if tr is None:
            continue
        kinds = sorted({i.kind for i in tr.inputs})
        every = tr.config.get("val_every")
        diag = (f"periodic val loss every {every} steps is a diagnostic that selects nothing "
                f"(weights: {tr.metrics.get('weights', '?')})" if every else "no periodic validation")
        if kinds and not set(kinds) <= {"data", "val_shard", "tokenizer", "train_shard"}:
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
            st = stage_of(s, kind)
            for i in st.inputs if st is not None else []:
                if _reads_val(i):
                    out.append(violation("DATA-4", f"{s.name}: the {kind} stage read validation data ({i.kind} "
                                                   f"{i.path}): the artifact may carry it"))
        pp = s.paid_prefix
        if pp is None:
            if stage_of(s, "pack") is not None:
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
        e = stage_of(s, "eval")
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
        # a download call or program is a FAIL from the scan; an import alone a WARN (a static hit)
        out.extend(result("DATA-6", f.verdict, f"{who}: {f.text()} (static hit)") for f in hits)
        if not hits:
            out.append(result("DATA-6", PASS, f"{who}: no network module or download in train_gpt.py (static; "
                                              "sockets at run time: --audit)"))
    return out or [result("DATA-6", INFO, "no shipped code in the lineage")]


def calibration_source(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        q = stage_of(s, "quant")
        if q is None:
            continue
        gptq, source, _ = gptq_calibration(q)
        val_inputs = [i.path for i in q.inputs if _reads_val(i)]
        # The provenance the quantize stage records: every shard read, by name and sha256.
        prov = c if isinstance(c := q.config.get("calibration"), dict) else {}
        d = stage_of(s, "data")
        val_files = {f.listed_sha256: f.path for f in d.files
                     if f.path.startswith(("fineweb_val_", "bytes_val_"))} if d is not None else {}
        val_inputs += [str(sh.get("name")) for sh in prov.get("shards") or [] if isinstance(sh, dict) and (
            str(sh.get("name", "")).startswith(("fineweb_val_", "bytes_val_")) or sh.get("sha256") in val_files)]
        facts = s.data
        if str(source).lower() in ("val", "validation") or val_inputs:
            what = f"source {source!r}" if not val_inputs else f"{val_inputs[0]}"
            out.append(violation("DATA-7", f"{s.name}: calibration from validation data ({what}); only training data "
                                           "or self-generated tokens may calibrate"))
        elif facts is not None and (facts.calib_overlap or facts.calib_unreadable):
            # Per document: a val document anywhere in the calibration shards (renamed, truncated, mixed in).
            out.extend(violation("DATA-7", f"{s.name}: calibration shard {why}: it cannot be scanned for val "
                                           "documents") for why in facts.calib_unreadable)
            if facts.calib_overlap:
                out.append(violation("DATA-7", f"{s.name}: {n(facts.calib_overlap)} of {n(facts.val_docs)} val "
                                               "documents occur verbatim in the GPTQ calibration data: "
                                               f"{_where(facts.calib_overlap_by_source)}"))
        elif not gptq:
            out.append(result("DATA-7", PASS, f"{s.name}: no calibration (GPTQ off)"))
        elif source not in ("train", "self"):
            out.append(violation("DATA-7", f"{s.name}: GPTQ calibration from an undeclared source ({source!r})"))
        else:
            tokens = first(q.config, "calib_tokens", default=first(q.metrics, "calib_tokens"))
            what = "training data" if source == "train" else "self-generated tokens"
            if facts is not None and facts.calib_sources:
                scan = (f"; no val document in its {len(facts.calib_sources)} shard(s)"
                        if facts.calib_overlap == 0 else f"; {facts.calib_note}")
                if facts.calib_overlap is None:  # over the scan budget: not scanned, no PASS
                    out.append(result("DATA-7", WARN, f"{s.name}: GPTQ calibrated on {what} ({n(tokens)} "
                                                      f"tokens){scan}"))
                    continue
                what += scan
            out.append(result("DATA-7", PASS, f"{s.name}: GPTQ calibrated on {what} ({n(tokens)} tokens)"))
    return out or [result("DATA-7", INFO, "no quant artifact")]


def validation_fit(ev: Evidence) -> Results:
    """CONTAM-1: with --probe, the packed model's bpb on val against the held-out split of its data build (documents
    of the same distribution that no stage read). Val scored better than held-out by more than the margin
    plus what the choice of documents explains (the one-sided bootstrap bound) -> FAIL."""
    out: Results = []
    for s in ev.seeds:
        if stage_of(s, "pack") is None:
            continue
        c = s.contamination
        if c is None:
            out.append(result("CONTAM-1", INFO, f"{s.name}: not probed (pass --probe to compare the model's bpb on val "
                                              "with the data build's held-out split)"))
            continue
        if c.status != "ran" or c.gap is None or c.lower is None:
            out.append(result("CONTAM-1", WARN, f"{s.name}: the contamination probe cannot run: {c.reason}"))
            continue
        where = (f"val bpb {c.val_bpb:.4f} ({n(c.val_docs)} documents), held-out bpb {c.heldout_bpb:.4f} "
                 f"({n(c.heldout_docs)} documents); in excess of a unigram model, val better by {c.gap:+.4f} bpb "
                 f"(document-bootstrap se {c.gap_se:.4f}; {100 * (1 - c.alpha):g}% lower bound {c.lower:+.4f}, "
                 f"margin {c.margin:g})")
        if c.lower > c.margin:
            out.append(violation("CONTAM-1", f"{s.name}: model fitted to validation: {where}; unseen documents of the "
                                           "same distribution score worse than val beyond what the choice of "
                                           "documents explains (val data in training, or pre-quantization TTT)"))
        else:
            out.append(result("CONTAM-1", PASS, f"{s.name}: {where}: within noise"))
    return out or [result("CONTAM-1", INFO, "no packed model to probe")]
