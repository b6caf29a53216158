"""The `int5-qat-ttt` preset against PR #861's own train_gpt.py (reference/pr861), imported with the
variables of its run_training.sh set (what its launch ran).

The record's attention is F.scaled_dot_product_attention already: nothing is patched but the
module-level imports refimport describes. Names differ: the record's bigram_emb, smear_gate,
mlp.up_proj / down_proj, ve_shared and per-layer ve_layer_scales are pgolf's bigram, smear, mlp.fc /
proj, value_embed and value_embed.lambdas.
"""

from __future__ import annotations

import torch

from . import cases
from .refimport import launch_env, preset


def name_map(name: str):
    """pgolf name -> the record's."""
    if name == "value_embed.lambdas":
        return cases.VE_LAMBDAS
    for ours, theirs in (("bigram.", "bigram_emb."), ("smear.", "smear_gate."), ("value_embed.", "ve_shared."),
                         (".mlp.fc.", ".mlp.up_proj."), (".mlp.proj.", ".mlp.down_proj.")):
        name = name.replace(ours, theirs)
    return name, None


def record_optimizers(mod, args, m):
    """main()'s "Differential LR setup": block matrices -> Muon, encoder blocks at matrix_lr, decoder
    blocks (i >= num_layers // 2) at matrix_lr * decoder_lr_mult; block scalars -> AdamW likewise at
    scalar_lr; smear gate, bigram table, skip weights and gates, the whole value embedding -> AdamW at
    scalar_lr; tok_emb -> AdamW at tied_embed_lr; bigram proj -> its own Muon at matrix_lr."""
    mat: dict[bool, list] = {False: [], True: []}
    sca: dict[bool, list] = {False: [], True: []}
    for i, block in enumerate(m.blocks):
        dec = i >= m.num_encoder_layers
        matrix, scalar = cases.block_split(mod, list(block.named_parameters()))
        mat[dec] += matrix
        sca[dec] += scalar
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


CASE = cases.RecordCase(
    folder="pr861", preset="int5-qat-ttt", params=30_208_603,
    small=("num_layers=4", "model_dim=128", "num_heads=4", "num_kv_heads=4", "mlp_hidden=256", "vocab_size=256",
           "bigram_buckets=64", "bigram_dim=64", "xsa_last_n=2", "value_embed_layers=[2,3]", "value_embed_dim=64"),
    small_args={"num_layers": 4, "model_dim": 128, "num_heads": 4, "num_kv_heads": 4, "vocab_size": 256,
                "mlp_hidden": 256, "bigram_buckets": 64, "bigram_embed_dim": 64, "xsa_layers": 2, "ve_layers": "2,3",
                "ve_dim": 64},
    record_gpt=cases.gpt_from_args("mlp_hidden", "bigram_buckets", "bigram_embed_dim", "rope_dims", "ln_scale",
                                   "xsa_last_n=xsa_layers", "ve_enabled", "ve_dim", "ve_layers"),
    record_optimizers=record_optimizers, name_map=name_map,
    rename={"bigram_emb": "bigram", "smear_gate": "smear", **cases.VE_RENAME},
    launch_env=lambda folder: launch_env(folder / "run_training.sh"),
)


def test_model_logits_and_gradients_match_the_record(reference_dir):
    cases.check_logits_and_gradients(CASE, reference_dir)


def test_optimizer_groups_match_the_record(reference_dir):
    cases.check_optimizer_groups(CASE, reference_dir)


def test_parameter_count_at_the_launch_shape(reference_dir):
    cases.check_parameter_count(CASE, reference_dir)


def test_qat_targets_and_floor_are_the_records(reference_dir):
    """Late QAT: the record fake-quantizes every CastedLinear (never an nn.Embedding) to int5 with
    scales floored at 1/15; pgolf's QAT targets, bits and floor give the same weights."""
    cases.check_casted_linear_qat(CASE, reference_dir, bits=5)


def test_training_hyperparameters_are_the_launchs(reference_dir):
    args = cases.load(CASE, reference_dir).Hyperparameters()
    cfg = preset(CASE.preset)
    cases.assert_launch_pairs(cfg, args, {**cases.LAUNCH_PAIRS, **cases.WALLCLOCK_PAIRS, "muon_wd": "muon_wd",
                                          "adam_wd": "adam_wd", "ema_decay": "ema_decay",
                                          "decoder_lr_mult": "decoder_lr_mult", "qat_start_lr_mult": "qat_threshold"})
    assert args.ema_enabled and args.late_qat and cfg.qat_start_frac < 0 and cfg.ema_start_step == 0
