"""`pgolf data build --transform caseops` with PR #2135's CaseOps tokenizer (read at run time; skipped when
absent), its refusals, and `pgolf verify` on a CaseOps run: 0 FAIL, and a forged sidecar FAILs."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_verify_support import build_run, copy_run, rehash
from typer.testing import CliRunner

from pgolf.artifacts import corpus as corpus_io
from pgolf.artifacts import data as datadir
from pgolf.artifacts import read_manifest
from pgolf.cli import app
from pgolf.data import bpb, caseops, shards
from pgolf.data.config import DataConfig
from pgolf.data.tokenizer import load_tokenizer
from pgolf.errors import ConfigError, DataError
from pgolf.stages import data
from pgolf.verify.checks.data import _caseops_val_count
from pgolf.verify.evidence import CANONICAL_CASEOPS_VAL_TARGETS

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(os.environ.get("PGOLF_REFERENCE", ROOT.parent / "shared" / "reference"))
TOKENIZER = REFERENCE / "pr2135" / "tokenizers" / "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
VAL, HELDOUT = 12, 6
runner = CliRunner()


@pytest.fixture(scope="module")
def tok() -> Path:
    if not TOKENIZER.is_file():
        pytest.skip(f"PR #2135's CaseOps tokenizer not found at {TOKENIZER} (set PGOLF_REFERENCE to run these tests)")
    return TOKENIZER


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """40 documents of the embedded corpus (Python's docs: capitals everywhere), cut to 2,000 characters."""
    return [t[:2000].strip() for t in itertools.islice(corpus_io.embedded_documents(), 40)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, texts) -> Path:
    path = tmp_path_factory.mktemp("caseops-corpus") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


@pytest.fixture(scope="module")
def co_data(tmp_path_factory, corpus, tok) -> Path:
    out = tmp_path_factory.mktemp("caseops") / "data"
    result = runner.invoke(app, ["data", "build", "--corpus", str(corpus), "--tokenizer", str(tok), "--transform",
                                 "caseops", "--val-docs", str(VAL), "--heldout-docs", str(HELDOUT), "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["transform"] == "caseops" and doc["val_bytes_lut"] is None and doc["bpb_check"]["consistent"]
    return out


def test_round_trip_and_raw_byte_sidecar(co_data, texts, tok):
    m = read_manifest(co_data, "data").metrics
    sp = load_tokenizer(tok.read_bytes())
    val = np.asarray(datadir.load_val_tokens(co_data)).astype(np.int64)
    side = datadir.load_val_bytes(co_data)
    assert m["transform"] == "caseops" and m["transform_version"] == "lossless_caps_caseops_v1"
    assert m["val_docs"] == VAL and m["heldout_docs"] == HELDOUT and m["val_tokens"] == val.size
    # Every val document: BOS + the tokens of its encoding; decoded and inverted, the normalized text; its
    # surfaces inverted, the raw text; the sidecar sums to its raw UTF-8 bytes (these have no edge whitespace).
    bounds = np.append(np.flatnonzero(val == 1), val.size)
    for text, a, b in zip(texts[:VAL], bounds[:-1], bounds[1:]):
        ids, counts = caseops.document_tokens(sp, text)
        np.testing.assert_array_equal(val[a:b], ids)
        np.testing.assert_array_equal(side[a:b], counts)
        assert caseops.decode_lenient(sp.decode(val[a + 1:b].tolist())) == \
            caseops.decode_lenient(bpb.normalized_text(sp, caseops.encode(text)))
        assert int(side[a:b].sum()) == len(text.encode("utf-8"))
    assert caseops.check_documents(sp, texts[:VAL], val, side) == m["val_bytes"] == m["val_bytes_raw"]
    assert m["bpb_check"]["docs_checked"] == VAL and m["bpb_check"]["control_tokens"] > 100
    # The held-out split is transformed the same way (and fingerprinted for verify --probe).
    held = np.asarray(datadir.load_heldout_tokens(co_data, read_manifest(co_data, "data"))).astype(np.int64)
    want = np.concatenate([caseops.document_tokens(sp, t)[0] for t in texts[VAL:VAL + HELDOUT]])
    np.testing.assert_array_equal(held, want)
    assert len(m["heldout_fingerprints"]) == HELDOUT


def test_inconsistent_sidecar_is_refused(tmp_path, corpus, tok, monkeypatch):
    real = caseops.document_tokens

    def off_by_one(sp, text):  # a sidecar that moves one byte between two tokens (same total)
        ids, counts = real(sp, text)
        counts = counts.copy()
        counts[1] += 1
        counts[2] -= 1
        return ids, counts

    monkeypatch.setattr(caseops, "document_tokens", off_by_one)
    out = tmp_path / "data"
    result = runner.invoke(app, ["data", "build", "--corpus", str(corpus), "--tokenizer", str(tok), "--transform",
                                 "caseops", "--val-docs", "3", "--out", str(out)])
    assert result.exit_code == 1
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "CaseOps byte sidecar check failed: document 0, token 1" in lines[0], result.output
    assert not out.exists()


def test_tokenizer_not_trained_for_caseops_is_refused(tmp_path, corpus, embedded_data):
    """A tokenizer without the four control pieces would spell each case mark as byte pieces: refused."""
    out = tmp_path / "data"
    with pytest.raises(DataError, match=r"no piece for the CaseOps control character U\+E001 \(TITLE\): it was "
                                        "not trained for CaseOps"):
        data.build(DataConfig(corpus=(str(corpus),), tokenizer=str(embedded_data / "tokenizer.model"),
                              transform="caseops", val_docs=3), out)
    assert not out.exists()


def test_config_errors():
    with pytest.raises(ConfigError, match="'transform' must be one of none, caseops"):
        DataConfig(transform="upper")
    with pytest.raises(ConfigError, match="'transform' caseops needs a tokenizer trained for CaseOps"):
        DataConfig(transform="caseops", train_tokenizer=True)


def test_sidecar_entries_must_fit_uint16():
    with pytest.raises(ValueError, match="does not fit the sidecar's uint16 entries"):
        shards.sidecar_bytes(np.array([0, 70_000]))


def test_canonical_caseops_val_count():
    """DATA-1 on a record claim with CaseOps data: PR #2135's 47,851,520 targets once cut to 2,560s."""
    n = CANONICAL_CASEOPS_VAL_TARGETS
    for tokens in (n + 1, n + 1 + 1823, n + 2560):
        assert _caseops_val_count("s", tokens, record=True).verdict == "PASS"
    assert _caseops_val_count("s", n + 2561, record=True).verdict == "FAIL"
    assert _caseops_val_count("s", 62_021_846, record=False).verdict == "WARN"


# ----------------------------------------------------------------------------- verify on a CaseOps run


@pytest.fixture(scope="module")
def co_run(tmp_path_factory, co_data):
    import torch

    from pgolf.stages import train

    tr = tmp_path_factory.mktemp("caseops-train") / "train"
    cfg = train.load_config("tiny", overrides=["model.vocab_size=8192", "iterations=4", "warmdown_iters=2",
                                               "val_every=0", "checkpoint_every_s=0", "max_seconds=0"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.run(cfg, co_data, tr, source="preset:tiny")
    finally:
        torch.set_num_threads(threads)
    return build_run(tmp_path_factory.mktemp("caseops-verify") / "run", co_data, tr)


def _verify(run: Path, exit_code: int) -> dict:
    result = runner.invoke(app, ["verify", str(run), "--json"])
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def _checks(doc, rule):
    return [c for c in doc["checks"] if c["id"] == rule]


@pytest.mark.slow
def test_verify_caseops_run_passes(co_run):
    doc = _verify(co_run, 0)
    assert not [c for c in doc["checks"] if c["verdict"] == "FAIL"], doc["checks"]
    met1, met2, met3 = _checks(doc, "MET-1")[0], _checks(doc, "MET-2")[0], _checks(doc, "MET-3")[0]
    assert met1["verdict"] == "PASS" and "raw documents re-encoded and re-tokenized" in met1["detail"]
    assert met2["verdict"] == "PASS" and "the lookup tables do not apply" in met2["detail"]
    assert met3["verdict"] == "PASS" and f"every one of {VAL} val documents inverts" in met3["detail"]


@pytest.mark.slow
def test_verify_fails_a_forged_caseops_sidecar(co_run, tmp_path):
    """One byte moved between two tokens of the sidecar (the total unchanged), every hash redone: the tokens
    and the ledger are still consistent, but the sidecar re-derived from the raw documents is not."""
    run = copy_run(co_run, tmp_path / "run")
    path = run / "data" / datadir.sidecar_name(0)
    side = np.asarray(datadir.open_sidecar(path)).astype(np.int64)
    k = int(np.flatnonzero(side[2:] > 0)[0]) + 2
    side[k] -= 1
    side[k + 1] += 1
    path.write_bytes(shards.sidecar_bytes(side))
    rehash(run)
    doc = _verify(run, 3)
    met2 = [c for c in _checks(doc, "MET-2") if c["verdict"] == "FAIL"]
    assert met2 and "re-derived from the raw val documents disagrees" in met2[0]["detail"], _checks(doc, "MET-2")
    assert {c["id"] for c in doc["checks"] if c["verdict"] == "FAIL"} == {"MET-2"}


def test_verify_facts_on_caseops_tokens(tok):
    """Without the raw documents, MET-2 checks what the tokens alone determine (control tokens) and WARNs."""
    from pgolf.verify import facts as factmod
    from pgolf.verify.checks.metric import _caseops_byte_rule

    sp = load_tokenizer(tok.read_bytes())
    ids, counts = caseops.document_tokens(sp, "The NASA Launch was OK, said McDonald.")
    f = factmod.data_facts(ids, counts, sp, transform="caseops")
    assert f.lut_bytes is None and f.control_tokens == 6 and f.control_mismatch == 0
    assert f.decoded_bytes == int(counts.sum())  # nothing here for the normalizer to collapse
    f.raw_note = "the corpus docs.jsonl is not readable here"
    (res,) = _caseops_byte_rule("s", f)
    assert res.verdict == "WARN" and "cannot be re-derived here (the corpus docs.jsonl" in res.detail
    forged = counts.copy()
    forged[1] = 1  # the TITLE before "The" charged a byte
    f = factmod.data_facts(ids, forged, sp, transform="caseops")
    (res,) = _caseops_byte_rule("s", f)
    assert f.control_mismatch == 1 and res.verdict == "FAIL" and "the transform charges 0, the sidecar 1" in res.detail


def test_inspect_caseops_data(co_data):
    report = data.inspect(co_data)
    m = read_manifest(co_data, "data").metrics
    assert report["transform"] == "caseops" and report["val_bytes_lut"] is None and report["hash_check"] == "ok"
    assert report["val_bytes"] == m["val_bytes"] and report["bytes_per_token"] > 2


def test_a_caseops_export_sidecar_is_never_read_as_tokens(tmp_path, co_data):
    """The HF CaseOps export names its sidecar fineweb_val_bytes_*.bin, with a token shard's header."""
    import shutil

    d = tmp_path / "export"
    d.mkdir()
    shutil.copy(co_data / "fineweb_val_000000.bin", d / "fineweb_val_000000.bin")
    shutil.copy(co_data / "fineweb_val_000000.bin", d / "fineweb_val_bytes_000000.bin")
    with pytest.raises(DataError, match="fineweb_val_bytes_000000.bin is a CaseOps export's byte sidecar"):
        datadir.load_val_tokens(d)
