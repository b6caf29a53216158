"""`RUN_DIR/run.json`: the record `pgolf run` keeps of what ran (format `pgolf.run`, version 1), and pgolf's
local launch log.

`pgolf.stages.run` writes run.json; `pgolf verify` reads its launch ledger (STAT-1, STAT-3). The format
is documented in `pgolf.stages.run`.

The launch log (`<cache dir>/launches.jsonl`, or `$PGOLF_LAUNCH_LOG`; empty: none) is append-only JSON
lines, one per training launch on this machine, whatever directory it trained into (`pgolf train`, and
each seed of `pgolf run`): format `pgolf.launch/1`, run_id (the train manifest's), seed, config_sha256
(`launch_config_sha256`), data_sha256 (the data manifest's, None for official shards), out (absolute),
resume, started_utc, host, pid, pgolf_version. `pgolf verify` reads the launches of the configs it
verifies (STAT-3): a seed launched in another run directory and not reported is seen too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pgolf.layout import RUN_FILE

RUN_FORMAT = "pgolf.run"
RUN_FORMAT_VERSION = 1

LAUNCH_LOG = "launches.jsonl"
LAUNCH_FORMAT = "pgolf.launch/1"
MAX_LAUNCH_LOG_BYTES = 64 << 20  # ~200,000 launches; a larger file is not read (verify says so)

__all__ = ["LAUNCH_FORMAT", "LAUNCH_LOG", "RUN_FILE", "RUN_FORMAT", "RUN_FORMAT_VERSION", "append_launch", "cache_dir",
           "launch_config_sha256", "launch_log_path", "read_launch_log", "sha256_json"]


def cache_dir() -> Path:
    """Where pgolf caches derived files (the embedded corpus's tokenizer, the launch log): $PGOLF_CACHE_DIR or
    $XDG_CACHE_HOME/pgolf or ~/.cache/pgolf."""
    if os.environ.get("PGOLF_CACHE_DIR"):
        return Path(os.environ["PGOLF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pgolf"


def launch_log_path() -> Path | None:
    """The launch log: $PGOLF_LAUNCH_LOG when set (empty: no launch log is kept or read), else
    `<cache dir>/launches.jsonl`."""
    if "PGOLF_LAUNCH_LOG" in os.environ:
        value = os.environ["PGOLF_LAUNCH_LOG"]
        return Path(value) if value else None
    return cache_dir() / LAUNCH_LOG


def append_launch(entry: Mapping[str, Any]) -> Path | None:
    """Append one launch to the launch log (one write of one line in append mode: concurrent launches do not
    interleave); returns the log's path, None when no log is kept. OSError propagates (the caller warns)."""
    path = launch_log_path()
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"format": LAUNCH_FORMAT, **entry}, sort_keys=True, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
    return path


def read_launch_log(path: Path, config_sha256: Collection[str]) -> tuple[list[dict[str, Any]], str]:
    """(the launches of these configs, why the log could not be read or ""). Lines that are not launch
    records are skipped; a missing log has no launches."""
    try:
        if not path.exists():
            return [], ""
        if not path.is_file():
            return [], f"{path} is not a file"
        if path.stat().st_size > MAX_LAUNCH_LOG_BYTES:
            return [], f"{path} is over {MAX_LAUNCH_LOG_BYTES:,} bytes: not read"
        text = path.read_text("utf-8", errors="replace")
    except OSError as e:
        return [], f"{path} cannot be read ({e.strerror})"
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("format") == LAUNCH_FORMAT \
                and entry.get("config_sha256") in config_sha256:
            out.append(entry)
    return out, ""


def sha256_json(obj: Any) -> str:
    """sha256 of compact, key-sorted JSON: the same object hashes the same everywhere."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def launch_config_sha256(train_config: Mapping[str, Any]) -> str:
    """The launch ledger's config hash: sha256 of a TrainConfig dict (a train manifest's `config`) without
    its seed, as compact sorted JSON. Every seed of one experiment has the same hash."""
    return sha256_json({k: v for k, v in train_config.items() if k != "seed"})
