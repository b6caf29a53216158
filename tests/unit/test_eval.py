"""Plain and sliding evaluation: windows, coverage, exact sums, agreement with a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_eval_support import BOS, VOCAB, ConvLM, byte_counts, reference_nll, stream, tiny_gpt

from pgolf.errors import ConfigError, DataError
from pgolf.eval import EvalConfig, check_ledger, chunk_ranges, document_segments, evaluate, sliding_windows
from pgolf.eval.windows import count_windows

# ----------------------------------------------------------------------------- windows


@settings(max_examples=200, deadline=None)
@given(num_positions=st.integers(1, 300), seq_len=st.integers(1, 40), stride_frac=st.floats(0.01, 1.0),
       chunk=st.integers(1, 120))
def test_windows_score_every_position_once(num_positions, seq_len, stride_frac, chunk):
    stride = max(1, min(seq_len, round(stride_frac * seq_len)))
    covered = []
    for c0, c1, _ in chunk_ranges(np.array([[0, num_positions]]), chunk):
        w = sliding_windows((0, num_positions), (c0, c1), seq_len, stride)
        assert (w[:, 0] <= w[:, 1]).all() and (w[:, 1] < w[:, 2]).all()
        assert (w[:, 2] - w[:, 0] <= seq_len).all()
        # beyond the first window every scored position sees at least L - S tokens of context
        late = w[:, 1] >= seq_len
        assert (w[late, 1] - w[late, 0] >= seq_len - stride).all()
        covered.extend(range(a, b) for _, a, b in w)
    flat = [p for r in covered for p in r]
    assert flat == list(range(num_positions))


def test_windows_canonical_form():
    # L = 8, S = 2, P = 13: window 0 scores [0, 8), then [8, 10), [10, 12), [12, 13) (the tail)
    w = sliding_windows((0, 13), (0, 13), 8, 2)
    assert w.tolist() == [[0, 0, 8], [2, 8, 10], [4, 10, 12], [6, 12, 13]]
    assert count_windows(13, 8, 2) == 4
    # stride = L is plain evaluation: non-overlapping blocks, the last one shorter
    assert sliding_windows((0, 13), (0, 13), 5, 5).tolist() == [[0, 0, 5], [5, 5, 10], [10, 10, 13]]
    # a chunk boundary splits a window without changing its context start
    assert sliding_windows((0, 13), (9, 13), 8, 2).tolist() == [[2, 9, 10], [4, 10, 12], [6, 12, 13]]


def test_document_segments():
    tokens = np.array([1, 5, 6, 1, 7, 1, 1, 8, 9])
    assert document_segments(tokens, 1).tolist() == [[0, 3], [3, 5], [5, 6], [6, 8]]
    # a stream that does not start with BOS: the prefix is a segment of its own
    assert document_segments(np.array([4, 5, 1, 6, 7]), 1).tolist() == [[0, 2], [2, 4]]


# ----------------------------------------------------------------------------- scoring


def run(model, tokens, mode="sliding", **kw):
    kw.setdefault("seq_len", 16)
    kw.setdefault("stride", 4)
    kw.setdefault("chunk_tokens", 50)
    kw.setdefault("batch_seqs", 5)
    cfg = EvalConfig(mode=mode, time_budget_s=0, **kw)
    return evaluate(model, tokens, byte_counts(tokens), cfg, bos_id=BOS)


@pytest.mark.parametrize("n", [161, 160, 151])  # P = 160 (a multiple of L and chunk), 159, 150 (of chunk only)
@pytest.mark.parametrize("mode", ["plain", "sliding"])
def test_every_target_scored_once_tail_included(n, mode):
    tokens = stream(n)
    result = run(ConvLM(), tokens, mode, seq_len=16, chunk_tokens=50 if n != 151 else 30)
    entries = result.ledger.entries
    assert entries[0].start == 0 and entries[-1].end == n - 1
    assert all(a.end == b.start for a, b in zip(entries, entries[1:]))
    s = result.summary()
    assert s["val_tokens"] == n - 1
    assert s["val_bytes"] == int(byte_counts(tokens)[1:].sum())
    check = check_ledger(result.ledger.to_jsonl(), num_positions=n - 1, val_bytes=s["val_bytes"],
                         reported_bpb=s["val_bpb"])
    assert check.ok, check.problems


def test_sliding_with_stride_equal_to_window_is_plain():
    tokens = stream(203, seed=2)
    model = tiny_gpt()
    plain = run(model, tokens, "plain", seq_len=16)
    sliding = run(model, tokens, "sliding", seq_len=16, stride=16)
    assert [e.to_dict() for e in plain.ledger.entries] == [e.to_dict() for e in sliding.ledger.entries]
    assert plain.val_bpb == sliding.val_bpb
    # and a smaller stride really changes the score (more context per position)
    assert run(model, tokens, "sliding", seq_len=16, stride=4).val_bpb != plain.val_bpb


@pytest.mark.parametrize("model_fn", [tiny_gpt, ConvLM])
def test_sums_match_a_slow_loop(model_fn):
    model = model_fn()
    tokens = stream(131, seed=4)
    nbytes = byte_counts(tokens)
    result = run(model, tokens, "sliding", seq_len=16, stride=4, chunk_tokens=40)
    ref = reference_nll(model, tokens, 16, 4)
    nll_sum = 0.0
    for v in ref:  # the obviously correct accumulation, one position at a time
        nll_sum += float(v)
    byte_sum = 0
    for p in range(len(tokens) - 1):
        byte_sum += int(nbytes[p + 1])
    s = result.summary()
    assert s["val_bytes"] == byte_sum
    assert math.isclose(s["val_loss"] * s["val_tokens"], nll_sum, rel_tol=1e-6)
    assert math.isclose(s["val_bpb"], nll_sum / (math.log(2) * byte_sum), rel_tol=1e-6)
    # per chunk, too
    for e in result.ledger.entries:
        assert math.isclose(e.nll_sum, float(ref[e.start : e.end].sum()), rel_tol=1e-6)


def test_document_independent_windows_match_reference():
    model = tiny_gpt(seed=1)
    tokens = stream(120, seed=5, doc_len=30)
    result = run(model, tokens, "sliding", seq_len=16, stride=4, chunk_tokens=40, doc_independent=True)
    segs = document_segments(tokens, BOS).tolist()
    ref = reference_nll(model, tokens, 16, 4, segments=segs)
    got = np.concatenate([[e.nll_sum] for e in result.ledger.entries])
    assert len(got) >= len(segs)  # chunks never cross a document
    assert math.isclose(got.sum(), ref.sum(), rel_tol=1e-6)
    # changing an earlier document never changes a later one's scores (rules MET-8)
    other = tokens.copy()
    other[2:segs[1][0]] = (other[2:segs[1][0]] + 1) % (VOCAB - 2) + 2
    again = run(model, other, "sliding", seq_len=16, stride=4, chunk_tokens=40, doc_independent=True)
    later = [e for e in result.ledger.entries if e.start >= segs[1][0]]
    later_again = [e for e in again.ledger.entries if e.start >= segs[1][0]]
    assert [e.loss_sha256 for e in later] == [e.loss_sha256 for e in later_again]


def test_prefix_scores_do_not_depend_on_later_tokens():
    model = tiny_gpt(seed=2)
    tokens = stream(200, seed=6)
    base = run(model, tokens, "sliding", chunk_tokens=40)
    changed = tokens.copy()
    changed[81:] = (changed[81:] + 3) % VOCAB  # the targets of chunk 2 = positions [80, 120) onward
    other = run(model, changed, "sliding", chunk_tokens=40)
    assert [e.to_dict() for e in base.ledger.entries[:2]] == [e.to_dict() for e in other.ledger.entries[:2]]
    assert base.ledger.entries[2].loss_sha256 != other.ledger.entries[2].loss_sha256


def test_short_stream_and_uint16_input():
    model = ConvLM()
    tokens = np.array([BOS, 5], dtype=np.uint16)  # one target
    result = run(model, tokens, "sliding")
    assert result.summary()["val_tokens"] == 1
    assert result.ledger.entries[0].count == 1


def test_bad_inputs():
    model = ConvLM()
    tokens = stream(50)
    nbytes = byte_counts(tokens)
    cfg = EvalConfig(seq_len=16, stride=4, time_budget_s=0)
    with pytest.raises(DataError, match="at least 2"):
        evaluate(model, tokens[:1], nbytes[:1], cfg)
    with pytest.raises(DataError, match="byte counts"):
        evaluate(model, tokens, nbytes[:-1], cfg)
    with pytest.raises(DataError, match="vocabulary"):
        evaluate(model, np.append(tokens, VOCAB + 3), np.append(nbytes, 1), cfg, vocab_size=VOCAB)
    with pytest.raises(DataError, match="negative"):
        evaluate(model, tokens, -nbytes, cfg)
    with pytest.raises(ConfigError, match="seq_len"):
        evaluate(model, tokens, nbytes, EvalConfig(time_budget_s=0))
    with pytest.raises(ConfigError, match="stride"):
        EvalConfig(seq_len=16, stride=32)
    with pytest.raises(ConfigError, match="stride"):
        EvalConfig(seq_len=16, stride=0)
    with pytest.raises(ConfigError, match="chunk_tokens"):
        EvalConfig(chunk_tokens=0)
    with pytest.raises(ConfigError, match="mode"):
        from pgolf.config import build
        build(EvalConfig, {"mode": "rescore"})


def test_config_overrides_reach_ttt_keys():
    from pgolf.config import build, to_dict

    cfg = build(EvalConfig, {}, ["mode=ttt", "lr=0.005", "ttt.epochs=1", "stride=32", "seq_len=64"])
    assert cfg.ttt.lr == 0.005 and cfg.ttt.epochs == 1 and cfg.stride == 32 and cfg.mode == "ttt"
    assert build(EvalConfig, to_dict(cfg)) == cfg
    # a top-level key wins over the TTT key of the same name; the TTT one is reached by its full path
    cfg = build(EvalConfig, {}, ["batch_seqs=4", "ttt.batch_seqs=8"])
    assert cfg.batch_seqs == 4 and cfg.ttt.batch_seqs == 8


def test_scoring_runs_under_inference_mode_and_keeps_weights():
    model = tiny_gpt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    model.blocks[0].register_forward_hook(lambda m, a, o: seen.append(torch.is_inference_mode_enabled()))
    run(model, stream(80), "sliding")
    assert seen and all(seen)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_window_batch_pads_without_reading_past_the_window():
    from pgolf.eval.scoring import window_batch

    tokens = torch.arange(100, 120)
    x, y, scored = window_batch(tokens, np.array([[2, 4, 6], [5, 7, 8]]), width=4, rows=3)
    assert x.tolist() == [[102, 103, 104, 105], [105, 106, 107, 0], [0, 0, 0, 0]]
    assert y.tolist() == [[103, 104, 105, 106], [106, 107, 108, 0], [0, 0, 0, 0]]
    assert scored.tolist() == [[False, False, True, True], [False, False, True, False], [False] * 4]
