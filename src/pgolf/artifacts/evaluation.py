"""The eval artifact: `eval/report.json`, the score ledger `eval/ledger.jsonl.zst` (format
`pgolf.ledger`, zstd) and, with `--compare-plain`, the diagnostic `eval/plain_ledger.jsonl.zst`."""

from __future__ import annotations

from pathlib import Path

from pgolf.errors import ArtifactError
from pgolf.eval.ledger import decode_ledger

REPORT_FILE = "report.json"
LEDGER_FILE = "ledger.jsonl.zst"
PLAIN_LEDGER_FILE = "plain_ledger.jsonl.zst"  # the --compare-plain diagnostic pass (never the reported score)
LEDGER_FORMAT = "pgolf.ledger.jsonl.zst"
LEDGER_NAMES = ("ledger.jsonl.zst", "ledger.jsonl")
# A ledger holds one JSON line per chunk (a few hundred bytes each): the full FineWeb validation set
# makes a few MB. Anything that decodes past this is not a ledger pgolf wrote.
MAX_LEDGER_BYTES = 256 << 20


def read_ledger(eval_dir: str | Path, name: str = LEDGER_FILE, limit: int = MAX_LEDGER_BYTES) -> str:
    """The JSONL text of an eval directory's score ledger (zstd, or plain `.jsonl`), decoded to at most
    `limit` bytes; a truncated, corrupt or oversized ledger is one ArtifactError line."""

    path = Path(eval_dir) / name
    try:
        if path.stat().st_size > limit:
            raise ArtifactError(f"the score ledger {path} has more than {limit:,} bytes, more than any ledger pgolf "
                                "writes", "re-run pgolf ttt-eval")
        data = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read the score ledger {path}: {e.strerror or e}", "re-run pgolf ttt-eval") from None
    try:
        return decode_ledger(data, "zstd" if path.suffix == ".zst" else None, max_bytes=limit)
    except ArtifactError as e:
        raise ArtifactError(f"the score ledger {path}: {e.message}", "re-run pgolf ttt-eval") from None
