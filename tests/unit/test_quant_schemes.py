"""QuantizeConfig validation, override parsing and the per-tensor scheme table."""

import json

import pytest
import torch

from pgolf.config import build, from_dict, to_dict
from pgolf.errors import ConfigError
from pgolf.model import param_class
from pgolf.quant import QuantizeConfig, plan_tensor, quantize_state
from pgolf.quant.schemes import parse_scheme_id

F32 = torch.float32

# Names and shapes of a baseline-like model (d=512, 9 layers would be too big; shapes are what matter).
BIG_EMBED = ("tok_emb.weight", (1024, 512))
BIG_ATTN = ("blocks.3.attn.c_q.weight", (512, 512))
BIG_MLP_FC = ("blocks.3.mlp.fc.weight", (1024, 512))
BIG_MLP_PROJ = ("blocks.3.mlp.proj.weight", (512, 1024))
BIG_BIGRAM = ("bigram.embed.weight", (4096, 128))
SMALL_KV = ("blocks.3.attn.c_k.weight", (256, 256))  # 65,536 elements: at the threshold, kept fp16
CONTROL = ("blocks.3.attn_scale", (512,))
BIG_CONTROL = ("skip_weights", (300, 512))  # control tensors stay fp32 whatever their size


def plan(name_shape, cfg, dtype=F32):
    name, shape = name_shape
    return plan_tensor(name, shape, dtype, param_class(name), cfg)


def ids(cfg, *tensors):
    return [(plan(t, cfg).scheme, plan(t, cfg).bits) for t in tensors]


def test_int5mlp_table():
    cfg = QuantizeConfig(scheme="int5mlp")
    assert ids(cfg, BIG_MLP_FC, BIG_MLP_PROJ, BIG_ATTN, BIG_EMBED, BIG_BIGRAM) == [
        ("int5_row_v1", 5),
        ("int5_row_v1", 5),
        ("int6_row_v1", 6),
        ("int8_row_v1", 8),
        ("int8_row_v1", 8),
    ]
    assert ids(cfg, SMALL_KV, CONTROL, BIG_CONTROL) == [("fp16_v1", 16), ("fp32_v1", 32), ("fp32_v1", 32)]
    # PR #180 kept the tied embedding in fp16.
    assert plan(BIG_EMBED, QuantizeConfig(scheme="int5mlp", embed_bits=16)).scheme == "fp16_v1"


@pytest.mark.parametrize(
    ("scheme", "mlp", "attn"), [("int8", 8, 8), ("int6", 6, 6), ("int5mlp", 5, 6), ("int4mlp", 4, 6)]
)
def test_each_scheme_gives_mlp_and_attention_their_width(scheme, mlp, attn):
    cfg = QuantizeConfig(scheme=scheme)
    assert plan(BIG_MLP_FC, cfg).bits == mlp and plan(BIG_MLP_FC, cfg).scheme == f"int{mlp}_row_v1"
    assert plan(BIG_ATTN, cfg).bits == attn
    assert plan(BIG_EMBED, cfg).scheme == "int8_row_v1"
    assert plan(CONTROL, cfg).scheme == "fp32_v1"


def test_nonfloat_tensors_pass_through_raw():
    p = plan_tensor("recur_active", (), torch.bool, "control", QuantizeConfig())
    assert (p.scheme, p.reason) == ("raw_v1", "nonfloat")
    assert plan_tensor("counts", (70000,), torch.int64, "other", QuantizeConfig(overrides=("counts=6",))).scheme == "raw_v1"


def test_overrides_win_and_the_last_match_counts():
    cfg = QuantizeConfig(scheme="int6", overrides=("*.mlp.*=5", "blocks.8.attn.c_k.weight=16", "blocks.3.mlp.proj.*=4"))
    assert plan(BIG_MLP_FC, cfg).scheme == "int5_row_v1"
    assert plan(BIG_MLP_PROJ, cfg).scheme == "int4_row_v1"  # the later, more specific entry wins
    assert plan(("blocks.8.attn.c_k.weight", (256, 512)), cfg).scheme == "fp16_v1"
    assert plan(BIG_ATTN, cfg).scheme == "int6_row_v1"
    # Overrides beat every other rule: small tensors can be quantized, control tensors cast, embeddings kept.
    cfg = QuantizeConfig(overrides=("blocks.3.attn.c_k.weight=6", "blocks.3.attn_scale=16", "tok_emb.weight=32"))
    assert ids(cfg, SMALL_KV, CONTROL, BIG_EMBED) == [("int6_row_v1", 6), ("fp16_v1", 16), ("fp32_v1", 32)]
    assert all(plan(t, cfg).reason == "override" for t in (SMALL_KV, CONTROL, BIG_EMBED))


def test_passthrough_threshold_is_inclusive():
    cfg = QuantizeConfig(passthrough_numel=8192)  # INT5 #180's threshold
    assert plan(SMALL_KV, cfg).scheme == "int8_row_v1"
    assert plan(("blocks.0.attn.c_k.weight", (64, 128)), cfg).scheme == "fp16_v1"


def test_scheme_ids_parse():
    assert parse_scheme_id("int5_row_v1") == 5 and parse_scheme_id("fp16_v1") is None
    for bad in ("int9_row_v1", "int6_row_v2", "int6", "fp8_v1"):
        with pytest.raises(ValueError):
            parse_scheme_id(bad)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"scheme": "int3"}, "scheme"),
        ({"clip": "percentile"}, "clip"),
        ({"calib": "val"}, "calib"),
        ({"embed_bits": 12}, "embed_bits"),
        ({"prune_frac": 1.0}, "prune_frac"),
        ({"scale_floor": 0.0}, "scale_floor"),
        ({"scale_floor": "1/31"}, "scale_floor"),
        ({"search_quantiles": []}, "search_quantiles"),
        ({"search_quantiles": [0.99, 1.5]}, "search_quantiles"),
        ({"calib_tokens": 100, "calib_seq_len": 2048}, "calib_tokens"),
        ({"overrides": ["*.mlp.*"]}, "overrides"),
        ({"overrides": ["*.mlp.*=9"]}, "overrides"),
        ({"overrides": ["*.mlp.*=five"]}, "overrides"),
        ({"overrides": ["=6"]}, "overrides"),
        ({"schem": "int6"}, "schem"),
    ],
)
def test_bad_config_names_the_key(table, key):
    with pytest.raises(ConfigError, match=f"'{key}"):
        build(QuantizeConfig, table)


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match="'scheme'"):
        QuantizeConfig(scheme="int7")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="validation data is illegal"):
        QuantizeConfig(calib="val")  # type: ignore[arg-type]


def test_config_round_trips_through_toml_tables_and_overrides():
    cfg = build(QuantizeConfig, {"scheme": "int5mlp", "overrides": ["*.mlp.*=5"]}, ["clip=search", "scale_floor=1/qmax"])
    assert cfg.scheme == "int5mlp" and cfg.clip == "search" and cfg.scale_floor == "1/qmax"
    assert cfg.floor_for(8) == 1 / 127 and cfg.floor_for(6) == 1 / 31
    assert cfg.parsed_overrides == (("*.mlp.*", 5),)
    assert build(QuantizeConfig, {"scale_floor": 1e-3}).floor_for(6) == 1e-3


@pytest.mark.parametrize(
    "cfg",
    [QuantizeConfig(), QuantizeConfig(scheme="int4mlp", scale_floor="1/qmax", overrides=("*.mlp.fc.*=16",), gptq=True)],
)
def test_config_survives_the_manifest_round_trip(cfg):
    assert from_dict(QuantizeConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_override_that_matches_nothing_is_a_config_error():
    state = {"blocks.0.mlp.fc.weight": torch.zeros(4, 4)}
    with pytest.raises(ConfigError, match="'overrides'.*blocks.9"):
        quantize_state(state, QuantizeConfig(overrides=("blocks.9.*=5",)))
