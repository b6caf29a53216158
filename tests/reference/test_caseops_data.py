"""`pgolf data build --transform caseops` against PR #2135's own preparation script, run at test time.

The record's `prepare_caseops_data.py` (with its `lossless_caps.py`) is imported and its `main()` run on a
few documents; pgolf builds the same documents. The two shard formats differ (the record writes
`fineweb_val_bytes_*.bin` as a uint16 token shard, pgolf `bytes_val_*.bin` with its own header), so the
arrays are compared: val tokens, train tokens and the per-token byte sidecar must be equal. Skipped when
the records are absent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pgolf.artifacts import data as datadir
from pgolf.data import caseops
from pgolf.data.config import DataConfig
from pgolf.stages import data

from . import test_caseops as reference
from .test_caseops import EDGE_CASES, TOKENIZER, _proto_surfaces

record, lc, prep = reference.record, reference.lc, reference.prep  # the fixtures of the transform's own test

DOCS = [
    "The NASA Launch was OK. iPhone users in McDonald's queue.",
    "ALL CAPS SHOUTING, AND MORE\n\nA second paragraph.  Two spaces.",
    *[t for t in EDGE_CASES if t.strip()],  # Unicode, literal controls, edge whitespace, tabs and CRLF
    "Title Case Words Everywhere In This Training Document.",
    "plain lowercase training text with digits 123ABC and eBay.",
]
VAL_DOCS = 9  # val holds the literal controls, edge whitespace and the zero-width start
RECORD_DIR = "datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"


class _ProtoSp:
    """The record calls `sp.encode_as_immutable_proto`, which this sentencepiece does not have: the same
    processor, with that one method answered from the serialized proto's surfaces."""

    def __init__(self, model_file: str):
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_file=model_file)

    def __getattr__(self, name):
        return getattr(self._sp, name)

    def encode_as_immutable_proto(self, text: str):
        return SimpleNamespace(pieces=[SimpleNamespace(surface=s) for s in _proto_surfaces(self._sp, text)])


def _read_record_shard(path: Path) -> np.ndarray:
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520 and header[1] == 1
    return np.fromfile(path, dtype="<u2", offset=1024).astype(np.int64)[: int(header[2])]


def _run_record(prep, record_dir: Path, docs: Path, out: Path, monkeypatch) -> Path:
    monkeypatch.setattr(prep, "spm", SimpleNamespace(SentencePieceProcessor=_ProtoSp))
    monkeypatch.setattr(sys, "argv", ["prepare_caseops_data.py", "--docs", str(docs), "--out", str(out),
                                      "--sp", str(record_dir / TOKENIZER), "--val-docs", str(VAL_DOCS)])
    prep.main()
    return out / RECORD_DIR


def test_data_build_equals_the_record_prep(tmp_path, record, prep, monkeypatch):
    tok = record / TOKENIZER
    if not tok.is_file():
        pytest.skip(f"record tokenizer not found at {tok}")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in DOCS))
    ref = _run_record(prep, record, corpus, tmp_path / "record", monkeypatch)

    out = tmp_path / "pgolf"
    m = data.build(DataConfig(corpus=(str(corpus),), tokenizer=str(tok), transform="caseops", val_docs=VAL_DOCS,
                              heldout_docs=0), out).metrics
    val = np.asarray(datadir.load_val_tokens(out)).astype(np.int64)
    side = datadir.load_val_bytes(out)
    train = np.concatenate([np.asarray(a).astype(np.int64) for a in datadir.open_split(out, "train")])

    np.testing.assert_array_equal(val, _read_record_shard(ref / "fineweb_val_000000.bin"))
    np.testing.assert_array_equal(side, _read_record_shard(ref / "fineweb_val_bytes_000000.bin"))
    np.testing.assert_array_equal(train, _read_record_shard(ref / "fineweb_train_000000.bin"))
    # The manifest's totals are those arrays', and every control token is among them.
    assert m["val_bytes"] == int(side[1:].sum()) and m["val_tokens"] == val.size
    assert m["transform"] == "caseops" and m["transform_version"] == caseops.TRANSFORM_NAME
    uncovered = sum(len(t.encode()) - len(t.strip().strip("\u200b").encode()) for t in DOCS[:VAL_DOCS])
    assert m["val_bytes_raw"] - m["val_bytes"] == m["bpb_check"]["uncovered_edge_bytes"] == uncovered > 0
    assert m["bpb_check"]["control_tokens"] > 10
