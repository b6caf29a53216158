"""Run records on disk: `metrics.jsonl` (one JSON object per line) and `log.txt` (challenge-style lines).

Both are append-only and flushed after every line, so a killed run keeps everything it logged. A
resumed run first truncates them back to the byte offsets its checkpoint recorded, so lines of the
steps it redoes are not duplicated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_SCHEMA_VERSION = 1


class LineFile:
    """An append-only text file, flushed (and fsynced on request) after each line."""

    def __init__(self, path: str | Path, truncate_to: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "r+b" if self.path.exists() else "w+b"
        self._f = open(self.path, mode)  # noqa: SIM115  (closed by close())
        if truncate_to is not None:
            self._f.truncate(truncate_to)
        self._f.seek(0, os.SEEK_END)

    def write_line(self, text: str) -> None:
        self._f.write(text.rstrip("\n").encode("utf-8") + b"\n")
        self._f.flush()

    def offset(self) -> int:
        """Bytes written so far (where a resume truncates back to)."""
        return self._f.tell()

    def sync(self) -> None:
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class MetricsWriter(LineFile):
    """metrics.jsonl: `{"event": "start", "schema_version": 1, ...}`, step and val lines, `{"event": "end", ...}`."""

    def write(self, record: dict[str, Any]) -> None:
        self.write_line(json.dumps(record, separators=(",", ":"), default=_jsonable))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line.strip()]
