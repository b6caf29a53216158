"""seeds/int5mlp-ttt.toml's export equals PR #264's own `mixed_quantize_int6` (int6 cats mlp, attn,
bigram): MLP int5 and attention/bigram int6 on the row max, tok_emb int8 on the clamped quantile
with a 1/127 floor, small tensors (control ones included) fp16. Tensor names are the same in both."""

from __future__ import annotations

import pytest

from .record_export import (
    assert_export_equal,
    block_shapes,
    from_mixed,
    random_state,
    record,
    seed_quantize_config,
)

pytestmark = pytest.mark.shared

D, KV, HIDDEN, VOCAB = 320, 160, 960, 512


def shapes(num_layers: int = 2) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (VOCAB, D), "bigram.embed.weight": (2048, 64), "bigram.proj.weight": (D, 64),
        "bigram.scale": (), "smear.gate": (D,), "skip_weights": (1, D),
    }
    return out | block_shapes(num_layers, D, KV, HIDDEN)


def test_int5mlp_ttt_export_matches_the_record(reference_dir):
    rec = record(reference_dir, "pr264")
    state = random_state(shapes())
    result, meta = rec.mixed_quantize_int6(state, {"mlp", "attn", "bigram"})
    pg, _ = assert_export_equal(from_mixed(result, meta), rec.dequantize_mixed_int6(result, meta, state), state,
                                seed_quantize_config("int5mlp-ttt"))
    bits = {n: s.bits for n, s in pg.items() if s.kind == "int"}
    assert bits["blocks.0.mlp.fc.weight"] == 5 and bits["blocks.0.attn.c_q.weight"] == 6
    assert bits["bigram.embed.weight"] == 6 and bits["tok_emb.weight"] == 8
    assert pg["blocks.0.attn_scale"].kind == "fp16"  # a small control tensor: fp16, as the record stores it
