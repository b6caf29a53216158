"""The `int5-qat-ttt` preset against PR #861's own train_gpt.py (reference/pr861), imported with the
variables of its run_training.sh set (what its launch ran).

The record's attention is F.scaled_dot_product_attention already: nothing is patched but the
module-level imports refimport describes. Names differ: the record's bigram_emb, smear_gate,
mlp.up_proj / down_proj, ve_shared and per-layer ve_layer_scales are pgolf's bigram, smear, mlp.fc /
proj, value_embed and value_embed.lambdas.
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
    launch_env,
    load_record,
    meta_gpt,
    optimizer_table,
    perturb,
    pgolf_optimizer_table,
    preset,
    record_names_of,
    sources,
)

FOLDER, PRESET, PARAMS = "pr861", "int5-qat-ttt", 30_208_603
SMALL = ("num_layers=4", "model_dim=128", "num_heads=4", "num_kv_heads=4", "mlp_hidden=256", "vocab_size=256",
         "bigram_buckets=64", "bigram_dim=64", "xsa_last_n=2", "value_embed_layers=[2,3]", "value_embed_dim=64")
RENAME = {"bigram_emb": "bigram", "smear_gate": "smear", "ve_shared": "value_embed", "ve_layer_scales": "value_embed"}


def record_module(reference_dir):
    return load_record(reference_dir, FOLDER, env=launch_env(reference_dir / FOLDER / "run_training.sh"))


def name_map(name: str):
    """pgolf name -> the record's."""
    if name == "value_embed.lambdas":
        return [("ve_layer_scales.0", None), ("ve_layer_scales.1", None)]
    for ours, theirs in (("bigram.", "bigram_emb."), ("smear.", "smear_gate."), ("value_embed.", "ve_shared."),
                         (".mlp.fc.", ".mlp.up_proj."), (".mlp.proj.", ".mlp.down_proj.")):
        name = name.replace(ours, theirs)
    return name, None


def small_args(mod):
    args = mod.Hyperparameters()
    args.num_layers, args.model_dim, args.num_heads, args.num_kv_heads, args.vocab_size = 4, 128, 4, 4, 256
    args.mlp_hidden, args.bigram_buckets, args.bigram_embed_dim, args.xsa_layers, args.ve_layers = 256, 64, 64, 2, "2,3"
    args.ve_dim = 64
    return args


def record_gpt(mod, args):
    """GPT(...) as main() builds it (before its bf16 cast, which the tests do not do)."""
    return mod.GPT(vocab_size=args.vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
                   num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
                   tie_embeddings=args.tie_embeddings, tied_embed_init_std=args.tied_embed_init_std,
                   logit_softcap=args.logit_softcap, rope_base=args.rope_base, qk_gain_init=args.qk_gain_init,
                   mlp_hidden=args.mlp_hidden, bigram_buckets=args.bigram_buckets,
                   bigram_embed_dim=args.bigram_embed_dim, rope_dims=args.rope_dims, ln_scale=args.ln_scale,
                   xsa_last_n=args.xsa_layers, ve_enabled=args.ve_enabled, ve_dim=args.ve_dim,
                   ve_layers=args.ve_layers)


def record_optimizers(mod, args, m):
    """main()'s "Differential LR setup": block matrices -> Muon, encoder blocks at matrix_lr, decoder
    blocks (i >= num_layers // 2) at matrix_lr * decoder_lr_mult; block scalars -> AdamW likewise at
    scalar_lr; smear gate, bigram table, skip weights and gates, the whole value embedding -> AdamW at
    scalar_lr; tok_emb -> AdamW at tied_embed_lr; bigram proj -> its own Muon at matrix_lr."""
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    mat = {False: [], True: []}
    sca = {False: [], True: []}
    for i, block in enumerate(m.blocks):
        dec = i >= m.num_encoder_layers
        for n, p in block.named_parameters():
            (mat if p.ndim == 2 and not any(x in n for x in pats) else sca)[dec].append(p)
    other = [m.smear_gate.gate, m.bigram_emb.embed.weight, m.skip_weights, m.skip_gates,
             *m.ve_shared.parameters(), *m.ve_layer_scales.parameters()]
    adam = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps, weight_decay=args.adam_wd)
    mult = args.decoder_lr_mult
    muon = dict(momentum=args.muon_momentum, backend_steps=args.muon_backend_steps, weight_decay=args.muon_wd)
    return [torch.optim.AdamW([{"params": [m.tok_emb.weight], "lr": args.tied_embed_lr}], **adam),
            mod.Muon([{"params": mat[False], "lr": args.matrix_lr}, {"params": mat[True], "lr": args.matrix_lr * mult}],
                     lr=args.matrix_lr, **muon),
            torch.optim.AdamW([{"params": sca[False], "lr": args.scalar_lr},
                               {"params": sca[True], "lr": args.scalar_lr * mult},
                               {"params": other, "lr": args.scalar_lr}], **adam),
            mod.Muon([m.bigram_emb.proj.weight], lr=args.matrix_lr, **muon)]


def built_pair(reference_dir):
    mod = record_module(reference_dir)
    cfg = preset(PRESET, *SMALL)
    torch.manual_seed(0)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    perturb(rec)
    copy_weights(rec, model, name_map)
    return mod, cfg, rec, model


def test_model_logits_and_gradients_match_the_record(reference_dir):
    mod, cfg, rec, model = built_pair(reference_dir)
    assert_same_model(mod, rec, model, name_map, cfg.model.vocab_size)


def test_optimizer_groups_match_the_record(reference_dir):
    mod = record_module(reference_dir)
    cfg = preset(PRESET, *SMALL)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    expected = optimizer_table(record_optimizers(mod, small_args(mod), rec), record_names_of(rec, model, name_map))
    assert pgolf_optimizer_table(model, cfg) == expected


def test_parameter_count_at_the_launch_shape(reference_dir):
    mod = record_module(reference_dir)
    with torch.device("meta"):
        rec = record_gpt(mod, mod.Hyperparameters())
    model = meta_gpt(preset(PRESET))
    assert counts_by_module(model) == counts_by_module(rec, RENAME)
    assert sum(p.numel() for p in model.parameters()) == PARAMS


def test_qat_targets_and_floor_are_the_records(reference_dir):
    """Late QAT: the record fake-quantizes every CastedLinear (never an nn.Embedding) to int5 with
    scales floored at 1/15; pgolf's QAT targets, bits and floor give the same weights."""
    mod, cfg, rec, model = built_pair(reference_dir)
    model.set_qat(cfg.qat_bits.as_mapping(), cfg.qat_scale_floor)
    quantized = {n: mdl.qat_bits for n, mdl in model.named_modules() if isinstance(mdl, (CastedLinear, CastedEmbedding))
                 and mdl.qat_bits is not None}
    ours = {src for n in quantized for src, _ in sources(name_map, f"{n}.weight")}
    theirs = {f"{n}.weight" for n, mdl in rec.named_modules() if isinstance(mdl, mod.CastedLinear)}
    assert ours == theirs
    assert set(quantized.values()) == {5}
    # Rows 0-1: scale = row max / 15 = 1/8 (exact in fp16 too); rows 2-3: max < 1, the 1/15 floor
    # binds. Values sit 0.3 of a step from the grid, so rounding cannot tie.
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(-14, 15, (4, 32), generator=g).float()  # |w| below the row max
    codes[:, 0] = 15
    step = torch.tensor([0.125, 0.125, 1 / 15, 1 / 15])[:, None]
    w = (codes + (torch.rand(4, 32, generator=g) - 0.5) * 0.6) * step
    w[:, 0] = 15 * step[:, 0]
    w[2:] *= 0.05  # small rows: max well below 1
    lin = mod.CastedLinear(32, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    lin.train()
    before = mod.CastedLinear._qat_enabled
    mod.CastedLinear._qat_enabled = True
    try:
        with torch.no_grad():
            theirs_w = lin(torch.eye(32)).T
    finally:
        mod.CastedLinear._qat_enabled = before
    ours_w = fake_quantize_rows(w, 5, cfg.qat_scale_floor)
    torch.testing.assert_close(ours_w, theirs_w, atol=3e-4, rtol=0)  # fp16(1/15) vs 1/15: < 2.5e-4
    assert (fake_quantize_rows(w, 5) - theirs_w)[2:].abs().max() > 1e-2  # without the floor it differs


def test_training_hyperparameters_are_the_launchs(reference_dir):
    args = record_module(reference_dir).Hyperparameters()
    cfg = preset(PRESET)
    pairs = {"seq_len": "train_seq_len", "batch_tokens": "train_batch_tokens", "iterations": "iterations",
             "max_seconds": "max_wallclock_seconds", "warmup_steps": "warmup_steps", "warmdown_iters": "warmdown_iters",
             "tied_embed_lr": "tied_embed_lr", "matrix_lr": "matrix_lr", "scalar_lr": "scalar_lr",
             "muon_momentum": "muon_momentum", "muon_momentum_warmup_start": "muon_momentum_warmup_start",
             "muon_momentum_warmup_steps": "muon_momentum_warmup_steps", "muon_wd": "muon_wd", "adam_wd": "adam_wd",
             "grad_clip": "grad_clip_norm", "ema_decay": "ema_decay", "decoder_lr_mult": "decoder_lr_mult",
             "qat_start_lr_mult": "qat_threshold", "seed": "seed"}
    assert {k: getattr(cfg, k) for k in pairs} == {k: getattr(args, v) for k, v in pairs.items()}
    assert args.ema_enabled and args.late_qat and cfg.qat_start_frac < 0 and cfg.ema_start_step == 0
