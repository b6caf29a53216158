"""6. statistics (STAT-1..4): seeds of one config, significance, every launched seed reported, reported numbers."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

from pgolf.config import flat_items
from pgolf.verify import significance as sig
from pgolf.verify.checks.common import CLAIM_TOLERANCE, Results, n, reported_mismatch, stage_of
from pgolf.verify.evidence import Evidence, FolderFacts, LaunchFacts, SeedEvidence
from pgolf.verify.records import ledger_totals, seed_record
from pgolf.verify.results import result, violation
from pgolf.verify.rules import INFO, PASS, WARN

# What may differ between seeds of one config: the seed, and the quantize stage's calibration
# provenance recorded beside its config (paths and hashes of what it read; its settings are compared).
NOT_CONFIG = {("train", "seed"), ("quant", "calibration")}


def config_signature(s: SeedEvidence) -> dict[str, Any]:
    """Everything that must agree between seeds of one config: stage configs (train seed removed) and data identity."""
    sig_: dict[str, Any] = {}
    for kind in ("train", "quant", "pack", "eval"):
        st = stage_of(s, kind)
        if st is None:
            continue
        cfg = {k: v for k, v in st.config.items() if (kind, k) not in NOT_CONFIG}
        sig_.update(flat_items(cfg, kind))
    d = stage_of(s, "data")
    if d is not None:
        for k in ("val_docs_sha256", "train_docs_sha256", "tokenizer_sha256", "val_tokens", "val_docs"):
            sig_[f"data.{k}"] = d.metrics.get(k)
    return sig_


def _trained_on(s: SeedEvidence, launch: LaunchFacts) -> tuple[Any, ...]:
    """What a seed's launch trained on: when its data_sha256 is the data manifest the lineage reaches, the
    files that manifest lists (two builds of the same data are the same data); else its data_sha256 as is."""
    launched = launch.record.get("data_sha256")
    data = stage_of(s, "train_data") or stage_of(s, "data")
    if data is None or data.manifest is None or data.manifest_sha256 != launched:
        return ("data_sha256", launched)
    return ("files", tuple(sorted((f.path, f.sha256) for f in data.files)))


def _launch_consistency(ev: Evidence) -> Results:
    """STAT-1 from the launch ledger, for several seeds: each launch records the config its train manifest
    holds, and the seeds were launched with one config (config_sha256) on one data (data_sha256). Nothing
    when fewer than two seeds have a launch record: the manifests alone judge STAT-1 then."""
    found = [(s, s.launch) for s in ev.seeds if s.launch is not None]
    if not ev.multi or len(found) < 2:
        return []
    out: Results = []
    for s, launch in found:
        if launch.record.get("config_sha256") != launch.config_sha256:
            out.append(violation("STAT-1", f"{s.name}: its launch record in {launch.ledger} names another config "
                                           "than its train manifest"))
    s0, launch0 = found[0]
    config0, data0 = launch0.record.get("config_sha256"), _trained_on(s0, launch0)
    for s, launch in found[1:]:
        config = launch.record.get("config_sha256")
        if config != config0:
            out.append(violation("STAT-1", f"{s.name} was launched with another config than {s0.name} (run.json "
                                           f"config_sha256 {str(config)[:12]} vs {str(config0)[:12]})"))
        if _trained_on(s, launch) != data0:
            out.append(violation("STAT-1", f"{s.name} was launched on other data than {s0.name} (run.json "
                                           f"data_sha256 {str(launch.record.get('data_sha256'))[:12]} vs "
                                           f"{str(launch0.record.get('data_sha256'))[:12]})"))
    if not out:
        unrecorded = [s.name for s in ev.seeds if s.launch is None]
        out.append(result("STAT-1", PASS, f"the launch ledger records {', '.join(s.name for s, _ in found)} launched "
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


def _log_missing(ev: Evidence) -> tuple[set[Any], list[str]]:
    """Seeds the local launch log records for a verified config that no verified run of that config has, and
    where they trained (`seed 4 -> /runs/r4/train`)."""
    log = ev.launch_log
    if log is None:
        return set(), []
    missing: set[Any] = set()
    where: list[str] = []
    for config, seeds in log.verified.items():
        for x in log.entries:
            if x.get("config_sha256") == config and x.get("seed") not in seeds:
                missing.add(x.get("seed"))
                if len(where) < 3:
                    where.append(f"seed {x.get('seed')} -> {x.get('out')} ({x.get('host')}, {x.get('started_utc')})")
    return missing, where


def _log_relaunched(ev: Evidence, reported: set[Any]) -> list[str]:
    """Reported seeds the launch log records as freshly launched (not resumed) more than once with a
    verified config: `seed 1337: 2 launches (/runs/a/train, /runs/b/train)`."""
    log = ev.launch_log
    if log is None:
        return []
    outs: dict[Any, list[str]] = {}
    for x in log.entries:
        if x.get("config_sha256") in log.verified and x.get("seed") in reported and not x.get("resume"):
            outs.setdefault(x.get("seed"), []).append(str(x.get("out")))
    return [f"seed {seed}: {len(o)} launches ({', '.join(o[:3])})" for seed, o in sorted(outs.items(), key=str)
            if len(o) > 1]


def launched_seeds(ev: Evidence) -> Results:
    """STAT-3: every seed the launch ledgers record as launched with the claimed config is among the runs
    verified: run.json `launches` of the verified runs, and pgolf's local launch log (every `pgolf train` and
    `pgolf run` launch on this machine, whatever directory it trained into). A hidden seed FAILs a claim
    (several runs, --reference-bpb, --track or --submission) and is an INFO otherwise (a developer who changed
    the seed and re-ran). Without any ledger a hidden seed cannot be seen: a claim gets the rulebook's WARN."""
    claimed = ev.options.claim or ev.options.strict
    recorded = [s.launch for s in ev.seeds if s.launch is not None]
    unrecorded = [s.name for s in ev.seeds if s.launch is None]
    log = ev.launch_log
    logged = log is not None and bool(log.entries)
    out: Results = []
    if log is not None and log.error:
        out.append(result("STAT-3", WARN, f"the launch log cannot be read: {log.error}"))
    if not recorded and not logged:
        if ev.options.claim:
            return out + [result("STAT-3", WARN, f"no launch ledger (the run.json of `pgolf run`, pgolf's launch log) "
                                                 f"records these runs: every run launched with this config must be "
                                                 f"reported (here: {len(ev.seeds)})")]
        return out + [result("STAT-3", INFO, "no record claim, and no launch ledger (the run.json of `pgolf run`) "
                                             "records this run")]
    judged = len(out)
    launched: set[Any] = set()
    for launch in recorded:
        launched |= launch.seeds_launched(launch.config_sha256)
    reported = {s.seed for s in ev.seeds}
    log_missing, where = _log_missing(ev)
    if log is not None:
        launched |= {x.get("seed") for x in log.entries if x.get("config_sha256") in log.verified}
    missing = (launched - reported) | log_missing
    sources = sorted({launch.ledger for launch in recorded})
    if logged and log is not None:
        sources.append(f"launch log {log.path}")
    ledgers = ", ".join(sources)
    seen = f"; {'; '.join(where)}" if where else ""
    if missing and claimed:
        out.append(violation("STAT-3", f"seed(s) {_seed_list(missing)} launched with this config ({ledgers}) are not "
                                       f"among the runs verified: every launched seed must be reported{seen}"))
    elif missing:
        out.append(result("STAT-3", INFO, f"no record claim; seed(s) {_seed_list(missing)} launched with this config "
                                          f"({ledgers}) are not among the runs verified{seen}"))
    relaunched = _log_relaunched(ev, reported)
    if relaunched and claimed:  # best of N launches of one seed is selection too; a crash and rerun is not
        out.append(result("STAT-3", WARN, f"seed(s) launched more than once with this config (launch log "
                                          f"{log.path if log else ''}): {'; '.join(relaunched)}; a claim must "
                                          "report every launch, or say why a seed was re-run"))
    if unrecorded and ev.options.claim and not logged:
        out.append(result("STAT-3", WARN, f"no launch ledger records {', '.join(unrecorded)}: every run launched "
                                          "with its config must be reported"))
    if len(out) == judged:
        out.append(result("STAT-3", PASS if claimed else INFO,
                          f"every seed the launch ledger ({ledgers}) records as launched with this config "
                          f"({_seed_list(launched)}) is among the runs verified"))
    return out


def reported_numbers(ev: Evidence) -> Results:
    out: Results = []
    for s in ev.seeds:
        bad = reported_mismatch(s)
        totals, e = ledger_totals(s), stage_of(s, "eval")
        if totals is not None and e is not None:
            for key, truth in (("val_tokens", totals.tokens), ("val_bytes", totals.bytes)):
                if e.metrics.get(key) is not None and e.metrics[key] != truth:
                    bad.append(f"eval manifest {key} {n(e.metrics[key])} differs from the ledger's {n(truth)}")
        tr = stage_of(s, "train")
        if tr is not None and tr.file("log.txt") is None:
            bad.append("the train artifact lists no log.txt: the run's log is missing")
        if e is not None and s.eval_report is None and any(f.path == "report.json" for f in e.files):
            bad.append("eval/report.json cannot be read")
        out.extend(violation("STAT-4", f"{s.name}: {b}") for b in bad)
        if not bad and e is not None:
            out.append(result("STAT-4", PASS, f"{s.name}: the eval's numbers equal the ledger's; the train log is "
                                              "kept"))
    if ev.folder is not None:
        out.extend(_folder_numbers(ev, ev.folder))
    return out or [result("STAT-4", INFO, "no eval artifact")]


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=0, abs_tol=CLAIM_TOLERANCE)
    return a == b


def _folder_numbers(ev: Evidence, f: FolderFacts) -> Results:
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
        if hashlib.sha256(next(iter(codes)).encode("utf-8")).hexdigest() != f.code_sha256:
            bad.append("the folder's train_gpt.py is not the packed one")
    if bad:
        return [violation("STAT-4", f"{f.name}: {b}") for b in bad]
    return [result("STAT-4", PASS, f"{f.name}: submission.json matches the per-seed evidence")]
