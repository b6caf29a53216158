"""The code entropy coder (pgolf.pack.rans): exact, deterministic, and smaller than general codecs."""

import numpy as np
import pytest
import torch

from pgolf.model import rowquant
from pgolf.pack import encode_model, inspect_model, rans


def synthetic_codes(rng, rows, cols, bits, row_sigma=0.0, col_sigma=0.0, dist="t5"):
    """Row-max quantized codes of W = Z * row gain * column gain (Z Gaussian or Student-t(5))."""
    z = rng.standard_normal((rows, cols)) if dist == "gauss" else rng.standard_t(5, size=(rows, cols))
    w = z * np.exp(row_sigma * rng.standard_normal(rows))[:, None] * np.exp(col_sigma * rng.standard_normal(cols))
    w = torch.from_numpy(w.astype(np.float32))
    scale = rowquant.row_scales(w, bits)
    return rowquant.quantize_rows(w, scale, bits), scale


def quant_dict(seed, row_sigma, col_sigma, dist="t5", dim=256):
    """int6 attention-like and int5 MLP-like matrices with fp16 scales, as `pgolf quantize` writes them."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, rows, cols, bits in (("attn.c_q", dim, dim, 6), ("attn.c_k", dim // 2, dim, 6),
                                   ("attn.proj", dim, dim, 6), ("mlp.fc", 3 * dim, dim, 5), ("mlp.proj", dim, 3 * dim, 5)):
        q, s = synthetic_codes(rng, rows, cols, bits, row_sigma, col_sigma, dist)
        out[name + ".weight.q"], out[name + ".weight.scale"] = q, s
    return out


# ----------------------------------------------------------------------------- the rANS core


def test_stream_round_trip_with_partial_last_step_and_certain_symbols():
    rng = np.random.default_rng(0)
    prob_bits = rans.PROB_BITS
    counts = rng.integers(0, 50, size=(5, 256))
    counts[:, :100] = 0  # empty symbols
    counts[3] = 0
    counts[3, 200] = 7  # a context with one certain symbol (frequency = 2**prob_bits)
    freq = rans.normalize_counts(counts, prob_bits)
    assert freq[3, 200] == 1 << prob_bits
    n = 3 * 64 + 17  # not a multiple of the lane count
    ctx = rng.integers(0, 5, size=n).astype(np.uint16)
    sym = np.empty(n, np.uint8)
    for c in range(5):  # draw each symbol from its context's support
        idx = np.flatnonzero(ctx == c)
        p = freq[c] / freq[c].sum()
        sym[idx] = rng.choice(256, size=idx.size, p=p)
    for log2_lanes in (0, 3, 6):
        stream = rans.encode_stream(sym, ctx, freq, prob_bits, log2_lanes)
        assert np.array_equal(rans.decode_stream(stream, ctx, freq, prob_bits, log2_lanes), sym)
    empty = rans.encode_stream(sym[:0], ctx[:0], freq, prob_bits, 0)
    assert len(empty) == 4 and rans.decode_stream(empty, ctx[:0], freq, prob_bits, 0).size == 0


def test_frequencies_are_integer_exact():
    assert rans.expand_log_counts(np.array([0, 1, 2, 9, 17], np.uint8)).tolist() == [0, 65536, 71468, 131072, 262144]
    counts = rans.expand_log_counts(rans.log_count_codes(np.array([[0, 1, 5, 1000, 10**7, 3] + [0] * 250])))
    freq = rans.normalize_counts(counts, 14)
    assert freq.sum() == 1 << 14 and (freq[0] > 0).tolist() == (counts[0] > 0).tolist()
    # log-count codes keep counts within 1/16 octave (4.4%)
    c = np.array([1, 7, 300, 12345, 10**6])
    back = rans.expand_log_counts(rans.log_count_codes(c)) / 65536
    assert np.all(np.abs(np.log2(back / c)) <= 1 / 16 + 1e-9)


def test_corrupt_stream_is_detected():
    rng = np.random.default_rng(1)
    codes = [synthetic_codes(rng, 40, 64, 6)[0].numpy()]
    model, stream, lanes = rans.encode_codes(codes)
    shapes = [c.shape for c in codes]
    bad = bytearray(stream)
    bad[len(bad) // 2] ^= 0x40
    with pytest.raises(rans.RansError):
        rans.decode_codes(model, bytes(bad), shapes, rans.PROB_BITS, lanes)
    with pytest.raises(rans.RansError, match="truncated"):
        rans.decode_codes(model, stream[:-2], shapes, rans.PROB_BITS, lanes)
    with pytest.raises(rans.RansError, match="model"):
        rans.decode_codes(model[:-1], stream, shapes, rans.PROB_BITS, lanes)


# ----------------------------------------------------------------------------- the code model


def test_codes_round_trip_and_widths_are_used_only_where_they_pay():
    rng = np.random.default_rng(2)
    hetero = synthetic_codes(rng, 96, 80, 6, row_sigma=0.4, col_sigma=0.6)[0].numpy()
    flat = synthetic_codes(rng, 64, 64, 5, dist="gauss")[0].numpy()
    tiny = np.array([[3, -3], [0, 1]], np.int8)
    vec = rng.integers(-100, 100, size=50).astype(np.int8)
    codes = [hetero, flat, tiny, vec, np.zeros((0, 7), np.int8), np.array(-5, np.int8)]
    model, stream, lanes = rans.encode_codes(codes)
    out = rans.decode_codes(model, stream, [c.shape for c in codes], rans.PROB_BITS, lanes)
    assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(out, codes))
    assert rans.encode_codes(codes) == (model, stream, lanes)  # deterministic
    assert rans.choose_widths(hetero, 3)[0] == 3  # rows and columns both vary: both pay
    assert rans.choose_widths(tiny, 0)[0] == 0


def test_decodes_millions_of_codes_in_seconds():
    import time

    rng = np.random.default_rng(3)
    codes = [synthetic_codes(rng, 1536, 512, 5, 0.1, 0.2)[0].numpy() for _ in range(3)]
    model, stream, lanes = rans.encode_codes(codes)
    t0 = time.perf_counter()
    out = rans.decode_codes(model, stream, [c.shape for c in codes], rans.PROB_BITS, lanes)
    seconds = time.perf_counter() - t0
    assert all(np.array_equal(a, b) for a, b in zip(out, codes))
    print(f"decoded {sum(c.size for c in codes):,} codes in {seconds:.2f} s")
    assert seconds < 10  # ~0.1 s per million codes on one core; a generous bound for a shared machine


# ----------------------------------------------------------------------------- against the records' codecs


def _model_bytes(tensors):
    sizes = {c: len(encode_model(tensors, {}, codec=c, layout="bytes")) for c in ("zstd", "lzma", "brotli")}
    blob = encode_model(tensors, {}, codec="rans")
    assert any(s["codec"] == "rans" for s in inspect_model(blob)["sections"])
    return len(blob), sizes


def test_rans_beats_the_best_general_codec_by_5_percent_on_heterogeneous_codes():
    """int6/int5 codes whose rows and columns vary in scale (lognormal sigma 0.25 / 0.5, Student-t(5))."""
    tensors = quant_dict(seed=4, row_sigma=0.25, col_sigma=0.5)
    ours, general = _model_bytes(tensors)
    best = min(general.values())
    print(f"model bytes: {general}, rans {ours:,}; rans / best = {ours / best:.4f}")
    assert ours <= 0.95 * best


def test_rans_still_wins_on_homogeneous_codes():
    """Gaussian codes with no row/column structure: nothing to model beyond order 0, still no loss."""
    tensors = quant_dict(seed=5, row_sigma=0.0, col_sigma=0.0, dist="gauss")
    ours, general = _model_bytes(tensors)
    best = min(general.values())
    print(f"model bytes: {general}, rans {ours:,}; rans / best = {ours / best:.4f}")
    assert ours < best
