"""The `backout` preset against PR #366's own train_gpt.py (reference/pr366).

The record's attention is F.scaled_dot_product_attention already: nothing is patched but the
module-level imports refimport describes. Parameter names are the same on both sides. Its SmearGate
and BigramHash look across BOS; the preset sets bos_reset = false to match, and the batches here hold
BOS tokens inside rows so the two forms would differ.
"""

from __future__ import annotations

from . import cases
from .refimport import preset


def record_optimizers(mod, args, m):
    """main()'s split: PR #264's (cases.bigram_optimizers), backout_lambda -> AdamW at scalar_lr too."""
    return cases.bigram_optimizers(mod, args, m, m.backout_lambda)


CASE = cases.RecordCase(
    folder="pr366", preset="backout", params=25_517_138,
    small=("num_layers=4", "model_dim=128", "num_heads=4", "num_kv_heads=2", "vocab_size=256", "bigram_buckets=64",
           "bigram_dim=64", "backout_layer=2"),  # the record's backout layer is num_layers // 2
    small_args={"num_layers": 4, "model_dim": 128, "num_heads": 4, "num_kv_heads": 2, "vocab_size": 256,
                "bigram_vocab_size": 64, "bigram_dim": 64},
    record_gpt=cases.gpt_from_args("bigram_vocab_size", "bigram_dim", "backout_enabled", "backout_lambda_init",
                                   "backout_layer"),
    record_optimizers=record_optimizers,
)


def test_model_logits_and_gradients_match_the_record(reference_dir):
    cases.check_logits_and_gradients(CASE, reference_dir)


def test_the_bos_safe_default_differs_from_the_record_at_bos(reference_dir):
    cases.check_bos_safe_default_differs(CASE, reference_dir)


def test_optimizer_groups_match_the_record(reference_dir):
    cases.check_optimizer_groups(CASE, reference_dir)


def test_parameter_count_at_the_launch_shape(reference_dir):
    cases.check_parameter_count(CASE, reference_dir)


def test_training_switches_are_the_records(reference_dir):
    """EMA (decay, start step), SWA off, backout layer and init: the record's Hyperparameters. (Its EMA
    update lives inside main(); pgolf's ema_start_step semantics are tested in tests/unit.)"""
    args = cases.load(CASE, reference_dir).Hyperparameters()
    cfg = preset(CASE.preset)
    assert args.ema_enabled and not args.swa_enabled and cfg.swa_every == 0
    assert (cfg.ema_decay, cfg.ema_start_step) == (args.ema_decay, args.ema_start_step)
    assert args.backout_enabled and args.backout_layer == -1  # -1 = num_layers // 2
    assert cfg.model.backout and cfg.model.backout_layer == args.num_layers // 2
    assert cfg.model.backout_init == args.backout_lambda_init
