"""The checks every test_pr*.py / test_baseline.py runs against its record (not a test module).

A record file states what is its record's own in a `RecordCase` (folder, preset, launch environment,
the small shape on both sides, how main() builds the GPT and its optimizers, the name map) and keeps
one thin test function per check, so that a failure names its record:

- `check_logits_and_gradients`: both models built small, the record's weights (perturbed) copied into
  pgolf's, equal logits, loss and gradients (refimport.assert_same_model);
- `check_optimizer_groups`: the same (optimizer kind, lr, weight decay, betas/momentum) per parameter;
- `check_parameter_count`: equal parameter elements per top-level module at the launch shape (on the
  meta device) and the record's total;
- `check_bos_safe_default_differs`: pgolf's BOS-safe SmearGate / BigramHash differs from a record's
  that looks across BOS, from the first in-row BOS on and nowhere before;
- `check_casted_linear_qat`: late QAT reaches the record's CastedLinear modules only, at the preset's
  bits, with the record's scale floor;
- `assert_launch_pairs`: pgolf config fields equal the record's Hyperparameters, pair by pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import torch
from torch import nn

from pgolf.model import GPT
from pgolf.model.layers import CastedEmbedding, CastedLinear
from pgolf.model.rowquant import fake_quantize_rows
from pgolf.train.config import TrainConfig

from .refimport import (
    NameMap,
    Source,
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
    sources,
)

# The keyword arguments every record's main() passes to its GPT(...), each from the Hyperparameters
# attribute of the same name (the challenge baseline's constructor; later records add to it).
BASE_GPT_KWARGS = ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "tie_embeddings",
                   "tied_embed_init_std", "logit_softcap", "rope_base", "qk_gain_init")

# Banked records (PRs #1216, #1406, #2135): block matrices live in four banks, pgolf keeps them per layer.
BANKS = ("qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank")
BANK_RENAME = dict.fromkeys(BANKS, "blocks")
VE_RENAME = {"ve_shared": "value_embed", "ve_layer_scales": "value_embed"}

# pgolf config field -> the record's Hyperparameters attribute, for the launch settings most records
# share; each record file adds its own.
LAUNCH_PAIRS = {"seq_len": "train_seq_len", "batch_tokens": "train_batch_tokens", "iterations": "iterations",
                "warmup_steps": "warmup_steps", "tied_embed_lr": "tied_embed_lr", "matrix_lr": "matrix_lr",
                "scalar_lr": "scalar_lr", "muon_momentum": "muon_momentum",
                "muon_momentum_warmup_start": "muon_momentum_warmup_start",
                "muon_momentum_warmup_steps": "muon_momentum_warmup_steps", "grad_clip": "grad_clip_norm",
                "seed": "seed"}
WALLCLOCK_PAIRS = {"max_seconds": "max_wallclock_seconds", "warmdown_iters": "warmdown_iters"}


def same_name(name: str) -> Source:
    return name, None


def gpt_from_args(*extra: str) -> Callable[[ModuleType, Any], nn.Module]:
    """GPT(...) as the record's main() builds it (before its bf16 cast, which the tests do not do): the
    BASE_GPT_KWARGS and `extra`, each "keyword" or "keyword=attribute" of the record's Hyperparameters."""
    pairs = [(k.partition("=")[0], k.partition("=")[2] or k) for k in (*BASE_GPT_KWARGS, *extra)]

    def build(mod: ModuleType, args: Any) -> nn.Module:
        return mod.GPT(**{kw: getattr(args, attr) for kw, attr in pairs})

    return build


def bank_source(name: str, num_layers: int) -> Source | None:
    """The bank slice a pgolf block matrix comes from (Q then out-projections in qo_bank, K then V in
    kv_bank, MLP up / down in their own); None for any other parameter."""
    parts = name.split(".")
    if parts[0] != "blocks" or parts[-1] != "weight" or parts[-2] not in ("c_q", "proj", "c_k", "c_v", "fc"):
        return None
    i, n = int(parts[1]), num_layers
    return {("attn", "c_q"): ("qo_bank", i), ("attn", "proj"): ("qo_bank", n + i),
            ("attn", "c_k"): ("kv_bank", i), ("attn", "c_v"): ("kv_bank", n + i),
            ("mlp", "fc"): ("mlp_up_bank", i), ("mlp", "proj"): ("mlp_down_bank", i)}[(parts[2], parts[3])]


VE_LAMBDAS: list[Source] = [("ve_layer_scales.0", None), ("ve_layer_scales.1", None)]  # pgolf's value_embed.lambdas


def banked_ve_name_map(num_layers: int) -> NameMap:
    """PRs #1216 / #1406: banks sliced, ve_shared / ve_layer_scales as pgolf's value_embed, else the same name."""
    def name_map(name: str) -> Source | list[Source]:
        bank = bank_source(name, num_layers)
        if bank is not None:
            return bank
        if name == "value_embed.lambdas":
            return VE_LAMBDAS
        return name.replace("value_embed.", "ve_shared."), None
    return name_map


def block_split(mod: ModuleType, named: list[tuple[str, nn.Parameter]]) -> tuple[list, list]:
    """(matrices, scalars) of a record's block parameters as its main() splits them: 2-D tensors outside
    CONTROL_TENSOR_NAME_PATTERNS go to Muon, the rest to Adam."""
    pats = mod.CONTROL_TENSOR_NAME_PATTERNS
    matrix = [p for n, p in named if p.ndim == 2 and not any(x in n for x in pats)]
    scalar = [p for n, p in named if p.ndim < 2 or any(x in n for x in pats)]
    return matrix, scalar


def bigram_optimizers(mod: ModuleType, args: Any, m: nn.Module, *scalars: nn.Parameter) -> list:
    """PRs #264 / #366's main() split: block matrices + bigram.proj -> Muon (weight_decay 0.04, hard-coded);
    block scalars, skip_weights, smear.gate, bigram.scale and `scalars` -> AdamW at scalar_lr; tok_emb and
    bigram.embed -> AdamW at tied_embed_lr; both AdamW with WEIGHT_DECAY."""
    matrix, scalar = block_split(mod, list(m.blocks.named_parameters()))
    matrix.append(m.bigram.proj.weight)
    scalar += [m.skip_weights, m.smear.gate, m.bigram.scale, *scalars]
    adam = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps, weight_decay=args.weight_decay)
    tok = [{"params": [m.tok_emb.weight], "lr": args.tied_embed_lr},
           {"params": [m.bigram.embed.weight], "lr": args.tied_embed_lr}]
    return [torch.optim.AdamW(tok, **adam),
            mod.Muon(matrix, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps,
                     weight_decay=0.04),
            torch.optim.AdamW([{"params": scalar, "lr": args.scalar_lr}], **adam)]


def banked_ve_optimizers(mod: ModuleType, args: Any, m: nn.Module, *, adam_wd: float, muon_wd: float) -> list:
    """PRs #1216 / #1406's main() split: the four banks -> (Parallel) Muon with `muon_wd`; block scalars,
    skip_weights, smear.gate, bigram.scale, the bigram and VE projections, VE scale and per-layer scales
    -> AdamW at scalar_lr; tok_emb, bigram and VE tables -> AdamW at tied_embed_lr; both AdamW with `adam_wd`."""
    _, scalar = block_split(mod, list(m.blocks.named_parameters()))
    scalar += [m.skip_weights, m.smear.gate, m.bigram.scale, m.bigram.proj.weight, m.ve_shared.proj.weight,
               m.ve_shared.scale, *m.ve_layer_scales]
    tok = [{"params": [t], "lr": args.tied_embed_lr} for t in (m.tok_emb.weight, m.bigram.embed.weight,
                                                               m.ve_shared.embed.weight)]
    adam = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps, weight_decay=adam_wd)
    banks = [getattr(m, bank) for bank in BANKS]
    return [torch.optim.AdamW(tok, **adam),
            mod.Muon(banks, lr=args.matrix_lr, momentum=args.muon_momentum, backend_steps=args.muon_backend_steps,
                     weight_decay=muon_wd),
            torch.optim.AdamW([{"params": scalar, "lr": args.scalar_lr}], **adam)]


@dataclasses.dataclass(frozen=True)
class RecordCase:
    """What one record's checks need.

    `small` are pgolf `--set` overrides and `small_args` the record's Hyperparameters attributes that
    give both sides the same small shape. `record_gpt(mod, args)` builds the record's model as its
    main() does, `record_optimizers(mod, args, model)` its optimizers. `launch_env(folder)` is the
    environment the record is imported with (its launch's variables), `extra_stubs()` refimport's
    stubs of GPU-only imports. `prepare(cfg, record, model)` runs after the record's weights are
    perturbed and before they are copied.
    """

    folder: str
    preset: str
    params: int
    small: tuple[str, ...]
    small_args: Mapping[str, Any]
    record_gpt: Callable[[ModuleType, Any], nn.Module]
    record_optimizers: Callable[[ModuleType, Any, nn.Module], Any]
    name_map: NameMap = same_name
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    launch_env: Callable[[Path], Mapping[str, str]] | None = None
    extra_stubs: Callable[[], Mapping[str, ModuleType]] | None = None
    prepare: Callable[[TrainConfig, nn.Module, GPT], None] | None = None


def load(case: RecordCase, reference_dir: Path) -> ModuleType:
    """The record's train_gpt.py, imported with its launch's environment."""
    env = case.launch_env(reference_dir / case.folder) if case.launch_env else None
    stubs = case.extra_stubs() if case.extra_stubs else None
    return load_record(reference_dir, case.folder, env=env, extra_stubs=stubs)


def small_args(case: RecordCase, mod: ModuleType) -> Any:
    args = mod.Hyperparameters()
    for name, value in case.small_args.items():
        setattr(args, name, value)
    return args


def built_pair(case: RecordCase, reference_dir: Path, *extra: str) -> tuple[ModuleType, TrainConfig, nn.Module, GPT]:
    """(record module, pgolf config, record model, pgolf model): both small, the record's weights
    perturbed and copied into pgolf's; `extra` are more `--set` overrides."""
    mod = load(case, reference_dir)
    cfg = preset(case.preset, *case.small, *extra)
    torch.manual_seed(0)
    rec, model = case.record_gpt(mod, small_args(case, mod)), GPT(cfg.model)
    perturb(rec)
    if case.prepare is not None:
        case.prepare(cfg, rec, model)
    copy_weights(rec, model, case.name_map)
    return mod, cfg, rec, model


def check_logits_and_gradients(case: RecordCase, reference_dir: Path) -> None:
    mod, cfg, rec, model = built_pair(case, reference_dir)
    assert_same_model(mod, rec, model, case.name_map, cfg.model.vocab_size)


class OptimizerTables(NamedTuple):
    ours: dict[str, tuple]  # pgolf's table
    theirs: dict[str, tuple]  # the record's table
    record_optimizers: Any  # what case.record_optimizers returned
    cfg: TrainConfig
    model: GPT


def optimizer_tables(case: RecordCase, reference_dir: Path) -> OptimizerTables:
    """Both sides' optimizer tables at the small shape (refimport.optimizer_table)."""
    mod = load(case, reference_dir)
    cfg = preset(case.preset, *case.small)
    args = small_args(case, mod)
    rec, model = case.record_gpt(mod, args), GPT(cfg.model)
    opts = case.record_optimizers(mod, args, rec)
    theirs = optimizer_table(list(opts), record_names_of(rec, model, case.name_map))
    return OptimizerTables(pgolf_optimizer_table(model, cfg), theirs, opts, cfg, model)


def check_optimizer_groups(case: RecordCase, reference_dir: Path) -> None:
    tables = optimizer_tables(case, reference_dir)
    assert tables.ours == tables.theirs


def check_parameter_count(case: RecordCase, reference_dir: Path) -> None:
    mod = load(case, reference_dir)
    with torch.device("meta"):
        rec = case.record_gpt(mod, mod.Hyperparameters())
    model = meta_gpt(preset(case.preset))
    assert counts_by_module(model) == counts_by_module(rec, case.rename)
    assert sum(p.numel() for p in model.parameters()) == case.params


def check_bos_safe_default_differs(case: RecordCase, reference_dir: Path) -> None:
    """Why the preset sets bos_reset = false: pgolf's default form changes positions from the first
    in-row BOS on, and nothing before it."""
    mod, cfg, rec, model = built_pair(case, reference_dir, "bos_reset=true")
    x, _ = batch_with_bos(cfg.model.vocab_size, 3, 24)
    with torch.no_grad():
        ref = rec.forward_logits(x)
        ours = model(x)
    first = 24 // 3  # batch_with_bos puts a BOS at this position of every row
    torch.testing.assert_close(ours[1:, :first], ref[1:, :first], atol=2e-5, rtol=1e-5)
    assert (ours[:, first] - ref[:, first]).abs().max() > 1e-3


def check_casted_linear_qat(case: RecordCase, reference_dir: Path, bits: int) -> None:
    """Late QAT: the record fake-quantizes every CastedLinear (never an nn.Embedding; a bank never) at
    `bits` with scales floored at 1 / qmax; pgolf's QAT targets, bits and floor give the same weights."""
    mod, cfg, rec, model = built_pair(case, reference_dir)
    model.set_qat(cfg.qat_bits.as_mapping(), cfg.qat_scale_floor)
    quantized = {n: mdl.qat_bits for n, mdl in model.named_modules()
                 if isinstance(mdl, (CastedLinear, CastedEmbedding)) and mdl.qat_bits is not None}
    ours = {src for n in quantized for src, _ in sources(case.name_map, f"{n}.weight")}
    assert ours == {f"{n}.weight" for n, mdl in rec.named_modules() if isinstance(mdl, mod.CastedLinear)}
    assert set(quantized.values()) == {bits}
    # Rows 0-1: scale = row max / qmax = 1/8 (exact in fp16 too); rows 2-3: max < 1, the 1/qmax floor
    # binds. Values sit 0.3 of a step from the grid, so rounding cannot tie.
    qmax = 2 ** (bits - 1) - 1
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(-qmax + 1, qmax, (4, 32), generator=g).float()  # |w| below the row max
    step = torch.tensor([2.0 ** -3, 2.0 ** -3, 1 / qmax, 1 / qmax])[:, None]
    w = (codes + (torch.rand(4, 32, generator=g) - 0.5) * 0.6) * step
    w[:, 0] = qmax * step[:, 0]
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
    # fp16(1/qmax) vs 1/qmax: < 2.5e-4
    torch.testing.assert_close(fake_quantize_rows(w, bits, cfg.qat_scale_floor), theirs_w, atol=3e-4, rtol=0)
    assert (fake_quantize_rows(w, bits) - theirs_w)[2:].abs().max() > 1e-2  # without the floor it differs


def assert_launch_pairs(cfg: Any, args: Any, pairs: Mapping[str, str]) -> None:
    """Each pgolf config field in `pairs` (of a TrainConfig or its ModelConfig) equals the record's
    Hyperparameters attribute it names."""
    assert {k: getattr(cfg, k) for k in pairs} == {k: getattr(args, v) for k, v in pairs.items()}
