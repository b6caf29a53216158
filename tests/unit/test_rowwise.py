import torch

from pgolf.model import rowquant as R


def test_int6_golden_codes():
    # Scales 0.125 and 0.0625 are exact in fp16, so the codes can be checked by hand.
    w = torch.tensor([[3.875, -1.9375, 0.0, 0.0625], [1.9375, -1.9375, 0.96875, 0.5]])
    s = R.row_scales(w, 6)
    assert s.dtype == torch.float16 and s.tolist() == [0.125, 0.0625]
    q = R.quantize_rows(w, s, 6)
    assert q.dtype == torch.int8
    assert q.tolist() == [[31, -16, 0, 0], [31, -31, 16, 8]]  # -15.5 -> -16, 0.5 -> 0, 15.5 -> 16: half to even
    assert R.qmax_for(5) == 15 and R.qmax_for(8) == 127


def test_codes_stay_in_range_and_error_is_bounded():
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    for bits in (4, 5, 6, 8):
        s = R.row_scales(w, bits)
        q = R.quantize_rows(w, s, bits)
        assert q.abs().max().item() <= R.qmax_for(bits)
        err = (R.dequantize_rows(q, s) - w).abs()
        assert (err <= s.float().unsqueeze(1) / 2 + 1e-6).all()


def test_zero_rows_do_not_produce_nan():
    w = torch.zeros(3, 4)
    s = R.row_scales(w, 5)
    assert torch.isfinite(R.dequantize_rows(R.quantize_rows(w, s, 5), s)).all()


def test_fake_quant_forward_quantized_backward_identity():
    torch.manual_seed(1)
    w = torch.randn(8, 16, requires_grad=True)
    out = R.fake_quantize_rows(w, 5)
    s = R.row_scales(w, 5)
    torch.testing.assert_close(out.detach(), R.dequantize_rows(R.quantize_rows(w, s, 5), s))
    out.sum().backward()
    torch.testing.assert_close(w.grad, torch.ones_like(w))
