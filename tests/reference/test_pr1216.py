"""The `banked-ve` preset against PR #1216's own train_gpt.py (reference/pr1216).

Its launch script is not in the submission folder; the variables below are the configuration its
README and submission.json describe (12 layers, int4 MLP QAT, XSA on the last 4, partial RoPE 16,
LN scale, EMA with a QAT reset, QAT at 65% of the wall clock, VE128 on the last 2 layers, seed 1);
the parameter count they give, 30,404,196, is the one the issue states for the record.

The record's attention is F.scaled_dot_product_attention already: nothing is patched but the
module-level imports refimport describes. Its block matrices live in four banks (qo_bank: Q then
out-projections, kv_bank: K then V, mlp_up_bank, mlp_down_bank); pgolf keeps per-layer matrices,
and the name map slices the banks. ve_shared / ve_layer_scales are pgolf's value_embed.
"""

from __future__ import annotations

import torch

from pgolf.model.layers import CastedEmbedding, CastedLinear
from pgolf.model.rowquant import fake_quantize_rows

from . import cases
from .refimport import preset, sources

LAUNCH = {"NUM_LAYERS": "12", "MLP_QUANT_BITS": "4", "XSA_LAST_N": "4", "EMA_ENABLED": "1", "SWA_ENABLED": "0",
          "ROPE_DIMS": "16", "LN_SCALE": "1", "LATE_QAT_FRAC": "0.65", "VALUE_EMBED_LAYERS": "2",
          "VALUE_EMBED_DIM": "128", "SEED": "1"}


def record_optimizers(mod, args, m):
    """main()'s "OPTIMIZER SETUP" (cases.banked_ve_optimizers): Muon's weight_decay 0.04 hard-coded,
    both AdamW with WEIGHT_DECAY."""
    return cases.banked_ve_optimizers(mod, args, m, adam_wd=args.weight_decay, muon_wd=0.04)


CASE = cases.RecordCase(
    folder="pr1216", preset="banked-ve", params=30_404_196,
    small=("num_layers=4", "model_dim=128", "num_heads=4", "num_kv_heads=2", "vocab_size=256", "bigram_buckets=64",
           "bigram_dim=64", "xsa_last_n=2", "value_embed_layers=[2,3]", "value_embed_dim=32"),
    small_args={"num_layers": 4, "model_dim": 128, "num_heads": 4, "num_kv_heads": 2, "vocab_size": 256,
                "bigram_vocab_size": 64, "bigram_dim": 64, "xsa_last_n": 2, "value_embed_dim": 32},
    record_gpt=cases.gpt_from_args("bigram_vocab_size", "bigram_dim", "trigram_vocab_size", "trigram_dim",
                                   "rope_dims", "ln_scale", "xsa_last_n", "value_embed_layers", "value_embed_dim"),
    record_optimizers=record_optimizers, name_map=cases.banked_ve_name_map(4),
    rename={**cases.BANK_RENAME, **cases.VE_RENAME}, launch_env=lambda _folder: LAUNCH,
)


def test_model_logits_and_gradients_match_the_record(reference_dir):
    cases.check_logits_and_gradients(CASE, reference_dir)


def test_optimizer_groups_match_the_record(reference_dir):
    cases.check_optimizer_groups(CASE, reference_dir)


def test_parameter_count_at_the_launch_shape(reference_dir):
    cases.check_parameter_count(CASE, reference_dir)


def test_qat_targets_and_rounding_are_the_records(reference_dir):
    """main()'s _enable_qat: attention banks and the VE projection at int6 (clip 31), MLP banks,
    bigram table and projection at int4 (clip 7, MLP_QUANT_BITS=4), no tok_emb / VE table; unfloored
    scales. pgolf's QAT targets give the same bits, and its rounding equals the record's GPT._fq."""
    mod, cfg, rec, model = cases.built_pair(CASE, reference_dir)
    args = mod.Hyperparameters()
    mlp_clip = (1 << (args.mlp_quant_bits - 1)) - 1
    attn_clip = (1 << (args.attn_quant_bits - 1)) - 1
    ngram_clip = mlp_clip if args.mlp_quant_bits <= 4 else 31
    clip_of = {"qo_bank": attn_clip, "kv_bank": attn_clip, "mlp_up_bank": mlp_clip, "mlp_down_bank": mlp_clip,
               "bigram.embed.weight": ngram_clip, "bigram.proj.weight": ngram_clip, "ve_shared.proj.weight": attn_clip}
    model.set_qat(cfg.qat_bits.as_mapping(), cfg.qat_scale_floor)
    ours = {n: mdl.qat_bits for n, mdl in model.named_modules()
            if isinstance(mdl, (CastedLinear, CastedEmbedding)) and mdl.qat_bits is not None}
    theirs = {}
    for n, _ in model.named_parameters():
        src = sources(CASE.name_map, n)[0][0]
        if src in clip_of:
            theirs[n.removesuffix(".weight")] = (clip_of[src] + 1).bit_length()  # clip 2^(b-1) - 1 -> b bits
    assert ours == theirs
    assert cfg.qat_scale_floor == 0
    rec.train()
    for bits, clip in ((4, mlp_clip), (6, attn_clip)):
        g = torch.Generator().manual_seed(bits)
        codes = torch.randint(-clip + 1, clip, (3, 16), generator=g).float()  # |w| below the row max
        w = (codes + (torch.rand(3, 16, generator=g) - 0.5) * 0.6) * 2.0 ** -5  # scale 2^-5: exact in fp16
        w[:, 0] = clip * 2.0 ** -5  # the row max sets the scale
        torch.testing.assert_close(fake_quantize_rows(w, bits), rec._fq(w, clip), atol=0, rtol=0)


def test_training_hyperparameters_are_the_launchs(reference_dir):
    args = cases.load(CASE, reference_dir).Hyperparameters()
    cfg = preset(CASE.preset)
    cases.assert_launch_pairs(cfg, args, {**cases.LAUNCH_PAIRS, **cases.WALLCLOCK_PAIRS, "adam_wd": "weight_decay",
                                          "ema_decay": "ema_decay"})
    assert cfg.muon_wd == 0.04 and cfg.qat_start_frac == float(LAUNCH["LATE_QAT_FRAC"])
    assert args.ema_enabled and cfg.ema_start_step == 1 and cfg.ema_restart_at_qat  # EMA made after step 1, reset at QAT
