"""Model building blocks against slow reference implementations: attention, GQA, XSA, RoPE, masks,
BigramHash buckets, SmearGate, initialization and parameter classes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pgolf.model import CONTROL_PATTERNS, GPT, ModelConfig, param_class
from pgolf.model.embeddings import SmearGate, bigram_buckets
from pgolf.model.layers import (
    SDPA_NATIVE_GQA,
    apply_rotary,
    attend,
    document_mask,
    exclusive_self_attention,
    rotary_tables,
)


def reference_attention(q, k, v, mask=None):
    """Explicit softmax(q k^T / sqrt(E)) v with K/V head h // group serving query head h."""
    B, H, T, E = q.shape
    group = H // k.size(1)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(E)
    allowed = torch.ones(T, T, dtype=torch.bool).tril() if mask is None else mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v.double()).float()


def qkv(B=2, H=4, K=2, T=12, E=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, T, E, generator=g), torch.randn(B, K, T, E, generator=g),
            torch.randn(B, K, T, E, generator=g))


@pytest.mark.parametrize("native", [False, True] if SDPA_NATIVE_GQA else [False])
def test_attention_matches_explicit_softmax_with_gqa(native):
    q, k, v = qkv()
    torch.testing.assert_close(attend(q, k, v, native_gqa=native), reference_attention(q, k, v),
                               rtol=1e-5, atol=1e-5)


def test_native_gqa_equals_repeated_kv():
    if not SDPA_NATIVE_GQA:
        pytest.skip("torch < 2.5 has no enable_gqa")
    q, k, v = qkv(H=8, K=2)
    torch.testing.assert_close(attend(q, k, v, native_gqa=True), attend(q, k, v, native_gqa=False),
                               rtol=1e-6, atol=1e-6)


def test_document_mask_is_block_diagonal_causal_and_matches_reference():
    idx = torch.tensor([[1, 5, 6, 1, 7, 1, 8, 9], [4, 5, 1, 6, 7, 8, 1, 9]])
    mask = document_mask(idx, bos_id=1)
    assert mask.shape == (2, 1, 8, 8)
    # Row 4 of sequence 0 (token 7, document 2) sees positions 3..4 only.
    assert mask[0, 0, 4].tolist() == [False, False, False, True, True, False, False, False]
    # Tokens before the first BOS form their own document.
    assert mask[1, 0, 1].tolist() == [True, True] + [False] * 6
    q, k, v = qkv(T=8)
    torch.testing.assert_close(attend(q, k, v, mask), reference_attention(q, k, v, mask), rtol=1e-5, atol=1e-5)


def test_xsa_removes_each_heads_component_along_its_own_value():
    q, k, v = qkv(H=8, K=2)
    y = attend(q, k, v)
    out = exclusive_self_attention(y, v)
    vhat = torch.nn.functional.normalize(v.repeat_interleave(4, dim=1), dim=-1)
    expected = y - (y * vhat).sum(-1, keepdim=True) * vhat
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert (out * vhat).sum(-1).abs().max() < 1e-5


def test_rope_is_relative_and_partial_rope_leaves_the_tail_untouched():
    cfg = ModelConfig(model_dim=64, num_heads=4, num_kv_heads=2, rope_dims=4)  # head_dim 16, rotate 4
    cos, sin = rotary_tables(cfg, 10, torch.device("cpu"))
    assert cos.shape == (10, 2)
    x = torch.randn(1, 1, 10, 16)
    out = apply_rotary(x, cos, sin)
    torch.testing.assert_close(out[..., 4:], x[..., 4:], rtol=0, atol=0)
    assert (out[..., :4] - x[..., :4]).abs().max() > 1e-3
    # Full RoPE: <R_t q, R_s k> depends on t - s only.
    full = dataclasses.replace(cfg, rope_dims=0)
    cos, sin = rotary_tables(full, 10, torch.device("cpu"))
    q, k = torch.randn(16), torch.randn(16)
    rq = apply_rotary(q.expand(1, 1, 10, 16), cos, sin)[0, 0]
    rk = apply_rotary(k.expand(1, 1, 10, 16), cos, sin)[0, 0]
    torch.testing.assert_close(rq[7] @ rk[4], rq[3] @ rk[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(10), rtol=1e-5, atol=1e-5)


def test_ntk_rope_scales_the_base_only_beyond_the_reference_length():
    cfg = ModelConfig(model_dim=64, num_heads=4, num_kv_heads=2, rope_dims=8, rope_ref_len=16)
    short = rotary_tables(cfg, 16, torch.device("cpu"))
    plain = rotary_tables(dataclasses.replace(cfg, rope_ref_len=0), 16, torch.device("cpu"))
    torch.testing.assert_close(short, plain, rtol=0, atol=0)
    long_cos, _ = rotary_tables(cfg, 32, torch.device("cpu"))
    base = 10000.0 * 2.0 ** (8 / 6)  # base * (T/T0)^(R/(R-2)), PR #315
    inv_freq = base ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    torch.testing.assert_close(long_cos[31].double(), (31 * inv_freq).cos(), rtol=1e-5, atol=1e-5)


def test_bigram_buckets_follow_the_pr162_hash_with_a_reserved_bos_bucket():
    idx = torch.tensor([[5, 7, 1, 9, 3]])
    h = bigram_buckets(idx, num_buckets=100, bos_id=1)
    expected = [99, ((36313 * 7) ^ (27191 * 5)) % 99, 99, ((36313 * 9) ^ (27191 * 1)) % 99,
                ((36313 * 3) ^ (27191 * 9)) % 99]
    assert h.tolist() == [expected]


def test_smear_gate_blends_with_the_previous_token_except_at_bos():
    smear = SmearGate(4)
    x = torch.randn(1, 4, 4)
    out = smear(x, torch.tensor([[False, False, True, False]]))
    torch.testing.assert_close(out[0, 0], 0.5 * x[0, 0])  # x_{-1} = 0, gate init 0 -> g = 0.5
    torch.testing.assert_close(out[0, 1], 0.5 * (x[0, 1] + x[0, 0]))
    torch.testing.assert_close(out[0, 2], x[0, 2], rtol=0, atol=0)  # BOS keeps its own embedding
    torch.testing.assert_close(out[0, 3], 0.5 * (x[0, 3] + x[0, 2]))


def test_ortho_init_is_orthogonal_and_scales_the_side_projections():
    cfg = ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, init="ortho",
                      bigram_buckets=16, bigram_dim=8, value_embed_layers=(1,), value_embed_dim=8)
    model = GPT(cfg)
    w = model.blocks[0].attn.c_k.weight  # 16 x 32: orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(16), rtol=0, atol=1e-5)
    for proj in (model.bigram.proj.weight, model.value_embed.proj.weight):  # x 1/sqrt(2L) (PR #162)
        torch.testing.assert_close(torch.linalg.svdvals(proj), torch.full((8,), 0.5), rtol=0, atol=1e-5)
    assert not model.blocks[1].attn.proj.weight.any() and not model.blocks[1].mlp.proj.weight.any()
    assert not model.bigram.embed.weight.any()  # the bigram table starts empty
    baseline = GPT(dataclasses.replace(cfg, init="baseline"))
    assert baseline.bigram.proj.weight.abs().min() > 0  # never zero-by-zero (would get no gradient)


@pytest.mark.parametrize(("name", "cls"), [
    ("tok_emb.weight", "embed"),
    ("lm_head.weight", "embed"),
    ("blocks.3.attn.c_q.weight", "attn"),
    ("blocks.3.attn.proj.weight", "attn"),
    ("blocks.3.attn.q_gain", "control"),
    ("blocks.10.mlp.fc.weight", "mlp"),
    ("blocks.10.mlp.gate.weight", "mlp"),
    ("blocks.0.attn_scale", "control"),
    ("blocks.0.mlp_scale", "control"),
    ("blocks.0.resid_mix", "control"),
    ("skip_weights", "control"),
    ("skip_gates", "control"),
    ("smear.gate", "control"),
    ("bigram.embed.weight", "bigram"),
    ("bigram.proj.weight", "bigram"),
    ("bigram.scale", "control"),
    ("value_embed.embed.weight", "value_embed"),
    ("value_embed.scale", "control"),
    ("backout_lambda", "control"),
    ("recur_active", "control"),
    ("_orig_mod.blocks.0.mlp.proj.weight", "mlp"),
    ("module.tok_emb.weight", "embed"),
    ("something.else", "other"),
])
def test_param_class(name, cls):
    assert param_class(name) == cls


def test_control_patterns_cover_the_baseline_list():
    for pattern in ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight"):
        assert pattern in CONTROL_PATTERNS
