"""LQER (low-rank correction of the quantization error, PR #2135), SDClip's per-class k and the
calibration batch keys of QuantizeConfig."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pgolf.errors import ArtifactError, ConfigError
from pgolf.quant import QuantizeConfig, dequantize_state, lqer, quantize_state


def state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"tok_emb.weight": torch.randn(96, 32, generator=g) * 0.02,
            "blocks.0.attn.c_q.weight": torch.randn(32, 32, generator=g) * 0.02,
            "blocks.0.mlp.fc.weight": torch.randn(64, 32, generator=g) * 0.05,  # the largest error
            "blocks.0.mlp.proj.weight": torch.randn(32, 64, generator=g) * 0.03,
            "blocks.0.attn_scale": torch.ones(32)}


CFG = QuantizeConfig(scheme="int6", clip="sdclip", embed_bits=7, passthrough_numel=256, lqer=True,
                     lqer_top_k=2, lqer_group=32)


def test_the_largest_errors_get_a_correction_that_lowers_them():
    s = state()
    res = quantize_state(s, CFG)
    plain = quantize_state(s, dataclasses.replace(CFG, lqer=False))
    chosen = [n for n, e in res.meta["tensors"].items() if "lqer" in e]
    assert chosen == ["blocks.0.mlp.fc.weight", "blocks.0.mlp.proj.weight"]
    for name in chosen:
        e = res.meta["tensors"][name]
        assert e["lqer"] == {"mode": "asym", "rank": 4, "group": 32}
        assert res.tensors[name + ".q"].equal(plain.tensors[name + ".q"])  # the codes are untouched
        assert res.tensors[name + ".lqer_a"].shape == (s[name].shape[0], 4)
        assert res.tensors[name + ".lqer_b_scale"].numel() == 4 * s[name].shape[1] // 32
        a, b = res.tensors[name + ".lqer_a"], res.tensors[name + ".lqer_b"]
        assert -2 <= int(a.min()) and int(a.max()) <= 1 and -8 <= int(b.min()) and int(b.max()) <= 7
        assert res.report["tensors"][name]["rel_err"] < plain.report["tensors"][name]["rel_err"]
        assert res.report["tensors"][name]["payload_bits"] > plain.report["tensors"][name]["payload_bits"]
    deq = dequantize_state(res.tensors, res.meta)
    for name in s:
        assert deq[name].dtype == s[name].dtype
    assert not deq["blocks.0.mlp.fc.weight"].equal(dequantize_state(plain.tensors, plain.meta)["blocks.0.mlp.fc.weight"])


def test_symmetric_factors_when_asked_or_when_the_group_does_not_divide():
    res = quantize_state(state(), dataclasses.replace(CFG, lqer_group=7 * 64, lqer_factor_bits=3, lqer_top_k=1))
    e = res.meta["tensors"]["blocks.0.mlp.fc.weight"]
    assert e["lqer"] == {"mode": "sym", "rank": 4, "bits": 3}
    assert res.tensors["blocks.0.mlp.fc.weight.lqer_a_scale"].shape == (64,)
    assert int(res.tensors["blocks.0.mlp.fc.weight.lqer_b"].abs().max()) <= 3
    res2 = quantize_state(state(), dataclasses.replace(CFG, lqer_asym=False, lqer_top_k=1))
    assert res2.meta["tensors"]["blocks.0.mlp.fc.weight"]["lqer"]["mode"] == "sym"
    dequantize_state(res.tensors, res.meta)


def test_the_factor_storage_matches_its_definition():
    a = torch.tensor([[0.3, -0.6], [0.15, 0.0]])
    b = torch.arange(8, dtype=torch.float32).reshape(2, 4) - 3.5
    st = lqer.quantize_factors(a, b, "asym", group=4)
    assert st[".lqer_a_scale"].item() == pytest.approx(0.4, abs=1e-3)
    assert st[".lqer_a"].tolist() == [[1, -2], [0, 0]]  # 0.75 -> 1, -1.5 -> -2 (half to even), 0.375 -> 0
    assert st[".lqer_b_scale"].tolist() == pytest.approx([3.5 / 7.5, 3.5 / 7.5], abs=1e-3)
    assert st[".lqer_b"][0].tolist() == [-8, -5, -3, -1]  # -7.5 rounds half to even
    assert lqer.correction(st, "asym").shape == (2, 4)


def test_a_damaged_correction_is_refused():
    res = quantize_state(state(), CFG)
    name = "blocks.0.mlp.fc.weight"
    for change, match in (
        (lambda t, m: t.pop(name + ".lqer_b"), "has no 'blocks.0.mlp.fc.weight.lqer_b'"),
        (lambda t, m: t[name + ".lqer_a"].fill_(3), "outside \\[-2, 1\\]"),
        (lambda t, m: m["tensors"][name]["lqer"].update(group=5), "LQER metadata .* malformed"),
        (lambda t, m: m["tensors"][name].pop("lqer"), "does not describe"),
    ):
        tensors = {k: v.clone() for k, v in res.tensors.items()}
        meta = {"format": res.meta["format"], "tensors": {k: {**v, **({"lqer": dict(v["lqer"])} if "lqer" in v else {})}
                                                          for k, v in res.meta["tensors"].items()}}
        change(tensors, meta)
        with pytest.raises(ArtifactError, match=match):
            dequantize_state(tensors, meta)


def test_sdclip_k_per_class():
    cfg = QuantizeConfig(scheme="int6", clip="sdclip", passthrough_numel=256, sdclip_k=12.0, sdclip_k_attn=13.0,
                         sdclip_k_mlp=11.5, sdclip_k_embed=14.0)
    meta = quantize_state(state(), cfg).meta["tensors"]
    assert meta["blocks.0.attn.c_q.weight"]["clip"]["k"] == 13.0
    assert meta["blocks.0.mlp.fc.weight"]["clip"]["k"] == 11.5
    assert meta["tok_emb.weight"]["clip"]["k"] == 14.0
    assert QuantizeConfig(sdclip_k=9.0).sdclip_k_for("mlp") == 9.0  # unset: sdclip_k


def test_calibration_batches_set_the_token_count():
    cfg = QuantizeConfig(calib_batches=32, calib_batch_tokens=98_304)
    assert cfg.calib_tokens == 32 * 98_304
    assert dataclasses.replace(cfg).calib_tokens == 32 * 98_304  # a round trip keeps it
    assert QuantizeConfig(calib_tokens=4096, calib_seq_len=64).calib_tokens == 4096


@pytest.mark.parametrize("changes, key", [
    ({"lqer_rank": 0}, "lqer_rank"), ({"lqer_top_k": 0}, "lqer_top_k"), ({"lqer_factor_bits": 9}, "lqer_factor_bits"),
    ({"lqer_group": 0}, "lqer_group"), ({"sdclip_k_attn": -1.0}, "sdclip_k_attn"), ({"sdclip_k_mlp": 0.0}, "sdclip_k_mlp"),
    ({"calib_batches": -1}, "calib_batches"), ({"calib_batch_tokens": 16, "calib_seq_len": 64}, "calib_batch_tokens"),
    ({"calib_batches": 2, "calib_batch_tokens": 4096, "calib_tokens": 5000}, "calib_tokens"),
    ({"gptq_tie_order": "random"}, "gptq_tie_order"),
])
def test_bad_values_name_their_key(changes, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        QuantizeConfig(**changes)
