"""Small causal models and streams shared by the evaluation tests, and checks that they are causal
(every evaluation test relies on it: right-padding and window clipping are exact only for causal models)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pgolf.model import GPT, ModelConfig

VOCAB = 48
BOS = 1


class ConvLM(nn.Module):
    """Not a GPT: embedding -> causal depthwise conv (kernel 5) -> MLP -> head. Exposes only `token_nll`."""

    def __init__(self, vocab: int = VOCAB, dim: int = 16, kernel: int = 5, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.kernel = kernel
        self.emb = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.blocks = nn.ModuleList([nn.Module()])
        self.blocks[0].mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, vocab)

    def token_nll(self, idx_BT: torch.Tensor, tgt_BT: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx_BT).transpose(1, 2)  # B D T
        x = nn.functional.pad(x, (self.kernel - 1, 0))  # left pad only: position t sees t-4..t
        h = self.conv(x).transpose(1, 2)
        h = h + self.blocks[0].mlp(h)
        logits = self.head(h).float()
        return nn.functional.cross_entropy(logits.flatten(0, 1), tgt_BT.flatten(), reduction="none").view_as(tgt_BT)


def tiny_gpt(seed: int = 0, vocab: int = VOCAB, layers: int = 2, dim: int = 32, **kw) -> GPT:
    """A pgolf GPT with random (not zero) weights everywhere, so every position depends on its context."""
    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=vocab, num_layers=layers, model_dim=dim, num_heads=2, num_kv_heads=1, **kw))
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.3)
    return model.eval()


def stream(n: int, seed: int = 0, vocab: int = VOCAB, doc_len: int = 37) -> np.ndarray:
    """n random tokens in documents of ~doc_len tokens, each starting with BOS (no BOS elsewhere)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(2, vocab, n)
    starts = [0]
    while starts[-1] < n:
        starts.append(starts[-1] + int(rng.integers(doc_len // 2, 2 * doc_len)))
    tokens[[s for s in starts if s < n]] = BOS
    return tokens.astype(np.int64)


def byte_counts(tokens: np.ndarray, seed: int = 1) -> np.ndarray:
    """Per-token byte counts (entry 0 is never a target; BOS counts 0 as in the real tables)."""
    out = np.random.default_rng(seed).integers(1, 5, tokens.shape[0])
    out[tokens == BOS] = 0
    return out


def reference_nll(model, tokens: np.ndarray, seq_len: int, stride: int, segments=None) -> np.ndarray:
    """The obviously correct per-position NLL: one forward per position, over exactly the context its
    canonical sliding window gives it (window k starts at k*stride; a position is scored by the first
    window whose last stride positions, or whose whole span for window 0, contain it)."""
    num_positions = len(tokens) - 1
    segments = [(0, num_positions)] if segments is None else segments
    out = np.zeros(num_positions)
    t = torch.as_tensor(tokens)
    with torch.no_grad():
        for s, e in segments:
            for p in range(s, e):
                rel = p - s
                k = 0 if rel < seq_len else (rel - seq_len) // stride + 1
                ctx = s + k * stride
                assert ctx <= p < ctx + seq_len
                x, y = t[ctx : p + 1][None], t[ctx + 1 : p + 2][None]
                out[p] = float(model.token_nll(x, y)[0, -1])
    return out


def test_models_are_causal():
    tokens = torch.as_tensor(stream(40, seed=3))
    for model in (tiny_gpt(), ConvLM()):
        x, y = tokens[:-1][None], tokens[1:][None]
        changed = x.clone()
        changed[0, 25:] = (changed[0, 25:] + 7) % VOCAB
        with torch.no_grad():
            a, b = model.token_nll(x, y), model.token_nll(changed, y)
        torch.testing.assert_close(a[0, :25], b[0, :25], rtol=0, atol=1e-6)
        assert not torch.allclose(a[0, 25:], b[0, 25:])


def test_stream_has_documents():
    tokens = stream(500)
    assert tokens[0] == BOS and (tokens == BOS).sum() > 5
    assert byte_counts(tokens)[tokens == BOS].sum() == 0
