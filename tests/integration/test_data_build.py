"""`pgolf data build` / `inspect` on real corpora, and every bad-input error."""

import io
import json
import shutil

import numpy as np
import pytest
import zstandard

from pgolf.artifacts import data as datadir
from pgolf.artifacts import read_manifest
from pgolf.data import bpb
from pgolf.data.config import DataConfig
from pgolf.errors import ArtifactError, ConfigError, DataError
from pgolf.stages import data


def _independent_counts(path, sp, val_docs, heldout_docs=0):
    """Recount from the raw corpus with the tokenizer directly (a slow, obviously correct loop)."""
    counts = dict(val_tokens=0, heldout_tokens=0, train_tokens=0, val_bytes=0, val_raw=0, docs=0)
    with zstandard.ZstdDecompressor().stream_reader(open(path, "rb")) as r:
        for i, line in enumerate(io.TextIOWrapper(r, encoding="utf-8")):
            text = json.loads(line)["text"]
            ids = sp.encode(text)
            split = "val" if i < val_docs else "heldout" if i < val_docs + heldout_docs else "train"
            counts[f"{split}_tokens"] += len(ids) + 1
            if split == "val":
                counts["val_bytes"] += len(sp.decode(ids).encode("utf-8"))
                counts["val_raw"] += len(text.encode("utf-8"))
            counts["docs"] += 1
    return counts


def test_webtext_counts_and_bytes(webtext_data, webtext_path, sp1024_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp1024_path))
    expect = _independent_counts(webtext_path, sp, 200, 200)  # the held-out split: as many documents as val
    m = read_manifest(webtext_data, "data").metrics
    assert m["val_docs"] == m["heldout_docs"] == 200 and m["train_docs"] == expect["docs"] - 400 == 2068
    assert m["val_tokens"] == expect["val_tokens"] and m["train_tokens"] == expect["train_tokens"]
    assert m["heldout_tokens"] == expect["heldout_tokens"] and m["heldout_doc_range"] == [200, 400]
    assert m["val_bytes"] == m["val_bytes_lut"] == m["val_bytes_normalized"] == expect["val_bytes"]
    assert m["val_bytes_raw"] == expect["val_raw"] > m["val_bytes"]  # raw bytes would fake a gain (MET-1)
    assert m["bpb_check"]["consistent"] is True
    assert m["val_doc_range"] == [0, 200] and m["train_doc_range"] == [400, 2468]
    # The shards on disk hold exactly that, BOS (id 1) first, and the sidecar agrees with the tables.
    val = datadir.load_val_tokens(webtext_data, 1024)
    side = datadir.load_val_bytes(webtext_data)
    assert val.size == m["val_tokens"] and val[0] == 1 and int((val == 1).sum()) == 200
    assert int(side[1:].sum()) == m["val_bytes"]
    np.testing.assert_array_equal(side, bpb.lut_stream_bytes(bpb.build_byte_tables(sp), val))


def test_only_challenge_names_match_challenge_globs(webtext_data):
    names = sorted(p.name for p in webtext_data.iterdir())
    assert [n for n in names if n.startswith("fineweb_val_")] == ["fineweb_val_000000.bin"]
    assert [n for n in names if n.startswith("fineweb_train_")] == ["fineweb_train_000000.bin"]
    assert "bytes_val_000000.bin" in names and "tokenizer.model" in names


def test_same_inputs_same_bytes_and_sharding(tmp_path, webtext_path, sp1024_path):
    cfg = DataConfig(corpus=(str(webtext_path),), tokenizer=str(sp1024_path), val_docs=100, shard_tokens=150_000)
    a = data.build(cfg, tmp_path / "a")
    b = data.build(cfg, tmp_path / "b")
    assert [(f["path"], f["sha256"]) for f in a.files] == [(f["path"], f["sha256"]) for f in b.files]
    val_shards = datadir.list_shards(tmp_path / "a", "val")
    train_shards = datadir.list_shards(tmp_path / "a", "train")
    assert len(train_shards) > 10 and all(datadir.read_header(p) <= 150_000 for p in train_shards)
    assert sum(datadir.read_header(p) for p in train_shards) == a.metrics["train_tokens"]
    assert sum(datadir.read_header(p) for p in val_shards) == a.metrics["val_tokens"]


def test_embedded_corpus_default(embedded_data):
    m = read_manifest(embedded_data, "data")
    assert m.metrics["val_docs"] == 50 and m.metrics["train_docs"] > 200
    assert m.metrics["bpb_check"]["consistent"]
    assert m.inputs[0]["path"].startswith("embedded:python-")
    assert m.metrics["vocab_size"] == 1024


def test_trained_tokenizer_sees_training_docs_only(tmp_path):
    train_docs = [f"zyxwv{i} common words here" for i in range(300)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t}) for t in ["qqqqjjjj " * 50] * 20 + train_docs) + "\n")
    m = data.build(DataConfig(corpus=(str(corpus),), train_tokenizer=True, vocab_size=300, val_docs=20),
                   tmp_path / "d")
    assert m.metrics["tokenizer_source"] == "trained"
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "d" / "tokenizer.model"))
    pieces = {sp.id_to_piece(i) for i in range(sp.vocab_size())}
    assert "qqqq" not in pieces and not any("jjj" in p for p in pieces)  # val-only text made no merges


def test_inspect_with_and_without_manifest(tmp_path, webtext_data, sp1024_path):
    full = data.inspect(webtext_data)
    m = read_manifest(webtext_data).metrics
    for key in ("train_tokens", "val_tokens", "train_docs", "val_docs", "val_bytes", "val_bytes_lut", "vocab_size"):
        assert full[key] == m[key], key
    assert full["hash_check"] == "ok" and full["missing"] == []
    bare = tmp_path / "official"
    bare.mkdir()
    for p in webtext_data.glob("fineweb_*.bin"):
        shutil.copy(p, bare / p.name)
    report = data.inspect(bare, sp1024_path)
    assert report["val_bytes_lut"] == m["val_bytes"] and report["val_docs"] == 200
    assert report["hash_check"] == "no manifest" and report["val_bytes"] is None
    assert any("manifest.json" in x for x in report["missing"])


def test_inspect_detects_tampering(tmp_path, webtext_data):
    copy = tmp_path / "copy"
    shutil.copytree(webtext_data, copy)
    shard = copy / "fineweb_val_000000.bin"
    raw = bytearray(shard.read_bytes())
    raw[2000] ^= 1
    shard.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="fineweb_val_000000.bin does not match its sha256"):
        data.inspect(copy)
    shard.write_bytes(bytes(raw[:-2]))
    with pytest.raises(DataError, match="truncated"):
        data.inspect(copy)


def test_bad_inputs(tmp_path, sp1024_path):
    with pytest.raises(DataError, match="does not exist"):
        data.build(DataConfig(corpus=(str(tmp_path / "nope.jsonl"),), tokenizer=str(sp1024_path)), tmp_path / "o")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: no string field 'text'"):
        data.build(DataConfig(corpus=(str(bad),), tokenizer=str(sp1024_path), val_docs=1), tmp_path / "o")
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not a JSON line"):
        data.build(DataConfig(corpus=(str(bad),), tokenizer=str(sp1024_path), val_docs=1), tmp_path / "o")
    good = tmp_path / "good.jsonl.zst"
    good.write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "a"}\n' * 1000))
    trunc = tmp_path / "trunc.jsonl.zst"
    trunc.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(DataError, match="trunc.jsonl.zst"):
        data.build(DataConfig(corpus=(str(trunc),), tokenizer=str(sp1024_path), val_docs=1), tmp_path / "o")
    with pytest.raises(DataError, match="leaves 0 for training"):
        data.build(DataConfig(corpus=(str(good),), tokenizer=str(sp1024_path), val_docs=1000), tmp_path / "o")
    with pytest.raises(DataError, match="without a tokenizer"):
        data.build(DataConfig(corpus=(str(good),), val_docs=1), tmp_path / "o")
    with pytest.raises(DataError, match="is a directory"):
        data.build(DataConfig(corpus=(str(tmp_path),), tokenizer=str(sp1024_path)), tmp_path / "o")
    odd = tmp_path / "corpus.csv"
    odd.write_text("a,b\n")
    with pytest.raises(DataError, match="unknown type"):
        data.build(DataConfig(corpus=(str(odd),), tokenizer=str(sp1024_path)), tmp_path / "o")
    notmodel = tmp_path / "x.model"
    notmodel.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a SentencePiece model"):
        data.build(DataConfig(corpus=(str(good),), tokenizer=str(notmodel), val_docs=1), tmp_path / "o")
    with pytest.raises(ConfigError, match="val_docs"):
        DataConfig(val_docs=0)
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.tmp")]  # nothing half-written


def test_token_ids_beyond_vocab_are_caught(tmp_path, webtext_data):
    copy = tmp_path / "copy"
    shutil.copytree(webtext_data, copy)
    with pytest.raises(DataError, match="is >= the vocabulary size 512"):
        datadir.open_split(copy, "val", vocab_size=512)
    with pytest.raises(DataError, match="no fineweb_train_\\*.bin shards"):
        datadir.open_split(tmp_path, "train")


def test_embedded_corpus_has_no_duplicate_documents():
    """A text repeated in the corpus could land in both splits (rules DATA-2)."""
    from pgolf.artifacts.corpus import embedded_named_documents

    docs = embedded_named_documents()
    assert len({text for _, text in docs}) == len(docs) > 300
