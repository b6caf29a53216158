"""The pack artifact: `pack/model.bin` (the compressed model), `pack/train_gpt.py` (the submission
file) and `pack/report.json` (not shipped). `load_packed_model` is the only way evaluation gets
weights: model.bin alone, checked against the pack manifest, decoded, dequantized, built.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pgolf import artifacts
from pgolf import config as cfgmod
from pgolf.artifacts import Manifest
from pgolf.errors import ArtifactError, ConfigError
from pgolf.eval.config import EvalConfig
from pgolf.pack.packed import unpack_model

MODEL_FILE = "model.bin"
CODE_FILE = "train_gpt.py"
REPORT_FILE = "report.json"
MODEL_FORMAT = "pgolf.model.bin"
CODE_FORMAT = "pgolf.submission"
REPORT_FORMAT = "pgolf.pack.report"


@dataclasses.dataclass(frozen=True)
class PackedInfo:
    """What a packed model carries besides its weights.

    model_config: the ModelConfig; seq_len: the training sequence length (the default evaluation
    window); eval_config: the EvalConfig train_gpt.py evaluates with; meta: model.bin's meta;
    manifest: the pack manifest; model_sha256 / model_bytes: of the model.bin bytes decoded.
    """

    model_config: Any
    seq_len: int
    eval_config: Any
    meta: dict[str, Any]
    manifest: Manifest
    model_sha256: str
    model_bytes: int
    path: Path


def load_packed_model(pack_dir: str | Path):
    """(GPT on the CPU in eval mode, PackedInfo) from pack_dir/model.bin, the only way evaluation gets weights.

    Reads model.bin once; its size and sha256 must match the pack manifest before anything is
    decoded, then it is decoded (every section bounded by its declared size and checked against its
    crc32), dequantized and loaded. A missing, modified, truncated or corrupt model.bin raises
    ArtifactError, never returns other weights.
    """

    pack_dir = Path(pack_dir)
    manifest = artifacts.read_manifest(pack_dir, "pack")
    entry = manifest.file(MODEL_FILE)
    path = artifacts.listed_path(pack_dir, entry)
    fix = "re-create it with pgolf pack"
    try:
        size = path.stat().st_size
        if size != entry["bytes"]:  # before reading: a forged file can be any size
            raise ArtifactError(f"{path} has {size:,} bytes, the pack manifest says {entry['bytes']:,} "
                                "(truncated or modified)", fix)
        blob = path.read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read {path} ({e.strerror})", fix) from None
    digest = artifacts.sha256_bytes(blob)
    if len(blob) != entry["bytes"]:
        raise ArtifactError(f"{path} has {len(blob):,} bytes, the pack manifest says {entry['bytes']:,} "
                            "(truncated or modified)", fix)
    if digest != entry["sha256"]:
        raise ArtifactError(f"{path} does not match its sha256 in the pack manifest (corrupt or modified)", fix)
    model, meta = unpack_model(blob)
    try:
        eval_cfg = cfgmod.from_dict(EvalConfig, meta["eval"])
    except (ConfigError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{path} records an evaluation config this pgolf cannot read ({e})", fix) from None
    info = PackedInfo(model_config=model.cfg, seq_len=int(meta["train_seq_len"]), eval_config=eval_cfg, meta=meta,
                      manifest=manifest, model_sha256=digest, model_bytes=len(blob), path=path)
    return model, info


def read_report(pack_dir: str | Path) -> dict[str, Any]:
    """The pack's report.json (per-tensor entropy, sections, embedded modules)."""
    path = Path(pack_dir) / REPORT_FILE
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"cannot read {path} ({e})", "re-create it with pgolf pack") from None
