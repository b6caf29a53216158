"""The n-gram tilt as an evaluation option (`tilt = "ngram"`): scores equal to an obviously correct
per-position reference, causal hints, every mode, the ledger header, config errors, and the probes and
replay that `pgolf verify --probe` runs on the tilted distribution (a tilt that peeks at the target fails)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_eval_support import BOS, byte_counts, stream, tiny_gpt

from pgolf.errors import ConfigError
from pgolf.eval import EvalConfig, TTTConfig, evaluate, parse_ledger
from pgolf.eval import ngram_tilt as nt
from pgolf.verify.probes import ModelScorer, ProbeConfig, replay, run_probes, scorer_for, tilt_of

TILT = dict(tilt="ngram", tilt_order=3, tilt_threshold=0.6, tilt_boost=2.0)


def repetitive(n_repeats: int = 4, seed: int = 3) -> np.ndarray:
    """Documents that recur, so order-3 contexts repeat and the n-gram's hints clear the threshold."""
    base = stream(60, seed=seed)
    return np.concatenate([base] * n_repeats)


def cfg(mode: str = "sliding", **kw) -> EvalConfig:
    base = dict(seq_len=16, stride=4, chunk_tokens=50, batch_seqs=5, time_budget_s=0, **TILT)
    base.update(kw)
    return EvalConfig(mode=mode, **base)


def reference_tilted_nll(model, tokens: np.ndarray, seq_len: int, stride: int, tilt: nt.TiltConfig) -> np.ndarray:
    """One position at a time: the model's log-probs over its canonical sliding-window context, the hint
    from stepping the n-gram state through the targets before it (#2135's first-target seed), the full
    tilted vector, its entry at the target."""
    state = nt.TokenNgramState(tilt.order, prefix=[int(tokens[1])])
    out = []
    t = torch.as_tensor(tokens)
    with torch.no_grad():
        for p in range(len(tokens) - 1):
            k = 0 if p < seq_len else (p - seq_len) // stride + 1
            ctx = k * stride
            lp = torch.log_softmax(model(t[ctx : p + 1].unsqueeze(0)).float(), -1)[0, -1]
            hint, prob = state.predict()
            gate = prob >= np.float32(tilt.threshold)
            vec = nt.tilted_log_probs(lp, torch.tensor(hint), torch.tensor(gate), tilt.boost)
            out.append(-float(vec[int(tokens[p + 1])]))
            state.observe(int(tokens[p + 1]))
    return np.array(out)


def test_tilted_eval_equals_the_per_position_reference():
    model, tokens = tiny_gpt(), repetitive()
    c = cfg(chunk_tokens=10)
    result = evaluate(model, tokens, byte_counts(tokens), c, bos_id=BOS)
    ref = reference_tilted_nll(model, tokens, 16, 4, c.tilt_config)
    got = [e.nll_sum for e in result.ledger.entries]
    want = [ref[e.start : e.end].sum() for e in result.ledger.entries]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    plain = evaluate(model, tokens, byte_counts(tokens), cfg(tilt="none"), bos_id=BOS)
    assert result.val_bpb < plain.val_bpb - 0.1  # the repeated documents are predictable by the n-gram


def test_hints_are_causal_and_fixed_before_each_position_is_scored():
    tokens = repetitive()
    full = nt.position_tilt(tokens, nt.TiltConfig(order=3, threshold=0.6))
    assert full[1].sum() > 20
    for cut in (5, 61, 150, 200):  # the stream up to the target of position cut - 1: the same first hints
        part = nt.position_tilt(tokens[: cut + 1], nt.TiltConfig(order=3, threshold=0.6))
        for a, b in zip(part, full):
            np.testing.assert_array_equal(a, b[:cut])
    changed = tokens.copy()
    changed[150:] = (changed[150:] + 7) % 48  # later tokens never reach positions before 149
    for a, b in zip(nt.position_tilt(changed, nt.TiltConfig(order=3, threshold=0.6)), full):
        np.testing.assert_array_equal(a[:149], b[:149])


@pytest.mark.parametrize("mode", ["plain", "sliding", "ttt"])
def test_every_mode_records_the_tilt_and_scores_every_position(mode):
    model, tokens = tiny_gpt(), repetitive(3)
    c = cfg(mode, ttt=TTTConfig(epochs=1, batch_seqs=2, seq_len=8))
    result = evaluate(model, tokens, byte_counts(tokens), c, bos_id=BOS)
    header, entries, _ = parse_ledger(result.ledger.to_jsonl())
    assert header["tilt"]["kind"] == "ngram" and header["tilt"]["order"] == 3 and header["tilt"]["gated_positions"] > 0
    assert header["config"]["tilt"] == "ngram" and sum(e.count for e in entries) == len(tokens) - 1
    untilted = evaluate(model, tokens, byte_counts(tokens), cfg(mode, tilt="none",
                                                                 ttt=TTTConfig(epochs=1, batch_seqs=2, seq_len=8)),
                        bos_id=BOS)
    assert result.val_bpb < untilted.val_bpb
    if mode == "ttt":  # adaptation trains on the model's own NLL: the same steps on the same spans
        assert [e.steps for e in result.ledger.entries] == [e.steps for e in untilted.ledger.entries]


def test_tilt_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="tilt_order"):
        EvalConfig(tilt="ngram", tilt_order=0)
    with pytest.raises(ConfigError, match="tilt_threshold"):
        EvalConfig(tilt="ngram", tilt_threshold=1.5)
    with pytest.raises(ConfigError, match="tilt_boost"):
        EvalConfig(tilt="ngram", tilt_boost=float("nan"))
    from pgolf import config as cfgmod

    with pytest.raises(ConfigError, match="tilt"):
        cfgmod.build(EvalConfig, {"tilt": "bigram"})
    assert EvalConfig().tilt_config is None
    assert EvalConfig(tilt="ngram").tilt_config == nt.TiltConfig()  # #2135's order 16, 0.8, 2.625


def test_probes_and_replay_run_on_the_tilted_distribution():
    model, tokens = tiny_gpt(), repetitive()
    c = cfg()
    result = evaluate(model, tokens, byte_counts(tokens), c, bos_id=BOS)
    header, entries, _ = parse_ledger(result.ledger.to_jsonl())
    scorer = scorer_for(model, header["config"])
    assert isinstance(scorer, nt.TiltedScorer) and tilt_of(header["config"]) == c.tilt_config
    # windows of 96 tokens hold repeated contexts, so the window-local n-gram fires inside them
    probes = {p.name: p for p in run_probes(scorer, tokens, ProbeConfig(positions=64, window=96), bos_id=BOS)}
    assert all(probes[n].violations == 0 for n in ("P-norm", "P-tgt", "P-pre", "P-mut")), probes
    x = torch.from_numpy(tokens[None, :96])
    assert scorer.hints(x)[1].sum() > 5
    assert (scorer.log_probs(x) - ModelScorer(model).log_probs(x)).abs().max() > 0.1
    r = replay(model, tokens, entries, header, tol=1e-4)
    assert r.violations == 0 and r.positions == len(entries) and "tilted" in r.detail
    # replayed without the tilt, the ledger's scores are not the artifact's
    untilted = {**header, "config": {**header["config"], "tilt": "none"}}
    assert replay(model, tokens, entries, untilted, tol=1e-4).violations > 0


class PeekingTilt(nt.TiltedScorer):
    """Illegal: the hint of position t is the token it is about to score (idx[t + 1], the target)."""

    def hints(self, idx_BT):
        hint = torch.cat([idx_BT[:, 1:], idx_BT[:, -1:]], dim=1).long()
        gate = torch.ones_like(hint, dtype=torch.bool)
        return hint, gate, torch.full(hint.shape, float(self.cfg.boost))


def test_a_tilt_that_peeks_at_the_target_fails_target_independence():
    model, tokens = tiny_gpt(), repetitive()
    probes = {p.name: p for p in run_probes(PeekingTilt(ModelScorer(model), nt.TiltConfig(order=3)), tokens,
                                            ProbeConfig(positions=64, window=96), bos_id=BOS)}
    assert probes["P-tgt"].violations > 0 and probes["P-norm"].violations == 0  # normalized, yet illegal
