"""The run-time audit's pure parts: the hook's log read back, and what `judge` lets through."""

import json
import subprocess
import sys

from pgolf.verify.audit import BOOTSTRAP, AuditFacts, judge, parse_log, writes
from pgolf.verify.codescan import scan_code

ROOTS = ["/usr/lib/python3.12/", "/venv/lib/python3.12/site-packages/"]


def facts(*events: dict) -> AuditFacts:
    return AuditFacts("ran", "cmd", allowed=["/run/train_gpt.py", "/run/model.bin", "/val/fineweb_val_000000.bin"],
                      roots=ROOTS, events=list(events))


def test_the_counted_bytes_the_data_and_the_library_pass():
    f = facts({"event": "open", "path": "/run/model.bin", "mode": "rb"},
              {"event": "open", "path": "/val/fineweb_val_000000.bin", "mode": "r"},
              {"event": "open", "path": "/usr/lib/python3.12/json/__init__.py", "mode": "r"},
              {"event": "open", "path": "/proc/self/maps", "mode": "r"},
              {"event": "open", "path": "/tmp/cache.bin", "mode": "wb"},
              {"event": "open", "path": "/tmp/cache.bin", "mode": "rb"},  # its own bytes, written first
              {"event": "dlopen", "path": "libc.so.6"},
              {"event": "code", "what": "compile", "sha256": "abc", "head": "x", "where": "train_gpt.py:1"})
    assert judge(f, {"abc"}) == [] and writes(f) == ["/tmp/cache.bin"]


def test_everything_else_is_named_with_its_rule():
    f = facts({"event": "open", "path": "/run/extra.bin", "mode": "rb"},
              {"event": "open", "path": "/data/fineweb_train_000000.bin", "mode": "r"},
              {"event": "network", "what": "socket.connect", "args": "('1.2.3.4', 443)"},
              {"event": "process", "what": "subprocess.Popen", "args": "('curl',)"},
              {"event": "dlopen", "path": "/run/evil.so"},
              {"event": "code", "what": "compile", "sha256": "zzz", "head": "HIDDEN = 1", "where": "train_gpt.py:3"})
    got = [(x.kind, x.rule) for x in judge(f, {"abc"})]
    assert got == [("file", "SIZE-3"), ("file", "DATA-5"), ("network", "DATA-6"), ("process", "SIZE-3"),
                   ("native", "SIZE-3"), ("code", "SIZE-3")]


def test_a_torn_log_is_read_up_to_its_last_whole_line():
    text = json.dumps({"event": "start", "roots": ROOTS}) + "\n" + json.dumps({"event": "open", "path": "/a"}) + \
        '\n{"event": "op'
    roots, events = parse_log(text)
    assert roots == ROOTS and events == [{"event": "open", "path": "/a"}]


def test_the_bootstrap_records_what_a_script_does(tmp_path):
    script = tmp_path / "train_gpt.py"
    script.write_text("import collections\nP = collections.namedtuple('P', 'a b')\n"
                      "open('side.txt', 'w').write('X = 1')\nexec(open('side.txt').read())\nexec('Y = 2')\n"
                      "import os\nos.system('true')\n")
    log = tmp_path / "log.jsonl"
    proc = subprocess.run([sys.executable, "-c", BOOTSTRAP, str(log), str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    roots, events = parse_log(log.read_text())
    f = AuditFacts("ran", "cmd", allowed=[str(script.resolve())], roots=roots, events=events)
    found = judge(f, scan_code(script.read_text()).sources)
    # side.txt was written by the run (not judged), namedtuple's template is the library's, 'Y = 2' is a
    # literal the scan decodes: what remains is the code read from the file and the process
    assert sorted(x.kind for x in found) == ["code", "process"], found
    assert "X = 1" in next(x.what for x in found if x.kind == "code")
