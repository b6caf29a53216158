"""quantize_state / dequantize_state: golden artifacts, exact round trips, metadata, report, bad inputs."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pgolf.errors import ArtifactError, ConfigError
from pgolf.model.rowquant import qmax_for
from pgolf.quant import FORMAT, QuantizeConfig, dequantize_state, quantize_state

EXACT = {"rtol": 0, "atol": 0}


def golden_state():
    """Hand-made tensors whose row maxima are qmax * 2^-k for the width each one gets under int5mlp."""
    return {
        "tok_emb.weight": torch.tensor([[3.96875, -2.0, 0.046875, 0.0], [0.0, 0.25, 0.0, -0.49609375]]),  # int8
        "blocks.0.attn.c_q.weight": torch.tensor([[3.875, -1.9375, 0.0625, 0.3125]]),  # int6, s = 1/8
        "blocks.0.mlp.fc.weight": torch.tensor([[3.75, -1.875, 0.625, 0.0], [0.46875, 0.125, -0.0625, 0.0]]),  # int5
        "blocks.0.attn_scale": torch.tensor([0.5, 1.25]),  # control: fp32
        "skip_weights": torch.tensor([[1.0, 2.0]]).bfloat16(),  # control, bf16 kept exact in fp32
        "bigram.proj.weight": torch.tensor([[0.1, 0.2]]),  # small (passthrough_numel = 2): fp16
    }


def test_golden_int5mlp_artifact():
    cfg = QuantizeConfig(scheme="int5mlp", clip="rowmax", passthrough_numel=2)
    res = quantize_state(golden_state(), cfg)
    t = res.tensors
    assert t["tok_emb.weight.scale"].tolist() == [0.03125, 0.00390625]
    assert t["tok_emb.weight.q"].tolist() == [[127, -64, 2, 0], [0, 64, 0, -127]]  # 1.5 -> 2
    assert t["blocks.0.attn.c_q.weight.scale"].tolist() == [0.125]
    assert t["blocks.0.attn.c_q.weight.q"].tolist() == [[31, -16, 0, 2]]
    assert t["blocks.0.mlp.fc.weight.scale"].tolist() == [0.25, 0.03125]  # 3.75/15, 0.46875/15
    assert t["blocks.0.mlp.fc.weight.q"].tolist() == [[15, -8, 2, 0], [15, 4, -2, 0]]
    assert t["blocks.0.attn_scale"].dtype == torch.float32 and t["skip_weights"].dtype == torch.float32
    assert t["bigram.proj.weight"].dtype == torch.float16
    assert sorted(t) == sorted(
        ["tok_emb.weight.q", "tok_emb.weight.scale", "blocks.0.attn.c_q.weight.q", "blocks.0.attn.c_q.weight.scale",
         "blocks.0.mlp.fc.weight.q", "blocks.0.mlp.fc.weight.scale", "blocks.0.attn_scale", "skip_weights", "bigram.proj.weight"]
    )
    m = res.meta["tensors"]
    assert res.meta["format"] == FORMAT == "pgolf.quant/1"
    assert [m[n]["scheme"] for n in golden_state()] == ["int8_row_v1", "int6_row_v1", "int5_row_v1", "fp32_v1", "fp32_v1", "fp16_v1"]
    assert m["blocks.0.mlp.fc.weight"] == {
        "scheme": "int5_row_v1", "bits": 5, "qmax": 15, "shape": [2, 4], "dtype": "float32", "class": "mlp",
        "method": "rtn", "clip": {"method": "rowmax"}, "scale_floor": 2.0**-14, "pruned_frac": 0.0,
    }
    assert m["skip_weights"]["dtype"] == "bfloat16"
    json.dumps(res.meta), json.dumps(res.report)  # both JSON-able

    back = dequantize_state(res.tensors, res.meta)
    assert list(back) == list(golden_state())
    assert all(back[n].dtype == orig.dtype for n, orig in golden_state().items())
    assert back["blocks.0.mlp.fc.weight"].tolist() == [[3.75, -2.0, 0.5, 0.0], [0.46875, 0.125, -0.0625, 0.0]]
    assert back["tok_emb.weight"].tolist() == [[3.96875, -2.0, 0.0625, 0.0], [0.0, 0.25, 0.0, -0.49609375]]
    for name in ("blocks.0.attn_scale", "skip_weights"):
        torch.testing.assert_close(back[name], golden_state()[name], **EXACT)
    torch.testing.assert_close(back["bigram.proj.weight"], torch.tensor([[0.1, 0.2]]).half().float(), **EXACT)


def test_report_counts_payload_bits_and_errors():
    cfg = QuantizeConfig(scheme="int5mlp", clip="rowmax", passthrough_numel=2)
    r = quantize_state(golden_state(), cfg).report
    fc = r["tensors"]["blocks.0.mlp.fc.weight"]
    assert fc["payload_bits"] == 5 * 8 + 16 * 2 and fc["numel"] == 8
    assert fc["mse"] == 2 * 0.125**2 / 8  # -1.875 -> -2.0 and 0.625 -> 0.5 (round half to even)
    assert r["tensors"]["blocks.0.attn.c_q.weight"]["mse"] == 3 * 0.0625**2 / 4  # -15.5, 0.5, 2.5 each off by half a step
    assert fc["code_entropy"] == pytest.approx(-(2 * 0.25 * -2 + 4 * 0.125 * -3))  # codes 15,-8,2,0,15,4,-2,0
    totals = r["totals"]
    payload = (8 * 8 + 16 * 2) + (6 * 4 + 16) + (5 * 8 + 16 * 2) + 32 * 2 + 32 * 2 + 16 * 2
    assert totals["params"] == 8 + 4 + 8 + 2 + 2 + 2 and totals["payload_bits"] == payload
    assert totals["bits_per_param"] == payload / 26
    assert totals["num_int_tensors"] == 3 and totals["quantized_params"] == 20
    assert totals["container_bytes"] == 20 + 2 * (2 + 1 + 2) + 4 * 4 + 2 * 2
    bp = r["tensors"]["bigram.proj.weight"]
    assert bp["rel_err"] > 0 and bp["code_entropy"] is None


def test_clipped_fraction_is_reported():
    state = {"blocks.0.mlp.fc.weight": torch.tensor([[10.0, -3.75, 1.0, 0.25, 0.0]])}
    cfg = QuantizeConfig(scheme="int5mlp", clip="quantile", clip_quantile=0.75, passthrough_numel=0)
    rep = quantize_state(state, cfg).report["tensors"]["blocks.0.mlp.fc.weight"]
    assert rep["clipped_frac"] == 1 / 5 and rep["mse"] == pytest.approx((10 - 3.75) ** 2 / 5)


# ----------------------------------------------------------------------------- exact round trips

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
CLIPS = ["rowmax", "quantile", "search", "sdclip"]
shapes = st.one_of(
    st.tuples(st.integers(1, 6), st.integers(1, 9)),
    st.tuples(st.integers(1, 30)),
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5)),
    st.just(()),
)


@settings(max_examples=60, deadline=None)
@given(
    shape=shapes,
    dtype=st.sampled_from(DTYPES),
    bits=st.sampled_from([2, 3, 4, 5, 6, 7, 8, 16, 32]),
    clip=st.sampled_from(CLIPS),
    granularity=st.sampled_from(["matrix", "row"]),
    magnitude=st.sampled_from([1e-3, 0.05, 3.0]),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_exact_and_reproducible(shape, dtype, bits, clip, granularity, magnitude, seed):
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(shape, generator=g) * magnitude).to(dtype)
    state = {"blocks.0.mlp.fc.weight": w, "blocks.0.attn_scale": torch.rand(3, generator=g)}
    cfg = QuantizeConfig(clip=clip, search_granularity=granularity, overrides=(f"*.mlp.*={bits}",))
    res = quantize_state(state, cfg)
    again = quantize_state(state, cfg)
    assert all(torch.equal(res.tensors[k], again.tensors[k]) for k in res.tensors)  # deterministic

    out1 = dequantize_state(res.tensors, res.meta)
    out2 = dequantize_state(res.tensors, res.meta)
    for name, orig in state.items():
        assert out1[name].dtype == orig.dtype and out1[name].shape == orig.shape
        assert torch.equal(out1[name], out2[name])
    name = "blocks.0.mlp.fc.weight"
    if bits <= 8:
        q, s = res.tensors[f"{name}.q"], res.tensors[f"{name}.scale"]
        rows = shape[0] if len(shape) >= 2 else 1
        assert q.dtype == torch.int8 and q.shape == w.shape and s.dtype == torch.float16 and s.shape == (rows,)
        assert int(q.abs().max()) <= qmax_for(bits)
        expected = (q.float().reshape(rows, -1) * s.float()[:, None]).reshape(shape).to(dtype)
        torch.testing.assert_close(out1[name], expected, **EXACT)
        # Round-to-nearest error bound: half a step per entry that is not clipped.
        if clip == "rowmax":
            step = s.float()[:, None].expand(rows, max(1, w.numel() // rows)).reshape(shape)
            assert ((out1[name].float() - w.float()).abs() <= step / 2 * 1.01 + 1e-7 + w.float().abs() * 2**-7).all()
    else:
        stored = res.tensors[name]
        assert stored.dtype == (torch.float16 if bits == 16 else torch.float32)
        torch.testing.assert_close(out1[name], stored.to(dtype), **EXACT)


def test_round_trip_through_safetensors_bytes():
    torch.manual_seed(0)
    state = {"blocks.0.mlp.fc.weight": torch.randn(40, 30).bfloat16(), "blocks.0.mlp_scale": torch.rand(30), "n": torch.arange(5)}
    cfg = QuantizeConfig(scheme="int6", clip="search", passthrough_numel=100)
    res = quantize_state(state, cfg, classify=lambda name: "mlp" if ".mlp." in name and "scale" not in name else "control")
    blob = st_save(res.tensors, metadata={"pgolf.quant": json.dumps(res.meta)})
    loaded = st_load(blob)
    a, b = dequantize_state(res.tensors, res.meta), dequantize_state(loaded, json.loads(json.dumps(res.meta)))
    assert all(torch.equal(a[k], b[k]) for k in state) and torch.equal(b["n"], state["n"])
    assert res.meta["tensors"]["n"]["scheme"] == "raw_v1"


def test_passthrough_beyond_fp16_range_needs_fp32():
    state = {"blocks.0.attn.c_q.weight": torch.tensor([[1e6, 0.0]])}
    with pytest.raises(ConfigError, match="blocks.0.attn.c_q.weight=32"):
        quantize_state(state, QuantizeConfig())
    assert quantize_state(state, QuantizeConfig(overrides=("blocks.0.attn.c_q.weight=32",))).tensors[
        "blocks.0.attn.c_q.weight"
    ].dtype == torch.float32


def test_nan_weights_are_rejected():
    with pytest.raises(ArtifactError, match="'blocks.0.attn.c_q.weight' has NaN"):
        quantize_state({"blocks.0.attn.c_q.weight": torch.tensor([[float("nan")]])}, QuantizeConfig())


# ----------------------------------------------------------------------------- bad artifacts


@pytest.fixture(scope="module")
def artifact():
    torch.manual_seed(1)
    state = {"blocks.0.mlp.fc.weight": torch.randn(8, 6), "blocks.0.attn_scale": torch.rand(6)}
    return quantize_state(state, QuantizeConfig(scheme="int6", passthrough_numel=0))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"blocks.0.mlp.fc.weight.scale": None}, "'blocks.0.mlp.fc.weight' has no 'blocks.0.mlp.fc.weight.scale'"),
        ({"blocks.0.mlp.fc.weight.q": None}, "has no 'blocks.0.mlp.fc.weight.q'"),
        ({"blocks.0.attn_scale": None}, "has no 'blocks.0.attn_scale'"),
        ({"blocks.0.mlp.fc.weight.scale": torch.ones(7, dtype=torch.float16)}, r"float16 \[7\], expected float16 \[8\]"),
        ({"blocks.0.mlp.fc.weight.q": torch.zeros(6, 8, dtype=torch.int8)}, r"int8 \[6, 8\], expected int8 \[8, 6\]"),
        ({"blocks.0.mlp.fc.weight.scale": torch.ones(8)}, "float32 .* expected float16"),
        ({"blocks.0.mlp.fc.weight.q": torch.full((8, 6), 40, dtype=torch.int8)}, r"codes beyond \+-31"),
        ({"stray": torch.zeros(1)}, "does not describe: stray"),
    ],
)
def test_dequantize_rejects_broken_artifacts(artifact, changes, message):
    tensors = dict(artifact.tensors)
    for key, value in changes.items():
        if value is None:
            del tensors[key]
        else:
            tensors[key] = value
    with pytest.raises(ArtifactError, match=message):
        dequantize_state(tensors, artifact.meta)


def test_dequantize_rejects_bad_metadata(artifact):
    with pytest.raises(ArtifactError, match="format 'pgolf.quant/2'"):
        dequantize_state(artifact.tensors, {**artifact.meta, "format": "pgolf.quant/2"})
    bad = json.loads(json.dumps(artifact.meta))
    bad["tensors"]["blocks.0.mlp.fc.weight"]["scheme"] = "int6_row_v9"
    with pytest.raises(ArtifactError, match="metadata of tensor 'blocks.0.mlp.fc.weight' is malformed"):
        dequantize_state(artifact.tensors, bad)
    bad["tensors"]["blocks.0.mlp.fc.weight"] = {"scheme": "int6_row_v1"}
    with pytest.raises(ArtifactError, match="malformed"):
        dequantize_state(artifact.tensors, bad)
