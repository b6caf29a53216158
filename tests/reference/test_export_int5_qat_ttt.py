"""seeds/int5-qat-ttt.toml's export equals PR #861's: its 15% magnitude pruning (every |w| below the
15% quantile of each 2-D tensor over 65,536 elements), then its own `quantize_state_dict_int6`:
every float tensor over 65,536 elements int5 (+-15) on the clamped 0.9999984 quantile with a 1/15
floor, tok_emb and the bigram and VE tables included; smaller tensors fp16, its control ones fp32."""

from __future__ import annotations

import pytest

from .record_export import (
    assert_export_equal,
    block_shapes,
    from_int_obj,
    random_state,
    record,
    record_prune,
    renamer,
    seed_quantize_config,
)

pytestmark = pytest.mark.shared

D, HIDDEN, VOCAB = 320, 960, 768  # its launch runs 8 KV heads: c_k and c_v are D x D


def shapes() -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (VOCAB, D), "bigram_emb.embed.weight": (4096, 128), "bigram_emb.proj.weight": (D, 128),
        "smear_gate.gate": (D,), "skip_weights": (1, D), "skip_gates": (1, D),
        "ve_shared.embed.weight": (VOCAB, 128), "ve_shared.proj.weight": (D, 128), "ve_shared.scale": (),
    }
    return out | block_shapes(2, D, D, HIDDEN, heads=8, up="mlp.up_proj", down="mlp.down_proj",
                              extra={"mlp.scale": (HIDDEN,), "mlp.bias": (HIDDEN,)})


to_pgolf = renamer({"bigram_emb.": "bigram.", "smear_gate.": "smear.", "ve_shared.": "value_embed.",
                    "mlp.up_proj.": "mlp.fc.", "mlp.down_proj.": "mlp.proj."})


def test_int5_qat_ttt_export_matches_the_record(reference_dir):
    rec = record(reference_dir, "pr861")
    state = random_state(shapes())
    pruned = record_prune(state, 0.15)
    obj, _ = rec.quantize_state_dict_int6(pruned)
    pg, _ = assert_export_equal(from_int_obj(obj, bits=5), rec.dequantize_state_dict_int6(obj), state,
                                seed_quantize_config("int5-qat-ttt"), to_pgolf)
    ints = {n for n, s in pg.items() if s.kind == "int"}
    assert {"tok_emb.weight", "bigram.embed.weight", "value_embed.embed.weight", "blocks.1.mlp.fc.weight"} <= ints
    assert {pg[n].bits for n in ints} == {5}
    assert pg["blocks.0.mlp.scale"].kind == "fp16" and pg["skip_gates"].kind == "fp32"
