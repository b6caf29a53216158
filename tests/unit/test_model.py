"""GPT: config validation, API contract, every switch live, causality, document isolation, QAT, recurrence."""

from __future__ import annotations

import dataclasses
import zlib

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pgolf import config as C
from pgolf.errors import ConfigError
from pgolf.model import GPT, ModelConfig, num_params, param_class, params_by_class
from pgolf.model.rowquant import fake_quantize_rows

V, T, BOS = 64, 24, 1


# Three layers so recurrence, U-Net skips, XSA and value embeddings all have room.
TINY = ModelConfig(vocab_size=V, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2)

# Each switch alone, on top of TINY.
SWITCHES: dict[str, dict] = {
    "leaky_relu2": dict(activation="leaky_relu2"),
    "swiglu": dict(activation="swiglu"),
    "untied": dict(tie_embeddings=False),
    "partial_rope": dict(rope_dims=4),
    "ntk_rope": dict(rope_ref_len=8),
    "no_qk_norm": dict(qk_norm=False),
    "ortho": dict(init="ortho"),
    "no_unet": dict(unet_skips=False),
    "skip_gates": dict(skip_gates=True),
    "no_resid_mix": dict(resid_mix=False),
    "ln_scale": dict(ln_scale=True),
    "parallel": dict(parallel_resid_from=1),
    "smear": dict(smear_gate=True),
    "bigram": dict(bigram_buckets=16, bigram_dim=8),
    "xsa": dict(xsa_last_n=2),
    "value_embed": dict(value_embed_layers=(0, 2), value_embed_dim=8),
    "recurrence": dict(recur_layers=(1, 2), recur_loops=1),
    "backout": dict(backout=True),
    "backout_layer": dict(backout=True, backout_layer=0),
    "doc_mask": dict(attn_doc_mask=True),
    "mlp_hidden": dict(mlp_hidden=48),
    "mlp_affine": dict(activation="leaky_relu2", mlp_affine=True),  # PR #861 Star-ReLU
    "bigram_mul1009": dict(bigram_buckets=16, bigram_dim=8, bigram_hash="mul1009", bigram_scale=False,
                           bigram_init_std=0.01, aux_proj_init="zero"),  # PR #861
    "no_bos_reset": dict(smear_gate=True, bigram_buckets=16, bigram_dim=8, bos_reset=False),
    "recur_after": dict(recur_layers=(1, 2), recur_placement="after"),  # PR #1406
    "sparse_attn_gate": dict(sparse_attn_gate=True, sparse_attn_gate_scale=0.5, gate_window=4),  # PR #2135
    "smear_window": dict(smear_gate=True, smear_kind="window", gate_window=4),  # PR #2135
    "parallel_lanes": dict(parallel_lanes_from=2),  # PR #2135
    "asym_softcap": dict(asym_softcap=True),  # PR #1923 / #2135
}

ALL_ON = dataclasses.replace(
    TINY, activation="leaky_relu2", tie_embeddings=False, rope_dims=4, rope_ref_len=8, init="ortho",
    skip_gates=True, ln_scale=True, parallel_resid_from=2, smear_gate=True, bigram_buckets=16, bigram_dim=8,
    xsa_last_n=3, value_embed_layers=(0, 2), value_embed_dim=8, recur_layers=(1, 2), recur_loops=2,
    backout=True, attn_doc_mask=True,
)


def perturb(model: GPT) -> GPT:
    """Give every parameter non-trivial values that depend only on its name, so two models that share a
    parameter name get the same tensor whatever else they hold (zero-init paths become live)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            noise = torch.randn(p.shape, generator=g)
            if param_class(name) == "control":
                p.add_(0.2 * noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)
    return model


def build(cfg: ModelConfig, recur: bool = True) -> GPT:
    model = perturb(GPT(cfg))
    model.set_recurrence(recur)
    return model


def tokens(batch: int = 2, seq: int = T, seed: int = 0, bos_at: tuple[int, ...] = (0, 9, 17)) -> torch.Tensor:
    """Token ids without BOS except at `bos_at` (document starts)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(2, V, (batch, seq), generator=g)
    idx[:, list(bos_at)] = BOS
    return idx


# ----------------------------------------------------------------------------- config


def test_config_defaults_are_the_baseline_and_round_trip():
    cfg = ModelConfig()
    assert (cfg.num_layers, cfg.model_dim, cfg.head_dim, cfg.kv_dim, cfg.hidden_dim) == (9, 512, 64, 256, 1024)
    built = C.build(ModelConfig, {"recur_layers": [4, 5], "value_embed_layers": [7, 8]}, ["num_layers=11"])
    assert built.recur_layers == (4, 5) and isinstance(built.value_embed_layers, tuple)
    assert C.from_dict(ModelConfig, C.to_dict(built)) == built


@pytest.mark.parametrize(("overrides", "key"), [
    (dict(num_heads=5), "num_heads"),
    (dict(num_kv_heads=3), "num_kv_heads"),
    (dict(rope_dims=3), "rope_dims"),
    (dict(rope_dims=2, rope_ref_len=1024), "rope_ref_len"),
    (dict(activation="gelu"), "activation"),
    (dict(init="xavier"), "init"),
    (dict(skip_gates=True, unet_skips=False), "skip_gates"),
    (dict(bigram_buckets=1), "bigram_buckets"),
    (dict(xsa_last_n=10), "xsa_last_n"),
    (dict(value_embed_layers=(9,)), "value_embed_layers"),
    (dict(value_embed_layers=(1, 1)), "value_embed_layers"),
    (dict(recur_layers=(4, 6)), "recur_layers"),
    (dict(recur_layers=(4,), recur_loops=0), "recur_loops"),
    (dict(backout_layer=9), "backout_layer"),
    (dict(bos_id=1024), "bos_id"),
    (dict(logit_softcap=0.0), "logit_softcap"),
    (dict(parallel_resid_from=9), "parallel_resid_from"),
    (dict(bigram_hash="crc"), "bigram_hash"),
    (dict(bigram_init_std=-0.01), "bigram_init_std"),
    (dict(aux_proj_init="xavier"), "aux_proj_init"),
    (dict(bigram_buckets=16, aux_proj_init="zero"), "aux_proj_init"),  # zero proj x zero table never trains
    (dict(recur_placement="before"), "recur_placement"),
    (dict(gate_window=0), "gate_window"),
    (dict(sparse_attn_gate=True, model_dim=64, num_heads=4, gate_window=65), "gate_window"),
    (dict(smear_kind="lerp"), "smear_kind"),
    (dict(parallel_lane_out="sum"), "parallel_lane_out"),
    (dict(parallel_lanes_from=12), "parallel_lanes_from"),
    (dict(parallel_lanes_from=2), "parallel_lanes_from"),  # an encoder layer of 9
    (dict(parallel_lanes_from=7, parallel_resid_from=7), "parallel_lanes_from"),
    (dict(parallel_lanes_from=7, recur_layers=(3, 4), recur_placement="after"), "parallel_lanes_from"),
])
def test_config_rejects_bad_values_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        ModelConfig(**overrides)


def test_layer_order_follows_minidr_semantics():
    cfg = ModelConfig(num_layers=11, recur_layers=(4, 5))
    assert cfg.layer_order(False) == tuple(range(11))
    assert cfg.layer_order(True) == (0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9, 10)  # PR #1204
    loop2 = dataclasses.replace(cfg, recur_loops=2)  # PR #1394 Loop45x2: 4,5 three times
    assert loop2.layer_order(True) == (0, 1, 2, 3, 4, 5, 4, 5, 4, 5, 6, 7, 8, 9, 10)
    assert cfg.num_skips == 6 and loop2.num_skips == 7 and ModelConfig().num_skips == 4


# ----------------------------------------------------------------------------- parameters and state


def test_baseline_parameter_count_and_names():
    model = GPT(ModelConfig())
    assert num_params(model) == 17_059_912  # techniques §3.2, BASE log model_params:17059912
    names = dict(model.named_parameters())
    assert names["blocks.0.attn.c_k.weight"].shape == (256, 512)
    assert names["skip_weights"].shape == (4, 512)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not model.blocks[0].attn.proj.weight.any() and not model.blocks[0].mlp.proj.weight.any()
    assert abs(model.tok_emb.weight.std().item() - 0.005) < 2e-4


def test_tied_weights_are_stored_once_and_untied_head_matches_when_equal():
    tied, untied = build(TINY), build(dataclasses.replace(TINY, tie_embeddings=False))
    assert "lm_head.weight" not in tied.state_dict() and "lm_head.weight" in untied.state_dict()
    assert num_params(untied) == num_params(tied) + V * TINY.model_dim
    with torch.no_grad():
        untied.lm_head.weight.copy_(tied.tok_emb.weight)
    idx = tokens()
    torch.testing.assert_close(untied(idx), tied(idx), rtol=0, atol=0)


def test_every_parameter_has_a_real_class():
    model = GPT(dataclasses.replace(ALL_ON, activation="swiglu"))
    classes = {name: param_class(name) for name, _ in model.named_parameters()}
    assert "other" not in classes.values()
    assert classes["blocks.1.mlp.gate.weight"] == "mlp" and classes["lm_head.weight"] == "embed"
    assert classes["value_embed.lambdas"] == "control" and classes["bigram.embed.weight"] == "bigram"
    groups = params_by_class(model.named_parameters())
    assert sum(map(len, groups.values())) == len(classes) and "blocks.0.attn.c_v.weight" in groups["attn"]


def test_state_dict_round_trip_reproduces_the_forward_and_recurrence_state():
    src = build(ALL_ON, recur=True)
    blob = st_save(src.state_dict())  # in memory: tied/shared tensors and the bool buffer must serialize
    dst = GPT(ALL_ON)
    assert not dst.recurrence_active
    dst.load_state_dict(st_load(blob))
    assert dst.recurrence_active and dst.layer_order() == src.layer_order()
    idx = tokens()
    torch.testing.assert_close(dst(idx), src(idx), rtol=0, atol=0)
    src.set_recurrence(False)
    dst.load_state_dict(src.state_dict())
    assert not dst.recurrence_active


# ----------------------------------------------------------------------------- forward contract


@pytest.mark.parametrize("name", [*SWITCHES, "all_on"])
def test_forward_shapes_dtype_softcap_and_gradients(name):
    cfg = ALL_ON if name == "all_on" else dataclasses.replace(TINY, **SWITCHES[name])
    model = build(cfg)
    idx = tokens()
    logits = model(idx)
    assert logits.shape == (2, T, V) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all() and logits.abs().max() <= cfg.logit_softcap
    model.loss(idx, tokens(seed=1)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None and p.requires_grad]
    assert not missing, f"parameters outside the graph: {missing}"


@pytest.mark.parametrize("name", [n for n in SWITCHES if n not in ("ortho", "mlp_hidden", "recurrence", "recur_after",
                                                                  "asym_softcap")])
def test_every_switch_changes_the_output(name):
    # Parameters are set by name, so both models agree on every tensor they share.
    on = build(dataclasses.replace(TINY, **SWITCHES[name]))
    off = build(TINY)
    idx = tokens()
    assert (on(idx) - off(idx)).abs().max() > 1e-4, f"switch {name} has no effect"


def test_token_nll_and_loss_match_cross_entropy():
    model = build(ALL_ON)
    idx, tgt = tokens(), tokens(seed=3)
    nll = model.token_nll(idx, tgt)
    assert nll.shape == tgt.shape and nll.dtype == torch.float32
    ref = F.cross_entropy(model(idx).reshape(-1, V), tgt.reshape(-1), reduction="none").view_as(tgt)
    torch.testing.assert_close(nll, ref, rtol=0, atol=0)
    torch.testing.assert_close(model.loss(idx, tgt), nll.mean())


def test_bf16_autocast_keeps_fp32_outputs_close_to_fp32():
    model = build(ALL_ON)
    idx, tgt = tokens(), tokens(seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll_bf16 = model.token_nll(idx, tgt)
    assert nll_bf16.dtype == torch.float32
    assert (nll_bf16 - model.token_nll(idx, tgt)).abs().mean() < 0.05


# ----------------------------------------------------------------------------- causality and isolation


@pytest.mark.parametrize("doc_mask", [False, True])
def test_causality_later_tokens_do_not_change_earlier_logits(doc_mask):
    model = build(dataclasses.replace(ALL_ON, attn_doc_mask=doc_mask))
    idx = tokens()
    changed = idx.clone()
    changed[:, 12:] = tokens(seed=7)[:, 12:]
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12], rtol=0, atol=1e-6)
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-4


def test_doc_mask_isolates_documents_with_every_token_mixing_switch():
    model = build(ALL_ON)  # smear, bigram, VE, XSA, recurrence x2, backout, U-Net + gates
    idx = tokens(bos_at=(0, 9, 17))
    changed = idx.clone()
    changed[:, 1:9] = tokens(seed=5)[:, 1:9]  # rewrite document d-1 (its BOS kept)
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, 9:], b[:, 9:], rtol=0, atol=1e-6)
    assert (a[:, 1:9] - b[:, 1:9]).abs().max() > 1e-4


def test_doc_mask_makes_a_document_independent_of_its_offset():
    # RoPE is relative and nothing crosses a BOS, so a document scores the same wherever it sits.
    model = build(ALL_ON)
    doc = tokens(batch=1, seq=8, seed=11, bos_at=(0,))
    first = torch.cat((doc, tokens(batch=1, seq=16, seed=12, bos_at=(0,))), dim=1)
    later = torch.cat((tokens(batch=1, seq=5, seed=13, bos_at=(0,)), doc,
                       tokens(batch=1, seq=11, seed=14, bos_at=(0,))), dim=1)
    torch.testing.assert_close(model(first)[:, :8], model(later)[:, 5:13], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["smear", "smear_window", "bigram", "bigram_mul1009"])
def test_smear_and_bigram_never_read_across_a_bos_without_the_doc_mask(name):
    model = build(dataclasses.replace(TINY, **SWITCHES[name]))
    idx = tokens(bos_at=(0, 9))
    changed = idx.clone()
    changed[:, 1:9] = tokens(seed=5)[:, 1:9]
    a, b = model.embed(idx), model.embed(changed)
    torch.testing.assert_close(a[:, 9:], b[:, 9:], rtol=0, atol=0)
    assert (a[:, 1:9] - b[:, 1:9]).abs().max() > 1e-4  # the path is live inside a document


def test_without_bos_reset_smear_and_bigram_read_across_a_bos_as_the_records_did():
    """bos_reset = false (PR #162-#1406): the first token of a document mixes in the previous one."""
    model = build(dataclasses.replace(TINY, **SWITCHES["no_bos_reset"]))
    idx = tokens(bos_at=(0, 9))
    changed = idx.clone()
    changed[:, 8] = (idx[:, 8] + 1 - 2) % (V - 2) + 2  # another non-BOS token just before the BOS
    a, b = model.embed(idx), model.embed(changed)
    assert (a[:, 9] - b[:, 9]).abs().max() > 1e-4
    torch.testing.assert_close(a[:, 11:], b[:, 11:], rtol=0, atol=0)  # smear of a bigram: two back, no further


def test_bigram_hash_variants():
    from pgolf.model.embeddings import bigram_buckets

    idx = torch.tensor([[5, 7, 1, 9, 300]])
    # PR #861: (1009 prev + cur) mod K, prev = 0 before the first token; BOS like any token
    assert bigram_buckets(idx, 64, None, "mul1009").tolist() == [[5, (1009 * 5 + 7) % 64, (1009 * 7 + 1) % 64,
                                                                  (1009 * 1 + 9) % 64, (1009 * 9 + 300) % 64]]
    # with the BOS fix a BOS position hashes as a first position does
    assert bigram_buckets(idx, 64, 1, "mul1009")[0, 2].item() == 1 % 64
    xor = bigram_buckets(idx, 64, None, "xor")
    assert xor[0, 0].item() == 63 and xor[0, 2].item() == ((36313 * 1) ^ (27191 * 7)) % 63


def test_mlp_affine_and_aux_inits():
    cfg = dataclasses.replace(TINY, activation="leaky_relu2", mlp_affine=True, bigram_buckets=16, bigram_dim=8,
                              bigram_hash="mul1009", bigram_scale=False, bigram_init_std=0.01, aux_proj_init="zero",
                              value_embed_layers=(2,), value_embed_dim=8)
    model = GPT(cfg)
    mlp = model.blocks[0].mlp
    assert mlp.scale is not None and mlp.bias is not None
    assert bool((mlp.scale == 1).all()) and bool((mlp.bias == 0).all())
    assert param_class("blocks.0.mlp.scale") == "control" and param_class("blocks.0.mlp.bias") == "control"
    assert model.bigram is not None and model.bigram.scale is None and model.value_embed is not None
    assert model.bigram.proj.weight.abs().max() == 0 and model.value_embed.proj.weight.abs().max() == 0
    assert 0.005 < model.bigram.embed.weight.std() < 0.02
    ortho = GPT(dataclasses.replace(cfg, aux_proj_init="ortho", init="ortho"))
    w = ortho.bigram.proj.weight  # [32, 8]: orthonormal columns, unscaled (PR #1216, #1406)
    torch.testing.assert_close(w.T @ w, torch.eye(8), atol=1e-5, rtol=0)
    auto = GPT(dataclasses.replace(cfg, aux_proj_init="auto", init="ortho"))
    w = auto.bigram.proj.weight  # scaled by 1/sqrt(2L) (PR #162-#366)
    torch.testing.assert_close(w.T @ w, torch.eye(8) / (2 * cfg.num_layers), atol=1e-5, rtol=0)


def test_recurrence_after_the_stack_keeps_the_unet_pairing():
    cfg = ModelConfig(num_layers=11, recur_layers=(4, 5), recur_placement="after")
    assert cfg.layer_order(True) == (*range(11), 4, 5) and cfg.layer_order(False) == tuple(range(11))
    assert cfg.num_skips == 5 == ModelConfig(num_layers=11).num_skips  # in place: 6 (13 virtual layers)
    assert ModelConfig(num_layers=11, recur_layers=(4, 5)).num_skips == 6


# ----------------------------------------------------------------------------- QAT


QAT_BITS = {"attn": 3, "mlp": 3}


def test_qat_acts_on_the_main_matrices_and_passes_gradients():
    model = build(ALL_ON)
    idx, tgt = tokens(), tokens(seed=3)
    float_logits = model(idx)
    model.set_qat(QAT_BITS)
    assert model.qat_bits == QAT_BITS
    qat_logits = model(idx)
    assert (qat_logits - float_logits).abs().max() > 1e-3

    # Same as a float model whose attention/MLP matrices were quantized in place.
    reference = GPT(ALL_ON)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if param_class(name) in QAT_BITS and p.ndim == 2:
                p.copy_(fake_quantize_rows(p, 3))
    torch.testing.assert_close(qat_logits, reference(idx), rtol=0, atol=1e-5)

    model.loss(idx, tgt).backward()
    for name in ("blocks.0.attn.c_q.weight", "blocks.2.mlp.fc.weight", "blocks.1.attn.proj.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name

    model.set_qat(None)
    assert model.qat_bits == {}
    torch.testing.assert_close(model(idx), float_logits, rtol=0, atol=0)


def test_qat_only_touches_the_named_classes():
    model = build(ALL_ON)
    model.set_qat({"embed": 4})
    assert model.tok_emb.qat_bits == 4 and model.lm_head.qat_bits == 4
    assert model.blocks[0].attn.c_q.qat_bits is None and model.bigram.proj.qat_bits is None
    with pytest.raises(ConfigError, match="control"):
        model.set_qat({"control": 6})
    with pytest.raises(ConfigError, match="2..8"):
        model.set_qat({"mlp": 9})


def test_qat_targets_split_tables_from_projections_and_take_a_floor():
    """PR #1216 quantizes the VE projection but not the VE table; PR #861 floors scales at 1/15."""
    model = build(ALL_ON)
    model.set_qat({"value_embed_proj": 6, "bigram": 4}, floor=1 / 15)
    assert model.value_embed.proj.qat_bits == 6 and model.value_embed.embed.qat_bits is None
    assert model.bigram.embed.qat_bits == 4 and model.bigram.proj.qat_bits is None
    w = model.value_embed.proj.weight
    torch.testing.assert_close(model.value_embed.proj.effective_weight(), fake_quantize_rows(w, 6, 1 / 15))
    assert not torch.equal(fake_quantize_rows(w, 6, 1 / 15), fake_quantize_rows(w, 6))  # small rows: floor binds
    with pytest.raises(ConfigError, match="floor"):
        model.set_qat({"mlp": 5}, floor=-1.0)


@pytest.mark.slow
def test_qat_and_recurrence_switches_survive_torch_compile():
    # The records' late QAT was constant-folded by torch.compile (PR #315); ours must recompile.
    pytest.importorskip("torch._dynamo")
    model = build(dataclasses.replace(TINY, recur_layers=(1,)), recur=False)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    idx = tokens()
    with torch.no_grad():
        plain = compiled(idx)
        model.set_qat(QAT_BITS)
        quantized = compiled(idx)
        model.set_recurrence(True)
        looped = compiled(idx)
        torch.testing.assert_close(looped, model(idx), rtol=0, atol=0)
    assert (quantized - plain).abs().max() > 1e-3 and (looped - quantized).abs().max() > 1e-3


# ----------------------------------------------------------------------------- recurrence


def test_recurrence_runs_the_expected_blocks_and_changes_the_output():
    cfg = dataclasses.replace(TINY, num_layers=5, recur_layers=(1, 2), recur_loops=2)
    model = build(cfg, recur=False)
    calls: list[int] = []
    for i, block in enumerate(model.blocks):
        block.register_forward_pre_hook(lambda mod, args, i=i: calls.append(i))
    idx = tokens()
    off = model(idx)
    assert calls == [0, 1, 2, 3, 4]
    calls.clear()
    model.set_recurrence(True)
    on = model(idx)
    assert calls == [0, 1, 2, 1, 2, 1, 2, 3, 4]
    assert (on - off).abs().max() > 1e-4
    model.set_recurrence(False)
    torch.testing.assert_close(model(idx), off, rtol=0, atol=0)


def test_set_recurrence_without_recur_layers_is_a_no_op():
    model = GPT(TINY)
    model.set_recurrence(True)
    assert not model.recurrence_active and "recur_active" not in model.state_dict()


# ----------------------------------------------------------------------------- PR #2135 switches


def test_sparse_attn_gate_multiplies_each_heads_output_by_its_sigmoid_gate():
    """y_h <- sigmoid(scale * w_h . x[:window]) * y_h before the output projection; zero init halves it."""
    from pgolf.model.layers import CausalSelfAttention, rotary_tables

    cfg = dataclasses.replace(TINY, **SWITCHES["sparse_attn_gate"])
    plain = CausalSelfAttention(TINY, 0)
    gated = CausalSelfAttention(cfg, 0)
    gated.load_state_dict({**plain.state_dict(), "attn_gate_w": gated.attn_gate_w.detach()})
    with torch.no_grad():
        plain.proj.weight.copy_(torch.eye(32))
        gated.proj.weight.copy_(torch.eye(32))
    x = torch.randn(2, T, 32, generator=torch.Generator().manual_seed(0))
    cos, sin = rotary_tables(cfg, T, x.device)
    torch.testing.assert_close(gated(x, cos, sin), 0.5 * plain(x, cos, sin))  # zero init: sigmoid(0)
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gated.attn_gate_w.copy_(w)
    g_BTH = torch.sigmoid(0.5 * x[..., :4] @ w.T)
    expected = (plain(x, cos, sin).view(2, T, 4, 8) * g_BTH[..., None]).reshape(2, T, 32)
    torch.testing.assert_close(gated(x, cos, sin), expected)


def test_window_smear_gate_adds_the_gated_previous_embedding_before_the_norm():
    from pgolf.model.embeddings import WindowSmearGate

    smear = WindowSmearGate(4)
    x = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(smear(x, None), x)  # lam = 0, w = 0: the identity at init
    with torch.no_grad():
        smear.window_gate.copy_(torch.tensor([[0.5, -1.0, 0.25, 2.0]]))
        smear.lam.fill_(0.7)
    g = 0.7 * torch.sigmoid(x[:, 1:, :4] @ smear.window_gate.detach().T)
    expected = torch.cat((x[:, :1], x[:, 1:] + g * x[:, :-1]), dim=1)
    torch.testing.assert_close(smear(x, None), expected)
    is_bos = torch.zeros(2, 6, dtype=torch.bool)
    is_bos[:, 3] = True
    fixed = smear(x, is_bos)
    torch.testing.assert_close(fixed[:, 3], x[:, 3])  # a BOS position takes nothing from before it
    torch.testing.assert_close(fixed[:, 4:], expected[:, 4:])
    model = build(dataclasses.replace(TINY, **SWITCHES["smear_window"]))
    idx = tokens()
    from pgolf.model.layers import rms_norm

    torch.testing.assert_close(model.embed(idx), rms_norm(model.smear(model.tok_emb(idx), idx == BOS)))


def test_parallel_lanes_run_the_decoder_suffix_as_two_lanes():
    cfg = dataclasses.replace(TINY, num_layers=5, parallel_lanes_from=3, recur_layers=(1, 2), recur_loops=1)
    assert cfg.lane_positions(False) == (3, 4) and cfg.lane_positions(True) == (5, 6)
    model = build(cfg, recur=False)
    assert model.parallel_post_lambdas is not None and model.parallel_resid_lambdas is not None
    assert model.parallel_post_lambdas.shape == (5, 2, 2) and model.parallel_resid_lambdas.shape == (5, 2)
    with torch.no_grad():  # the record's init: post 1, resid 1.1
        assert (GPT(cfg).parallel_resid_lambdas == 1.1).all()
    idx = tokens()
    outs = {}
    for out in ("mean", "attn", "mlp"):
        other = build(dataclasses.replace(cfg, parallel_lane_out=out), recur=False)
        outs[out] = other.hidden(idx)
    assert (outs["attn"] - outs["mlp"]).abs().max() > 1e-3
    # rows of the layers before the lanes are never read: their gradient is zero
    model.loss(idx, tokens(seed=1)).backward()
    grad = model.parallel_post_lambdas.grad
    assert grad is not None and grad[:3].abs().max() == 0 and grad[3:].abs().max() > 0


def test_asym_softcap_caps_evaluation_logits_and_is_not_trained():
    from pgolf.optim import OptimSettings, build_optimizers

    cfg = dataclasses.replace(TINY, **SWITCHES["asym_softcap"])
    model = build(cfg)
    assert model.softcap_pos is not None and model.softcap_neg is not None
    assert not model.softcap_pos.requires_grad and float(GPT(cfg).softcap_neg) == cfg.logit_softcap
    with torch.no_grad():
        model.softcap_pos.fill_(2.0)
        model.softcap_neg.fill_(5.0)
    idx, tgt = tokens(), tokens(seed=3)
    z = model._head(idx)
    torch.testing.assert_close(model(idx), torch.where(z >= 0, 2 * torch.tanh(z / 2), 5 * torch.tanh(z / 5)))
    assert model(idx).max() <= 2.0 and model(idx).min() >= -5.0
    fixed = F.cross_entropy((30 * torch.tanh(z / 30)).flatten(0, 1), tgt.flatten())
    torch.testing.assert_close(model.loss(idx, tgt), fixed)  # training keeps the fixed cap (PR #2135)
    assert (model.token_nll(idx, tgt).mean() - fixed).abs() > 1e-3
    opts = build_optimizers(model, OptimSettings(), True)
    assert not any("softcap" in n for names in opts.names.values() for n in names)
    assert {"softcap_pos", "softcap_neg"} <= set(model.state_dict())
