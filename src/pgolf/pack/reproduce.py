"""The training half of the submission program: the recipe `pgolf pack` recorded -> model.bin.

When `train_gpt.py` finds no model.bin beside it (or TRAIN=1), it remakes one the way the pipeline
that produced it did, from the recipe recorded in the file:

1. `pgolf train`: the recorded TrainConfig on DATA_PATH's `fineweb_train_*.bin` (sorted, as one
   stream), seeded as the stage seeds, with the same loop (`pgolf.train.train`), under torchrun too;
2. `pgolf quantize`: the recorded QuantizeConfig; GPTQ is calibrated as the stage calibrates (the
   first calib_tokens of the training stream, or self-generated tokens);
3. `pgolf pack`: `encode_model` with the recorded codec, layout and shuffle, and model.bin's meta.

On the same data, seed, device and thread count this writes the bytes `pgolf pack` wrote (a test
checks it). The calibration helpers below restate the quantize stage's (which tokens, which hooks);
a test checks that both quantize a model to the same bits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pgolf.errors import ConfigError, DataError

RECIPE_FORMAT = "pgolf.recipe/1"
CALIB_BATCH_TOKENS = 32_768  # tokens per calibration forward pass (the quantize stage's)
# The challenge's variables a reproduction may change: seeds for STAT-1, and the step and time caps.
TRAIN_ENV = {"SEED": "seed", "ITERATIONS": "iterations", "MAX_WALLCLOCK_SECONDS": "max_seconds"}


def make_recipe(train: Mapping[str, Any], quantize: Mapping[str, Any], pack: Mapping[str, Any],
                evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe train_gpt.py carries: TrainConfig, QuantizeConfig, model.bin's codec settings and
    the evaluation it records in model.bin (all as JSON-native dicts)."""
    return {"format": RECIPE_FORMAT, "train": dict(train), "quantize": dict(quantize),
            "pack": {k: pack[k] for k in ("codec", "layout", "shuffle")}, "eval": dict(evaluation)}


def train_config(recipe: Mapping[str, Any], env: Mapping[str, str]):
    """The recorded TrainConfig, with SEED / ITERATIONS / MAX_WALLCLOCK_SECONDS from the environment."""
    from pgolf.config import apply_overrides, from_dict
    from pgolf.train.config import TrainConfig

    if recipe.get("format") != RECIPE_FORMAT:
        raise ConfigError(f"this train_gpt.py carries a recipe of format {recipe.get('format')!r}, expected "
                          f"{RECIPE_FORMAT!r}", "re-run `pgolf pack` with this pgolf")
    return apply_overrides(from_dict(TrainConfig, recipe["train"]),
                           [f"{key}={env[name]}" for name, key in TRAIN_ENV.items() if name in env])


# ----------------------------------------------------------------------------- calibration (as the quantize stage)


def calibration_targets(model, cfg) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """(weights GPTQ quantizes and can calibrate, extra hooks): every nn.Linear weight that gets an
    integer width, plus the head, whose input is read at `final_norm` (GPT applies it with F.linear)."""
    from torch import nn

    from pgolf.model.params import param_class
    from pgolf.quant.schemes import plan_tensor

    extra = {("tok_emb.weight" if model.lm_head is None else "lm_head.weight"): ("final_norm", "output")}
    hookable = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear) and n} | set(extra)
    names = [n for n, t in model.state_dict().items()
             if n in hookable and t.ndim == 2 and t.is_floating_point()
             and plan_tensor(n, tuple(t.shape), t.dtype, param_class(n), cfg).is_int]
    return names, {k: v for k, v in extra.items() if k in names}


def collect_hessians(model, tokens, names: Sequence[str], extra: Mapping[str, tuple[str, str]], device):
    """{weight: mean x x^T} over calibration tokens [S, T] (bf16 autocast on CUDA, fp32 on CPU)."""
    import torch

    from pgolf.eval.scoring import autocast_for
    from pgolf.quant.calib import HessianCollector

    per_batch = max(1, CALIB_BATCH_TOKENS // tokens.shape[1])
    model.eval()
    with torch.no_grad(), autocast_for(device, True), HessianCollector(model, names, extra) as hc:
        for batch in tokens.split(per_batch):
            model.hidden(batch.to(device))
    return hc.hessians()


def calibration_tokens(shards: Sequence[np.ndarray], num_seqs: int, seq_len: int, vocab_size: int):
    """The first num_seqs * seq_len tokens of the training stream as int64 [S, T] (fewer sequences
    when the shards hold fewer tokens)."""
    import torch

    from pgolf.data.stream import TokenStream

    total = sum(int(a.shape[0]) for a in shards)
    num_seqs = min(num_seqs, total // seq_len)
    if num_seqs < 1:
        raise DataError(f"the training shards hold {total:,} tokens, fewer than one calibration sequence of {seq_len}")
    flat = TokenStream(shards).take(num_seqs * seq_len)
    if flat.max(initial=0) >= vocab_size:
        raise DataError(f"calibration token ids reach {int(flat.max())}, outside the model's vocabulary of {vocab_size}")
    return torch.from_numpy(np.ascontiguousarray(flat.reshape(num_seqs, seq_len)))


def quantize_model(model, cfg, shards: Sequence[np.ndarray], device):
    """`quantize_state` of the model's weights with `cfg`, GPTQ calibrated as `pgolf quantize` does."""
    from pgolf.eval.scoring import autocast_for
    from pgolf.quant.calib import generate_calibration
    from pgolf.quant.state import quantize_state

    hessians = None
    if cfg.gptq:
        names, extra = calibration_targets(model, cfg)
        num_seqs, seq_len = cfg.calib_tokens // cfg.calib_seq_len, cfg.calib_seq_len
        if cfg.calib == "self":
            with autocast_for(device, True):
                tokens = generate_calibration(model, num_seqs, seq_len, temperature=cfg.calib_temperature,
                                              seed=cfg.calib_seed, batch_size=max(1, CALIB_BATCH_TOKENS // seq_len))
            tokens = tokens.cpu()
        else:
            tokens = calibration_tokens(shards, num_seqs, seq_len, model.cfg.vocab_size)
        hessians = collect_hessians(model, tokens, names, extra, device)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return quantize_state(state, cfg, hessians)


# ----------------------------------------------------------------------------- the pipeline


def train_and_pack(recipe: Mapping[str, Any], env: Mapping[str, str], train_shards: Sequence[np.ndarray],
                   val_tokens: np.ndarray, val_bytes: np.ndarray | None, device, info,
                   say: Callable[[str], None]) -> bytes:
    """Train, quantize and encode as the recipe says; returns the bytes of model.bin (on every rank).

    train_shards: the training split as uint16 arrays (memory-mapped); val_tokens, val_bytes [N]:
    the validation stream for the loop's diagnostic validation (as `pgolf train` passes it);
    info: the rank layout (`pgolf.runtime.dist.DistInfo`).
    """
    from pgolf.config import from_dict, to_dict
    from pgolf.data.stream import TokenBatches, TokenStream
    from pgolf.model.gpt import GPT
    from pgolf.pack.modelbin import encode_model
    from pgolf.pack.packed import packed_meta
    from pgolf.quant.config import QuantizeConfig
    from pgolf.runtime.device import autocast_dtype
    from pgolf.runtime.seed import seed_everything
    from pgolf.train.loop import Hooks, Runtime, log_line, train
    from pgolf.train.validate import ValData

    cfg = train_config(recipe, env)
    qcfg = from_dict(QuantizeConfig, recipe["quantize"])
    if not train_shards:
        raise DataError("no fineweb_train_*.bin shards in DATA_PATH: training needs them",
                        "set DATA_PATH to the challenge's dataset directory")
    seed_everything(cfg.seed)
    model = GPT(cfg.model).to(device)
    say(f"model_params:{sum(p.numel() for p in model.parameters())}")
    say(f"world_size:{info.world_size} grad_accum_steps:{cfg.grad_accum(info.world_size)} "
        f"train_shards:{len(train_shards)}")
    say(f"train_batch_tokens:{cfg.batch_tokens} train_seq_len:{cfg.seq_len} iterations:{cfg.iterations} "
        f"warmup_steps:{cfg.warmup_steps} max_wallclock_seconds:{cfg.max_seconds:.3f}")
    say(f"seed:{cfg.seed}")

    def on_event(event: dict[str, Any]) -> None:
        line = log_line(event)
        if line is not None and (event["event"] != "warmup" or event["step"] == event["steps"]):
            say(line)

    rt = Runtime(device=device, amp_dtype=autocast_dtype(cfg.dtype, device), dist=info)
    batches = TokenBatches(TokenStream(train_shards), info.rank, info.world_size)
    result = train(model, cfg, batches, rt, val=ValData(val_tokens, val_bytes), hooks=Hooks(on_event=on_event))
    say(f"train_steps:{result.steps} train_time:{result.train_time_s * 1000:.0f}ms stop:{result.stop_reason} "
        f"weights:{result.weights}")
    # What `pgolf quantize` sees: the saved weights loaded into a fresh model (no QAT or other live state).
    saved = GPT(cfg.model)
    saved.load_state_dict(model.state_dict(), strict=True)
    res = quantize_model(saved.to(device).eval(), qcfg, train_shards, device)
    meta = packed_meta(res.meta, to_dict(cfg.model), cfg.seq_len, recipe["eval"])
    p = recipe["pack"]
    return encode_model(res.tensors, meta, codec=p["codec"], layout=p["layout"], shuffle=p["shuffle"])
