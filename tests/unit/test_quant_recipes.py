"""The record-recipe keys of QuantizeConfig and TTTConfig (docs/quantize.md "Record recipes",
docs/eval.md): their rules, their errors, and that their defaults change nothing."""

from __future__ import annotations

import pytest
import torch

from pgolf import config as cfgmod
from pgolf.errors import ArtifactError, ConfigError
from pgolf.eval import TTTConfig
from pgolf.eval.adapters import block_lr_scale, select_params
from pgolf.model import GPT, ModelConfig
from pgolf.quant import (
    ClipSpec,
    QuantizeConfig,
    dequantize_state,
    magnitude_prune,
    plan_tensor,
    quantize_state,
    rtn_quantize,
)
from pgolf.quant.schemes import count_blocks


def plan(name, shape, cls, **cfg):
    return plan_tensor(name, shape, torch.float32, cls, QuantizeConfig(**cfg), num_blocks=12)


def test_the_records_order_of_rules():
    # control: fp32 first (pgolf), or after the size rule (records)
    assert plan("blocks.0.attn_scale", (512,), "control").scheme == "fp32_v1"
    assert plan("blocks.0.attn_scale", (512,), "control", control_first=False).scheme == "fp16_v1"
    assert plan("skip_weights", (300, 512), "control", control_first=False).scheme == "fp32_v1"
    # keep_float with {last}: only the last block's c_k, and only once the size rule let it through
    keep = {"keep_float": ("tok_emb.*", "blocks.{last}.attn.c_k.*"), "passthrough_numel": 8192}
    assert plan("blocks.11.attn.c_k.weight", (256, 512), "attn", **keep).reason == "keep"
    assert plan("blocks.10.attn.c_k.weight", (256, 512), "attn", **keep).bits == 8
    assert plan("tok_emb.weight", (1024, 512), "embed", **keep).scheme == "fp16_v1"
    assert plan("tok_emb.weight", (16, 16), "embed", **keep).reason == "small"
    # width_overrides: after size and keep rules, before the embedding and class rules; last match wins
    wo = {"scheme": "int5mlp", "width_overrides": ("*=5", "bigram.*=6")}
    assert plan("tok_emb.weight", (1024, 512), "embed", **wo).bits == 5
    assert plan("bigram.embed.weight", (4096, 128), "bigram", **wo).bits == 6
    assert plan("bigram.scale", (1,), "control", **wo).scheme == "fp32_v1"
    assert count_blocks(["blocks.3.mlp.fc.weight", "tok_emb.weight", "blocks.11.attn_scale"]) == 12


def test_an_unmatched_keep_or_width_glob_is_allowed_but_an_unmatched_override_is_not():
    state = {"blocks.0.mlp.fc.weight": torch.randn(64, 32)}
    cfg = QuantizeConfig(passthrough_numel=16, keep_float=("blocks.8.attn.c_k.*",), width_overrides=("bigram.*=6",))
    assert quantize_state(state, cfg).meta["tensors"]["blocks.0.mlp.fc.weight"]["bits"] == 8
    with pytest.raises(ConfigError, match="overrides"):
        quantize_state(state, QuantizeConfig(passthrough_numel=16, overrides=("bigram.*=6",)))


@pytest.mark.parametrize("table, key", [
    ({"widths": [{"bits": 8}, {"bits": 8}]}, "widths"),
    ({"widths": [{"bits": 9}]}, "widths.bits"),
    ({"widths": [{"bits": 6, "rounding": "clamped"}], "clip": "search"}, "widths.rounding"),
    ({"widths": [{"bits": 6, "scale_floor": 2.0}]}, "widths.scale_floor"),
    ({"width_overrides": ["bigram.*=16"]}, "width_overrides"),
    ({"prune_method": "median"}, "prune_method"),
    ({"gptq_select": "output"}, "gptq_select"),
])
def test_bad_recipe_keys_name_the_key(table, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        cfgmod.from_dict(QuantizeConfig, table, where="quantize")


def test_a_width_recipe_refines_the_runs_keys():
    table = {"clip": "rowmax", "widths": [{"bits": 8, "clip": "quantile", "scale_floor": "1/qmax"}]}
    cfg = cfgmod.from_dict(QuantizeConfig, table)
    assert cfgmod.from_dict(QuantizeConfig, cfgmod.to_dict(cfg)) == cfg  # round-trips through the manifest form
    assert cfg.width(8).clip == "quantile" and cfg.floor_for(8) == 1 / 127
    assert cfg.width(5).clip == "rowmax" and cfg.floor_for(5) == QuantizeConfig().floor_for(5)


def test_clamped_rounding_is_the_baseline_formula():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 200, generator=g) * 0.02
    w[1] *= 300.0  # a row whose clip is above 1: the floor does not bind there
    clip = torch.quantile(w.abs(), 0.9999984, dim=1)
    s32 = (clip / 127).clamp_min(1 / 127)
    expect = torch.clamp(torch.round(torch.maximum(torch.minimum(w, clip[:, None]), -clip[:, None]) / s32[:, None]),
                         -127, 127).to(torch.int8)
    rq = rtn_quantize(w, 8, ClipSpec(method="quantile", floor=1 / 127, rounding="clamped"))
    assert torch.equal(rq.codes, expect) and torch.equal(rq.scale, s32.to(torch.float16))
    stored = rtn_quantize(w, 8, ClipSpec(method="quantile", floor=1 / 127))
    assert not torch.equal(stored.codes, expect)  # pgolf's own rounding is another grid


def test_quantile_pruning_zeroes_what_lies_below_the_quantile():
    w = torch.randn(300, 250, generator=torch.Generator().manual_seed(1))
    w[0, :40] = 0.5  # ties
    pruned, mask = magnitude_prune(w, 0.15, "quantile")
    threshold = torch.quantile(w.abs().flatten(), 0.15)
    assert torch.equal(mask, w.abs() < threshold) and torch.equal(pruned, w.masked_fill(mask, 0.0))
    with pytest.raises(ValueError, match="prune method"):
        magnitude_prune(w, 0.1, "median")


def test_ttt_parameter_globs_and_block_lr_ramp():
    model = GPT(ModelConfig(vocab_size=64, num_layers=4, model_dim=32, num_heads=2, num_kv_heads=1))
    ttt = TTTConfig(params="names", param_globs=("*.mlp.fc.weight", "*scale*"))
    names = {n for n, _ in select_params(model, ttt)}
    assert names == {f"blocks.{i}.{p}" for i in range(4) for p in ("mlp.fc.weight", "attn_scale", "mlp_scale")}
    with pytest.raises(ConfigError, match="matches no parameter"):
        select_params(model, TTTConfig(params="names", param_globs=("*.up_proj.weight",)))
    with pytest.raises(ConfigError, match="param_globs"):
        TTTConfig(params="names")
    ramp = TTTConfig(block_lr_floor=0.3, block_lr_classes=("control",), freeze_blocks=1)
    assert block_lr_scale("blocks.1.attn_scale", ramp, 4) == pytest.approx(0.3)
    assert block_lr_scale("blocks.2.attn_scale", ramp, 4) == pytest.approx(0.65)
    assert block_lr_scale("blocks.3.attn_scale", ramp, 4) == pytest.approx(1.0)
    assert block_lr_scale("blocks.1.attn.c_q.weight", ramp, 4) == 1.0  # not a ramped class
    assert block_lr_scale("skip_weights", ramp, 4) == 1.0
    with pytest.raises(ConfigError, match="block_lr_classes"):
        TTTConfig(block_lr_classes=("gains",))


def test_the_full_grid_stores_the_records_lowest_code_and_nothing_else_does():
    w = torch.zeros(2, 64)
    w[0, :3] = torch.tensor([-1.0, 0.5, 0.25])  # the row's clip (the 0.9 quantile) lies far below its -1
    w[1, :2] = torch.tensor([1.0, -0.2])
    cfg = cfgmod.from_dict(QuantizeConfig, {"clip": "quantile", "clip_quantile": 0.99, "passthrough_numel": 0,
                                            "widths": [{"bits": 4, "grid": "full"}], "overrides": ["w=4"]})
    res = quantize_state({"w": w}, cfg)
    assert res.meta["tensors"]["w"]["scheme"] == "int4_rowfull_v1" and int(res.tensors["w.q"].min()) == -8
    sym = quantize_state({"w": w}, cfgmod.from_dict(QuantizeConfig, {**cfgmod.to_dict(cfg), "widths": []}))
    assert sym.meta["tensors"]["w"]["scheme"] == "int4_row_v1" and int(sym.tensors["w.q"].min()) == -7
    assert dequantize_state(res.tensors, res.meta)["w"][0, 0] == -8 * res.tensors["w.scale"][0].float()
    with pytest.raises(ArtifactError, match=r"beyond \+-7"):  # -8 is not on the symmetric grid
        dequantize_state({**res.tensors}, {**res.meta, "tensors": {"w": {**res.meta["tensors"]["w"], "scheme": "int4_row_v1"}}})
    bad = {**res.tensors, "w.q": res.tensors["w.q"].clone()}
    bad["w.q"][0, 0] = -9
    with pytest.raises(ArtifactError, match=r"outside \[-8, 7\]"):
        dequantize_state(bad, res.meta)
    with pytest.raises(ConfigError, match="widths.grid"):
        cfgmod.from_dict(QuantizeConfig, {"widths": [{"bits": 8, "grid": "full", "rounding": "clamped"}]})
