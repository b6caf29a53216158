"""`pgolf train` as a user meets it: outputs, --json, load_model, every bad-input error, presets."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pgolf import config as cfgmod
from pgolf.artifacts import load_safetensors, read_manifest
from pgolf.artifacts import model as model_artifact
from pgolf.cli import app
from pgolf.data.stream import TokenBatches, TokenStream
from pgolf.model import GPT
from pgolf.runtime.metrics import read_metrics
from pgolf.stages import train as stage
from pgolf.train import evaluate, train
from pgolf.train.validate import ValData

runner = CliRunner()


def _tiny_args(data, out, *extra):
    return ["train", "--preset", "tiny", "--data", str(data), "--out", str(out), "--set", "checkpoint_every_s=0", *extra]


@pytest.mark.slow
def test_cli_trains_and_writes_every_output(tmp_path, embedded_data):
    out = tmp_path / "train"
    result = runner.invoke(app, _tiny_args(embedded_data, out, "--set", "iterations=24", "--set", "val_every=12",
                                           "--set", "warmdown_iters=8", "--set", "log_every=4", "--max-seconds", "0",
                                           "--seed", "7", "--json"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == list(stage.JSON_KEYS) and doc["steps"] == 24 and doc["out"] == str(out)
    assert doc["params"] == 358_096 and doc["val_bpb"] > 0 and doc["tokens_per_s"] > 0

    manifest = read_manifest(out, "train")
    assert not stage.work_dir(out).exists()
    assert {f["path"] for f in manifest.files} == {"model.safetensors", "metrics.jsonl", "log.txt"}
    assert manifest.seed == 7 and manifest.config["seed"] == 7 and manifest.inputs[0]["kind"] == "data"
    assert manifest.metrics["stop_reason"] == "iterations" and manifest.timing["train_time_s"] > 0
    assert manifest.env["world_size"] == 1 and manifest.metrics["source"] == "preset:tiny"

    events = read_metrics(out / "metrics.jsonl")
    assert events[0]["event"] == "start" and events[0]["schema_version"] == 1 and events[-1]["event"] == "end"
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 11)) + [12, 16, 20, 24]
    vals = [e for e in events if e["event"] == "val"]
    assert [(e["step"], e["weights"]) for e in vals] == [(0, "live"), (12, "live"), (24, "final")]
    assert vals[-1]["val_loss"] < vals[0]["val_loss"] - 0.8  # it learns
    log = (out / "log.txt").read_text()
    assert "model_params:358096" in log and "step:24/24 train_loss:" in log and "final step:24/24 val_loss:" in log

    # load_model gives back exactly the evaluated model
    model, cfg, m = model_artifact.load_model(out)
    _, meta = load_safetensors(out / "model.safetensors")
    assert meta["pgolf.format"] == "pgolf.train.model/1" and meta["pgolf.weights"] == "final"
    from pgolf.artifacts import data as datadir

    val = ValData(datadir.load_val_tokens(embedded_data), datadir.load_val_bytes(embedded_data))
    again = evaluate(model, val, 128, 16384, torch.device("cpu"))
    assert again.loss == m.metrics["val_loss"] and again.bpb == doc["val_bpb"]


def test_tiny_fixture_is_a_trained_model(tiny_train):
    model, cfg, manifest = model_artifact.load_model(tiny_train)
    assert manifest.metrics["steps"] == 30 and cfg.num_layers == 4
    assert manifest.metrics["val_loss"] < math.log(1024) - 1.0


@pytest.mark.slow
@pytest.mark.shared
def test_loss_falls_on_real_web_text(tmp_path, webtext_data):
    out = tmp_path / "train"
    result = runner.invoke(app, _tiny_args(webtext_data, out, "--set", "iterations=30", "--set", "val_every=30",
                                           "--set", "val_tokens=8192", "--set", "warmdown_iters=10", "--json"))
    assert result.exit_code == 0, result.output
    vals = [e for e in read_metrics(out / "metrics.jsonl") if e["event"] == "val"]
    assert vals[0]["step"] == 0 and vals[0]["val_loss"] > 6.5  # ln(1024) = 6.93 at init
    assert vals[-1]["val_loss"] < vals[0]["val_loss"] - 1.0


@pytest.mark.slow
def test_official_shards_with_a_tokenizer_score_like_the_sidecar(tmp_path, embedded_data):
    """A directory of bare challenge shards (no manifest, no sidecar) plus --tokenizer: the lookup
    tables give the same val_bpb as the pgolf data dir's byte sidecar, for the same weights."""
    shards = tmp_path / "shards"
    shards.mkdir()
    for p in embedded_data.glob("fineweb_*.bin"):
        shutil.copy(p, shards / p.name)
    sets = ["--set", "iterations=3", "--set", "val_every=0", "--set", "warmdown_iters=1", "--json"]
    a = runner.invoke(app, _tiny_args(embedded_data, tmp_path / "a", *sets))
    b = runner.invoke(app, [*_tiny_args(shards, tmp_path / "b", *sets), "--tokenizer",
                            str(embedded_data / "tokenizer.model")])
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert (ja["val_loss"], ja["val_bpb"]) == (jb["val_loss"], jb["val_bpb"])
    mb = read_manifest(tmp_path / "b", "train")
    assert mb.metrics["val_bytes_source"] == "lut" and read_manifest(tmp_path / "a", "train").metrics[
        "val_bytes_source"] == "sidecar"
    assert {e["kind"] for e in mb.inputs} == {"val_shard", "tokenizer", "train_shard"}
    _fails(_tiny_args(shards, tmp_path / "c", "--set", "vocab_size=512", "--tokenizer",
                      str(embedded_data / "tokenizer.model")), "vocabulary of 1024")


def _fails(args, *needles):
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "Traceback" not in result.output, result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, result.output
    return text


def test_bad_inputs_are_one_line_errors_and_leave_nothing(tmp_path, embedded_data, tiny_train):
    out = tmp_path / "o"
    _fails(_tiny_args(tmp_path / "missing", out), "missing does not exist")
    _fails(["train", "--preset", "nope", "--data", str(embedded_data), "--out", str(out)],
           "unknown preset 'nope'", "baseline", "tiny")
    _fails(["train", "--preset", "tinny", "--data", str(embedded_data), "--out", str(out)],
           "unknown preset 'tinny'; did you mean 'tiny'?", "valid presets: ")
    _fails(_tiny_args(embedded_data, out, "--set", "matrx_lr=0.1"), "did you mean 'matrix_lr'")
    _fails(_tiny_args(embedded_data, out, "--resume"), "nothing to resume")
    _fails(["train", "--data", str(embedded_data), "--out", str(out)], "no config given", "--preset")
    _fails(_tiny_args(embedded_data, out, "--set", "vocab_size=512"), "vocabulary of 1024", "vocab_size=1024")
    _fails(_tiny_args(embedded_data, tiny_train), "already holds a train artifact", "--force")
    if not torch.cuda.is_available():
        _fails(_tiny_args(embedded_data, out, "--set", "device=cuda"), "no CUDA GPU", "device=cpu")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\niterations = 3\n[optimizer]\nlr = 1\n")
    _fails(["train", "--config", str(bad), "--data", str(embedded_data), "--out", str(out)], "unknown table(s) optimizer")
    _fails(["train", "--config", str(tmp_path / "none.toml"), "--data", str(embedded_data), "--out", str(out)],
           "none.toml does not exist")
    assert not out.exists() and not stage.work_dir(out).exists()


def test_only_rank_0_prints_under_torchrun(tmp_path, monkeypatch):
    """Every rank returns the manifest; one --json document comes out (rank 0's)."""
    from pgolf.artifacts import Manifest

    monkeypatch.setattr(stage, "run", lambda *a, **k: Manifest(kind="train", metrics={"steps": 1}))
    args = ["train", "--preset", "tiny", "--out", str(tmp_path / "t"), "--json"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, prints in (("0", True), ("1", False)):
        monkeypatch.setenv("RANK", rank)
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert bool(result.stdout.strip()) is prints and (not prints or json.loads(result.stdout)["steps"] == 1)


def test_an_interrupted_run_blocks_a_fresh_start_and_keeps_its_config(tmp_path, embedded_data):
    out = tmp_path / "o"
    work = stage.work_dir(out)
    work.mkdir()
    (work / "run.json").write_text("{}")
    _fails(_tiny_args(embedded_data, out), "interrupted run exists", "--resume", "--force")
    _fails(_tiny_args(embedded_data, out, "--resume"), "run.json is unreadable", "--force")
    cfg = stage.load_config("tiny", overrides=["checkpoint_every_s=0"])
    data = stage.TrainData(embedded_data, None, 1024)
    (work / "run.json").write_text(json.dumps({"config": cfgmod.to_dict(cfg), "data": data.identity(), "run_id": "r",
                                               "source": "", "created_utc": ""}))
    _fails(_tiny_args(embedded_data, out, "--resume", "--set", "iterations=3"), "differs", "iterations: 500 -> 3")
    _fails(["train", "--data", str(embedded_data), "--out", str(out), "--resume", "--max-seconds", "5"], "would change")
    _fails(["train", "--data", str(tmp_path), "--out", str(out), "--resume"], "no fineweb_train")


def test_resume_publishes_a_run_that_died_after_its_manifest(tmp_path, embedded_data, tiny_train):
    out = tmp_path / "o"
    shutil.copytree(tiny_train, stage.work_dir(out))
    (stage.work_dir(out) / "run.json").write_text("{}")  # a leftover the publish step removes
    result = runner.invoke(app, ["train", "--data", str(embedded_data), "--out", str(out), "--resume", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 30 and not stage.work_dir(out).exists()
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "manifest.json", "metrics.jsonl", "model.safetensors"]
    model_artifact.load_model(out)


def _shrink(name):
    """--set overrides that make a preset a few-thousand-parameter CPU model with the same switches."""
    cfg = stage.load_config(name)
    m = cfg.model
    layers = 3
    sets = [f"num_layers={layers}", "model_dim=32", "num_heads=4", "num_kv_heads=2", "seq_len=32",
            "batch_tokens=64", "grad_accum_base=2", "iterations=2", "warmup_steps=1", "max_seconds=0", "val_every=0",
            "device=cpu", "checkpoint_every_s=0", "qat_start_frac=0.5" if m.recur_layers or cfg.qat_start_frac >= 0
            else "qat_start_frac=-1"]
    if m.mlp_hidden:
        sets.append("mlp_hidden=48")
    if m.rope_dims:
        sets.append("rope_dims=4")
    if m.bigram_buckets:
        sets += ["bigram_buckets=64", "bigram_dim=8"]
    if m.value_embed_layers:
        sets += [f"value_embed_layers=[{layers - 1}]", "value_embed_dim=8"]
    if m.recur_layers:
        sets += ["recur_layers=[1]", "recur_start_frac=0.5"]
    if m.xsa_last_n:
        sets.append(f"xsa_last_n={min(m.xsa_last_n, layers)}")
    if m.backout and m.backout_layer >= 0:
        sets.append("backout_layer=1")
    return stage.load_config(name, overrides=sets)


@pytest.mark.parametrize("name", ["backout", "banked-ve", "baseline", "int5-qat-ttt", "int5mlp-ttt", "recurrence"])
def test_every_preset_runs_two_shrunk_steps_on_cpu(name):
    cfg = _shrink(name)
    torch.manual_seed(0)
    model = GPT(cfg.model)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.model.vocab_size, 2000).astype(np.uint16)
    val = ValData(tokens[:300], np.ones(300, dtype=np.int64))
    result = train(model, cfg, TokenBatches(TokenStream([tokens])), val=val)
    assert result.steps == 2 and math.isfinite(result.final_train_loss) and math.isfinite(result.val.loss)
