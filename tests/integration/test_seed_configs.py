"""The whole-pipeline seed configs (configs/seeds/*.toml, docs/seeds.md): every one resolves every
stage's config, and one runs end to end at a tiny shape and verifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgolf import config as cfgmod
from pgolf.artifacts import Manifest
from pgolf.cli import app
from pgolf.eval import EvalConfig
from pgolf.stages import run as run_stage

ROOT = Path(__file__).resolve().parents[2]
SEEDS_DIR = ROOT / "src" / "pgolf" / "configs" / "seeds"
# seed config -> (training preset, compressor, eval mode): one per record pgolf reproduces
SEEDS = {
    "baseline": ("baseline", "zstd", "plain"),
    "int5mlp-ttt": ("int5mlp-ttt", "zstd", "ttt"),
    "backout": ("backout", "zstd", "ttt"),
    "int5-qat-ttt": ("int5-qat-ttt", "zstd", "ttt"),
    "banked-ve": ("banked-ve", "zstd", "ttt"),
    "recurrence": ("recurrence", "lzma", "ttt"),
    "sota": ("sota", "pergroup", "ttt"),
}


def test_the_seed_configs_are_the_seven_records():
    assert sorted(p.stem for p in SEEDS_DIR.glob("*.toml")) == sorted(SEEDS)


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_every_stage_config_of_a_seed_resolves(seed):
    path = SEEDS_DIR / f"{seed}.toml"
    pipe = run_stage.load_pipeline(path)
    preset, codec, mode = SEEDS[seed]
    assert pipe.train_source == f"preset:{preset}"
    quant = run_stage.quantize_config(pipe.quantize, Manifest(kind="train", config=cfgmod.to_dict(pipe.train)))
    assert quant.prune_method in ("count", "quantile")
    assert pipe.pack.codec == codec
    ev = cfgmod.from_dict(EvalConfig, pipe.eval, where="eval")
    assert ev.mode == mode and pipe.pack.eval.mode == mode
    assert pipe.verify.max_bytes == 16_000_000
    # the opening comment names the record and, for an illegal or over-budget one, what pgolf does instead
    head = path.read_text().split("\n[")[0]
    assert "pgolf" in head and ("PR #" in head or seed == "baseline")


TINY = ["--set", "data.val_docs=2", "--set", "train.num_layers=2", "--set", "train.model_dim=32",
        "--set", "train.num_heads=2", "--set", "train.num_kv_heads=1", "--set", "train.iterations=4",
        "--set", "train.seq_len=32", "--set", "train.batch_tokens=512", "--set", "train.grad_accum_base=1",
        "--set", "train.val_every=0", "--set", "train.warmdown_iters=2", "--set", "train.bigram_buckets=32",
        "--set", "train.bigram_dim=16", "--set", "quantize.passthrough_numel=256", "--set", "eval.ttt.epochs=1",
        "--set", "eval.chunk_tokens=1024", "--set", "eval.stride=16", "--set", "eval.autocast=false",
        "--set", "verify.max_train_seconds=600", "--set", "verify.max_eval_seconds=600"]


@pytest.mark.slow
def test_a_seed_config_runs_end_to_end_at_a_tiny_shape(tmp_path):
    """PR #264's recipe (row-max int5/int6, clamped-quantile int8 with its floor, score-first SGD TTT,
    zstd-22), shrunk: it completes and verifies with no FAIL."""
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(SEEDS_DIR / "int5mlp-ttt.toml"), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    quant = json.loads((out / "quant" / "report.json").read_text())["tensors"]
    bits = {name: r["bits"] for name, r in quant.items()}
    assert bits["blocks.0.mlp.fc.weight"] == 5 and bits["blocks.0.attn.c_q.weight"] == 6
    assert bits["tok_emb.weight"] == 8 and bits["bigram.embed.weight"] == 6
    ev = json.loads((out / "eval" / "manifest.json").read_text())
    assert ev["config"]["ttt"]["schedule"] == "constant" and ev["config"]["ttt"]["epochs"] == 1
    assert ev["metrics"]["mode"] == "ttt" and ev["metrics"]["adapted_chunks"] >= 1
