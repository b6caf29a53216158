"""The contamination probe (CONTAM-1, `pgolf verify --probe`): `pgolf data build` sets a held-out split aside that no
stage reads; a model fine-tuned on the val tokens before quantization (pre-quant TTT, the train manifest re-hashed
as a forger would) scores val far better than held-out documents and FAILs; the legal run PASSes; a data
directory without the split gets a WARN saying why, never a crash."""

import json
import shutil

import numpy as np
import pytest
import torch
from test_verify_support import build_run, copy_run, edit_manifest, rehash
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.artifacts import data as datadir
from pgolf.artifacts.model import MODEL_FILE, load_model
from pgolf.cli import app
from pgolf.stages.data import document_fingerprint
from pgolf.verify.probes import _z, bpb_gap

pytestmark = pytest.mark.slow
runner = CliRunner()
PROBE = ["--probe", "--probe-positions", "50"]


def verify(*args):
    result = runner.invoke(app, ["verify", *map(str, args), "--json"])
    doc = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, doc


def contam(doc) -> list[dict]:
    return [c for c in doc["checks"] if c["id"] == "CONTAM-1"]


def fine_tune_on_val(train_dir, data_dir, epochs=3, seq_len=128, lr=3e-3, batch=64):
    """What a forger does: fine-tune the float model on the val tokens, save it in place with the same metadata
    and re-hash the train manifest (the downstream stages are then run on it, so every hash agrees)."""
    model, _, _ = load_model(train_dir)
    _, meta = artifacts.load_safetensors(train_dir / MODEL_FILE)
    val = torch.from_numpy(datadir.load_val_tokens(data_dir).astype(np.int64))
    rows = (val.numel() - 1) // seq_len
    x, y = val[: rows * seq_len].view(rows, seq_len), val[1 : rows * seq_len + 1].view(rows, seq_len)
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(epochs):
        for i in range(0, rows, batch):
            loss = model.token_nll(x[i : i + batch], y[i : i + batch]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    artifacts.save_safetensors(train_dir / MODEL_FILE, {k: v.detach().contiguous() for k, v in
                                                        model.state_dict().items()}, meta)
    m = artifacts.read_manifest(train_dir)
    m.files = [artifacts.file_entry(train_dir, f["path"], f.get("format", ""), f.get("format_version", 1))
               for f in m.files]
    artifacts.write_manifest(train_dir, m)


@pytest.fixture(scope="module")
def legal_run(tmp_path_factory, embedded_data, tiny_train):
    return build_run(tmp_path_factory.mktemp("contamination") / "run", embedded_data, tiny_train)


def test_data_build_sets_a_heldout_split_aside(embedded_data, tiny_train):
    m = artifacts.read_manifest(embedded_data, "data").metrics
    assert m["heldout_docs"] == m["val_docs"] == 50  # default: as many as val (at most 1,000)
    assert m["heldout_doc_range"] == [50, 100] and m["train_doc_range"][0] == 100
    held = datadir.load_heldout_tokens(embedded_data, artifacts.read_manifest(embedded_data, "data"))
    assert held is not None and held.size == m["heldout_tokens"]
    starts = np.flatnonzero(held == 1).tolist() + [held.size]
    assert [document_fingerprint(held[a:b]) for a, b in zip(starts, starts[1:])] == m["heldout_fingerprints"]
    # No stage reads it: not a training shard, not a val file, and the trainer names none of it.
    assert [p.name for p in datadir.list_shards(embedded_data, "train")] == ["fineweb_train_000000.bin"]
    assert not datadir.VAL_FILE_RE.match("heldout_000000.bin")
    inputs = artifacts.read_manifest(tiny_train, "train").inputs
    assert not any("heldout" in str(e.get("path")) for e in inputs)


def test_heldout_docs_flag(tmp_path):
    result = runner.invoke(app, ["data", "build", "--out", str(tmp_path / "d"), "--heldout-docs", "0", "--val-docs",
                                 "20", "--json"])
    assert result.exit_code == 0, result.output
    m = artifacts.read_manifest(tmp_path / "d", "data")
    assert m.metrics["heldout_docs"] == 0 and not list((tmp_path / "d").glob("heldout_*"))
    assert m.metrics["train_doc_range"][0] == 20


def test_gap_statistics():
    assert _z(0.001) == pytest.approx(3.0902, abs=1e-3) and _z(0.5 - 1e-9) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    nbytes = rng.integers(500, 1500, 200).astype(float)
    nll = nbytes * np.log(2) * rng.normal(1.0, 0.1, 200)  # ~1 bpb per document
    v, h, gap, se = bpb_gap((nll[:100], nbytes[:100]), (nll[100:] * 1.2, nbytes[100:]), resamples=500, seed=0)
    assert v == pytest.approx(1.0, abs=0.05) and gap == pytest.approx(h - v) and 0.15 < gap < 0.25 and 0 < se < 0.03


def test_legal_run_passes_the_probe(legal_run, tmp_path):
    result, doc = verify(legal_run, *PROBE, "--out", tmp_path / "v")
    assert result.exit_code == 0, [c for c in doc["checks"] if c["verdict"] == "FAIL"]
    [check] = contam(doc)
    print(check["detail"])
    assert check["verdict"] == "PASS" and "within noise" in check["detail"]
    plain, plain_doc = verify(legal_run, "--out", tmp_path / "v0")
    assert [c["verdict"] for c in contam(plain_doc)] == ["INFO"] and "--probe" in contam(plain_doc)[0]["detail"]


def test_model_fine_tuned_on_val_before_quantization_fails(legal_run, embedded_data, tiny_train, tmp_path):
    forged_train = tmp_path / "train"
    shutil.copytree(tiny_train, forged_train)
    fine_tune_on_val(forged_train, embedded_data)
    run = build_run(tmp_path / "run", embedded_data, forged_train)  # quant/pack/eval made from it: hashes agree
    files_only, files_doc = verify(run, "--out", tmp_path / "v0")  # every file check passes
    assert files_only.exit_code == 0, [c for c in files_doc["checks"] if c["verdict"] == "FAIL"]
    result, doc = verify(run, *PROBE, "--out", tmp_path / "v1")
    assert result.exit_code == 3, result.output
    [check] = contam(doc)
    print(check["detail"])
    assert check["verdict"] == "FAIL" and "model fitted to validation" in check["detail"]
    assert {c["id"] for c in doc["checks"] if c["verdict"] == "FAIL"} == {"CONTAM-1"}


def test_data_without_a_heldout_split_warns(legal_run, tmp_path):
    run = copy_run(legal_run, tmp_path / "run")
    for f in (run / "data").glob("heldout_*.bin"):
        f.unlink()

    def drop(m):  # a data manifest written before the split existed
        m["files"] = [f for f in m["files"] if not f["path"].startswith("heldout_")]
        for key in ("heldout_docs", "heldout_tokens", "heldout_doc_range", "heldout_docs_sha256",
                    "heldout_fingerprints"):
            m["metrics"].pop(key, None)

    edit_manifest(run / "data", drop)
    rehash(run, ("train", "quant", "pack", "eval"))  # the consumers name the new data manifest
    result, doc = verify(run, *PROBE, "--out", tmp_path / "v")
    assert result.exit_code == 0, [c for c in doc["checks"] if c["verdict"] == "FAIL"]
    [check] = contam(doc)
    assert check["verdict"] == "WARN" and "no held-out split" in check["detail"] and "pgolf data build" in check["detail"]
