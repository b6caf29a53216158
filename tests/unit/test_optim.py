"""Muon against torch.optim.Muon, Newton-Schulz, MuonEq-R, and the baseline's optimizer split."""

import math

import pytest
import torch

from pgolf.model import GPT, ModelConfig
from pgolf.optim import Muon, OptimSettings, build_optimizers, newton_schulz, split_params

SHAPES = [(16, 32), (48, 16), (24, 24)]  # wide, tall, square


def _pairs(seed=0):
    torch.manual_seed(seed)
    ours = [torch.nn.Parameter(torch.randn(*s)) for s in SHAPES]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    return ours, ref


def _step_both(ours, ref, o1, o2, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        grads = [torch.randn(*s, generator=gen) for s in SHAPES]
        for p, g in zip(ours, grads):
            p.grad = g.clone()
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        o1.step()
        o2.step()


def test_muon_equals_torch_muon_bit_for_bit_where_they_coincide():
    """Same coefficients, bf16 iteration, decoupled wd, lr * sqrt(max(1, rows/cols)): identical.

    torch.optim.Muon keeps its momentum as an EMA (B <- mu B + (1 - mu) G) where the baseline sums
    (B <- mu B + G); the two differ by the factor (1 - mu) that the iteration's normalization
    removes, so without momentum they are the same computation.
    """
    ours, ref = _pairs()
    o1 = Muon(ours, lr=0.02, momentum=0.0, nesterov=True, weight_decay=0.1, ns_dtype=torch.bfloat16)
    o2 = torch.optim.Muon(ref, lr=0.02, momentum=0.0, nesterov=True, weight_decay=0.1, adjust_lr_fn="original")
    _step_both(ours, ref, o1, o2, steps=5)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_muon_momentum_is_torch_momentum_rescaled():
    """With momentum, our buffer is torch's divided by (1 - mu), and the updates agree to bf16 precision."""
    mu = 0.95
    ours, ref = _pairs(2)
    o1 = Muon(ours, lr=0.02, momentum=mu, weight_decay=0.0, ns_dtype=torch.bfloat16)
    o2 = torch.optim.Muon(ref, lr=0.02, momentum=mu, weight_decay=0.0, adjust_lr_fn="original")
    before = [p.detach().clone() for p in ours]
    _step_both(ours, ref, o1, o2, steps=1)
    for a, b, a0 in zip(ours, ref, before):
        torch.testing.assert_close(o1.state[a]["momentum_buffer"] * (1 - mu), o2.state[b]["momentum_buffer"],
                                   rtol=1e-6, atol=1e-7)
        u1, u2 = (a - a0).flatten(), (b - a0).flatten()
        assert torch.nn.functional.cosine_similarity(u1, u2, dim=0) > 0.999
    _step_both(ours, ref, o1, o2, steps=3, seed=3)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(o1.state[a]["momentum_buffer"] * (1 - mu), o2.state[b]["momentum_buffer"],
                                   rtol=1e-5, atol=1e-6)


def test_newton_schulz_orthogonalizes():
    torch.manual_seed(0)
    G = torch.randn(64, 32) @ torch.diag(torch.logspace(-2, 0, 32))  # badly conditioned
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    worst = {}
    for coefficients in ("baseline", "polar_express"):
        X = newton_schulz(G, steps=5, coefficients=coefficients, dtype=torch.float32)
        s = torch.linalg.svdvals(X)
        worst[coefficients] = (s - 1).abs().max().item()
        # the singular vectors of the exact polar factor U V^T, singular values near 1
        assert torch.nn.functional.cosine_similarity(X.flatten(), (U @ Vh).flatten(), dim=0) > 0.97
    # The quintic trades exactness for speed (s in about (0.7, 1.2)); Polar Express gets closer in 5 steps.
    assert worst["baseline"] < 0.35 and worst["polar_express"] < 0.5 * worst["baseline"]


def test_polar_express_published_coefficients():
    from pgolf.optim.muon import NS_COEFFICIENTS

    table, safety = NS_COEFFICIENTS["polar_express"]
    assert len(table) == 5 and safety == 1.02
    assert table[0] == (8.156554524902461, -22.48329292557795, 15.878769915207462)
    assert table[-1] == (2.3465413258596377, -1.7097828382687081, 0.42323551169305323)


def test_eq_r_equalizes_rows_before_orthogonalizing():
    """MuonEq-R ignores a positive per-row rescaling of the gradient; standard Muon does not."""
    torch.manual_seed(0)
    g = torch.randn(8, 16)
    d = torch.rand(8, 1) * 10 + 0.1
    results = {}
    for variant in ("eq_r", "standard"):
        outs = []
        for grad in (g, g * d):
            p = torch.nn.Parameter(torch.zeros(8, 16))
            p.grad = grad.clone()
            Muon([p], lr=1.0, momentum=0.0, variant=variant).step()
            outs.append(p.detach().clone())
        results[variant] = (outs[0] - outs[1]).abs().max().item()
    assert results["eq_r"] < 1e-5 < results["standard"]


def test_muon_weight_decay_is_decoupled_and_scaled_by_lr():
    p = torch.nn.Parameter(torch.full((4, 4), 2.0))
    p.grad = torch.zeros(4, 4)  # no update: only the decay acts
    Muon([p], lr=0.5, momentum=0.0, weight_decay=0.1).step()
    torch.testing.assert_close(p.detach(), torch.full((4, 4), 2.0 * (1 - 0.05)))


def test_tall_matrices_get_the_rms_scale():
    torch.manual_seed(0)
    for shape in [(32, 8), (8, 32)]:
        p = torch.nn.Parameter(torch.zeros(*shape))
        p.grad = torch.randn(*shape)
        Muon([p], lr=1.0, momentum=0.0).step()
        expected = newton_schulz(p.grad, dtype=torch.float32) * -math.sqrt(max(1, shape[0] / shape[1]))
        torch.testing.assert_close(p.detach(), expected)


def test_baseline_split_matches_the_challenge_script():
    cfg = ModelConfig(num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, vocab_size=64)
    groups = {k: [n for n, _ in v] for k, v in split_params(GPT(cfg)).items()}
    assert groups["embed"] == ["tok_emb.weight"] and groups["head"] == []
    per_block = [f"blocks.{i}.{m}.weight" for i in range(3) for m in
                 ("attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj")]
    assert sorted(groups["matrix"]) == sorted(per_block)  # the baseline's Muon matrices
    assert "skip_weights" in groups["scalar"] and "blocks.0.attn.q_gain" in groups["scalar"]
    assert all(n.split(".")[-1] in ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weights")
               for n in groups["scalar"])


def test_split_with_every_embedding_and_untied_head():
    cfg = ModelConfig(num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, vocab_size=64, tie_embeddings=False,
                      bigram_buckets=16, bigram_dim=8, value_embed_layers=(1,), value_embed_dim=8, smear_gate=True,
                      backout=True)
    model = GPT(cfg)
    groups = {k: [n for n, _ in v] for k, v in split_params(model).items()}
    assert groups["head"] == ["lm_head.weight"]
    assert set(groups["embed"]) == {"tok_emb.weight", "bigram.embed.weight", "value_embed.embed.weight"}
    assert "bigram.proj.weight" in groups["matrix"] and "value_embed.proj.weight" in groups["matrix"]
    assert "backout_lambda" in groups["scalar"] and any("smear" in n for n in groups["scalar"])
    every = [n for n, _ in model.named_parameters()]
    assert sorted(sum(groups.values(), [])) == sorted(every)  # each parameter in exactly one group

    opts = build_optimizers(model, OptimSettings(adam_wd=0.01, embed_lr=0.6, head_lr=0.008), tied_embeddings=False)
    assert isinstance(opts.optimizers["embed"], torch.optim.AdamW)
    assert opts.optimizers["embed"].param_groups[0]["lr"] == 0.6
    opts.set_lr_multiplier(0.5)
    assert opts.optimizers["head"].param_groups[0]["lr"] == pytest.approx(0.004)
    opts.set_muon_momentum(0.9)
    assert opts.muon.param_groups[0]["momentum"] == 0.9


def test_aux_groups_and_decoder_lr_mult_place_the_records_tensors():
    """PR #861: bigram table and VE projection in the scalar AdamW group, the blocks of the decoder half
    (num_layers // 2 and up) at decoder_lr_mult times the lr, matrices and scalars alike."""
    from pgolf.optim.groups import AuxGroups

    cfg = ModelConfig(num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2, vocab_size=64, bigram_buckets=16,
                      bigram_dim=8, value_embed_layers=(3,), value_embed_dim=8)
    model = GPT(cfg)
    s = OptimSettings(matrix_lr=0.02, scalar_lr=0.03, decoder_lr_mult=2.0,
                      aux_groups=AuxGroups(bigram_table="scalar", value_embed_proj="scalar"))
    opts = build_optimizers(model, s, tied_embeddings=True, decoder_from=cfg.num_layers // 2)
    assert "bigram.embed.weight" in opts.names["scalar"] and "value_embed.proj.weight" in opts.names["scalar"]
    assert opts.names["embed"] == ["tok_emb.weight", "value_embed.embed.weight"]
    assert "bigram.proj.weight" in opts.names["matrix"]
    lr_of = {id(p): g["lr"] for o in opts for g in o.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["blocks.1.attn.c_q.weight"])] == 0.02
    assert lr_of[id(params["blocks.2.attn.c_q.weight"])] == 0.04
    assert lr_of[id(params["blocks.1.attn_scale"])] == 0.03
    assert lr_of[id(params["blocks.3.attn_scale"])] == 0.06
    assert lr_of[id(params["bigram.proj.weight"])] == 0.02 and lr_of[id(params["skip_weights"])] == 0.03
    opts.set_lr_multiplier(0.5)  # each group keeps its own base lr
    assert {g["lr"] for g in opts.optimizers["matrix"].param_groups} == {0.01, 0.02}
    # without decoder_from (a model that is not a GPT) the multiplier has nothing to act on
    plain = build_optimizers(model, s, tied_embeddings=True)
    assert len(plain.optimizers["matrix"].param_groups) == 1


def test_polar_express_pr1344_normalizes_by_the_norm_plus_eps():
    """PR #1344 through #2135: X / (||X||_F + 1e-7), no 2% safety; pgolf's polar_express divides by 1.02 ||X||_F."""
    from pgolf.optim.muon import NS_COEFFICIENTS, POLAR_EXPRESS_COEFFICIENTS

    assert NS_COEFFICIENTS["polar_express_pr1344"] == (POLAR_EXPRESS_COEFFICIENTS, 1.0)
    g = torch.randn(6, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    one = newton_schulz(g, steps=1, coefficients="polar_express_pr1344", dtype=torch.float64)
    a, b, c = POLAR_EXPRESS_COEFFICIENTS[0]
    x = g / (g.norm() + 1e-7)
    A = x @ x.T
    torch.testing.assert_close(one, a * x + (b * A + c * A @ A) @ x, atol=1e-12, rtol=1e-12)
    other = newton_schulz(g, steps=1, coefficients="polar_express", dtype=torch.float64)
    assert (one - other).abs().max() > 1e-3


def test_embed_wd_gives_the_embedding_group_its_own_decay():
    """PR #2135: the token embedding's AdamW decays at EMBED_WD, the scalars at ADAM_WD; -1 = adam_wd."""
    model = GPT(ModelConfig(num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, vocab_size=64))
    opts = build_optimizers(model, OptimSettings(adam_wd=0.02, embed_wd=0.085), True)
    assert opts.optimizers["embed"].param_groups[0]["weight_decay"] == 0.085
    assert opts.optimizers["scalar"].param_groups[0]["weight_decay"] == 0.02
    same = build_optimizers(model, OptimSettings(adam_wd=0.02), True)
    assert same.optimizers["embed"].param_groups[0]["weight_decay"] == 0.02
    only_embed = build_optimizers(model, OptimSettings(embed_wd=0.1), True)
    assert isinstance(only_embed.optimizers["embed"], torch.optim.AdamW)
    assert not isinstance(only_embed.optimizers["scalar"], torch.optim.AdamW)
