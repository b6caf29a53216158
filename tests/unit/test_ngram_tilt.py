"""Token-only n-gram tilt: hand-computed hints, the vectorized state against the step-by-step one,
causality, the closed form against the full distribution, and pgolf's probes on a tilted scorer."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgolf.errors import ConfigError
from pgolf.eval import ngram_tilt as nt
from pgolf.verify.probes import ProbeConfig, run_probes


def stepped(tokens, order, prefix=()):
    state, out = nt.TokenNgramState(order, prefix), []
    for tok in tokens:
        out.append(state.predict())  # score first ...
        state.observe(tok)  # ... then update
    return [t for t, _ in out], np.array([p for _, p in out], dtype=np.float32)


def test_hand_computed_bigram_hints():
    tokens = [5, 7, 5, 7, 5, 9, 5, 4]
    h = nt.token_ngram_hints(tokens, order=2, prefix=())
    assert h.token.tolist() == [0, 0, 0, 7, 5, 7, 0, 7]
    np.testing.assert_array_equal(h.prob, np.float32([0, 0, 0, 1, 1, 1, 0, np.float32(2) / np.float32(3)]))
    # #2135's convention pushes the first token once more before the stream: the pair 5 -> 5 is counted too
    h = nt.token_ngram_hints(tokens, order=2)
    assert h.token.tolist() == [0, 5, 0, 5, 5, 7, 0, 7]
    np.testing.assert_array_equal(h.prob, np.float32([0, 1, 0, 0.5, 1, np.float32(2) / np.float32(3), 0, 0.5]))


def test_top_token_needs_a_strictly_larger_count():
    tokens = [1, 2, 1, 3, 1, 3, 1, 2, 1, 2, 1, 0]
    h = nt.token_ngram_hints(tokens, order=2, prefix=())
    # after "1": 2 (1st), then 3 ties at 1 (2 keeps the top), 3 reaches 2, 2 ties at 2 (3 keeps it), 2 reaches 3
    assert h.token[[1, 3, 5, 7, 9, 11]].tolist() == [0, 2, 2, 3, 3, 2]
    assert h.prob[11] == np.float32(3) / np.float32(5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=80), st.integers(1, 6), st.sampled_from([None, (), (3,), (1, 2, 3, 4)]))
def test_vectorized_equals_stepped(tokens, order, prefix):
    h = nt.token_ngram_hints(np.array(tokens, dtype=np.int64), order, prefix=prefix)
    toks, probs = stepped(tokens, order, tokens[:1] if prefix is None else prefix)
    assert h.token.tolist() == toks
    np.testing.assert_array_equal(h.prob, probs)


def test_long_context_on_a_repetitive_stream():
    rng = np.random.default_rng(0)
    tokens = np.concatenate([np.tile(rng.integers(0, 8192, 40), 30), rng.integers(0, 8192, 300)])
    h = nt.token_ngram_hints(tokens, order=16)
    toks, probs = stepped(tokens, 16, tokens[:1])
    assert h.token.tolist() == toks and np.array_equal(h.prob, probs)
    assert (h.prob >= 0.8).sum() > 1000  # the repeated block is hinted, and correctly
    assert (h.token[h.prob >= 0.8] == tokens[h.prob >= 0.8]).mean() > 0.99


def test_hints_come_from_the_strict_prefix():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 4, 400)
    base = nt.token_ngram_hints(tokens, order=3, prefix=())
    for i in (0, 5, 100, 399):
        changed = tokens.copy()
        changed[i:] = rng.integers(0, 4, 400 - i)
        h = nt.token_ngram_hints(changed, order=3, prefix=())
        assert np.array_equal(h.token[: i + 1], base.token[: i + 1])
        assert np.array_equal(h.prob[: i + 1], base.prob[: i + 1])


def test_bad_settings():
    with pytest.raises(ConfigError, match="ngram_tilt.order"):
        nt.TiltConfig(order=0)
    with pytest.raises(ConfigError, match="ngram_tilt.order"):
        nt.token_ngram_hints([1, 2], order=nt.MAX_ORDER + 1)
    with pytest.raises(ConfigError, match="ngram_tilt.threshold"):
        nt.TiltConfig(threshold=0.0)
    with pytest.raises(ConfigError, match="ngram_tilt.boost"):
        nt.TiltConfig(boost=float("nan"))
    with pytest.raises(ValueError, match="uint16"):
        nt.token_ngram_hints([70000], order=2)


def test_closed_form_is_an_entry_of_a_normalized_distribution():
    gen = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(6, 40, 50, generator=gen).double() * 3, dim=-1)
    hint = torch.randint(0, 50, (6, 40), generator=gen)
    tgt = torch.where(torch.rand(6, 40, generator=gen) < 0.5, hint, torch.randint(0, 50, (6, 40), generator=gen))
    gate = torch.rand(6, 40, generator=gen) < 0.7
    beta = torch.full((6, 40), 2.625)
    tilted = nt.tilted_log_probs(lp, hint, gate, beta)
    assert torch.allclose(torch.logsumexp(tilted, dim=-1), torch.zeros(6, 40, dtype=torch.float64), atol=1e-12)
    nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    log_q = lp.gather(-1, hint.unsqueeze(-1)).squeeze(-1)
    closed = nt.tilt_nll(nll, log_q, tgt, hint, gate, beta)
    assert torch.allclose(closed, -tilted.gather(-1, tgt.unsqueeze(-1)).squeeze(-1), atol=1e-6)
    assert torch.equal(closed[~gate], nll[~gate].double())  # ungated positions are untouched
    # a hit gains, a miss pays log Z
    assert bool((closed[gate & (tgt == hint)] < nll[gate & (tgt == hint)]).all())
    assert bool((closed[gate & (tgt != hint)] > nll[gate & (tgt != hint)]).all())


V = 12


class BigramScorer:
    """A fixed bigram table as a probe Scorer: causal by construction."""

    def __init__(self):
        self.table = torch.log_softmax(torch.randn(V, V, generator=torch.Generator().manual_seed(0)).double() * 2, -1)

    def log_probs(self, idx):
        return self.table[idx]

    def token_nll(self, idx, tgt):
        return -self.table[idx, tgt]

    def digest(self):
        return "bigram"


class TargetHintScorer(nt.TiltedScorer):
    """A cheat: hints with the token it is about to score (the probes see it in the window's next input)."""

    def hints(self, idx_BT):
        hint = torch.cat([idx_BT[:, 1:], idx_BT[:, -1:]], dim=1)
        return hint, torch.ones_like(hint, dtype=torch.bool), torch.full(hint.shape, self.cfg.boost)


def repetitive_stream():
    rng = np.random.default_rng(0)
    phrases = [rng.integers(2, V, rng.integers(4, 9)) for _ in range(5)]
    docs = [np.concatenate([[1]] + [phrases[i] for i in rng.integers(0, 5, 8)]) for _ in range(12)]
    return np.concatenate(docs)


PROBES = ProbeConfig(positions=64, window=48, batch=32)


def test_probes_pass_on_the_tilted_scorer():
    stream = repetitive_stream()
    scorer = nt.TiltedScorer(BigramScorer(), nt.TiltConfig(order=3, threshold=0.6))
    _, gate, _ = scorer.hints(torch.from_numpy(stream[None, :200]))
    assert gate.float().mean() > 0.3  # the tilt really fires on these windows
    facts = {f.name: f for f in run_probes(scorer, stream, PROBES)}
    assert set(facts) == {"P-norm", "P-tgt", "P-pre", "P-mut"}
    assert all(f.violations == 0 for f in facts.values()), facts
    assert facts["P-norm"].max_error < 1e-9


def test_probes_catch_a_hint_that_reads_the_target():
    facts = {f.name: f for f in run_probes(TargetHintScorer(BigramScorer()), repetitive_stream(), PROBES)}
    assert facts["P-norm"].violations == 0  # still a distribution ...
    assert facts["P-tgt"].violations > 0  # ... but it depends on the token it scores
