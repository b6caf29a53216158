"""pgolf's token n-gram tilt against PR #2135's own code (online_ngram_tilt.py and its C state, compiled
here at test time), on the same token streams; skipped without ../shared/reference or a C compiler."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from pgolf.eval import ngram_tilt as nt

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = "tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
SHARED_DATA = Path(os.environ.get("PGOLF_SHARED_DATA", ROOT.parent / "shared" / "data"))
# The record's launch command: only the token channel can fire.
RECORD_SETTINGS = dict(token_order=16, token_threshold=0.800, token_boost=2.625, within_tau=99.0, within_boost=0.0,
                       word_order=4, word_normalize="strip_punct_lower", word_tau=99.0, word_boost=0.0,
                       agree_add_boost=0.0)


@pytest.fixture(scope="module")
def tokenizer(reference_dir: Path) -> Path:
    """PR #2135's SP8192 CaseOps tokenizer (the `reference_dir` fixture skips when the records are absent)."""
    path = reference_dir / "pr2135" / TOKENIZER
    if not path.is_file():
        pytest.skip(f"record tokenizer not found at {path}")
    return path


@pytest.fixture(scope="module")
def ont(reference_dir: Path, tmp_path_factory) -> ModuleType:
    """online_ngram_tilt.py with its C helper built into a temporary folder (the record's is read-only)."""
    path = reference_dir / "pr2135" / "online_ngram_tilt.py"
    if not path.is_file():
        pytest.skip(f"record code not found at {path} (set PGOLF_REFERENCE to run these tests)")
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the record's online_ngram_state.c")
    spec = importlib.util.spec_from_file_location("_pgolf_record_pr2135_online_ngram_tilt", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lib = tmp_path_factory.mktemp("ngram") / "libonline_ngram_state.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(lib), str(module.ONLINE_NGRAM_SRC)], check=True)
    module.ONLINE_NGRAM_LIB = lib  # newer than the source: ensure_online_ngram_lib loads it as is
    return module


def synthetic_targets(tokenizer: Path | None = None) -> np.ndarray:
    """BOS-separated documents built from a few repeated phrases, so order-16 contexts recur."""
    rng = np.random.default_rng(0)
    phrases = [rng.integers(8, 8192, rng.integers(10, 40)) for _ in range(30)]
    docs = [np.concatenate([[1]] + [phrases[i] for i in rng.integers(0, 30, 12)] + [rng.integers(8, 8192, 50)])
            for _ in range(150)]
    return np.concatenate(docs)[1:].astype(np.uint16)


def webtext_targets(tokenizer: Path) -> np.ndarray:
    corpus = SHARED_DATA / "corpus" / "webtext_sample.jsonl.zst"
    if not corpus.is_file():
        pytest.skip(f"real test data not found at {corpus} (set PGOLF_SHARED_DATA to run this test)")
    import sentencepiece as spm

    from pgolf.artifacts.corpus import iter_file_documents
    from pgolf.data import caseops

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    docs = [t for i, t in zip(range(120), iter_file_documents(corpus))]
    stream = np.concatenate([[1] + sp.encode(caseops.encode(t)) for t in docs])
    return stream[1:].astype(np.uint16)  # the record hints val_tokens[1:], the scored targets


STREAMS = {"synthetic": synthetic_targets, "webtext": webtext_targets}


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_token_channel_equals_the_record_state(ont, tokenizer, stream):
    """Top token and confidence at every position, gated or not, for several orders: bit for bit."""
    targets = STREAMS[stream](tokenizer)
    lib = ont.ensure_online_ngram_lib(lambda *a: None)
    for order in (2, 4, 16):
        state = ont.OnlineNgramState(lib=lib, token_ctx_len=order - 1, token_table_bits=20, within_table_bits=20,
                                     starts_new_word_lut=np.zeros(8192, np.uint8),
                                     boundary_lut=np.zeros(8192, np.uint8), seed_prefix_token=int(targets[0]))
        top_tok, top_prob, *_ = state.process_chunk(targets)
        state.close()
        ours = nt.token_ngram_hints(targets, order)
        np.testing.assert_array_equal(ours.token, top_tok.astype(np.int64))
        np.testing.assert_array_equal(ours.prob, top_prob)
        assert (top_prob >= 0.8).sum() > 100, (order, int((top_prob >= 0.8).sum()))  # hints really fire


@pytest.mark.parametrize("stream", sorted(STREAMS))
def test_gated_hints_equal_the_record_build(ont, tokenizer, stream):
    """The record's full hint builder with its launch settings: hint ids, gate and boost per position."""
    targets = STREAMS[stream](tokenizer)
    pkg = ont.build_hints_for_targets(target_token_ids_np=targets, tokenizer_path=str(tokenizer), vocab_size=8192,
                                      log0=lambda *a: None, **RECORD_SETTINGS)
    hint, gate, beta = nt.gate_hints(nt.token_ngram_hints(targets, 16), nt.TiltConfig())
    np.testing.assert_array_equal(gate, pkg["gate_mask"])
    np.testing.assert_array_equal(hint, pkg["hint_ids"])
    np.testing.assert_array_equal(beta, pkg["boost"])
    assert gate.sum() > 100


def test_adjusted_nll_equals_the_record(ont):
    targets = synthetic_targets()
    hint, gate, beta = nt.gate_hints(nt.token_ngram_hints(targets, 16), nt.TiltConfig())
    pick = np.concatenate([np.flatnonzero(gate)[:256], np.flatnonzero(~gate)[:256]])  # gated and not
    hint, gate, beta = (torch.from_numpy(a[pick]) for a in (hint, gate, beta))
    tgt = torch.from_numpy(targets[pick].astype(np.int64))
    gen = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(pick.size, 8192, generator=gen) * 4, dim=-1)
    lp[torch.arange(0, pick.size, 3), hint[::3]] += 8  # make some hints likely, so hits and misses both occur
    lp = torch.log_softmax(lp, dim=-1)
    nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    log_q = lp.gather(-1, hint.unsqueeze(-1)).squeeze(-1)
    theirs = ont.apply_tilt_to_ptl_torch(nll.double(), log_q, tgt, hint, gate, beta)
    ours = nt.tilt_nll(nll, log_q, tgt, hint, gate, beta)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    fast = ont.apply_tilt_to_ptl_torch_fast(nll, log_q, tgt, hint, gate, beta)  # what the record's eval runs
    torch.testing.assert_close(ours.float(), fast, rtol=0, atol=2e-5)
    assert bool((ours[gate] != nll[gate].double()).all()) and bool((ours[~gate] == nll[~gate].double()).all())
    assert bool((tgt[gate] == hint[gate]).any()) and bool((tgt[gate] != hint[gate]).any())
    full = nt.tilted_log_probs(lp, hint, gate, beta)
    torch.testing.assert_close(-full.gather(-1, tgt.unsqueeze(-1)).squeeze(-1), theirs, rtol=0, atol=1e-6)


def test_tilted_eval_scores_equal_the_records_tilt_path(ont, tokenizer):
    """`evaluate(..., tilt="ngram")` against #2135's scoring path on the same logits and token history: its
    hint builder over the targets with the launch's settings, the NLL and the hint's log-prob from one
    log-softmax (its forward_ttt), its `apply_tilt_to_ptl_torch_fast`; per position and per ledger chunk."""
    from pgolf.eval import EvalConfig, evaluate
    from pgolf.eval.scoring import tilted_nll_of
    from pgolf.model import GPT, ModelConfig

    targets = synthetic_targets()[:1535]
    tokens = np.concatenate([[1], targets]).astype(np.int64)  # a val stream: BOS, then the targets
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=8192, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1)).eval()
    with torch.no_grad():  # random weights everywhere: peaked, context-dependent distributions
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.3)
    x, y = torch.from_numpy(tokens[None, :-1]), torch.from_numpy(tokens[None, 1:])
    pkg = ont.build_hints_for_targets(target_token_ids_np=targets, tokenizer_path=str(tokenizer), vocab_size=8192,
                                      log0=lambda *a: None, **RECORD_SETTINGS)
    hint, gate, boost = (torch.from_numpy(pkg[k])[None] for k in ("hint_ids", "gate_mask", "boost"))
    assert int(gate.sum()) > 50  # the tilt fires on this stream
    with torch.no_grad():
        lp = torch.log_softmax(model(x).float(), dim=-1)
        ptl = -lp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        log_q = lp.gather(-1, hint.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        theirs = ont.apply_tilt_to_ptl_torch_fast(ptl, log_q, y, hint, gate, boost)[0].double()
        ours_tilt = tuple(torch.from_numpy(a)[None] for a in nt.position_tilt(tokens, nt.TiltConfig()))
        ours = tilted_nll_of(model)(x, y, *ours_tilt)
    for a, b in zip(ours_tilt, (hint, gate, boost)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(ours[0].double(), theirs, rtol=0, atol=2e-5)
    cfg = EvalConfig(mode="plain", seq_len=2048, chunk_tokens=256, time_budget_s=0, tilt="ngram")
    result = evaluate(model, tokens, np.ones_like(tokens), cfg, bos_id=1)
    for e in result.ledger.entries:
        assert abs(e.nll_sum - float(theirs[e.start : e.end].sum())) < 1e-3, e.index
