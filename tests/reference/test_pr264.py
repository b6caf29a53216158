"""The `int5mlp-ttt` preset against PR #264's own train_gpt.py (reference/pr264).

The record's attention is F.scaled_dot_product_attention already: nothing is patched but the
module-level imports refimport describes. Parameter names are the same on both sides. Its SmearGate
and BigramHash look across BOS; the preset sets bos_reset = false to match, and the batches here hold
BOS tokens inside rows so the two forms would differ.
"""

from __future__ import annotations

from . import cases

CASE = cases.RecordCase(
    folder="pr264", preset="int5mlp-ttt", params=26_666_073,
    small=("num_layers=4", "model_dim=128", "num_heads=4", "num_kv_heads=2", "vocab_size=256", "bigram_buckets=64",
           "bigram_dim=64"),
    small_args={"num_layers": 4, "model_dim": 128, "num_heads": 4, "num_kv_heads": 2, "vocab_size": 256,
                "bigram_vocab_size": 64, "bigram_dim": 64},
    record_gpt=cases.gpt_from_args("bigram_vocab_size", "bigram_dim"),
    record_optimizers=cases.bigram_optimizers,  # main()'s split, as PR #366's without its backout_lambda
)


def test_model_logits_and_gradients_match_the_record(reference_dir):
    cases.check_logits_and_gradients(CASE, reference_dir)


def test_the_bos_safe_default_differs_from_the_record_at_bos(reference_dir):
    cases.check_bos_safe_default_differs(CASE, reference_dir)


def test_optimizer_groups_match_the_record(reference_dir):
    cases.check_optimizer_groups(CASE, reference_dir)


def test_parameter_count_at_the_launch_shape(reference_dir):
    cases.check_parameter_count(CASE, reference_dir)
