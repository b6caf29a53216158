"""seeds/sota.toml's export against PR #2135's own functions (reference/pr2135, imported with its
README's launch variables: EMBED_BITS=7, MATRIX/ATTN/MLP/EMBED_CLIP_SIGMAS=12.85/13.0/11.5/14.0,
LQER_ENABLED=1 LQER_RANK=4 LQER_TOP_K=3 LQER_FACTOR_BITS=4 LQER_ASYM_ENABLED=1 LQER_ASYM_GROUP=32,
COMPRESSOR=pergroup).

- `gptq_mixed_quantize(state, hessians, h)` and pgolf's `quantize_state` on the same float weights and
  the same Hessians: the same storage per tensor, int6/int7 codes and fp16 scales bit for bit, the
  same three LQER tensors, their int2/int4 factor codes and fp16 scales bit for bit, and
  `dequantize_mixed` equal to `dequantize_state` bit for bit.
- `_pack_pergroup` (its lrzip stage replaced by its own brotli fallback) and pgolf's `pergroup`
  codec: the same row orders and the same reordered code bytes (pgolf's section then holds the LQER
  factor codes, the record's remainder); the grouped codes alone give the same compressed bytes.
"""

from __future__ import annotations

import io
import struct

import brotli
import pytest
import torch

from pgolf.pack import modelbin
from pgolf.quant import dequantize_state, quantize_state

from . import cases
from .record_export import random_state, seed_quantize_config
from .test_pr2135 import CASE

pytestmark = pytest.mark.shared

D, KV, HIDDEN, VOCAB = 320, 256, 640, 384
FACTORS = {"lqA_a": "lqer_a", "lqAs_a": "lqer_a_scale", "lqB_a": "lqer_b", "lqBs_a": "lqer_b_scale"}


def shapes() -> dict[str, tuple[int, ...]]:
    b = "blocks.0."
    return {"tok_emb.weight": (VOCAB, D), b + "attn.c_q.weight": (D, D), b + "attn.c_k.weight": (KV, D),
            b + "attn.c_v.weight": (KV, D), b + "attn.proj.weight": (D, D), b + "attn.attn_gate_w": (4, 12),
            b + "attn_scale": (D,), b + "mlp.fc.weight": (HIDDEN, D), b + "mlp.proj.weight": (D, HIDDEN),
            "skip_weights": (1, D)}


def hessians(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """X^T X / n of correlated synthetic inputs, one per matrix the record quantizes."""
    gen = torch.Generator().manual_seed(1)
    out = {}
    for name, t in state.items():
        if t.ndim == 2 and t.numel() > 65_536:
            cols = t.shape[1]
            x = torch.randn(768, cols, generator=gen) @ (torch.eye(cols) + 0.1 * torch.randn(cols, cols, generator=gen))
            out[name] = x.T @ x / 768
    return out


@pytest.fixture(scope="module")
def exports(reference_dir):
    mod = cases.load(CASE, reference_dir)
    h = mod.Hyperparameters()
    assert (h.embed_bits, h.matrix_bits, h.lqer_asym_group, h.compressor) == (7, 6, 32, "pergroup")
    state = random_state(shapes())
    hs = hessians(state)
    rec, rec_meta = mod.gptq_mixed_quantize(state, hs, h)
    cfg = seed_quantize_config("sota")
    pg = quantize_state(state, cfg, hs)
    return mod, h, state, hs, cfg, rec, rec_meta, pg


def test_gptq_and_lqer_match_the_record(exports):
    mod, _, state, hs, _, rec, rec_meta, pg = exports
    entries = pg.meta["tensors"]
    for name, info in rec_meta.items():
        e = entries[name]
        if info.startswith("passthrough"):
            assert e["scheme"] == "fp16_v1" and torch.equal(rec[name], pg.tensors[name]), name
            continue
        bits = 7 if name.startswith("tok_emb") else 6
        assert info.startswith(f"gptq (int{bits})") and e["scheme"] == f"int{bits}_row_v1" and e["method"] == "gptq"
        assert torch.equal(rec[name + ".q"], pg.tensors[name + ".q"]), f"{name}: codes differ"
        assert torch.equal(rec[name + ".scale"], pg.tensors[name + ".scale"]), f"{name}: scales differ"
        assert ("lqer_asym" in info) == ("lqer" in e), f"{name}: LQER chosen by one side only"
        if "lqer" in e:
            assert e["lqer"] == {"mode": "asym", "rank": 4, "group": 32}
            for r_key, p_key in FACTORS.items():
                assert torch.equal(rec[f"{name}.{r_key}"].reshape(-1), pg.tensors[f"{name}.{p_key}"].reshape(-1)), \
                    f"{name}: {p_key} differs"
    assert sum("lqer" in e for e in entries.values()) == 3
    deq = dequantize_state(pg.tensors, pg.meta)
    for name, t in mod.dequantize_mixed(rec, rec_meta, state).items():
        assert torch.equal(t, deq[name]), f"{name}: dequantized weights differ"


def _record_frame(mod, rec, rec_meta, monkeypatch) -> tuple[dict[str, bytes], bytes]:
    """The record's PGRP frame without lrzip (its own brotli fallback): ({name: row order bytes}, Q blob)."""
    monkeypatch.setattr(mod, "_lrzip_compress_bytes", lambda data: None)
    monkeypatch.setattr(mod, "log", lambda *a, **k: None)
    r = io.BytesIO(mod._pack_pergroup(rec, rec_meta))
    assert r.read(4) == b"PGRP" and struct.unpack("<I", r.read(4))[0] == 2
    orders = {}
    for _ in range(struct.unpack("<I", r.read(4))[0]):
        name = r.read(struct.unpack("<H", r.read(2))[0]).decode()
        rows, _ = struct.unpack("<II", r.read(8))
        orders[name] = r.read(2 * rows)
    assert r.read(1) == b"\x00"  # brotli
    return orders, r.read(struct.unpack("<I", r.read(4))[0])


def _sections(blob: bytes) -> dict[str, tuple[bytes, bytes]]:
    """{kind name: (raw, stored)} of a model.bin."""
    s = modelbin._Sections(blob)
    return {modelbin.KIND_NAMES[k]: (s.raw(k), s.stored[k]) for k in s.entries}


def test_pergroup_layout_matches_the_record(exports, monkeypatch):
    mod, _, _, _, _, rec, rec_meta, pg = exports
    orders, q_blob = _record_frame(mod, rec, rec_meta, monkeypatch)
    q_raw = brotli.decompress(q_blob)
    secs = _sections(modelbin.encode_model(pg.tensors, pg.meta, codec="pergroup"))
    assert secs["row_order"][0] == b"".join(orders[n] for n in sorted(orders))
    assert secs["codes_grouped"][0][: len(q_raw)] == q_raw  # then the LQER factor codes (the record: its remainder)

    # the grouped codes alone (the LQER factors left out): the same compressed bytes as the record's
    tensors = {n: t for n, t in pg.tensors.items() if ".lqer_" not in n}
    meta = {"format": pg.meta["format"],
            "tensors": {n: {k: v for k, v in e.items() if k != "lqer"} for n, e in pg.meta["tensors"].items()}}
    assert _sections(modelbin.encode_model(tensors, meta, codec="pergroup"))["codes_grouped"][1] == q_blob
