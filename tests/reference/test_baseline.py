"""The `baseline` preset against the challenge baseline's own train_gpt.py (reference/baseline).

The record's attention is F.scaled_dot_product_attention already: nothing is patched but the
module-level imports refimport describes. Names are the same on both sides.
"""

from __future__ import annotations

import torch

from pgolf.model import GPT

from .refimport import (
    assert_same_model,
    copy_weights,
    counts_by_module,
    load_record,
    meta_gpt,
    optimizer_table,
    perturb,
    pgolf_optimizer_table,
    preset,
    record_names_of,
)

SMALL = ("num_layers=4", "model_dim=64", "num_heads=4", "num_kv_heads=2", "vocab_size=256")


def same_name(name: str) -> tuple[str, None]:
    return name, None


def record_gpt(mod, args):
    """GPT(...) as main() builds it (before its bf16 cast, which the tests do not do)."""
    return mod.GPT(vocab_size=args.vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
                   num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
                   tie_embeddings=args.tie_embeddings, tied_embed_init_std=args.tied_embed_init_std,
                   logit_softcap=args.logit_softcap, rope_base=args.rope_base, qk_gain_init=args.qk_gain_init)


def small_args(mod):
    args = mod.Hyperparameters()
    args.num_layers, args.model_dim, args.num_heads, args.num_kv_heads, args.vocab_size = 4, 64, 4, 2, 256
    return args


def record_optimizers(mod, args, m):
    """main()'s split: block matrices -> Muon; block scalars/control tensors + skip_weights -> Adam at
    scalar_lr; tok_emb -> Adam at tied_embed_lr (train_gpt.py, "block_named_params")."""
    named = list(m.blocks.named_parameters())
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    matrix = [p for n, p in named if p.ndim == 2 and not any(x in n for x in pats)]
    scalar = [p for n, p in named if p.ndim < 2 or any(x in n for x in pats)]
    scalar.append(m.skip_weights)
    adam = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps)
    return [torch.optim.Adam([{"params": [m.tok_emb.weight], "lr": args.tied_embed_lr}], **adam),
            mod.Muon(matrix, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps),
            torch.optim.Adam([{"params": scalar, "lr": args.scalar_lr}], **adam)]


def test_model_logits_and_gradients_match_the_record(reference_dir):
    mod = load_record(reference_dir, "baseline")
    cfg = preset("baseline", *SMALL)
    torch.manual_seed(0)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    perturb(rec)
    copy_weights(rec, model, same_name)
    assert_same_model(mod, rec, model, same_name, cfg.model.vocab_size)


def test_optimizer_groups_match_the_record(reference_dir):
    mod = load_record(reference_dir, "baseline")
    cfg = preset("baseline", *SMALL)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    expected = optimizer_table(record_optimizers(mod, small_args(mod), rec), record_names_of(rec, model, same_name))
    assert pgolf_optimizer_table(model, cfg) == expected


def test_parameter_count_at_the_launch_shape(reference_dir):
    mod = load_record(reference_dir, "baseline")
    with torch.device("meta"):
        rec = record_gpt(mod, mod.Hyperparameters())
    model = meta_gpt(preset("baseline"))
    assert counts_by_module(model) == counts_by_module(rec)
    assert sum(p.numel() for p in model.parameters()) == 17_059_912
