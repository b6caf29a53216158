"""Round-to-nearest quantization of one matrix: golden codes, clip methods, clip search, pruning."""

import pytest
import torch

from pgolf.quant import ClipSpec, QuantizeConfig, magnitude_prune, quantize_state, rtn_quantize
from pgolf.quant.clip import quantile_clip, row_quantile, sdclip_clip, sorted_abs_rows
from pgolf.quant.prune import prune_count

EXACT = {"rtol": 0, "atol": 0}


# ----------------------------------------------------------------------------- golden codes per scheme
# Row maxima are qmax * 2^-k, so every scale is exact in fp16 and the codes can be checked by hand.
# Round half to even: -7.5 -> -8, 2.5 -> 2, 15.5 -> 16.


def test_golden_int8_quantile_clip():
    # 0.9999984 quantile of 4 values: rank 2.9999952 -> 3.96875 - 0.0000048 * (3.96875 - 2) ~ 3.96874;
    # its scale 3.96874 / 127 rounds to the fp16 value 0.03125 = 2^-5.
    w = torch.tensor([[3.96875, -2.0, 0.046875, 0.0]])
    rq = rtn_quantize(w, 8, ClipSpec(method="quantile", quantile=0.9999984))
    assert rq.scale.dtype == torch.float16 and rq.scale.tolist() == [0.03125]
    assert rq.codes.dtype == torch.int8 and rq.codes.tolist() == [[127, -64, 2, 0]]  # 0.046875/2^-5 = 1.5 -> 2


def test_golden_int6_int5_int4_rowmax():
    w6 = torch.tensor([[3.875, -1.9375, 0.0625, 0.3125]])  # s = 3.875 / 31 = 0.125
    assert rtn_quantize(w6, 6).codes.tolist() == [[31, -16, 0, 2]]  # -15.5 -> -16, 0.5 -> 0, 2.5 -> 2
    w5 = torch.tensor([[3.75, -1.875, 0.625, 0.0]])  # s = 3.75 / 15 = 0.25
    rq5 = rtn_quantize(w5, 5)
    assert rq5.scale.tolist() == [0.25] and rq5.codes.tolist() == [[15, -8, 2, 0]]
    w4 = torch.tensor([[-3.5, 1.75, 0.25, 3.25]])  # s = 3.5 / 7 = 0.5
    assert rtn_quantize(w4, 4).codes.tolist() == [[-7, 4, 0, 6]]  # 3.5 -> 4, 0.5 -> 0, 6.5 -> 6


def test_golden_quantile_clip_saturates_outliers():
    # |w| sorted [0, 0.25, 1, 3.75, 10]: quantile 0.75 has rank 3 -> c = 3.75, s = 0.25 at int5.
    w = torch.tensor([[10.0, -3.75, 1.0, 0.25, 0.0]])
    rq = rtn_quantize(w, 5, ClipSpec(method="quantile", quantile=0.75))
    assert rq.scale.tolist() == [0.25]
    assert rq.codes.tolist() == [[15, -15, 4, 1, 0]]  # 10 / 0.25 = 40 saturates at qmax


def test_golden_sdclip():
    # Row [2, -2, 2, -2, 0]: unbiased std 2; k = 31/16 gives c = 3.875 and s = 0.125 at int6.
    w = torch.tensor([[2.0, -2.0, 2.0, -2.0, 0.0], [1.0, -1.0, 1.0, -1.0, 0.0]])
    torch.testing.assert_close(sdclip_clip(w, 31 / 16), (31 / 16) * w.std(dim=1, unbiased=True), **EXACT)
    rq = rtn_quantize(w, 6, ClipSpec(method="sdclip", k=31 / 16))
    assert rq.scale.tolist() == [0.125, 0.0625]
    assert rq.codes.tolist() == [[16, -16, 16, -16, 0], [16, -16, 16, -16, 0]]


def test_sdclip_matches_k_std_on_random_rows():
    torch.manual_seed(0)
    w = torch.randn(16, 300) * torch.rand(16, 1)
    for k in (12.85, 20.0):
        torch.testing.assert_close(sdclip_clip(w, k), k * w.std(dim=1, unbiased=True), **EXACT)
        rq = rtn_quantize(w, 6, ClipSpec(method="sdclip", k=k))
        torch.testing.assert_close(rq.scale, (k * w.std(dim=1) / 31).to(torch.float16), **EXACT)


def test_scale_floor_coarsens_small_rows():
    # The records' 1/qmax floor puts a row with max 31 * 2^-7 on the grid ~1/31 instead of 2^-7.
    w = torch.tensor([[0.2421875, -0.125, 0.0234375, 0.0]])
    assert rtn_quantize(w, 6).codes.tolist() == [[31, -16, 3, 0]]
    floored = rtn_quantize(w, 6, ClipSpec(floor=1 / 31))
    assert floored.scale.item() == torch.tensor(1 / 31).half().item()
    assert floored.codes.tolist() == [[8, -4, 1, 0]]  # 7.51, -3.88, 0.73


# ----------------------------------------------------------------------------- quantiles


@pytest.mark.parametrize("p", [0.9999984, 0.999, 0.5, 0.0001, 1.0])
def test_row_quantile_is_bit_identical_to_torch_quantile(p):
    torch.manual_seed(1)
    w = torch.randn(7, 513) * torch.rand(7, 1)
    torch.testing.assert_close(quantile_clip(w, p), torch.quantile(w.abs(), p, dim=1), **EXACT)
    torch.testing.assert_close(row_quantile(sorted_abs_rows(w), p), torch.quantile(w.abs(), p, dim=1), **EXACT)


def test_int8_matches_the_baseline_arithmetic_where_the_floor_does_not_bind():
    # Baseline export (techniques §3.6) restated: clamp W to +-c, divide by the (here fp16) scale, round.
    torch.manual_seed(2)
    w = torch.randn(32, 512) * 3  # c > 1, so the baseline's 1/127 floor does not bind
    c = torch.quantile(w.abs(), 0.9999984, dim=1)
    s = (c / 127).clamp_min(1 / 127).half()
    clipped = torch.maximum(torch.minimum(w, c[:, None]), -c[:, None])
    baseline = torch.clamp(torch.round(clipped / s.float()[:, None]), -127, 127).to(torch.int8)
    rq = rtn_quantize(w, 8, ClipSpec(method="quantile", quantile=0.9999984, floor=1 / 127))
    torch.testing.assert_close(rq.scale, s, **EXACT)
    torch.testing.assert_close(rq.codes, baseline, **EXACT)


# ----------------------------------------------------------------------------- clip search (GPTQ-lite)


def heavy_tailed(rows=64, cols=256, seed=0):
    """Student-t rows (2.5 degrees of freedom): rare large outliers, as in trained weight matrices."""
    torch.manual_seed(seed)
    return torch.distributions.StudentT(torch.tensor(2.5)).sample((rows, cols))


def mse(w, rq):
    return (w - rq.dequantize()).square().mean().item()


@pytest.mark.parametrize("bits", [4, 5, 6])
def test_clip_search_beats_rowmax_on_heavy_tails(bits):
    w = heavy_tailed()
    rowmax = mse(w, rtn_quantize(w, bits))
    per_matrix = rtn_quantize(w, bits, ClipSpec(method="search"))
    per_row = rtn_quantize(w, bits, ClipSpec(method="search", granularity="row"))
    assert mse(w, per_matrix) < rowmax
    assert mse(w, per_row) <= mse(w, per_matrix)  # a per-row minimum is never worse
    assert per_matrix.info["clip"]["quantile"] < 1.0
    assert sum(per_row.info["clip"]["rows_per_candidate"]) == w.shape[0]


def test_clip_search_keeps_rowmax_when_it_is_best():
    # Values on the 1/8 grid are exact under the row max (s = 31/8 / 31); quantiles 0.999 and 0.9995
    # give a smaller fp16 scale and error, 0.9999 rounds to the same scale (ties go to the first).
    signs = torch.tensor([1.0, -1.0]).repeat(16)
    w = (torch.arange(32, dtype=torch.float32) * signs / 8).repeat(4, 1)  # distinct |w| on the 1/8 grid
    rq = rtn_quantize(w, 6, ClipSpec(method="search"))
    assert mse(w, rq) == 0.0 and rq.scale.tolist() == [0.125] * 4
    assert rq.info["clip"]["quantile"] == 0.9999


# ----------------------------------------------------------------------------- pruning


def test_prune_zeroes_exactly_the_requested_fraction():
    torch.manual_seed(3)
    w = torch.randn(100, 37)
    for frac in (0.0, 0.03, 0.15, 0.5):
        pruned, mask = magnitude_prune(w, frac)
        k = prune_count(w.numel(), frac)
        assert int(mask.sum()) == k == round(frac * w.numel())
        assert (pruned[mask] == 0).all() and torch.equal(pruned[~mask], w[~mask])
        if 0 < k < w.numel():  # every pruned magnitude is at most every kept one
            assert w[mask].abs().max() <= w[~mask].abs().min()


def test_prune_ties_go_to_the_lower_index():
    w = torch.tensor([[0.5, -0.5, 0.5, 2.0], [-0.5, 0.5, 3.0, 0.5]])
    pruned, mask = magnitude_prune(w, 0.5)  # 4 of 8 entries, all ties at |0.5| among 6
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert pruned.tolist() == [[0.0, 0.0, 0.0, 2.0], [0.0, 0.5, 3.0, 0.5]]


def test_prune_matches_a_stable_sort_with_many_ties():
    torch.manual_seed(5)
    w = torch.randint(-3, 4, (50, 40)).float()  # 7 distinct values: ties everywhere
    for frac in (0.1, 0.3, 0.77):
        _, mask = magnitude_prune(w, frac)
        order = torch.sort(w.abs().flatten(), stable=True).indices[: prune_count(w.numel(), frac)]
        expected = torch.zeros(w.numel(), dtype=torch.bool)
        expected[order] = True
        assert torch.equal(mask.flatten(), expected)


def test_prune_count_rounds_half_up():
    assert prune_count(10, 0.25) == 3 and prune_count(10, 0.24) == 2 and prune_count(3, 0.999) == 3


def test_quantize_state_prunes_only_large_matrices():
    torch.manual_seed(4)
    state = {
        "blocks.0.mlp.fc.weight": torch.randn(64, 40),  # 2,560 elements: pruned
        "blocks.0.attn.c_q.weight": torch.randn(16, 16),  # 256 elements: too small
        "blocks.0.attn_scale": torch.randn(70),  # control, never pruned
    }
    cfg = QuantizeConfig(scheme="int6", prune_frac=0.15, prune_min_numel=1000, passthrough_numel=100)
    res = quantize_state(state, cfg)
    fc = res.report["tensors"]["blocks.0.mlp.fc.weight"]
    assert fc["pruned_frac"] == 384 / 2560 == res.meta["tensors"]["blocks.0.mlp.fc.weight"]["pruned_frac"]
    _, mask = magnitude_prune(state["blocks.0.mlp.fc.weight"], 0.15)
    assert (res.tensors["blocks.0.mlp.fc.weight.q"][mask] == 0).all()
    assert res.report["tensors"]["blocks.0.attn.c_q.weight"]["pruned_frac"] == 0.0
    assert res.report["tensors"]["blocks.0.attn_scale"]["pruned_frac"] == 0.0
