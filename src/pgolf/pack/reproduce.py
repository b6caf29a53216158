"""The training half of the submission program: the recipe `pgolf pack` recorded -> model.bin.

When `train_gpt.py` finds no model.bin beside it (or TRAIN=1), it remakes one the way the pipeline
that produced it did, from the recipe recorded in the file:

1. `pgolf train`: the recorded TrainConfig on DATA_PATH's `fineweb_train_*.bin` (sorted, as one
   stream), seeded as the stage seeds, with the same loop (`pgolf.train.train`), under torchrun too;
2. `pgolf quantize`: the recorded QuantizeConfig; GPTQ is calibrated as the stage calibrates (the
   first calib_tokens of the training stream, or self-generated tokens);
3. `pgolf pack`: `encode_model` with the recorded codec, layout and shuffle, and model.bin's meta.

On the same data, seed, device and thread count this writes the bytes `pgolf pack` wrote (a test
checks it). GPTQ calibration uses the quantize stage's own helpers (`pgolf.quant.calib`); a test
checks that both quantize a model to the same bits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pgolf.errors import ConfigError, DataError

RECIPE_FORMAT = "pgolf.recipe/1"
# The challenge's variables a reproduction may change: seeds for STAT-1, and the step and time caps.
TRAIN_ENV = {"SEED": "seed", "ITERATIONS": "iterations", "MAX_WALLCLOCK_SECONDS": "max_seconds"}
DEFAULT_SEED = 1337  # the challenge's SEED default: the recipe records no seed (one file serves every seed)


def make_recipe(train: Mapping[str, Any], quantize: Mapping[str, Any], pack: Mapping[str, Any],
                evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe train_gpt.py carries: TrainConfig (without its seed, which SEED gives), QuantizeConfig,
    model.bin's codec settings and the evaluation it records in model.bin (all as JSON-native dicts)."""
    train = {k: v for k, v in train.items() if k != "seed"}
    return {"format": RECIPE_FORMAT, "train": train, "quantize": dict(quantize),
            "pack": {k: pack[k] for k in ("codec", "layout", "shuffle")}, "eval": dict(evaluation)}


def train_config(recipe: Mapping[str, Any], env: Mapping[str, str]):
    """The recorded TrainConfig, with SEED (default 1337) / ITERATIONS / MAX_WALLCLOCK_SECONDS from the
    environment."""
    from pgolf.config import apply_overrides, from_dict
    from pgolf.train.config import TrainConfig

    if recipe.get("format") != RECIPE_FORMAT:
        raise ConfigError(f"this train_gpt.py carries a recipe of format {recipe.get('format')!r}, expected "
                          f"{RECIPE_FORMAT!r}", "re-run `pgolf pack` with this pgolf")
    table = {"seed": DEFAULT_SEED, **recipe["train"]}  # a file packed before seeds were left out keeps its own
    return apply_overrides(from_dict(TrainConfig, table),
                           [f"{key}={env[name]}" for name, key in TRAIN_ENV.items() if name in env])


# ----------------------------------------------------------------------------- quantization (as the quantize stage)


def quantize_model(model, cfg, shards: Sequence[np.ndarray], device):
    """`quantize_state` of the model's weights with `cfg`, GPTQ calibrated as `pgolf quantize` does
    (the same helpers of `pgolf.quant.calib`, on the training stream's arrays instead of its files)."""
    from pgolf.quant.calib import (
        calibration_hessians,
        calibration_targets,
        self_calibration_tokens,
        stream_calibration_tokens,
    )
    from pgolf.quant.state import quantize_state

    hessians = None
    if cfg.gptq:
        names, extra = calibration_targets(model, cfg)
        if cfg.calib == "self":
            tokens = self_calibration_tokens(model, cfg, device)
        else:
            tokens = stream_calibration_tokens(shards, cfg.calib_tokens // cfg.calib_seq_len, cfg.calib_seq_len,
                                               model.cfg.vocab_size)
        hessians = calibration_hessians(model, tokens, names, extra, device, cfg.calib_batch_tokens)
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
