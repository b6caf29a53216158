"""Recomputed facts: the BPB denominator both ways, document overlap, val n-grams in model tensors."""

import numpy as np
import pytest

from pgolf.artifacts import data as datadir
from pgolf.data import bpb
from pgolf.data.tokenizer import load_tokenizer
from pgolf.verify.facts import data_facts, document_overlap, ngram_hashes, paid_prefix, sampled_ngrams


@pytest.fixture(scope="module")
def val(embedded_data):
    sp = load_tokenizer((embedded_data / "tokenizer.model").read_bytes())
    return datadir.load_val_tokens(embedded_data), datadir.load_val_bytes(embedded_data), sp


def test_pgolf_data_is_consistent_both_ways(val):
    tokens, side, sp = val
    f = data_facts(tokens, side, sp)
    assert f.lut_bytes == f.sidecar_bytes == int(side[1:].sum()) > 0
    assert f.lut_sidecar_mismatch == 0 and f.docs_decode_mismatch == 0 and f.docs_checked == f.val_docs == 50
    assert f.unknown_tokens == 0 and f.standalone_space and f.starts_with_bos
    assert f.doc_starts[0] == 0 and f.doc_starts.size == 50


def test_byte_pieces_counted_as_three_are_caught(val):
    """MET-2 plant: a table built from len(sp.decode([i]).encode()), where a lone <0xC3> gives 3."""
    tokens, side, sp = val
    bad = side.copy()
    byte_ids = [i for i in range(sp.vocab_size()) if sp.is_byte(i)]
    # plant: pretend some tokens are byte pieces counted by their decoded U+FFFD (3 bytes)
    planted = np.flatnonzero(np.isin(tokens, byte_ids))
    if planted.size == 0:
        planted = np.arange(5, 10)
    bad[planted] = 3
    f = data_facts(tokens, bad, sp)
    assert f.lut_sidecar_mismatch > 0 and f.docs_decode_mismatch > 0
    assert f.mismatch_examples and {"position", "piece", "lut", "sidecar"} <= set(f.mismatch_examples[0])


def test_space_counted_twice_is_caught(val):
    tokens, side, sp = val
    tables = bpb.build_byte_tables(sp)
    twice = side.copy()
    spaced = np.flatnonzero(tables.leading_space[tokens.astype(np.int64)])
    twice[spaced[spaced > 0]] += 1
    f = data_facts(tokens, twice, sp)
    assert f.lut_sidecar_mismatch == spaced[spaced > 0].size and f.sidecar_bytes > f.lut_bytes


def test_document_overlap_across_shard_boundaries():
    rng = np.random.default_rng(0)
    docs = [np.concatenate(([1], rng.integers(4, 500, rng.integers(5, 40)))).astype(np.uint16) for _ in range(30)]
    val = np.concatenate(docs[:10])
    clean = np.concatenate(docs[10:])
    assert document_overlap(val, [clean[:100], clean[100:]]) == 0
    leaked = np.concatenate([docs[12], docs[3], docs[4], docs[15]])
    cut = len(docs[12]) + 7  # doc 3 straddles the shard boundary
    assert document_overlap(val, [leaked[:cut], leaked[cut:]]) == 2


def test_ngram_hashes_match_sliding_windows():
    v = np.array([5, 1, 9, 9, 2, 7, 1, 5, 9], dtype=np.int64)
    h = ngram_hashes(v, 3)
    assert h.shape == (7,) and h[0] == ngram_hashes(v[:3], 3)[0] and h[6] == ngram_hashes(v[6:], 3)[0]
    assert h[1] != h[0] and ngram_hashes(v, 10).size == 0


def test_paid_prefix_finds_stored_val_tokens_in_any_dtype(val):
    tokens = val[0]
    rng = np.random.default_rng(1)
    codes = rng.integers(-31, 32, (128, 256)).astype(np.int8)
    assert paid_prefix({"w.q": codes, "s": rng.standard_normal(300).astype(np.float16)}, tokens).total == 0
    for stored in (tokens[1000:5096].astype(np.uint16), tokens[1000:5096].astype(np.int32),
                   tokens[1000:5096].astype("<u2").view(np.float16)):
        found = paid_prefix({"w.q": codes, "prefix": stored}, tokens)
        assert found.hits.get("prefix", 0) >= 100, stored.dtype
    assert sampled_ngrams(np.full(200, 7), 32, 32).size == 0  # near-constant n-grams are skipped
