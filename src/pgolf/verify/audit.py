"""The run-time audit of a submission's evaluation (rule AUDIT-1, `pgolf verify --audit`), pure parts.

The static scan (`pgolf.verify.codescan`) reads the code; this looks at what it does. The packed
`train_gpt.py` runs beside its `model.bin` in a temporary folder, on a small slice of the val data,
in a fresh interpreter whose first act is `sys.addaudithook` (`BOOTSTRAP`, run with `python -c`;
it then runs the file with `runpy.run_path` as `__main__`). The hook writes one JSON line per
distinct event to a log the parent reads back (`pgolf.stages.verify.audit_seed` does the running):

- `open` (every file opened, read or write, resolved to a real path) and `ctypes.dlopen`;
- the network: `socket.connect`, `socket.sendto`, `socket.sendmsg`, `socket.bind`, `socket.getaddrinfo`,
  `socket.gethostbyname*`, `socket.gethostbyaddr`;
- processes: `subprocess.Popen`, `os.system`, `os.exec`, `os.posix_spawn`, `os.spawn`, `os.fork`,
  `os.forkpty`, `pty.spawn`;
- code: `compile` called from code that is not Python's own library (stdlib, site-packages: their
  namedtuple and dataclass templates are theirs), with the sha256 of the source; `marshal.loads` and
  `code.__new__` from the same places (code objects built from bytes).

`judge` then names everything outside what the artifact may touch: the counted bytes (train_gpt.py,
model.bin), the declared data (the val shards, byte sidecars and tokenizer the eval's lineage names,
here the slice written from them), Python's own installation (stdlib, site-packages), /dev, /proc and
/sys, and files the run itself wrote. Compiled code must be the counted file or a payload the static
scan decodes from it (`CodeScan.sources`): anything else was made at run time from bytes the
artifact does not count. Any network event is a FAIL (DATA-6), any process (SIZE-3/SIZE-4: it runs
code the artifact does not count).

What it cannot see: code that detects the audit and behaves differently, native code (a C extension
can open files without Python's audit events), and paths the slice does not take (a branch taken only
on the full val set or on 8 GPUs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

# The bootstrap: argv = [log path, script path]. Standalone (stdlib only): it must not import pgolf,
# whose files are not the artifact's. Each distinct event is written once (a set of keys), at most
# MAX_EVENTS lines, so a loop over a file cannot flood the log.
BOOTSTRAP = r'''
import json, os, sys, hashlib, site, sysconfig, runpy
_log_path, _script = sys.argv[1], os.path.realpath(sys.argv[2])
_out = open(_log_path, "w", buffering=1, encoding="utf-8")
_roots = set()
for _k in ("stdlib", "platstdlib", "purelib", "platlib"):
    _p = sysconfig.get_paths().get(_k)
    if _p:
        _roots.add(os.path.realpath(_p))
for _p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages(),
           site.getusersitepackages()):
    _roots.add(os.path.realpath(_p))
_roots = tuple(sorted(r.rstrip("/") + "/" for r in _roots if r and r != "/"))
_runners = ("runpy.py", "code.py", "codeop.py", "timeit.py")  # stdlib modules that run code they are given
_seen, _n, _max = set(), [0], 2000
_out.write(json.dumps({"event": "start", "roots": list(_roots), "script": _script, "python": sys.version}) + "\n")
_NET = ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind", "socket.getaddrinfo",
        "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")
_PROC = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
         "pty.spawn")
def _library(filename):
    if filename.startswith("<frozen"):
        return True
    f = os.path.realpath(filename) if filename.startswith("/") else filename
    return f.startswith(_roots) and not f.endswith(_runners)
def _emit(rec):
    key = json.dumps(rec, sort_keys=True)
    if key in _seen or _n[0] >= _max:
        return
    _seen.add(key)
    _n[0] += 1
    _out.write(key + "\n")
def _caller():
    f = sys._getframe(2)
    return f.f_code.co_filename, f.f_lineno
def _hook(event, args):
    try:
        if event == "open":
            path, mode, flags = args[0], args[1], args[2]
            if isinstance(path, int) or path is None:
                return
            path = os.fsdecode(path)
            if mode is None:  # os.open: the flags say it
                mode = "w" if (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND) else "r"
            _emit({"event": "open", "path": os.path.realpath(path), "mode": str(mode or "r")})
        elif event == "ctypes.dlopen":
            _emit({"event": "dlopen", "path": str(args[0])})
        elif event in _NET:
            _emit({"event": "network", "what": event, "args": repr(args[1:] if event.startswith("socket.c")
                                                                   or event.startswith("socket.s")
                                                                   or event == "socket.bind" else args)[:200]})
        elif event in _PROC or event.startswith(("os.exec", "os.spawn")):
            _emit({"event": "process", "what": event, "args": repr(args)[:300]})
        elif event in ("compile", "marshal.loads", "code.__new__"):
            filename, line = _caller()
            if _library(filename):
                return
            src = args[0] if event == "compile" else None
            if isinstance(src, str):
                src = src.encode("utf-8", "surrogatepass")
            digest = hashlib.sha256(bytes(src)).hexdigest() if isinstance(src, (bytes, bytearray, memoryview)) \
                else None
            head = bytes(src[:80]).decode("utf-8", "replace") if digest else type(args[0]).__name__
            _emit({"event": "code", "what": event, "sha256": digest, "head": head,
                   "where": f"{os.path.basename(filename)}:{line}"})
    except Exception as e:  # the hook must never break the run it watches
        _emit({"event": "hook-error", "what": event, "error": repr(e)[:200]})
sys.addaudithook(_hook)
sys.argv = [_script]
sys.path[0] = os.path.dirname(_script)  # as `python train_gpt.py` would have it
runpy.run_path(_script, run_name="__main__")
'''

HARMLESS = ("/dev/", "/proc/", "/sys/")
SHOW = 6  # events named per kind in a result line


@dataclasses.dataclass
class AuditFacts:
    """One audited run of the submission's evaluation (`pgolf.stages.verify.audit_seed`).

    status: "ran" (the file ran to its end: `returncode` 0), "error" (it exited nonzero or timed out:
    the events up to then are still judged), "cannot" (nothing ran: no pack or no val data here;
    `reason`). `allowed`: the real paths the run may read besides Python's library roots (the counted
    files, the data slice, the tokenizer); `roots`: those library roots as the audited interpreter
    reported them; `events`: the hook's log, one dict per distinct event.
    """

    status: str
    command: str
    reason: str = ""
    seconds: float | None = None
    returncode: int | None = None
    tokens: int = 0  # val tokens in the slice the audit scored
    allowed: list[str] = dataclasses.field(default_factory=list)
    roots: list[str] = dataclasses.field(default_factory=list)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    output_tail: str = ""


@dataclasses.dataclass(frozen=True)
class AuditFinding:
    """One thing the run did outside the artifact: its kind, the rulebook rule it bears on, and what."""

    kind: str  # "file", "network", "process", "code", "native"
    rule: str  # SIZE-3, SIZE-4, DATA-6: the rulebook rule the behaviour breaks
    what: str


def parse_log(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(library roots, events) of a hook log; a torn last line (the process was killed) is dropped."""
    roots: list[str] = []
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        if rec.get("event") == "start":
            roots = [str(r) for r in rec.get("roots", [])]
        else:
            events.append(rec)
    return roots, events


def judge(facts: AuditFacts, sources: Iterable[str]) -> list[AuditFinding]:
    """Everything in the audit log outside the counted bytes, the declared data, Python's library and /dev,
    /proc, /sys. `sources`: the sha256 of the counted file's text and of each payload the static scan
    decoded from it (code compiled from anything else was made from uncounted bytes)."""
    known = set(sources)
    allowed = set(facts.allowed)
    roots = tuple(facts.roots)
    written: set[str] = set()
    out: list[AuditFinding] = []
    for e in facts.events:
        kind = e.get("event")
        if kind == "open":
            path, mode = str(e.get("path", "")), str(e.get("mode", "r"))
            if any(c in mode for c in "wax+"):
                written.add(path)  # writing brings nothing in; reading it back later is the run's own bytes
                continue
            if path in allowed or path in written or path.startswith(HARMLESS) or path.startswith(roots):
                continue
            rule = "DATA-5" if os.path.basename(path).startswith("fineweb_train_") else "SIZE-3"
            out.append(AuditFinding("file", rule, f"opened {path} (not counted, not the declared data)"))
        elif kind == "dlopen":
            path = str(e.get("path", ""))
            if "/" in path and not path.startswith(roots):
                out.append(AuditFinding("native", "SIZE-3", f"loaded the native library {path}"))
        elif kind == "network":
            out.append(AuditFinding("network", "DATA-6", f"{e.get('what')} {e.get('args', '')}"))
        elif kind == "process":
            out.append(AuditFinding("process", "SIZE-3", f"{e.get('what')} {e.get('args', '')}"))
        elif kind == "code":
            if e.get("sha256") in known:
                continue
            out.append(AuditFinding("code", "SIZE-3", f"{e.get('what')} at {e.get('where')} of code that is not in "
                                                      f"the counted bytes: {str(e.get('head', ''))[:60]!r}"))
    return out


def writes(facts: AuditFacts) -> list[str]:
    """The files the run wrote (reported, never judged: they bring no bytes in)."""
    return sorted({str(e.get("path")) for e in facts.events
                   if e.get("event") == "open" and any(c in str(e.get("mode", "")) for c in "wax+")})


def summarize(findings: Sequence[AuditFinding]) -> dict[str, list[AuditFinding]]:
    """The findings by kind, in a stable order."""
    out: dict[str, list[AuditFinding]] = {}
    for f in findings:
        out.setdefault(f.kind, []).append(f)
    return out
