"""The `recurrence` preset against PR #1406's own train_gpt.py (reference/pr1406), imported with the
variables of the run command in its README set (what its launch ran).

The record calls FlashAttention 3 when `flash_attn_interface` imports; refimport puts an empty stub
module in its place, so the record takes its own F.scaled_dot_product_attention fallback (the same
causal GQA attention) on the CPU. Its block matrices live in four banks (qo_bank: Q then
out-projections, kv_bank: K then V, mlp_up_bank, mlp_down_bank); pgolf keeps per-layer matrices, and
the name map slices the banks. ve_shared / ve_layer_scales are pgolf's value_embed. Its depth
recurrence reruns blocks 4, 5 after the whole 11-block U-Net: pgolf's recur_placement = "after".
"""

from __future__ import annotations

import torch

from pgolf.model.layers import rotary_tables

from . import cases
from .refimport import preset, readme_env


def record_optimizers(mod, args, m):
    """main()'s "Optimizer split" (cases.banked_ve_optimizers): Muon with MUON_WD, both AdamW with ADAM_WD."""
    return cases.banked_ve_optimizers(mod, args, m, adam_wd=args.adam_wd, muon_wd=args.muon_wd)


def recurrence_on(cfg, _record, model):
    assert cfg.recur_start_frac == 0.0  # on from the first step, as the record's is always
    model.set_recurrence(True)


CASE = cases.RecordCase(
    folder="pr1406", preset="recurrence", params=26_928_220,
    small=("num_layers=6", "model_dim=128", "num_heads=4", "num_kv_heads=2", "vocab_size=256", "bigram_buckets=64",
           "bigram_dim=64", "xsa_last_n=2", "value_embed_layers=[4,5]", "value_embed_dim=32"),
    small_args={"num_layers": 6, "model_dim": 128, "num_heads": 4, "num_kv_heads": 2, "vocab_size": 256,
                "bigram_vocab_size": 64, "bigram_dim": 64, "xsa_last_n": 2, "ve_dim": 32, "ve_layers": "4,5"},
    record_gpt=cases.gpt_from_args("mtp_num_heads", "mtp_loss_weight", "bigram_vocab_size", "bigram_dim",
                                   "xsa_last_n", "rope_dims", "ln_scale", "dtg=dtg_enabled", "ve_enabled", "ve_dim",
                                   "ve_layers", "gated_attention", "value_residual", "recur_enabled",
                                   "recur_layers"),
    record_optimizers=record_optimizers, name_map=cases.banked_ve_name_map(6),
    rename={**cases.BANK_RENAME, **cases.VE_RENAME},
    launch_env=lambda folder: readme_env(folder / "README.md", "## Run Command"),
    prepare=recurrence_on,
)


def test_model_logits_and_gradients_match_the_record(reference_dir):
    cases.check_logits_and_gradients(CASE, reference_dir)


def test_optimizer_groups_match_the_record(reference_dir):
    cases.check_optimizer_groups(CASE, reference_dir)


def test_parameter_count_at_the_launch_shape(reference_dir):
    cases.check_parameter_count(CASE, reference_dir)


def test_recurrence_order_and_skip_pairing_are_the_records():
    """The record runs 0..10 as its U-Net (5 skips), then blocks 4, 5 again; in place would pair 13
    virtual layers (6 skips, +512 parameters)."""
    m = preset(CASE.preset).model
    assert m.layer_order(True) == (*range(11), 4, 5) and m.num_skips == 5


def test_ntk_rope_tables_are_the_records(reference_dir):
    """Its Rotary (train_seq_len 1024, 16 of 64 dims) rescales the base for longer sequences: the
    training length 2048 always does. pgolf's rope_ref_len gives the same tables."""
    mod = cases.load(CASE, reference_dir)
    cfg = preset(CASE.preset)
    rot = mod.Rotary(cfg.model.head_dim, base=cfg.model.rope_base, train_seq_len=1024, rope_dims=cfg.model.rope_dims)
    for seq in (1000, cfg.seq_len):
        cos, sin = rot(seq, torch.device("cpu"), torch.float32)
        ours_cos, ours_sin = rotary_tables(cfg.model, seq, torch.device("cpu"))
        torch.testing.assert_close(ours_cos, cos.reshape(seq, -1), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(ours_sin, sin.reshape(seq, -1), atol=1e-6, rtol=1e-6)


def test_qat_targets_and_floor_are_the_records(reference_dir):
    """Late QAT reaches only the record's CastedLinear modules, the bigram and VE projections (its
    banked block matrices are never fake-quantized): int6, scales floored at 1/31."""
    cases.check_casted_linear_qat(CASE, reference_dir, bits=6)


def test_training_hyperparameters_are_the_launchs(reference_dir):
    args = cases.load(CASE, reference_dir).Hyperparameters()
    cfg = preset(CASE.preset)
    cases.assert_launch_pairs(cfg, args, {**cases.LAUNCH_PAIRS, **cases.WALLCLOCK_PAIRS, "muon_wd": "muon_wd",
                                          "adam_wd": "adam_wd", "qat_start_lr_mult": "late_qat_threshold"})
    assert cfg.ema_decay == 0.997 and cfg.ema_start_step == 0  # main(): ema_decay = 0.997, from the initial weights
    assert list(cfg.model.recur_layers) == args.recur_layers and cfg.model.recur_placement == "after"
