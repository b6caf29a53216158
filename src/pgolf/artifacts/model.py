"""The train artifact's model: `train/model.safetensors` (format `pgolf.train.model/1`).

The state dict of the trained model (EMA/SWA weights when enabled; a bool `recur_active` buffer
with depth recurrence) with the ModelConfig in its metadata. `load_model` is how every later stage
gets trained weights.
"""

from __future__ import annotations

from pathlib import Path

from pgolf import artifacts
from pgolf import config as cfgmod
from pgolf.artifacts import Manifest
from pgolf.errors import ArtifactError, ConfigError
from pgolf.model import ModelConfig
from pgolf.model.build import build_with_state

MODEL_FILE = "model.safetensors"
MODEL_FORMAT = "pgolf.train.model/1"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"


def load_model(train_dir: str | Path):
    """(GPT, ModelConfig, Manifest) of a train artifact, its files checked against the manifest.

    The model is on the CPU in eval mode, with the weights training saved (EMA/SWA when enabled)
    and the recurrence state it ended with. Its config comes from the file's metadata and is
    checked against the tensors before the model is allocated.
    """

    train_dir = Path(train_dir)
    manifest = artifacts.read_manifest(train_dir, "train")
    artifacts.check_files(train_dir, manifest)
    path = train_dir / MODEL_FILE
    fix = "re-create it with pgolf train"
    tensors, meta = artifacts.load_safetensors(path)
    if meta.get("pgolf.format") != MODEL_FORMAT:
        raise ArtifactError(f"{path} is not a pgolf trained model (format {meta.get('pgolf.format')!r}, "
                            f"expected {MODEL_FORMAT!r})", fix)
    try:
        cfg = cfgmod.from_dict(ModelConfig, meta["pgolf.model_config"])
    except (KeyError, TypeError, AttributeError, ConfigError) as e:
        raise ArtifactError(f"{path} has no valid pgolf.model_config ({e})", fix) from None
    return build_with_state(cfg, tensors, str(path), fix), cfg, manifest


def check_train_config(manifest: Manifest, train_dir: str | Path) -> dict:
    """The TrainConfig a train manifest records; later stages derive defaults from it (sequence length,
    model width), so one without it is an error, never silent defaults."""
    cfg = manifest.config
    model = cfg.get("model")
    seq_len = cfg.get("seq_len")
    if not isinstance(model, dict) or not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 2:
        raise ArtifactError(f"the train manifest in {train_dir} records no training config (model and seq_len); "
                            "it was not written by pgolf train, or was edited", "re-create it with pgolf train")
    return cfg


def data_dir_of(train_dir: str | Path, manifest: Manifest) -> Path | None:
    """The data directory the model was trained on, from the train manifest's lineage (None if gone)."""
    for entry in manifest.inputs:
        if entry.get("kind") in ("data", "val_shard"):
            path = artifacts.resolve_input(train_dir, entry)
            if path.exists():
                return path.parent
    return None
