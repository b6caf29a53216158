"""1. size (SIZE-1..5): the artifact's bytes, what code counts, what it loads, and that the scored model is the
measured one."""

from __future__ import annotations

from pgolf.verify.checks.common import Results, code_groups, n, stage_of
from pgolf.verify.evidence import Evidence, first
from pgolf.verify.results import result, violation
from pgolf.verify.rules import INFO, PASS


def size_cap(ev: Evidence) -> Results:
    out: Results = []
    limit = ev.options.max_bytes
    totals = []
    for s in ev.seeds:
        pack = stage_of(s, "pack")
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
        pack = stage_of(s, "pack")
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
        evs, pack = stage_of(s, "eval"), s.stage("pack")
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
