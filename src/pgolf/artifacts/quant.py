"""The quant artifact: `quant/quant.safetensors` (format `pgolf.quant/1`) and `quant/report.json`.

Per quantized tensor `NAME.q` (int8 codes) and `NAME.scale` (fp16 per row); passthrough tensors as
`NAME`; metadata `pgolf.quant` (per tensor: scheme, bits, shape, dtype, method) and
`pgolf.model_config`. `load_quant` is how `pgolf pack` reads it.
"""

from __future__ import annotations

from pathlib import Path

from pgolf import artifacts
from pgolf import config as cfgmod
from pgolf.artifacts import Manifest
from pgolf.artifacts.model import check_train_config, data_dir_of
from pgolf.errors import ArtifactError, ConfigError
from pgolf.model import ModelConfig
from pgolf.model.build import build_with_state
from pgolf.quant import FORMAT, dequantize_state

QUANT_FILE = "quant.safetensors"
REPORT_FILE = "report.json"
REPORT_FORMAT = "pgolf.quant.report/1"


def load_quant(quant_dir: str | Path):
    """(tensors, meta, ModelConfig, Manifest) of a quant artifact, its files checked against the manifest.

    `tensors`: what quant.safetensors holds (CPU); `meta`: its `pgolf.quant` metadata, the input of
    `pgolf.quant.dequantize_state(tensors, meta)`.
    """

    quant_dir = Path(quant_dir)
    manifest = artifacts.read_manifest(quant_dir, "quant")
    artifacts.check_files(quant_dir, manifest)
    path = quant_dir / QUANT_FILE
    tensors, md = artifacts.load_safetensors(path)
    meta = md.get("pgolf.quant")
    if md.get("pgolf.format") != FORMAT or not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a {FORMAT} file (format {md.get('pgolf.format')!r})",
                            "re-create it with pgolf quantize (or upgrade pgolf)")
    try:
        model_cfg = cfgmod.from_dict(ModelConfig, md["pgolf.model_config"])
    except (KeyError, TypeError, AttributeError, ConfigError) as e:
        raise ArtifactError(f"{path} has no valid pgolf.model_config ({e})",
                            "re-create it with pgolf quantize") from None
    return tensors, meta, model_cfg, manifest


def load_quant_model(quant_dir: str | Path):
    """The dequantized GPT of a quant artifact (CPU, eval mode): what evaluation of it would score."""

    tensors, meta, model_cfg, _ = load_quant(quant_dir)
    try:
        state = dequantize_state(tensors, meta)
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{Path(quant_dir) / QUANT_FILE} cannot be dequantized ({e})",
                            "re-create it with pgolf quantize") from None
    return build_with_state(model_cfg, state, str(Path(quant_dir) / QUANT_FILE), "re-create it with pgolf quantize")


def train_manifest_of(quant_dir: str | Path, quant_manifest: Manifest) -> Manifest:
    """The train manifest behind a quant artifact (its lineage), its sha256 checked; ArtifactError if gone."""
    try:
        path = artifacts.check_input(quant_dir, quant_manifest.input("train"))
        manifest = artifacts.read_manifest(path.parent, "train")
        check_train_config(manifest, path.parent)
        return manifest
    except ArtifactError as e:
        raise ArtifactError(f"the train manifest behind {quant_dir} cannot be read ({e})",
                            "keep the run directory together, or pass --set train_seq_len=L --set trainable=false") from None


def lineage_data(quant_dir: str | Path) -> tuple[Path | None, Path | None]:
    """(data directory, tokenizer) the model behind `quant_dir` was trained on, through the lineage
    quant -> train -> data: what `pgolf ttt-eval` scores. The tokenizer is named only for official
    shards without a pgolf manifest; (None, None) where the lineage cannot be followed."""
    try:
        qm = artifacts.read_manifest(quant_dir, "quant")
        train_dir = artifacts.resolve_input(quant_dir, qm.input("train")).parent
        tm = artifacts.read_manifest(train_dir, "train")
    except (ArtifactError, KeyError):
        return None, None
    tokenizer = next((artifacts.resolve_input(train_dir, e) for e in tm.inputs if e.get("kind") == "tokenizer"), None)
    return data_dir_of(train_dir, tm), tokenizer if tokenizer is not None and tokenizer.is_file() else None
