"""seeds/backout.toml's export equals PR #366's: its 3% magnitude pruning (every |w| below the 3%
quantile of each 2-D tensor over 65,536 elements), then its own `mixed_quantize_int6` with the
8,192-element passthrough, tok_emb and blocks.8.attn.c_k kept fp16, MLP int5, attention and bigram
int6. Tensor names are the same in both."""

from __future__ import annotations

import pytest

from .record_export import (
    assert_export_equal,
    block_shapes,
    from_mixed,
    random_state,
    record,
    record_prune,
    seed_quantize_config,
)

pytestmark = pytest.mark.shared

D, KV, HIDDEN, VOCAB = 320, 160, 960, 512


def shapes() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (VOCAB, D), "bigram.embed.weight": (1024, 128), "bigram.proj.weight": (D, 128),
        "bigram.scale": (), "smear.gate": (D,), "skip_weights": (1, D), "backout_lambda": (),
        # the record's keep-list names layer 8 (of its 10): present here beside layer 9's, not kept
        "blocks.8.attn.c_k.weight": (KV, D), "blocks.9.attn.c_k.weight": (KV, D),
    }
    return out | block_shapes(2, D, KV, HIDDEN)


def test_backout_export_matches_the_record(reference_dir):
    rec = record(reference_dir, "pr366")
    state = random_state(shapes())
    pruned = record_prune(state, 0.03)
    result, meta = rec.mixed_quantize_int6(pruned, {"mlp", "attn", "bigram"})
    pg, pg_deq = assert_export_equal(from_mixed(result, meta), rec.dequantize_mixed_int6(result, meta, pruned), state,
                                     seed_quantize_config("backout"))
    assert pg["tok_emb.weight"].kind == "fp16" and pg["blocks.8.attn.c_k.weight"].kind == "fp16"
    assert pg["blocks.9.attn.c_k.weight"].bits == 6 and pg["blocks.0.attn.c_k.weight"].bits == 6
    assert pg["bigram.proj.weight"].bits == 6 and pg["blocks.0.mlp.fc.weight"].bits == 5
    # pruning ran (3% of a large matrix zeroed before rounding) and the codes above still agreed
    assert (pruned["blocks.0.mlp.fc.weight"] == 0).float().mean().item() == pytest.approx(0.03, abs=1e-4)
    assert (pg_deq["blocks.0.mlp.fc.weight"] == 0).float().mean().item() >= 0.03
