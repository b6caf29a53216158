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

import re

import torch

from pgolf.model import GPT
from pgolf.model.layers import CastedEmbedding, CastedLinear, rotary_tables
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

FOLDER, PRESET, PARAMS = "pr1406", "recurrence", 26_928_220
SMALL = ("num_layers=6", "model_dim=128", "num_heads=4", "num_kv_heads=2", "vocab_size=256", "bigram_buckets=64",
         "bigram_dim=64", "xsa_last_n=2", "value_embed_layers=[4,5]", "value_embed_dim=32")
BANKS = {"qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank"}
RENAME = {**dict.fromkeys(BANKS, "blocks"), "ve_shared": "value_embed", "ve_layer_scales": "value_embed"}


def readme_env(readme) -> dict[str, str]:
    """KEY=VALUE words of the code block under "## Run Command" in the record's README."""
    block = readme.read_text().split("## Run Command", 1)[1].split("```")[1]
    return dict(re.findall(r"([A-Z][A-Z0-9_]*)=(\S+)", block))


def record_module(reference_dir):
    return load_record(reference_dir, FOLDER, env=readme_env(reference_dir / FOLDER / "README.md"))


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
    args.num_layers, args.model_dim, args.num_heads, args.num_kv_heads, args.vocab_size = 6, 128, 4, 2, 256
    args.bigram_vocab_size, args.bigram_dim, args.xsa_last_n, args.ve_dim, args.ve_layers = 64, 64, 2, 32, "4,5"
    return args


def record_gpt(mod, args):
    """GPT(...) as main() builds it (before its bf16 cast, which the tests do not do)."""
    return mod.GPT(vocab_size=args.vocab_size, num_layers=args.num_layers, model_dim=args.model_dim,
                   num_heads=args.num_heads, num_kv_heads=args.num_kv_heads, mlp_mult=args.mlp_mult,
                   tie_embeddings=args.tie_embeddings, tied_embed_init_std=args.tied_embed_init_std,
                   logit_softcap=args.logit_softcap, rope_base=args.rope_base, qk_gain_init=args.qk_gain_init,
                   mtp_num_heads=args.mtp_num_heads, mtp_loss_weight=args.mtp_loss_weight,
                   bigram_vocab_size=args.bigram_vocab_size, bigram_dim=args.bigram_dim, xsa_last_n=args.xsa_last_n,
                   rope_dims=args.rope_dims, ln_scale=args.ln_scale, dtg=args.dtg_enabled, ve_enabled=args.ve_enabled,
                   ve_dim=args.ve_dim, ve_layers=args.ve_layers, gated_attention=args.gated_attention,
                   value_residual=args.value_residual, recur_enabled=args.recur_enabled,
                   recur_layers=args.recur_layers)


def record_optimizers(mod, args, m):
    """main()'s "Optimizer split": the four banks -> (Parallel) Muon with MUON_WD; block scalars,
    skip_weights, smear.gate, bigram.scale, the bigram and VE projections, VE scale and per-layer
    scales -> AdamW at scalar_lr; tok_emb, bigram and VE tables -> AdamW at tied_embed_lr; both AdamW
    with ADAM_WD."""
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    scalar = [p for n, p in m.blocks.named_parameters() if p.ndim < 2 or any(x in n for x in pats)]
    scalar += [m.skip_weights, m.smear.gate, m.bigram.scale, m.bigram.proj.weight, m.ve_shared.proj.weight,
               m.ve_shared.scale, *m.ve_layer_scales]
    tok = [{"params": [t], "lr": args.tied_embed_lr} for t in (m.tok_emb.weight, m.bigram.embed.weight,
                                                               m.ve_shared.embed.weight)]
    adam = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps, weight_decay=args.adam_wd)
    banks = [m.qo_bank, m.kv_bank, m.mlp_up_bank, m.mlp_down_bank]
    return [torch.optim.AdamW(tok, **adam),
            mod.Muon(banks, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps,
                     weight_decay=args.muon_wd),
            torch.optim.AdamW([{"params": scalar, "lr": args.scalar_lr}], **adam)]


def built_pair(reference_dir):
    mod = record_module(reference_dir)
    cfg = preset(PRESET, *SMALL)
    torch.manual_seed(0)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    perturb(rec)
    copy_weights(rec, model, make_name_map(6))
    assert cfg.recur_start_frac == 0.0  # on from the first step, as the record's is always
    model.set_recurrence(True)
    return mod, cfg, rec, model


def test_model_logits_and_gradients_match_the_record(reference_dir):
    mod, cfg, rec, model = built_pair(reference_dir)
    assert_same_model(mod, rec, model, make_name_map(6), cfg.model.vocab_size)


def test_optimizer_groups_match_the_record(reference_dir):
    mod = record_module(reference_dir)
    cfg = preset(PRESET, *SMALL)
    rec, model = record_gpt(mod, small_args(mod)), GPT(cfg.model)
    names = record_names_of(rec, model, make_name_map(6))
    assert pgolf_optimizer_table(model, cfg) == optimizer_table(record_optimizers(mod, small_args(mod), rec), names)


def test_parameter_count_at_the_launch_shape(reference_dir):
    mod = record_module(reference_dir)
    with torch.device("meta"):
        rec = record_gpt(mod, mod.Hyperparameters())
    model = meta_gpt(preset(PRESET))
    assert counts_by_module(model) == counts_by_module(rec, RENAME)
    assert sum(p.numel() for p in model.parameters()) == PARAMS


def test_recurrence_order_and_skip_pairing_are_the_records():
    """The record runs 0..10 as its U-Net (5 skips), then blocks 4, 5 again; in place would pair 13
    virtual layers (6 skips, +512 parameters)."""
    m = preset(PRESET).model
    assert m.layer_order(True) == (*range(11), 4, 5) and m.num_skips == 5


def test_ntk_rope_tables_are_the_records(reference_dir):
    """Its Rotary (train_seq_len 1024, 16 of 64 dims) rescales the base for longer sequences: the
    training length 2048 always does. pgolf's rope_ref_len gives the same tables."""
    mod = record_module(reference_dir)
    cfg = preset(PRESET)
    rot = mod.Rotary(cfg.model.head_dim, base=cfg.model.rope_base, train_seq_len=1024, rope_dims=cfg.model.rope_dims)
    for seq in (1000, cfg.seq_len):
        cos, sin = rot(seq, torch.device("cpu"), torch.float32)
        ours_cos, ours_sin = rotary_tables(cfg.model, seq, torch.device("cpu"))
        torch.testing.assert_close(ours_cos, cos.reshape(seq, -1), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(ours_sin, sin.reshape(seq, -1), atol=1e-6, rtol=1e-6)


def test_qat_targets_and_floor_are_the_records(reference_dir):
    """Late QAT reaches only the record's CastedLinear modules, the bigram and VE projections (its
    banked block matrices are never fake-quantized): int6, scales floored at 1/31."""
    mod, cfg, rec, model = built_pair(reference_dir)
    model.set_qat(cfg.qat_bits.as_mapping(), cfg.qat_scale_floor)
    name_map = make_name_map(6)
    quantized = {n: mdl.qat_bits for n, mdl in model.named_modules()
                 if isinstance(mdl, (CastedLinear, CastedEmbedding)) and mdl.qat_bits is not None}
    ours = {src for n in quantized for src, _ in sources(name_map, f"{n}.weight")}
    assert ours == {f"{n}.weight" for n, mdl in rec.named_modules() if isinstance(mdl, mod.CastedLinear)}
    assert set(quantized.values()) == {6}
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(-30, 31, (4, 32), generator=g).float()  # |w| below the row max
    step = torch.tensor([2.0 ** -3, 2.0 ** -3, 1 / 31, 1 / 31])[:, None]
    w = (codes + (torch.rand(4, 32, generator=g) - 0.5) * 0.6) * step
    w[:, 0] = 31 * step[:, 0]
    w[2:] *= 0.05  # row max well below 1: the 1/31 floor binds
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
    torch.testing.assert_close(fake_quantize_rows(w, 6, cfg.qat_scale_floor), theirs_w, atol=3e-4, rtol=0)
    assert (fake_quantize_rows(w, 6) - theirs_w)[2:].abs().max() > 1e-2  # without the floor it differs


def test_training_hyperparameters_are_the_launchs(reference_dir):
    args = record_module(reference_dir).Hyperparameters()
    cfg = preset(PRESET)
    pairs = {"seq_len": "train_seq_len", "batch_tokens": "train_batch_tokens", "iterations": "iterations",
             "max_seconds": "max_wallclock_seconds", "warmup_steps": "warmup_steps", "warmdown_iters": "warmdown_iters",
             "tied_embed_lr": "tied_embed_lr", "matrix_lr": "matrix_lr", "scalar_lr": "scalar_lr",
             "muon_momentum": "muon_momentum", "muon_momentum_warmup_start": "muon_momentum_warmup_start",
             "muon_momentum_warmup_steps": "muon_momentum_warmup_steps", "muon_wd": "muon_wd", "adam_wd": "adam_wd",
             "grad_clip": "grad_clip_norm", "qat_start_lr_mult": "late_qat_threshold", "seed": "seed"}
    assert {k: getattr(cfg, k) for k in pairs} == {k: getattr(args, v) for k, v in pairs.items()}
    assert cfg.ema_decay == 0.997 and cfg.ema_start_step == 0  # main(): ema_decay = 0.997, from the initial weights
    assert list(cfg.model.recur_layers) == args.recur_layers and cfg.model.recur_placement == "after"
