"""LINEAGE: every manifest of each seed's lineage is readable, its files and inputs re-hash to what it records."""

from __future__ import annotations

from pgolf.verify.checks.common import Results, n
from pgolf.verify.evidence import Evidence
from pgolf.verify.results import result, violation
from pgolf.verify.rules import INFO, PASS


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
