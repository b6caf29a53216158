"""Probes on packed scorers: an honest pgolf GPT passes; each cheating scorer is caught by its probe."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pgolf.eval import EvalConfig, evaluate
from pgolf.model import GPT, ModelConfig
from pgolf.verify.probes import ModelScorer, ProbeConfig, replay, run_probes

CFG = ProbeConfig(positions=48, window=16, batch=64)
V = 64


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, **kw)
    model = GPT(cfg).eval()
    with torch.no_grad():  # zero-initialized projections would make a bigram model: randomize everything
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def val_stream(num_docs=30, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.concatenate(([1], rng.integers(4, V, rng.integers(8, 30)))) for _ in range(num_docs)])


def by_name(facts):
    return {f.name: f for f in facts}


def test_honest_gpt_passes_every_probe():
    facts = by_name(run_probes(ModelScorer(tiny_gpt()), val_stream(), CFG))
    assert set(facts) == {"P-norm", "P-tgt", "P-pre", "P-mut"}
    assert all(f.violations == 0 for f in facts.values()), facts
    assert facts["P-tgt"].positions == 48 and facts["P-norm"].positions >= 48


def test_document_isolation_probe_when_claimed():
    masked = by_name(run_probes(ModelScorer(tiny_gpt(attn_doc_mask=True, smear_gate=True, bigram_buckets=16)),
                                val_stream(), CFG, claims_isolation=True))
    assert masked["P-doc"].violations == 0 and masked["P-doc"].positions > 0
    leaky = by_name(run_probes(ModelScorer(tiny_gpt()), val_stream(), CFG, claims_isolation=True))
    assert leaky["P-doc"].violations > 0  # plain causal attention reads the previous document


class _Base(nn.Module):
    """A tiny causal bigram scorer to build cheats on."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.table = nn.Parameter(torch.randn(V, V))

    def logits(self, idx):
        return self.table[idx]

    def log_probs(self, idx):
        return F.log_softmax(self.logits(idx), -1)

    def token_nll(self, idx, tgt):
        return -self.log_probs(idx).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)

    def digest(self):
        from pgolf.eval.checksum import model_checksum

        return model_checksum(self)


class TargetCache(_Base):
    """MET-7 plant: a hashed n-gram cache keyed on (context, x_t), consulted at the target only."""

    def token_nll(self, idx, tgt):
        p = self.log_probs(idx).exp().gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        hit = ((idx * 31 + tgt) % 7 == 0).float()
        return -torch.log(0.7 * p + 0.3 * hit)


class Unnormalized(_Base):
    """MET-5 plant: a mixture that boosts some tokens without renormalizing."""

    def log_probs(self, idx):
        return torch.log(F.softmax(self.logits(idx), -1) + 0.01)


class NonCausal(_Base):
    """MET-6 plant: attention with the causal mask off (every position sees the whole window)."""

    def logits(self, idx):
        return self.table[idx] + self.table[idx].mean(dim=1, keepdim=True)


class Mutating(_Base):
    """TTT-1 plant: a scorer that adapts while it scores."""

    def log_probs(self, idx):
        with torch.no_grad():
            self.table.add_(1e-3)
        return super().log_probs(idx)


class Slot(_Base):
    """TTT-7 plant: a per-window logit bias fitted on that window's targets, then scored."""

    def token_nll(self, idx, tgt):
        bias = F.one_hot(tgt, V).float().mean(dim=1, keepdim=True)  # the window's target histogram
        return -F.log_softmax(self.logits(idx) + 3 * bias, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("scorer, fires", [
    (TargetCache(), {"P-tgt", "P-norm"}),  # MET-7, MET-5
    (Unnormalized(), {"P-norm"}),  # MET-5
    (NonCausal(), {"P-pre", "P-tgt"}),  # MET-6
    (Mutating(), {"P-mut"}),  # TTT-1
    (Slot(), {"P-tgt", "P-pre"}),  # TTT-7
])
def test_cheating_scorers_are_caught(scorer, fires):
    facts = by_name(run_probes(scorer, val_stream(), CFG))
    assert fires <= {name for name, f in facts.items() if f.violations}


def test_an_honest_bigram_scorer_passes():
    assert not [f for f in run_probes(_Base(), val_stream(), CFG) if f.violations]


def test_probes_are_deterministic():
    a = run_probes(ModelScorer(tiny_gpt()), val_stream(), CFG)
    b = run_probes(ModelScorer(tiny_gpt()), val_stream(), CFG)
    assert a == b


def test_replay_matches_an_honest_ledger_and_catches_a_lowered_one():
    model, tokens = tiny_gpt(), val_stream(40)
    side = np.ones_like(tokens)
    cfg = EvalConfig(mode="sliding", seq_len=16, stride=8, chunk_tokens=128, batch_seqs=8, time_budget_s=0,
                     autocast=False)
    res = evaluate(model, tokens, side, cfg)
    entries, header = list(res.ledger.entries), res.ledger.header()
    good = replay(model, tokens, entries, header, tol=1e-4)
    assert good.violations == 0 and good.positions == len(entries) and good.max_error < 1e-5
    entries[2].nll_sum -= 0.05 * entries[2].count  # a per-token minimum over trajectories scores lower
    bad = replay(model, tokens, entries, header, tol=1e-4)
    assert bad.violations == 1 and "chunk 2" in bad.detail
