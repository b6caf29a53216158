"""seeds/baseline.toml's export equals the challenge baseline's own `quantize_state_dict_int8`:
same storage per tensor, same int8 codes and fp16 scales, same dequantized weights (names are the
same in both: pgolf's baseline model is the record's)."""

from __future__ import annotations

import pytest

from .record_export import (
    assert_export_equal,
    block_shapes,
    from_int_obj,
    random_state,
    record,
    seed_quantize_config,
)

pytestmark = pytest.mark.shared

D, KV, HIDDEN, VOCAB = 320, 160, 640, 512  # every branch: matrices over and under 65,536 elements


def shapes(num_layers: int = 2) -> dict[str, tuple[int, ...]]:
    return {"tok_emb.weight": (VOCAB, D), "skip_weights": (1, D), **block_shapes(num_layers, D, KV, HIDDEN)}


def test_baseline_export_matches_the_record(reference_dir):
    rec = record(reference_dir, "baseline")
    state = random_state(shapes())
    obj, _ = rec.quantize_state_dict_int8(state)
    pg, _ = assert_export_equal(from_int_obj(obj, bits=8), rec.dequantize_state_dict_int8(obj), state,
                                seed_quantize_config("baseline"))
    # The branches really ran: int8 matrices, fp16 small ones, fp32 control tensors.
    kinds = {s.kind for s in pg.values()}
    assert kinds == {"int", "fp16", "fp32"}
