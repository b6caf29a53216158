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

from pgolf.model import GPT
from pgolf.model.layers import CastedEmbedding, CastedLinear
from pgolf.model.rowquant import fake_quantize_rows

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
    sources,
)

FOLDER, PRESET, PARAMS = "pr1216", "banked-ve", 30_404_196
LAUNCH = {"NUM_LAYERS": "12", "MLP_QUANT_BITS": "4", "XSA_LAST_N": "4", "EMA_ENABLED": "1", "SWA_ENABLED": "0",
          "ROPE_DIMS": "16", "LN_SCALE": "1", "LATE_QAT_FRAC": "0.65", "VALUE_EMBED_LAYERS": "2",
          "VALUE_EMBED_DIM": "128", "SEED": "1"}
SMALL = ("num_layers=4", "model_dim=128", "num_heads=4", "num_kv_heads=2", "vocab_size=256", "bigram_buckets=64",
         "bigram_dim=64", "xsa_last_n=2", "value_embed_layers=[2,3]", "value_embed_dim=32")
BANKS = {"qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank"}
RENAME = {**dict.fromkeys(BANKS, "blocks"), "ve_shared": "value_embed", "ve_layer_scales": "value_embed"}


def record_module(reference_dir):
    return load_record(reference_dir, FOLDER, env=LAUNCH)


def make_name_map(num_layers: int):
    def name_map(name: str):
        parts = name.split(".")
        if parts[0] == "blocks" and parts[-1] == "weight" and parts[-2] in ("c_q", "proj", "c_k", "c_v", "fc"):
            i, n = int(parts[1]), num_layers
            return {("attn", "c_q"): ("qo_bank", i), ("attn", "proj"): ("qo_bank", n + i),
                    ("attn", "c_k"): ("kv_bank", i), ("attn", "c_v"): ("kv_bank", n + i),
                    ("mlp", "fc"): ("mlp_up_bank", i), ("mlp", "proj"): ("mlp_down_bank", i)}[(parts[2], parts[3])]
        if name == "value_embed.lambdas":
            return [("ve_layer_scales.0", None), ("ve_layer_scales.1", None)]
        return name.replace("value_embed.", "ve_shared."), None
    return name_map


def small_args(mod):
    args = mod.Hyperparameters()
    args.num_layers, args.model_dim, args.num_heads, args.num_kv_heads, args.vocab_size = 4, 128, 4, 2, 256
    args.bigram_vocab_size, args.bigram_dim, args.xsa_last_n, args.value_embed_dim = 64, 64, 2, 32
    return args


def record_gpt(mod, args):
    """GPT(...) as main() builds it (before its bf16 cast, which the tests do not do)."""
    return mod.GPT(vocab_size=args.vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
                   num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
                   tie_embeddings=args.tie_embeddings, tied_embed_init_std=args.tied_embed_init_std,
                   logit_softcap=args.logit_softcap, rope_base=args.rope_base, qk_gain_init=args.qk_gain_init,
                   bigram_vocab_size=args.bigram_vocab_size, bigram_dim=args.bigram_dim,
                   trigram_vocab_size=args.trigram_vocab_size, trigram_dim=args.trigram_dim, rope_dims=args.rope_dims,
                   ln_scale=args.ln_scale, xsa_last_n=args.xsa_last_n, value_embed_layers=args.value_embed_layers,
                   value_embed_dim=args.value_embed_dim)


def record_optimizers(mod, args, m):
    """main()'s "OPTIMIZER SETUP": the four banks -> (Parallel) Muon, weight_decay 0.04 hard-coded;
    block scalars, skip_weights, smear.gate, bigram.scale, the bigram and VE projections, VE scale and
    per-layer scales -> AdamW at scalar_lr; tok_emb, bigram and VE tables -> AdamW at tied_embed_lr;
    both AdamW with WEIGHT_DECAY."""
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    scalar = [p for n, p in m.blocks.named_parameters() if p.ndim < 2 or any(x in n for x in pats)]
    scalar += [m.skip_weights, m.smear.gate, m.bigram.scale, m.bigram.proj.weight, m.ve_shared.proj.weight,
               m.ve_shared.scale, *m.ve_layer_scales]
    tok = [{"params": [t], "lr": args.tied_embed_lr} for t in (m.tok_emb.weight, m.bigram.embed.weight,
                                                               m.ve_shared.embed.weight)]
    adam = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps, weight_decay=args.weight_decay)
    banks = [m.qo_bank, m.kv_bank, m.mlp_up_bank, m.mlp_down_bank]
    return [torch.optim.AdamW(tok, **adam),
            mod.Muon(banks, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps,
                     weight_decay=0.04),
            torch.optim.AdamW([{"params": scalar, "lr": args.scalar_lr}], **adam)]


def built_pair(reference_dir):
    mod = record_module(reference_dir)
    cfg = preset(PRESET, *SMALL)
    torch.manual_seed(0)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    perturb(rec)
    copy_weights(rec, model, make_name_map(4))
    return mod, cfg, rec, model


def test_model_logits_and_gradients_match_the_record(reference_dir):
    mod, cfg, rec, model = built_pair(reference_dir)
    assert_same_model(mod, rec, model, make_name_map(4), cfg.model.vocab_size)


def test_optimizer_groups_match_the_record(reference_dir):
    mod = record_module(reference_dir)
    cfg = preset(PRESET, *SMALL)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    names = record_names_of(rec, model, make_name_map(4))
    assert pgolf_optimizer_table(model, cfg) == optimizer_table(record_optimizers(mod, small_args(mod), rec), names)


def test_parameter_count_at_the_launch_shape(reference_dir):
    mod = record_module(reference_dir)
    with torch.device("meta"):
        rec = record_gpt(mod, mod.Hyperparameters())
    model = meta_gpt(preset(PRESET))
    assert counts_by_module(model) == counts_by_module(rec, RENAME)
    assert sum(p.numel() for p in model.parameters()) == PARAMS


def test_qat_targets_and_rounding_are_the_records(reference_dir):
    """main()'s _enable_qat: attention banks and the VE projection at int6 (clip 31), MLP banks,
    bigram table and projection at int4 (clip 7, MLP_QUANT_BITS=4), no tok_emb / VE table; unfloored
    scales. pgolf's QAT targets give the same bits, and its rounding equals the record's GPT._fq."""
    mod, cfg, rec, model = built_pair(reference_dir)
    args = mod.Hyperparameters()
    mlp_clip = (1 << (args.mlp_quant_bits - 1)) - 1
    attn_clip = (1 << (args.attn_quant_bits - 1)) - 1
    ngram_clip = mlp_clip if args.mlp_quant_bits <= 4 else 31
    clip_of = {"qo_bank": attn_clip, "kv_bank": attn_clip, "mlp_up_bank": mlp_clip, "mlp_down_bank": mlp_clip,
               "bigram.embed.weight": ngram_clip, "bigram.proj.weight": ngram_clip, "ve_shared.proj.weight": attn_clip}
    name_map = make_name_map(4)
    model.set_qat(cfg.qat_bits.as_mapping(), cfg.qat_scale_floor)
    ours = {n: mdl.qat_bits for n, mdl in model.named_modules()
            if isinstance(mdl, (CastedLinear, CastedEmbedding)) and mdl.qat_bits is not None}
    theirs = {}
    for n, _ in model.named_parameters():
        src = sources(name_map, n)[0][0]
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
    args = record_module(reference_dir).Hyperparameters()
    cfg = preset(PRESET)
    pairs = {"seq_len": "train_seq_len", "batch_tokens": "train_batch_tokens", "iterations": "iterations",
             "max_seconds": "max_wallclock_seconds", "warmup_steps": "warmup_steps", "warmdown_iters": "warmdown_iters",
             "tied_embed_lr": "tied_embed_lr", "matrix_lr": "matrix_lr", "scalar_lr": "scalar_lr",
             "muon_momentum": "muon_momentum", "muon_momentum_warmup_start": "muon_momentum_warmup_start",
             "muon_momentum_warmup_steps": "muon_momentum_warmup_steps", "adam_wd": "weight_decay",
             "grad_clip": "grad_clip_norm", "ema_decay": "ema_decay", "seed": "seed"}
    assert {k: getattr(cfg, k) for k in pairs} == {k: getattr(args, v) for k, v in pairs.items()}
    assert cfg.muon_wd == 0.04 and cfg.qat_start_frac == float(LAUNCH["LATE_QAT_FRAC"])
    assert args.ema_enabled and cfg.ema_start_step == 1 and cfg.ema_restart_at_qat  # EMA made after step 1, reset at QAT
