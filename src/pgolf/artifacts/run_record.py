"""`RUN_DIR/run.json`: the record `pgolf run` keeps of what ran (format `pgolf.run`, version 1).

`pgolf.stages.run` writes it; `pgolf verify` reads its launch ledger (STAT-1, STAT-3). The format is
documented in `pgolf.stages.run`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pgolf.layout import RUN_FILE

RUN_FORMAT = "pgolf.run"
RUN_FORMAT_VERSION = 1

__all__ = ["RUN_FILE", "RUN_FORMAT", "RUN_FORMAT_VERSION", "launch_config_sha256", "sha256_json"]


def sha256_json(obj: Any) -> str:
    """sha256 of compact, key-sorted JSON: the same object hashes the same everywhere."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def launch_config_sha256(train_config: Mapping[str, Any]) -> str:
    """The launch ledger's config hash: sha256 of a TrainConfig dict (a train manifest's `config`) without
    its seed, as compact sorted JSON. Every seed of one experiment has the same hash."""
    return sha256_json({k: v for k, v in train_config.items() if k != "seed"})
