"""The `baseline` preset against the challenge baseline's own train_gpt.py (reference/baseline).

The record's attention is F.scaled_dot_product_attention already: nothing is patched but the
module-level imports refimport describes. Names are the same on both sides.
"""

from __future__ import annotations

import torch

from . import cases


def record_optimizers(mod, args, m):
    """main()'s split: block matrices -> Muon; block scalars/control tensors + skip_weights -> Adam at
    scalar_lr; tok_emb -> Adam at tied_embed_lr (train_gpt.py, "block_named_params")."""
    matrix, scalar = cases.block_split(mod, list(m.blocks.named_parameters()))
    scalar.append(m.skip_weights)
    adam = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps)
    return [torch.optim.Adam([{"params": [m.tok_emb.weight], "lr": args.tied_embed_lr}], **adam),
            mod.Muon(matrix, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps),
            torch.optim.Adam([{"params": scalar, "lr": args.scalar_lr}], **adam)]


CASE = cases.RecordCase(
    folder="baseline", preset="baseline", params=17_059_912,
    small=("num_layers=4", "model_dim=64", "num_heads=4", "num_kv_heads=2", "vocab_size=256"),
    small_args={"num_layers": 4, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2, "vocab_size": 256},
    record_gpt=cases.gpt_from_args(), record_optimizers=record_optimizers,
)


def test_model_logits_and_gradients_match_the_record(reference_dir):
    cases.check_logits_and_gradients(CASE, reference_dir)


def test_optimizer_groups_match_the_record(reference_dir):
    cases.check_optimizer_groups(CASE, reference_dir)


def test_parameter_count_at_the_launch_shape(reference_dir):
    cases.check_parameter_count(CASE, reference_dir)
