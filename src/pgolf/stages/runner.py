"""The stage contract: what every stage's output goes through, so no stage re-does it.

A stage is `run(cfg, <inputs>, out, *, force) -> Manifest`. Its body is

    with runner.claim(out, KIND, inputs=[...], force=force) as output:
        ...read the inputs, compute...
        with output.publish() as work:        # a temp dir next to `out`, renamed into place at the end
            ...write files, then the manifest...

`claim` owns, for every stage alike:
- **inputs are never outputs**: `out` may not be an input, a directory holding one, or inside one,
  for the inputs named and their whole lineage (followed through their manifests), so no `--out`
  with `--force` can delete or change what the stage reads;
- **only pgolf's own artifacts are replaced**: an existing `out` must be an artifact of the same kind
  (and then only with `force`); a directory of other files, or an artifact of another kind, is refused
  even with `--force` (remove it yourself if you mean it);
- **one writer**: an exclusive lock on `out` (a `.NAME.lock` file beside it) for the whole stage, so a
  second process writing the same output (two `pgolf run` into one directory) gets one clear
  refusal naming the process holding it, never a shared half-written directory;
- **one clear line for the machine's refusals**: a full disk, a read-only file system, a permission
  or busy error becomes an ArtifactError naming the path and the fix, with the temp dir removed.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from pgolf import artifacts
from pgolf.artifacts import MANIFEST
from pgolf.errors import ArtifactError

# errno -> (what happened, how to fix it): the OSErrors a user can do something about.
OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space (or choose an --out on another disk) and rerun"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space (or choose an --out on another disk) and rerun"),
    errno.EROFS: ("the file system is read-only", "choose an --out on a writable disk"),
    errno.EACCES: ("permission denied", "choose an --out you can write to, or fix the permissions"),
    errno.EPERM: ("operation not permitted", "choose an --out you can write to, or fix the permissions"),
    errno.EBUSY: ("the device or resource is busy", "close what holds it and rerun"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) and rerun"),
    errno.ENAMETOOLONG: ("a file name is too long", "choose a shorter --out"),
}


def os_error_line(e: OSError, context: str) -> ArtifactError | None:
    """The one-line ArtifactError for an OSError a user can fix; None for the others (real bugs)."""
    known = OS_ERRORS.get(e.errno) if e.errno is not None else None
    if known is None:
        return None
    what, fix = known
    where = f" ({e.filename})" if e.filename else ""
    return ArtifactError(f"{context}: {what}{where}; nothing half-written was kept", fix)


# ----------------------------------------------------------------------------- inputs and lineage


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def lineage(paths: Iterable[str | Path], limit: int = 256) -> list[Path]:
    """The given input paths and everything upstream of them (through manifests' inputs), resolved."""
    seen: list[Path] = []
    todo = [_resolved(Path(p)) for p in paths]
    while todo and len(seen) < limit:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        directory = path.parent if path.name == MANIFEST else path
        if not (directory / MANIFEST).is_file():
            continue
        try:
            manifest = artifacts.read_manifest(directory)
        except ArtifactError:
            continue
        for entry in manifest.inputs:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str) and not os.path.isabs(entry["path"]):
                target = _resolved(directory / entry["path"])
                todo.append(target.parent if target.name == MANIFEST else target)
    return seen


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def guard_inputs(out: Path, inputs: Sequence[str | Path]) -> None:
    """ArtifactError when writing `out` would delete or change an input or anything upstream of it."""
    target = _resolved(out)
    for path in lineage([p for p in inputs if p is not None]):
        if _within(path, target):
            what = "is" if path == target else "holds"
            raise ArtifactError(f"--out {out} {what} an input of this stage ({path}); writing there would destroy it",
                                "choose another --out (the default is next to the input)")
        if path.is_dir() and _within(target, path):
            raise ArtifactError(f"--out {out} is inside an input of this stage ({path}); writing there would change it",
                                "choose another --out outside it")


# ----------------------------------------------------------------------------- the lock


def lock_path(out: Path) -> Path:
    """`.NAME.lock` beside `out` (for `.` or `..`, beside the directory they name)."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.lock"


def _host() -> str:
    # os.uname, not socket.gethostname: evaluation is audited for opening no network (rules SIZE-3)
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "?")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text("utf-8"))
        return f"pid {info['pid']} on {info['host']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another pgolf process"


def _same_file(path: Path, flock: FileLock) -> bool:
    """Whether the file we locked is still the one at `path` (a holder removes it when it is done)."""
    fd = getattr(getattr(flock, "_context", None), "lock_file_fd", None)
    if fd is None:
        return True
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


@contextmanager
def lock(out: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `out` (non-blocking); a second holder gets one clear line naming the first.

    The lock file is removed when the holder is done, so finished runs leave no `.NAME.lock` behind;
    a process that locked a file already removed that way retries on the new one.
    """
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        flock = FileLock(str(path), timeout=0)
        try:
            flock.acquire()
        except Timeout:
            raise ArtifactError(f"{out} is being written by {_holder(path)}",
                                f"wait for it to finish, or choose another --out for this {what}") from None
        if _same_file(path, flock):
            break
        flock.release()
    else:
        raise ArtifactError(f"{out} is being written by {_holder(path)}",
                            f"wait for it to finish, or choose another --out for this {what}")
    try:
        # Who holds it, for the message of the next one (the lock is the flock, not this text).
        info = {"pid": os.getpid(), "host": _host(), "command": " ".join(["pgolf", *sys.argv[1:]])[:300]}
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(info))
        yield
    finally:
        with suppress(OSError):
            path.unlink()  # while still held: whoever opens the path next makes a new file
        flock.release()


# ----------------------------------------------------------------------------- the claim


@dataclass(frozen=True)
class Output:
    """A claimed output directory: `publish()` yields the temp dir that becomes `out`."""

    out: Path
    kind: str
    force: bool

    def publish(self) -> AbstractContextManager[Path]:
        return artifacts.stage_dir(self.out, self.kind, self.force)


@contextmanager
def claim(out: str | Path, kind: str, *, inputs: Sequence[str | Path | None] = (), force: bool = False,
          writer: bool = True) -> Iterator[Output]:
    """Check `out` against the inputs and what it holds, lock it, and map the machine's refusals.

    Call it before reading the inputs: a mistake costs nothing and leaves nothing behind.
    `writer`: False on the ranks of a torchrun launch that do not write (rank 0 holds the lock).
    """
    out = Path(out)
    if out.name in ("", ".", ".."):
        out = Path(os.path.abspath(out))
    if _within(_resolved(Path.cwd()), _resolved(out)):
        raise ArtifactError(f"--out {out} is the working directory or holds it; replacing it would pull the "
                            "directory out from under this shell", "choose a new directory for --out")
    guard_inputs(out, [p for p in inputs if p is not None])
    artifacts.check_output(out, kind, force)
    try:
        with lock(out, f"{artifacts.MAKER.get(kind, kind)}") if writer else nullcontext():
            artifacts.check_output(out, kind, force)  # again: another process may have published while we waited
            yield Output(out, kind, force)
    except OSError as e:
        line = os_error_line(e, f"{artifacts.MAKER.get(kind, kind)} could not write {out}")
        if line is None:
            raise
        raise line from None
