"""seeds/baseline.toml's export equals the challenge baseline's own `quantize_state_dict_int8`:
same storage per tensor, same int8 codes and fp16 scales, same dequantized weights (names are the
same in both: pgolf's baseline model is the record's)."""

from __future__ import annotations

import pytest

from .record_export import (
    assert_dequantized_equal,
    compare,
    from_int_obj,
    pgolf_export,
    random_state,
    record,
    seed_quantize_config,
)

pytestmark = pytest.mark.shared

D, KV, HIDDEN, VOCAB = 320, 160, 640, 512  # every branch: matrices over and under 65,536 elements


def shapes(num_layers: int = 2) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {"tok_emb.weight": (VOCAB, D), "skip_weights": (1, D)}
    for i in range(num_layers):
        b = f"blocks.{i}."
        out |= {b + "attn.c_q.weight": (D, D), b + "attn.c_k.weight": (KV, D), b + "attn.c_v.weight": (KV, D),
                b + "attn.proj.weight": (D, D), b + "attn.q_gain": (4,), b + "attn_scale": (D,), b + "mlp_scale": (D,),
                b + "resid_mix": (2, D), b + "mlp.fc.weight": (HIDDEN, D), b + "mlp.proj.weight": (D, HIDDEN)}
    return out


def test_baseline_export_matches_the_record(reference_dir):
    rec = record(reference_dir, "baseline")
    state = random_state(shapes())
    obj, _ = rec.quantize_state_dict_int8(state)
    pg, pg_deq = pgolf_export(state, seed_quantize_config("baseline"))
    compare(from_int_obj(obj, bits=8), pg)
    assert_dequantized_equal(rec.dequantize_state_dict_int8(obj), pg_deq)
    # The branches really ran: int8 matrices, fp16 small ones, fp32 control tensors.
    kinds = {s.kind for s in pg.values()}
    assert kinds == {"int", "fp16", "fp32"}
