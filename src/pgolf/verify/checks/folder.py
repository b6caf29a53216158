"""7. folder (FMT-2..4): the records folder's files, the shipped code runs from it, its name and submission.json."""

from __future__ import annotations

import re

from pgolf.verify.checks.common import Results, code_groups
from pgolf.verify.evidence import Evidence, SeedEvidence
from pgolf.verify.results import result, violation
from pgolf.verify.rules import INFO, PASS

REQUIRED_JSON_KEYS = ("author", "github_id", "name", "blurb", "date", "track", "val_loss", "val_bpb", "val_loss_std",
                      "val_bpb_std", "seeds", "seed_results", "bytes_total", "bytes_code", "hardware",
                      "pytorch_version", "compliance")
FOLDER_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_[A-Za-z0-9][A-Za-z0-9_.+-]*$")


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
