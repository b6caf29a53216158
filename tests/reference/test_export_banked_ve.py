"""seeds/banked-ve.toml's export equals PR #1216's: its 3% magnitude pruning, then its own
`mixed_quantize_int6(sd, {"mlp", "attn", "bigram"}, mlp_clip=7, attn_clip=31)` (MLP_QUANT_BITS=4) with
main()'s keep-list (tok_emb and the last layer's c_k): MLP and bigram int4, attention and the VE
projection int6, by GPTQ-lite's five-quantile search, the VE table int8 on the clamped quantile.

Its grid is [-(qmax+1), qmax]: a row clipped below its largest negative weight stores -8 (int4) or
-32 (int6), and that level enters the search's error; the seed's `grid = "full"` widths do the same.
With pgolf's symmetric grid instead, those rows and the chosen quantiles differ (checked below)."""

from __future__ import annotations

import pytest

from .record_export import (
    VE_TO_PGOLF,
    assert_export_equal,
    block_shapes,
    compare,
    from_mixed,
    pgolf_export,
    random_state,
    record,
    record_prune,
    seed_quantize_config,
    seed_tables,
)

pytestmark = pytest.mark.shared

D, KV, HIDDEN, VOCAB, LAYERS = 320, 256, 960, 512, 3  # every bank slice over 65,536 elements, as at full size


def shapes() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (VOCAB, D), "bigram.embed.weight": (1024, 128), "bigram.proj.weight": (D, 128),
        "bigram.scale": (), "smear.gate": (D,), "skip_weights": (1, D),
        "ve_shared.embed.weight": (VOCAB, 128), "ve_shared.proj.weight": (KV, 128), "ve_shared.scale": (),
    }
    return out | block_shapes(LAYERS, D, KV, HIDDEN)


def test_banked_ve_export_matches_the_record(reference_dir, monkeypatch):
    rec = record(reference_dir, "pr1216")
    # main() sets the keep-list to tok_emb and the last layer's c_k before exporting
    monkeypatch.setattr(rec, "FP16_KEEP_NAME_PATTERNS", ("tok_emb", f"blocks.{LAYERS - 1}.attn.c_k"))
    state = random_state(shapes())
    pruned = record_prune(state, 0.03)
    result, meta = rec.mixed_quantize_int6(pruned, {"mlp", "attn", "bigram"}, mlp_clip=7, attn_clip=31)
    pg, _ = assert_export_equal(from_mixed(result, meta), rec.dequantize_mixed_int6(result, meta, pruned), state,
                                seed_quantize_config("banked-ve"), VE_TO_PGOLF)
    low = [n for n, r in from_mixed(result, meta).items() if r.codes is not None and bool((r.codes == -(2 ** ((r.bits or 8) - 1))).any())]
    assert low  # the full grid's extra level was really used
    # pgolf's own symmetric grid: storage and widths the same, the full-grid tensors not
    sym = seed_quantize_config("banked-ve", widths=[w for w in seed_tables("banked-ve")["quantize"]["widths"] if w["bits"] == 8])
    pg_sym, _ = pgolf_export({VE_TO_PGOLF(n): t for n, t in state.items()}, sym)
    assert compare(from_mixed(result, meta), pg_sym, VE_TO_PGOLF, low_code=True) == set(low)
    assert pg["tok_emb.weight"].kind == "fp16" and pg[f"blocks.{LAYERS - 1}.attn.c_k.weight"].kind == "fp16"
    assert pg["blocks.0.attn.c_k.weight"].bits == 6 and pg["value_embed.proj.weight"].bits == 6
    assert pg["blocks.0.mlp.fc.weight"].bits == 4 and pg["bigram.embed.weight"].bits == 4
    assert pg["value_embed.embed.weight"].bits == 8
