"""The `backout` preset against PR #366's own train_gpt.py (reference/pr366).

The record's attention is F.scaled_dot_product_attention already: nothing is patched but the
module-level imports refimport describes. Parameter names are the same on both sides. Its SmearGate
and BigramHash look across BOS; the preset sets bos_reset = false to match, and the batches here hold
BOS tokens inside rows so the two forms would differ.
"""

from __future__ import annotations

import torch

from pgolf.model import GPT

from .refimport import (
    assert_same_model,
    batch_with_bos,
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

FOLDER, PRESET, PARAMS = "pr366", "backout", 25_517_138
SMALL = ("num_layers=4", "model_dim=128", "num_heads=4", "num_kv_heads=2", "vocab_size=256", "bigram_buckets=64",
         "bigram_dim=64", "backout_layer=2")  # the record's backout layer is num_layers // 2


def same_name(name: str) -> tuple[str, None]:
    return name, None


def small_args(mod):
    args = mod.Hyperparameters()
    args.num_layers, args.model_dim, args.num_heads, args.num_kv_heads, args.vocab_size = 4, 128, 4, 2, 256
    args.bigram_vocab_size, args.bigram_dim = 64, 64
    return args


def record_gpt(mod, args):
    """GPT(...) as main() builds it (before its bf16 cast, which the tests do not do)."""
    return mod.GPT(vocab_size=args.vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
                   num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
                   tie_embeddings=args.tie_embeddings, tied_embed_init_std=args.tied_embed_init_std,
                   logit_softcap=args.logit_softcap, rope_base=args.rope_base, qk_gain_init=args.qk_gain_init,
                   bigram_vocab_size=args.bigram_vocab_size, bigram_dim=args.bigram_dim,
                   backout_enabled=args.backout_enabled, backout_lambda_init=args.backout_lambda_init,
                   backout_layer=args.backout_layer)


def record_optimizers(mod, args, m):
    """main()'s split: block matrices + bigram.proj -> Muon (weight_decay 0.04, hard-coded); block
    scalars, skip_weights, smear.gate, bigram.scale, backout_lambda -> AdamW at scalar_lr; tok_emb and
    bigram.embed -> AdamW at tied_embed_lr; both AdamW with WEIGHT_DECAY."""
    named = list(m.blocks.named_parameters())
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    matrix = [p for n, p in named if p.ndim == 2 and not any(x in n for x in pats)] + [m.bigram.proj.weight]
    scalar = [p for n, p in named if p.ndim < 2 or any(x in n for x in pats)]
    scalar += [m.skip_weights, m.smear.gate, m.bigram.scale, m.backout_lambda]
    adam = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps, weight_decay=args.weight_decay)
    tok = [{"params": [m.tok_emb.weight], "lr": args.tied_embed_lr},
           {"params": [m.bigram.embed.weight], "lr": args.tied_embed_lr}]
    return [torch.optim.AdamW(tok, **adam),
            mod.Muon(matrix, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps,
                     weight_decay=0.04),
            torch.optim.AdamW([{"params": scalar, "lr": args.scalar_lr}], **adam)]


def built_pair(reference_dir, *extra: str):
    mod = load_record(reference_dir, FOLDER)
    cfg = preset(PRESET, *SMALL, *extra)
    torch.manual_seed(0)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    perturb(rec)
    copy_weights(rec, model, same_name)
    return mod, cfg, rec, model


def test_model_logits_and_gradients_match_the_record(reference_dir):
    mod, cfg, rec, model = built_pair(reference_dir)
    assert_same_model(mod, rec, model, same_name, cfg.model.vocab_size)


def test_the_bos_safe_default_differs_from_the_record_at_bos(reference_dir):
    """Why the preset sets bos_reset = false: pgolf's default form changes positions from the first
    in-row BOS on, and nothing before it."""
    mod, cfg, rec, model = built_pair(reference_dir, "bos_reset=true")
    x, _ = batch_with_bos(cfg.model.vocab_size, 3, 24)
    with torch.no_grad():
        ref = rec.forward_logits(x)
        ours = model(x)
    first = 24 // 3  # batch_with_bos puts a BOS at this position of every row
    torch.testing.assert_close(ours[1:, :first], ref[1:, :first], atol=2e-5, rtol=1e-5)
    assert (ours[:, first] - ref[:, first]).abs().max() > 1e-3


def test_optimizer_groups_match_the_record(reference_dir):
    mod = load_record(reference_dir, FOLDER)
    cfg = preset(PRESET, *SMALL)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    expected = optimizer_table(record_optimizers(mod, small_args(mod), rec), record_names_of(rec, model, same_name))
    assert pgolf_optimizer_table(model, cfg) == expected


def test_parameter_count_at_the_launch_shape(reference_dir):
    mod = load_record(reference_dir, FOLDER)
    with torch.device("meta"):
        rec = record_gpt(mod, mod.Hyperparameters())
    model = meta_gpt(preset(PRESET))
    assert counts_by_module(model) == counts_by_module(rec)
    assert sum(p.numel() for p in model.parameters()) == PARAMS


def test_training_switches_are_the_records(reference_dir):
    """EMA (decay, start step), SWA off, backout layer and init: the record's Hyperparameters. (Its EMA
    update lives inside main(); pgolf's ema_start_step semantics are tested in tests/unit.)"""
    args = load_record(reference_dir, FOLDER).Hyperparameters()
    cfg = preset(PRESET)
    assert args.ema_enabled and not args.swa_enabled and cfg.swa_every == 0
    assert (cfg.ema_decay, cfg.ema_start_step) == (args.ema_decay, args.ema_start_step)
    assert args.backout_enabled and args.backout_layer == -1  # -1 = num_layers // 2
    assert cfg.model.backout and cfg.model.backout_layer == args.num_layers // 2
    assert cfg.model.backout_init == args.backout_lambda_init
