"""The program inside `pack/train_gpt.py`: (train, quantize, pack, then) evaluate model.bin.

`pgolf pack` bundles this module with everything it imports (`pgolf.pack.bundle`) into the
submission file, whose last line calls `main` with the real environment, file access and `print`,
and the recipe of the run (`pgolf.pack.reproduce`). The program is pure in the way the rest of pgolf
is: all it knows of the world comes through `Io`, so tests run it in-process as well as in a
subprocess.

Run from the submission folder (model.bin is looked up next to the script):

    DATA_PATH=./data/datasets/fineweb10B_sp1024 TOKENIZER_PATH=./data/tokenizers/fineweb_1024_bpe.model \
        python train_gpt.py                        # torchrun --nproc_per_node=8 train_gpt.py on 8 GPUs

With model.bin beside it, the file evaluates it. Without one (or with TRAIN=1), it first trains,
quantizes and packs as the recorded recipe says, writes model.bin, and evaluates that file.

Environment variables (the challenge's names where it has one):

| variable | default | meaning |
|---|---|---|
| DATA_PATH | ./data/datasets/fineweb10B_sp1024 | `fineweb_val_*.bin` (and `bytes_val_*.bin` sidecars, or a CaseOps export's `fineweb_val_bytes_*.bin`); `fineweb_train_*.bin` to train |
| TOKENIZER_PATH | ./data/tokenizers/fineweb_1024_bpe.model | SentencePiece model: byte counts when there is no sidecar |
| VOCAB_SIZE | the model's | checked against the model |
| SEED | 1337 | the training seed (the recipe records none: one file serves every seed); when set, torch's before evaluation too |
| ITERATIONS, MAX_WALLCLOCK_SECONDS | the recipe's | training step and time caps |
| TRAIN | - | 1: train even when model.bin exists (and replace it) |
| MODEL_PATH | model.bin next to the script | the packed model (read, or written by training) |
| DEVICE | auto | auto (a GPU when there is one), cuda or cpu |
| EVAL_<KEY> | recorded at pack time | any EvalConfig key: EVAL_MODE=ttt, EVAL_STRIDE=64, EVAL_TTT_LR=0.005 |
| RANK, WORLD_SIZE, LOCAL_RANK | - | set by torchrun: each rank scores its share |

Output (rank 0), in the challenge's key:value style; the last line is JSON with full precision:

    model_bytes:15890123 code_bytes:52345 total_bytes:15942468 model_sha256:3f1c...
    val_tokens:62021632 val_bytes:151080891 val_bytes_source:lut
    eval mode:sliding seq_len:2048 stride:64 device:cuda:0 world_size:8
    final_sliding val_loss:2.01234567 val_bpb:1.19123456 eval_time:81234ms
    pgolf_result {"mode": "sliding", "val_loss": 2.0123456789, "val_bpb": 1.1912345678, ...}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pgolf.config import apply_overrides, from_dict, leaf_paths
from pgolf.data import shards
from pgolf.errors import ConfigError, DataError, PgolfError
from pgolf.eval.config import EvalConfig

DATA_PATH = "./data/datasets/fineweb10B_sp1024"
TOKENIZER_PATH = "./data/tokenizers/fineweb_1024_bpe.model"
ENV_PREFIX = "EVAL_"


@dataclasses.dataclass(frozen=True)
class Io:
    """Everything the program reads or writes: the environment, files (whole, or memory-mapped as
    uint8), directory listings, output lines."""

    env: Mapping[str, str]
    read: Callable[[str], bytes]
    map: Callable[[str], np.ndarray]
    write: Callable[[str, bytes], Any]
    exists: Callable[[str], bool]
    glob: Callable[[str], list[str]]
    log: Callable[[str], None]


def env_keys() -> dict[str, str]:
    """{EVAL_MODE: "mode", EVAL_TTT_LR: "ttt.lr", ...}: one variable per EvalConfig key."""
    return {ENV_PREFIX + key.upper().replace(".", "_"): key for key in leaf_paths(EvalConfig)}


def eval_config(meta: Mapping[str, Any], env: Mapping[str, str]) -> EvalConfig:
    """The recorded EvalConfig with EVAL_* overrides; seq_len 0 means the training length."""
    keys = env_keys()
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in keys)
    if unknown:
        raise ConfigError(f"unknown evaluation variable {unknown[0]}", f"known: {', '.join(sorted(keys))}")
    cfg = apply_overrides(from_dict(EvalConfig, meta["eval"]), [f"{keys[k]}={env[k]}" for k in sorted(keys) if k in env])
    if cfg.seq_len == 0:
        cfg = apply_overrides(cfg, [f"seq_len={meta['train_seq_len']}",
                                    f"stride={min(cfg.stride, meta['train_seq_len'])}"])
    return cfg


def _paths(io: Io, directory: str, prefix: str) -> list[str]:
    paths = sorted(io.glob(os.path.join(directory, f"{prefix}_*.bin")))
    # the CaseOps export's byte arrays (`fineweb_val_bytes_*`, PR #2135) match the val glob: not tokens
    return [p for p in paths if not os.path.basename(p).startswith("fineweb_val_bytes_")] \
        if prefix == "fineweb_val" else paths


def map_shards(io: Io, directory: str, split: str) -> list[np.ndarray]:
    """Every `fineweb_{split}_*.bin` of `directory` in sorted order, memory-mapped as uint16 tokens."""
    out = []
    for path in _paths(io, directory, f"fineweb_{split}"):
        data = io.map(path)
        n = shards.parse_shard_header(bytes(data[: shards.HEADER_BYTES]), path, int(data.shape[0]))
        out.append(data[shards.HEADER_BYTES:].view(shards.TOKEN_DTYPE)[:n])
    return out


def load_val_tokens(io: Io, directory: str) -> np.ndarray:
    """Every `fineweb_val_*.bin` of `directory`, concatenated in sorted order (uint16)."""
    parts = map_shards(io, directory, "val")
    if not parts:
        raise DataError(f"no fineweb_val_*.bin shards in {directory}", "set DATA_PATH to the directory of the shards")
    return np.concatenate(parts)


def load_token_bytes(io: Io, directory: str, tokenizer: str, tokens: np.ndarray) -> tuple[np.ndarray, str]:
    """Bytes per token: pgolf's sidecars when the directory has them, else the tokenizer's lookup tables."""
    sidecars = _paths(io, directory, "bytes_val")
    if sidecars:
        parts = []
        for path in sidecars:
            data = io.read(path)
            n, size = shards.parse_sidecar_header(data[: shards.HEADER_BYTES], path, len(data))
            parts.append(np.frombuffer(data, dtype=f"<u{size}", count=n, offset=shards.HEADER_BYTES))
        side = np.concatenate(parts).astype(np.int32)
        if side.shape != tokens.shape:
            raise DataError(f"the byte sidecars in {directory} have {side.shape[0]} entries for {tokens.shape[0]} "
                            "val tokens", "rebuild them with `pgolf data build`, or remove them to use the tokenizer")
        return side, "sidecar"
    exported = _paths(io, directory, "fineweb_val_bytes")
    if exported:  # the CaseOps export's per-token original bytes, in token-shard format (PR #2135)
        parts = []
        for path in exported:
            mapped = io.map(path)
            n = shards.parse_shard_header(bytes(mapped[: shards.HEADER_BYTES]), path, int(mapped.shape[0]))
            parts.append(mapped[shards.HEADER_BYTES:].view(shards.TOKEN_DTYPE)[:n])
        side = np.concatenate(parts).astype(np.int32)
        if side.shape != tokens.shape:
            raise DataError(f"the fineweb_val_bytes_*.bin arrays in {directory} have {side.shape[0]} entries for "
                            f"{tokens.shape[0]} val tokens", "use the export's val and val_bytes files together")
        return side, "sidecar"
    from pgolf.data.bpb import build_byte_tables, lut_stream_bytes
    from pgolf.data.tokenizer import load_tokenizer

    try:
        model = io.read(tokenizer)
    except OSError as e:
        raise DataError(f"cannot read the tokenizer {tokenizer} ({e.strerror or e})",
                        "set TOKENIZER_PATH to the SentencePiece .model of the shards") from None
    return lut_stream_bytes(build_byte_tables(load_tokenizer(model, tokenizer)), tokens).astype(np.int32), "lut"


def main(io: Io, script: str, started: float | None = None, clock: Callable[[], float] = time.perf_counter,
         recipe: str | None = None) -> int:
    """Evaluate the packed model (training it first when there is none, or with TRAIN=1); returns the
    exit code (0, or 1 after one `error:` line). `recipe`: the JSON of `pgolf.pack.reproduce.make_recipe`,
    or None for a file packed without training."""
    started = clock() if started is None else started
    from pgolf.runtime import dist
    from pgolf.runtime.device import describe, resolve_device

    env = io.env
    info = dist.DistInfo(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                         int(env.get("LOCAL_RANK", env.get("RANK", 0))))
    say = io.log if info.is_main else (lambda line: None)
    try:
        device = resolve_device(env.get("DEVICE", "auto"), info.local_rank)
        dist.init(info, device)
        data = Data(io, env.get("DATA_PATH", DATA_PATH), env.get("TOKENIZER_PATH", TOKENIZER_PATH))
        model_path = env.get("MODEL_PATH") or os.path.join(os.path.dirname(script), "model.bin")
        if env.get("TRAIN") == "1" or not io.exists(model_path):
            _train(io, recipe, data, model_path, device, info, say)
            started = clock()  # the evaluation clock starts once model.bin is written (rules TIME-3)
        result = _evaluate(io, script, model_path, data, started, clock, device, say)
        say(f"eval mode:{result['mode']} seq_len:{result['seq_len']} stride:{result['stride']} "
            f"device:{describe(device)} world_size:{info.world_size}")
        say(f"final_{result['mode']} val_loss:{result['val_loss']:.8f} val_bpb:{result['val_bpb']:.8f} "
            f"eval_time:{result['eval_time_s'] * 1000:.0f}ms")
        say("pgolf_result " + json.dumps(result, sort_keys=True))
        return 0
    except PgolfError as e:
        say(f"error: {e}")
        return 1
    finally:
        dist.shutdown()


class Data:
    """The validation stream of DATA_PATH (loaded on first use) and its bytes per token."""

    def __init__(self, io: Io, path: str, tokenizer: str):
        self.io, self.path, self.tokenizer = io, path, tokenizer
        self._val: tuple[np.ndarray, np.ndarray, str] | None = None

    def val(self, vocab_size: int) -> tuple[np.ndarray, np.ndarray, str]:
        """(tokens [N] uint16, bytes per token [N] int32, "sidecar" | "lut")."""
        if self._val is None:
            tokens = load_val_tokens(self.io, self.path)
            shards.check_token_range(tokens, vocab_size, self.path)
            self._val = (tokens, *load_token_bytes(self.io, self.path, self.tokenizer, tokens))
        return self._val


def _train(io: Io, recipe: str | None, data: Data, model_path: str, device, info, say) -> None:
    """Make model.bin from the recipe (rank 0 writes it; every rank waits for it)."""
    from pgolf.runtime import dist

    if recipe is None:
        raise ConfigError(f"there is no model.bin at {model_path} (or TRAIN=1), and this train_gpt.py was packed "
                          "without its training recipe", "put its model.bin next to it, or pack with "
                          "--set trainable=true")
    from pgolf.pack.reproduce import train_and_pack, train_config

    rec = json.loads(recipe)
    tokens, token_bytes, _ = data.val(train_config(rec, io.env).model.vocab_size)
    blob = train_and_pack(rec, io.env, map_shards(io, data.path, "train"), tokens, token_bytes, device, info, say)
    if info.is_main:
        io.write(model_path, blob)
        say(f"wrote {model_path}: {len(blob)} bytes")
    dist.barrier()


def _evaluate(io: Io, script: str, model_path: str, data: Data, started: float, clock, device, say) -> dict[str, Any]:
    import torch

    from pgolf.eval.dist import World
    from pgolf.eval.loop import evaluate
    from pgolf.pack.packed import unpack_model

    env = io.env
    try:
        blob, code = io.read(model_path), io.read(script)
    except OSError as e:
        raise DataError(f"cannot read {e.filename} ({e.strerror})", "run train_gpt.py next to its model.bin") from None
    digest = hashlib.sha256(blob).hexdigest()
    say(f"model_bytes:{len(blob)} code_bytes:{len(code)} total_bytes:{len(blob) + len(code)} model_sha256:{digest}")
    model, meta = unpack_model(blob)
    mc = model.cfg
    if "VOCAB_SIZE" in env and int(env["VOCAB_SIZE"]) != mc.vocab_size:
        raise ConfigError(f"VOCAB_SIZE={env['VOCAB_SIZE']} but the model's vocabulary is {mc.vocab_size}",
                          "evaluate with the tokenizer and shards the model was trained on")
    cfg = eval_config(meta, env)
    tokens, token_bytes, source = data.val(mc.vocab_size)
    val_bytes = int(token_bytes[1:].sum(dtype=np.int64))
    say(f"val_tokens:{tokens.shape[0] - 1} val_bytes:{val_bytes} val_bytes_source:{source}")
    if "SEED" in env:
        torch.manual_seed(int(env["SEED"]))
    deadline = started + cfg.time_budget_s if cfg.time_budget_s > 0 else None
    res = evaluate(model.to(device), tokens, token_bytes, cfg, bos_id=mc.bos_id, world=World.current(), clock=clock,
                   deadline=deadline, vocab_size=mc.vocab_size, meta={"model_sha256": digest})
    s = res.summary()
    return {"mode": cfg.mode, "val_loss": s["val_loss"], "val_bpb": s["val_bpb"], "val_tokens": s["val_tokens"],
            "val_bytes": s["val_bytes"], "seq_len": cfg.seq_len, "stride": cfg.window_stride,
            "eval_time_s": clock() - started, "model_sha256": digest, "model_bytes": len(blob),
            "code_bytes": len(code), "val_bytes_source": source, "adapted_chunks": s["adapted_chunks"]}
