"""seeds/recurrence.toml's export equals PR #1406's own `mixed_quantize_int6(sd, {"mlp", "attn"},
hessians)`: full GPTQ int6 (+-31, floor 1/31, five clip quantiles, the one with the smallest weight
MSE kept) on the MLP and attention matrices over 65,536 elements; tok_emb and the bigram and VE
tables int8 on the clamped quantile (floor 1/127); smaller tensors fp16.

Damping: the record damps each Hessian by 0.005 * mean(diag H) when it collects it and again inside
`quantize_int6_gptq`; pgolf damps the raw Hessian once. Given the record's once-damped Hessian and
damp 0.005, pgolf reproduces the record bit for bit. The seed config's single damping of 0.010025 on
the raw Hessian is the same matrix up to float rounding: same storage and chosen clips (equal fp16
scales), codes equal but for at most 1 in 10,000 entries one step apart (an entry within an ulp of a
rounding boundary can fall on the other side)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from .record_export import (
    VE_TO_PGOLF,
    assert_export_equal,
    block_shapes,
    compare,
    from_mixed,
    pgolf_export,
    random_state,
    record,
    seed_quantize_config,
)

pytestmark = pytest.mark.shared

D, KV, HIDDEN, VOCAB = 320, 256, 384, 640


def shapes() -> dict[str, tuple[int, ...]]:
    return {
        "tok_emb.weight": (VOCAB, D), "bigram.embed.weight": (1536, 128), "bigram.proj.weight": (D, 128),
        "smear.gate": (D,), "ve_shared.embed.weight": (VOCAB, 128), "ve_shared.proj.weight": (KV, 128),
        "ve_shared.scale": (), **block_shapes(1, D, KV, HIDDEN),
    }


def raw_hessians(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """X^T X / n from correlated synthetic activations, for the matrices the record's GPTQ sees."""
    gen = torch.Generator().manual_seed(1)
    out = {}
    for name, t in state.items():
        if name.startswith("blocks.") and name.endswith(".weight"):
            cols = t.shape[1]
            x = torch.randn(512, cols, generator=gen) @ (torch.eye(cols) + 0.1 * torch.randn(cols, cols, generator=gen))
            out[name] = x.T @ x / 512
    return out


def record_collected(h: torch.Tensor) -> torch.Tensor:
    """The record's collect_hessians ends by adding 0.005 * mean(diag H) (at least 1e-6) to the diagonal."""
    return h + 0.005 * torch.diag(h).mean().clamp_min(1e-6) * torch.eye(h.shape[0])


def test_recurrence_export_matches_the_record(reference_dir):
    rec = record(reference_dir, "pr1406")
    state = random_state(shapes())
    raw = raw_hessians(state)
    collected = {n: record_collected(h) for n, h in raw.items()}
    result, meta = rec.mixed_quantize_int6(state, {"mlp", "attn"}, hessians=collected)
    rec_stored = from_mixed(result, meta)
    pg_state = {VE_TO_PGOLF(n): t for n, t in state.items()}
    cfg = seed_quantize_config("recurrence")
    assert cfg.gptq and cfg.gptq_damp == pytest.approx(0.010025) and cfg.gptq_select == "weight"

    # the record's second damping alone, on its collected Hessians: bit for bit
    pg, _ = assert_export_equal(rec_stored, rec.dequantize_mixed_int6(result, meta, state), state,
                                dataclasses.replace(cfg, gptq_damp=0.005), VE_TO_PGOLF, collected)
    assert {pg[n].bits for n in raw} == {6}
    assert pg["tok_emb.weight"].bits == 8 and pg["bigram.embed.weight"].bits == 8
    assert pg["value_embed.embed.weight"].bits == 8 and pg["bigram.proj.weight"].kind == "fp16"

    # the seed config as pgolf's stage runs it: one damping of the raw Hessian
    pg_raw, _ = pgolf_export(pg_state, cfg, raw)
    compare(rec_stored, pg_raw, VE_TO_PGOLF, near=1e-4)
