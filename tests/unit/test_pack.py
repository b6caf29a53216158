"""model.bin: exact round trips, determinism, layouts, corruption, byte budget (pgolf.pack)."""

import hashlib
import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgolf.errors import ArtifactError, ConfigError
from pgolf.pack import CODECS, budget, decode_model, encode_model, entropy_report, inspect_model, layouts
from pgolf.pack.modelbin import FORMAT_VERSION

META = {"format": "pgolf.quant/1", "tensors": {"w": {"scheme": "int6_row_v1", "bits": 6, "qmax": 31, "shape": [40, 36]}}}


def laplace_codes(rng, shape, bits, width=None):
    """int8 codes like trained weights: a discretized Laplace, clipped to +-qmax."""
    qmax = 2 ** (bits - 1) - 1
    width = qmax / 4 if width is None else width
    return np.asarray(np.clip(np.rint(rng.laplace(scale=width, size=shape)), -qmax, qmax), dtype=np.int8)


def small_model(seed=0):
    """A quantize-shaped dict: int6/int5/int8 codes + fp16 scales + fp16/fp32/bf16 passthrough."""
    rng = np.random.default_rng(seed)
    t = {}
    for name, shape, bits in (("w", (40, 36), 6), ("mlp", (48, 33), 5), ("emb", (16, 8), 8)):
        t[f"{name}.q"] = torch.from_numpy(laplace_codes(rng, shape, bits))
        t[f"{name}.scale"] = torch.from_numpy(rng.random(shape[0]).astype(np.float16))
    t["attn_scale"] = torch.from_numpy(rng.normal(size=36).astype(np.float32))
    t["resid_mix"] = torch.from_numpy(rng.normal(size=(2, 36)).astype(np.float16))
    t["q_gain"] = torch.tensor([1.5, -0.25], dtype=torch.bfloat16)
    return t


def assert_same(a: dict, b: dict):
    assert list(a) == sorted(b)
    for k in b:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        # compare bytes, so NaN payloads and -0.0 count too
        assert a[k].reshape(-1).view(torch.uint8).numpy().tobytes() == b[k].reshape(-1).view(torch.uint8).numpy().tobytes(), k


# ----------------------------------------------------------------------------- round trips


DTYPES = {"f16": torch.float16, "f32": torch.float32, "bf16": torch.bfloat16, "i64": torch.int64, "u8": torch.uint8,
          "bool": torch.bool}


@st.composite
def tensor_dicts(draw):
    names = draw(st.lists(st.sampled_from(["a.q", "a.scale", "b.q", "b", "blocks.0.x", "z.q", "emb", "c"]),
                          unique=True, max_size=6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = {}
    for name in names:
        kind = draw(st.sampled_from(["codes", "codes", "codes", *DTYPES]))
        shape = draw(st.one_of(st.lists(st.integers(0, 7), max_size=3), st.sampled_from([[33, 40], [64, 33], [0, 40]])))
        if kind == "codes":
            bits = draw(st.integers(2, 8))
            out[name] = torch.from_numpy(laplace_codes(rng, shape, bits, width=draw(st.sampled_from([0.3, 2.0, 40.0]))))
        else:
            # any bit pattern: NaN payloads, -0.0, infinities must survive too
            dtype, numel = DTYPES[kind], int(np.prod(shape))
            raw = rng.integers(0, 256, size=numel * torch.empty(0, dtype=dtype).element_size(), dtype=np.uint8)
            if kind == "bool":
                out[name] = torch.from_numpy(raw % 2 == 1).reshape(shape)
            else:
                out[name] = torch.from_numpy(raw).view(dtype).reshape(shape) if numel else torch.empty(shape, dtype=dtype)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensors=tensor_dicts(), codec=st.sampled_from(CODECS), layout=st.sampled_from(["auto", "bytes", "bitpack"]),
       shuffle=st.sampled_from(["auto", "on", "off"]))
def test_round_trip_is_exact(tensors, codec, layout, shuffle):
    meta = {"format": "pgolf.quant/1", "n": len(tensors), "nested": {"list": [1, 2.5, None, True, "x"]}}
    blob = encode_model(tensors, meta, codec=codec, layout=layout, shuffle=shuffle)
    out, meta_out = decode_model(blob)
    assert meta_out == meta
    assert_same(out, tensors)


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_a_model(codec):
    t = small_model()
    out, meta = decode_model(encode_model(t, META, codec=codec))
    assert meta == META
    assert_same(out, t)


def test_numpy_inputs_and_empty_dict():
    rng = np.random.default_rng(1)
    t = {"w.q": laplace_codes(rng, (5, 6), 4), "w.scale": rng.random(5).astype(np.float16), "v": np.arange(3.0),
         "big_endian": np.arange(4, dtype=">i4")}
    out, _ = decode_model(encode_model(t, {}, codec="rans"))
    assert all(np.array_equal(out[k].numpy(), t[k]) for k in t)
    assert out["big_endian"].dtype == torch.int32 and out["w.scale"].dtype == torch.float16
    out, meta = decode_model(encode_model({}, {"empty": True}))
    assert out == {} and meta == {"empty": True}


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="unknown codec 'gzip'"):
        encode_model({}, {}, codec="gzip")
    with pytest.raises(ConfigError, match="unknown layout"):
        encode_model({}, {}, layout="nibbles")
    for meta in ({"shape": (1, 2)}, {"x": float("nan")}, {1: "a"}, {"x": object()}):
        with pytest.raises(ArtifactError, match="not JSON-native"):
            encode_model({}, meta)
    with pytest.raises(ArtifactError, match="cannot store"):
        encode_model({"x": torch.zeros(2, dtype=torch.complex64)}, {})


# ----------------------------------------------------------------------------- determinism, choices


@pytest.mark.parametrize("codec", ["zstd", "lzma", "brotli", "rans", "auto"])
def test_same_input_same_bytes_whatever_the_insertion_order(codec):
    t = small_model()
    blob = encode_model(t, META, codec=codec)
    assert encode_model(dict(reversed(list(t.items()))), META, codec=codec) == blob
    assert encode_model(small_model(), json.loads(json.dumps(META)), codec=codec) == blob


def test_auto_picks_the_smallest_and_records_it():
    t = small_model()
    sizes = {c: len(encode_model(t, META, codec=c)) for c in ("zstd", "lzma", "brotli", "rans")}
    auto = encode_model(t, META, codec="auto")
    assert len(auto) <= min(sizes.values())
    info = inspect_model(auto)
    assert info["bytes"] == len(auto) and info["format_version"] == FORMAT_VERSION
    kinds = {s["kind"] for s in info["sections"]}
    assert {"index"} <= kinds and len(kinds & {"codes", "codes_packed"}) == 1 and len(kinds & {"data", "data_shuffled"}) == 1
    assert all(s["codec"] in ("zstd", "lzma", "brotli", "rans") for s in info["sections"])


def test_layout_choice_is_recorded():
    t = small_model()
    kinds = lambda blob: {s["kind"] for s in inspect_model(blob)["sections"]}  # noqa: E731
    assert "codes_packed" in kinds(encode_model(t, META, codec="none", layout="bitpack"))
    assert "codes" in kinds(encode_model(t, META, codec="none", layout="bytes"))
    assert "data_shuffled" in kinds(encode_model(t, META, codec="zstd", shuffle="on"))
    assert "data" in kinds(encode_model(t, META, codec="zstd", shuffle="off"))
    # uncompressed, bit-packing is always the smaller of the two
    assert "codes_packed" in kinds(encode_model(t, META, codec="none", layout="auto"))


# ----------------------------------------------------------------------------- golden bytes


def test_bit_packing_golden_bytes():
    # 2 bits: offsets q + 2 = 0, 1, 2, 3 -> 0b11_10_01_00 (first code in the lowest bits)
    assert layouts.pack_bits(np.array([-2, -1, 0, 1], np.int8), 2) == b"\xe4"
    # 3 bits: offsets 7, 0, 4 -> bits 111 000 001 (lowest first) -> 0x07, then 0x01 in the next byte
    assert layouts.pack_bits(np.array([3, -4, 0], np.int8), 3) == b"\x07\x01"
    # 5 bits across bytes: offsets 31, 16 -> 11111 00001 -> 0x1f, 0x02
    assert layouts.pack_bits(np.array([15, 0], np.int8), 5) == b"\x1f\x02"
    for codes, bits in (([-2, -1, 0, 1], 2), ([3, -4, 0], 3), ([15, 0], 5), ([-128, 127, 0], 8)):
        a = np.array(codes, np.int8)
        assert layouts.code_bits(a) == bits
        assert np.array_equal(layouts.unpack_bits(layouts.pack_bits(a, bits), bits, a.size), a)
    assert layouts.code_bits(np.array([-16, 15], np.int8)) == 5  # the records' int5 range
    assert layouts.code_bits(np.zeros(0, np.int8)) == 1


def test_byte_shuffle_golden_and_inverse():
    raw = np.array([0x0102, 0x0304, 0x0506], "<u2").tobytes()
    assert layouts.shuffle_bytes(raw, 2) == bytes([2, 4, 6, 1, 3, 5])
    assert layouts.unshuffle_bytes(layouts.shuffle_bytes(raw, 2), 2) == raw


def test_uncompressed_model_bin_golden():
    """The format itself, byte for byte (codec none does not depend on any library)."""
    t = {"w.q": torch.tensor([[1, -1, 0], [2, 0, -2]], dtype=torch.int8), "w.scale": torch.tensor([0.5, 0.25]).half(),
         "g": torch.tensor([1.0], dtype=torch.float32)}
    blob = encode_model(t, {"k": 1}, codec="none", layout="bitpack", shuffle="on")
    assert blob[:6] == b"PGMB\x01\x03"
    index = b'{"meta":{"k":1},"tensors":[["g","F32",[1]],["w.q","I8",[2,3]],["w.scale","F16",[2]]]}'
    assert index in blob
    kind, codec, a, b, raw_len, stored_len, _ = struct.unpack_from("<BBBBIII", blob, 6)
    assert (kind, codec, raw_len, stored_len) == (1, 0, len(index), len(index))
    # data, shuffled: fp32 1.0, then fp16 0.5 and 0.25 as low bytes then high bytes
    # codes: width byte 3, then offsets 5 3 4 6 4 2 at 3 bits, lowest bit first
    assert blob.endswith(b"\x00\x00\x80\x3f" + b"\x00\x00\x38\x34" + b"\x03\x1d\x4d\x01")
    assert hashlib.sha256(blob).hexdigest() == "8ca4ec1509b44241d01f9fc1deee3aa5bd844cf10ed5a96610d2598e0c1df4ff"


# ----------------------------------------------------------------------------- corruption


def _decodes_to_the_same_or_raises(blob: bytes, original: dict):
    try:
        out, meta = decode_model(blob)
    except ArtifactError:
        return True
    assert_same(out, original)  # a change that does not alter the content (e.g. unused padding bits) is harmless
    assert meta == META
    return False


@pytest.mark.parametrize("codec", ["none", "zstd", "lzma", "brotli", "rans", "pergroup"])
def test_every_flipped_byte_is_caught_or_harmless(codec):
    rng = np.random.default_rng(3)
    t = {"w.q": torch.from_numpy(laplace_codes(rng, (33, 34), 5)), "w.scale": torch.rand(33).half(),
         "c": torch.randn(5)}
    blob = encode_model(t, META, codec=codec)
    header = 10 + 16 * blob[5]
    # every header byte, and 200 payload bytes spread over every section
    positions = [*range(header), *np.linspace(header, len(blob) - 1, 200).astype(int).tolist()]
    caught = 0
    for i in positions:
        bad = bytearray(blob)
        bad[i] ^= 1 << (i % 8)
        caught += _decodes_to_the_same_or_raises(bytes(bad), t)
    assert caught >= 0.97 * len(positions)  # a few flips may hit padding bits that change nothing


def test_truncation_bad_magic_newer_version_stray_bytes():
    t = small_model()
    for codec in ("zstd", "rans"):
        blob = encode_model(t, META, codec=codec)
        for cut in (0, 3, 5, 20, len(blob) // 2, len(blob) - 1):
            with pytest.raises(ArtifactError, match="truncated|magic"):
                decode_model(blob[:cut])
        with pytest.raises(ArtifactError, match="stray bytes"):
            decode_model(blob + b"\0")
    with pytest.raises(ArtifactError, match="not a pgolf model.bin"):
        decode_model(b"PK\x03\x04" + blob[4:])
    newer = blob[:4] + bytes([FORMAT_VERSION + 1]) + blob[5:]
    with pytest.raises(ArtifactError, match="newer than this pgolf reads.*upgrade pgolf"):
        decode_model(newer)
    with pytest.raises(ArtifactError, match="header is corrupt"):
        decode_model(blob[:7] + bytes([blob[7] ^ 0x10]) + blob[8:])


# ----------------------------------------------------------------------------- budget and entropy


def test_budget_is_decimal_bytes():
    # rules.md SIZE-1 plants
    assert budget(32_000, 15_968_001)["fits"] is False
    ok = budget(32_000, 15_968_000)
    assert ok == {"code_bytes": 32_000, "model_bytes": 15_968_000, "total_bytes": 16_000_000,
                  "limit_bytes": 16_000_000, "margin_bytes": 0, "fits": True}
    mib = budget(0, 16_672_358)  # ARGPTQ's "15.9 MB" target in MiB
    assert mib["total_bytes"] == 16_672_358 and mib["fits"] is False and mib["margin_bytes"] == -672_358
    assert budget(10, 10, limit=20)["fits"] is True
    with pytest.raises(ValueError, match="non-negative integer"):
        budget(-1, 5)
    with pytest.raises(ValueError, match="non-negative integer"):
        budget(1.5, 5)


def test_entropy_report():
    t = {"a.q": torch.tensor([0, 0, 1, -1], dtype=torch.int8),  # p = 1/2, 1/4, 1/4 -> 1.5 bits
         "b.q": torch.zeros(10, dtype=torch.int8), "a.scale": torch.ones(2).half()}
    rep = entropy_report(t)
    assert set(rep["tensors"]) == {"a.q", "b.q"}
    assert rep["tensors"]["a.q"]["bits_per_code"] == pytest.approx(1.5)
    assert rep["tensors"]["a.q"]["entropy_bytes"] == pytest.approx(4 * 1.5 / 8)
    assert rep["tensors"]["b.q"]["entropy_bytes"] == 0.0
    assert rep["entropy_bytes"] == pytest.approx(0.75)


def test_quantize_output_survives_packing():
    """The contract with `pgolf quantize`: quantize_state -> encode -> decode -> dequantize is exact."""
    state_mod = pytest.importorskip("pgolf.quant.state")
    from pgolf.quant.config import QuantizeConfig

    torch.manual_seed(0)
    state = {"tok_emb.weight": torch.randn(96, 40).bfloat16(), "blocks.0.attn.c_q.weight": torch.randn(40, 40),
             "blocks.0.mlp.fc.weight": torch.randn(120, 40), "blocks.0.attn_scale": torch.ones(40)}
    classes = {"tok_emb.weight": "embed", "blocks.0.attn.c_q.weight": "attn", "blocks.0.mlp.fc.weight": "mlp"}
    result = state_mod.quantize_state(state, QuantizeConfig(scheme="int6", passthrough_numel=64),
                                      classify=lambda n: classes.get(n, "control"))
    want = state_mod.dequantize_state(result.tensors, result.meta)
    for codec in ("zstd", "rans"):
        tensors, meta = decode_model(encode_model(result.tensors, result.meta, codec=codec))
        assert meta == result.meta
        got = state_mod.dequantize_state(tensors, meta)
        assert all(got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]) for k in want)
