"""`pgolf verify --submission OUT`: write the records folder, then verify the folder itself.

The folder is written into a temporary directory next to OUT, re-read from disk, and checked with
everything else (FMT-2 required files, FMT-4 naming, STAT-4 numbers against the evidence, SIZE-4
against its requirements.txt); only when nothing FAILs is it renamed into place. An existing OUT is
replaced only with force.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pgolf.artifacts import replace_dir
from pgolf.errors import ArtifactError, NonCompliantError
from pgolf.verify.checks import log_name, run_checks
from pgolf.verify.codescan import parse_requirements
from pgolf.verify.evidence import Evidence, FolderFacts
from pgolf.verify.records_folder import SubmissionInfo, folder_files
from pgolf.verify.results import CheckResult, failed


@dataclass(frozen=True)
class SubmissionRequest:
    """Where to write the folder and what it says about its authors."""

    out: Path
    info: SubmissionInfo
    force: bool = False


def folder_facts(path: Path, name: str) -> FolderFacts:
    """Re-read a written folder: its files, submission.json, requirements and the code's sha256."""
    files = {p.name: p.stat().st_size for p in path.iterdir() if p.is_file()}
    sub, error = None, None
    try:
        sub = json.loads((path / "submission.json").read_text("utf-8"))
    except (OSError, ValueError) as e:
        error = str(e)
    code = path / "train_gpt.py"
    reqs = path / "requirements.txt"
    return FolderFacts(name=name, files=files, submission=sub, error=error,
                       code_sha256=hashlib.sha256(code.read_bytes()).hexdigest() if code.is_file() else None,
                       requirements=parse_requirements(reqs.read_text("utf-8")) if reqs.is_file() else ())


def _logs(ev: Evidence) -> dict[str, bytes]:
    logs = {}
    for s in ev.seeds:
        train = s.stage("train")
        path = Path(train.dir) / "log.txt" if train is not None else None
        if path is None or not path.is_file():
            raise NonCompliantError(f"{s.name} has no train/log.txt: a submission needs one log per seed",
                                    "keep the train directory's log.txt")
        logs[log_name(s)] = path.read_bytes()
    return logs


def write(ev: Evidence, results: Sequence[CheckResult], request: SubmissionRequest) -> tuple[Path | None, list[CheckResult]]:
    """Write and check the folder; returns (its path or None when refused, the final results: verify's
    checks run again on the evidence with the folder included)."""
    out = Path(request.out)
    if out.exists() and not request.force:
        raise ArtifactError(f"{out} already exists", "pass --force to replace it, or choose another --submission")
    if len({s.code for s in ev.seeds}) != 1 or ev.seeds[0].code is None:
        raise NonCompliantError("the seeds do not share one train_gpt.py (or it is missing): a submission ships "
                                "one file", "verify runs packed from the same config and code")
    files = folder_files(ev, results, request.info, _logs(ev))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        for name, data in files.items():
            (work / name).write_bytes(data)
        ev.folder = folder_facts(work, out.name)
        final = run_checks(ev)
        if failed(final):
            shutil.rmtree(work, ignore_errors=True)
            return None, final
        replace_dir(work, out)
        return out, final
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
