"""Provenance instead of trust (rules DATA-2, DATA-7): `pgolf verify` scans the val documents against
every training shard the train manifest names and every GPTQ calibration shard the quant manifest
names, not the eval's data directory. Real stages on the embedded data."""

import json
import shutil

import pytest
from test_verify_support import _real_stages
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.artifacts import data as datadir
from pgolf.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
TINY = ["iterations=10", "warmdown_iters=2", "val_every=0", "checkpoint_every_s=0", "max_seconds=0"]


def verify(*args):
    result = runner.invoke(app, ["verify", *map(str, args), "--json"])
    assert result.stdout.strip().startswith("{"), result.output
    return result, json.loads(result.stdout)


def checks(doc, rule_id):
    return [c for c in doc["checks"] if c["id"] == rule_id]


def verdicts(doc, rule_id) -> set[str]:
    return {c["verdict"] for c in checks(doc, rule_id)}


def details(doc, rule_id) -> str:
    return " | ".join(c["detail"] for c in checks(doc, rule_id))


def train(data, out, tokenizer=None):
    import torch

    from pgolf.stages import train as stage

    cfg = stage.load_config("tiny", overrides=TINY)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stage.run(cfg, data, out, tokenizer=tokenizer, source="preset:tiny")
    finally:
        torch.set_num_threads(threads)


def run_on(tmp, train_data, embedded, tokenizer=None):
    """train on `train_data`; quantize -> pack -> eval on a copy of the embedded data (the full val)."""
    run = tmp / "run"
    run.mkdir()
    shutil.copytree(embedded, run / "data")
    train(train_data, run / "train", tokenizer)
    _real_stages(run)
    return run


def test_train_manifest_records_every_training_shard(tiny_train, embedded_data):
    m = artifacts.read_manifest(tiny_train)
    shards = [e for e in m.inputs if e["kind"] == "train_shard"]
    names = sorted(p.name for p in datadir.list_shards(embedded_data, "train"))
    assert sorted(e["path"].rsplit("/", 1)[-1] for e in shards) == names and names
    for e in shards:
        path = artifacts.resolve_input(tiny_train, e)
        assert e["sha256"] == artifacts.sha256_file(path) and e["tokens"] == datadir.read_header(path)
    assert {e["kind"] for e in m.inputs} == {"data", "train_shard"}


def test_legal_train_and_gptq_calibration_pass(tiny_train, tmp_path):
    q = tmp_path / "quant"
    res = runner.invoke(app, ["quantize", str(tiny_train), "--out", str(q), "--set", "gptq=true"])
    assert res.exit_code == 0, res.output
    shards = artifacts.read_manifest(q).config["calibration"]["shards"]
    assert shards and all({"name", "sha256", "tokens"} <= set(sh) for sh in shards)
    result, doc = verify(q, "--out", tmp_path / "v")
    assert verdicts(doc, "DATA-2") == {"PASS"} and "no val document" in details(doc, "DATA-2")
    assert verdicts(doc, "DATA-7") == {"PASS"} and "no val document" in details(doc, "DATA-7")
    assert "FAIL" not in verdicts(doc, "LINEAGE"), details(doc, "LINEAGE")


def test_training_on_a_copy_of_val_in_a_manifest_less_dir_fails(embedded_data, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    val = embedded_data / "fineweb_val_000000.bin"
    shutil.copy(val, bad / "fineweb_val_000000.bin")
    shutil.copy(val, bad / "fineweb_train_000000.bin")
    run = run_on(tmp_path, bad, embedded_data, tokenizer=embedded_data / "tokenizer.model")
    result, doc = verify(run, "--out", tmp_path / "v")
    assert result.exit_code == 3, result.output
    assert verdicts(doc, "DATA-2") == {"FAIL"}, details(doc, "DATA-2")
    assert "bad/fineweb_train_000000.bin" in details(doc, "DATA-2")
    assert "50 of 50 val documents" in details(doc, "DATA-2")
    # The shard removed after training: a training input that cannot be scanned FAILs (DATA-2 and LINEAGE).
    (bad / "fineweb_train_000000.bin").unlink()
    result, doc = verify(run, "--out", tmp_path / "v2")
    assert result.exit_code == 3 and "FAIL" in verdicts(doc, "DATA-2") and "missing" in details(doc, "DATA-2")


def test_training_on_data_built_with_fewer_val_docs_is_caught(embedded_data, tmp_path):
    from pgolf.data.config import DataConfig
    from pgolf.stages import data

    small = tmp_path / "small"
    data.build(DataConfig(val_docs=10, heldout_docs=0, tokenizer=str(embedded_data / "tokenizer.model")), small)
    run = run_on(tmp_path, small, embedded_data)
    result, doc = verify(run, "--out", tmp_path / "v")
    assert "PASS" not in verdicts(doc, "DATA-2") and verdicts(doc, "DATA-2") & {"FAIL", "WARN"}
    assert "40 of 50 val documents" in details(doc, "DATA-2"), details(doc, "DATA-2")
    result, doc = verify(run, "--out", tmp_path / "v2", "--track", "10min_16mb")
    assert result.exit_code == 3 and "FAIL" in verdicts(doc, "DATA-2")


def test_gptq_calibration_on_val_minus_one_token_fails(tiny_train, embedded_data, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    val = datadir.load_val_tokens(embedded_data)
    datadir.write_shard(calib / "fineweb_train_000000.bin", val[:-1])
    q = tmp_path / "quant"
    res = runner.invoke(app, ["quantize", str(tiny_train), "--out", str(q), "--set", "gptq=true",
                              "--set", f"calib_tokens={len(val) - 1}", "--calib-data", str(calib)])
    assert res.exit_code == 0, res.output  # the whole-file sha256 differs from the val shard's
    result, doc = verify(q, "--out", tmp_path / "v")
    assert result.exit_code == 3, result.output
    assert verdicts(doc, "DATA-7") == {"FAIL"}, details(doc, "DATA-7")
    assert "fineweb_train_000000.bin" in details(doc, "DATA-7") and "GPTQ calibration" in details(doc, "DATA-7")
    # A single --calib-data file is resolved and scanned the same way.
    q2 = tmp_path / "quant2"
    res = runner.invoke(app, ["quantize", str(tiny_train), "--out", str(q2), "--set", "gptq=true",
                              "--calib-data", str(calib / "fineweb_train_000000.bin")])
    assert res.exit_code == 0, res.output
    result, doc = verify(q2, "--out", tmp_path / "v2")
    assert verdicts(doc, "DATA-7") == {"FAIL"}, details(doc, "DATA-7")
