"""`pgolf quantize`: train/ -> quant/ (quant.safetensors, report.json, manifest.json).

The stage reads the trained float model (its files checked against the train manifest), collects
GPTQ Hessians when `gptq` is on (training tokens from the start of the training stream, or tokens
the model generates itself; never validation tokens, rules DATA-7), quantizes with
`pgolf.quant.quantize_state`, checks that the file it wrote dequantizes to exactly the weights it
measured, and optionally scores the float and the dequantized model on the first N validation
tokens (plain windows, exact bytes). Everything is written into a temporary directory that is
renamed into place once the manifest exists.

Two defaults follow the model when neither the config file nor `--set` gives them:
- `passthrough_numel` = min(65,536, model_dim^2 / 4): the records' 65,536 at model_dim >= 512, and
  a quarter of a D x D matrix below, so a small model's attention and MLP matrices are quantized too
  (at the fixed 65,536 every matrix of the tiny preset would stay fp16 and the scheme would do nothing);
- `calib_seq_len` = the training sequence length: GPTQ sees the contexts the model was trained on.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from pgolf import artifacts
from pgolf import config as cfgmod
from pgolf.artifacts import Manifest
from pgolf.artifacts import data as datadir
from pgolf.artifacts.model import check_train_config, data_dir_of, load_model
from pgolf.artifacts.quant import QUANT_FILE, REPORT_FILE, REPORT_FORMAT
from pgolf.data.bpb import build_byte_tables, lut_stream_bytes
from pgolf.data.tokenizer import load_tokenizer
from pgolf.errors import ConfigError, DataError, LegalityError
from pgolf.eval import EvalConfig, evaluate
from pgolf.model import GPT
from pgolf.quant import FORMAT, QuantizeConfig, dequantize_state, plan_tensor, quantize_state
from pgolf.quant.calib import (
    calibration_hessians,
    calibration_targets,
    self_calibration_tokens,
    stream_calibration_tokens,
)
from pgolf.quant.config import SCHEMES
from pgolf.quant.matrix import hessian_row_error
from pgolf.runtime import console
from pgolf.runtime.device import describe, resolve_device, synchronize
from pgolf.runtime.env import code_info, env_info
from pgolf.stages import runner

JSON_KEYS = ("out", "scheme", "params", "quantized_params", "bits_per_param", "payload_bytes", "rel_err", "gptq",
             "calib_source")
EVAL_JSON_KEYS = ("eval_tokens", "val_bpb_float", "val_bpb_quant", "quant_gap_bpb")

RECORD_PASSTHROUGH_NUMEL = 65_536  # the records' threshold (QuantizeConfig's default)
VAL_SOURCES = ("val", "valid", "validation", "test")


# ----------------------------------------------------------------------------- config


def check_scheme(scheme: str) -> None:

    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme '{scheme}'", f"choose one of: {', '.join(SCHEMES)}")


def model_defaults(train_manifest: Manifest) -> dict[str, Any]:
    """The QuantizeConfig defaults that follow the trained model (see the module docstring)."""
    out: dict[str, Any] = {}
    model_dim = (train_manifest.config.get("model") or {}).get("model_dim")
    if isinstance(model_dim, int) and model_dim > 0:
        out["passthrough_numel"] = min(RECORD_PASSTHROUGH_NUMEL, model_dim * model_dim // 4)
    seq_len = train_manifest.config.get("seq_len")
    if isinstance(seq_len, int) and seq_len >= 2:
        out["calib_seq_len"] = seq_len
    return out


def refuse_val_calibration(value: Any) -> None:
    """`calib = "val"` is calibrating on the test set: a rules violation, said as such."""
    if isinstance(value, str) and value.strip().lower() in VAL_SOURCES:
        raise LegalityError(f"calibration source '{value}' is validation data, which may never calibrate "
                            "(rules DATA-7)", "use calib = \"train\" (training tokens) or \"self\" (self-generated)")


def resolve_config(table: Mapping[str, Any], train_manifest: Manifest, where: str = "quantize") -> QuantizeConfig:
    """The stage contract's config step: QuantizeConfig defaults <- the defaults that follow the trained
    model (`model_defaults`) <- `table`. `pgolf quantize` and `pgolf run` both build it here."""
    merged = cfgmod.merge_tables(model_defaults(train_manifest), table)
    refuse_val_calibration(merged.get("calib"))
    if isinstance(merged.get("scheme"), str):
        check_scheme(merged["scheme"])
    return cfgmod.from_dict(QuantizeConfig, merged, where=where)


def load_config(train_dir: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
                scheme: str | None = None) -> QuantizeConfig:
    """QuantizeConfig for quantizing `train_dir`: defaults <- defaults that follow the model <- the
    `[quantize]` table of `config` <- `--set` overrides <- `scheme` (the --scheme flag)."""
    if scheme is not None:
        check_scheme(scheme)
    manifest = artifacts.read_manifest(train_dir, "train")
    check_train_config(manifest, train_dir)
    table: dict[str, Any] = {}
    if config is not None:
        table = cfgmod.load_section(config, "quantize")
    table = cfgmod.merge_tables(table, cfgmod.overrides_to_table(QuantizeConfig, list(overrides)))
    if scheme is not None:
        table["scheme"] = scheme
    return resolve_config(table, manifest, where="")


# ----------------------------------------------------------------------------- inputs


def _val_hashes(directories: Sequence[Path]) -> dict[str, str]:
    """sha256 -> name of every validation file the data manifests of `directories` list."""
    out: dict[str, str] = {}
    for d in directories:
        if not (d / artifacts.MANIFEST).is_file():
            continue
        m = artifacts.read_manifest(d, "data")
        for entry in m.files:
            name = Path(entry["path"]).name
            if name.startswith(("fineweb_val_", "bytes_val_")):
                out[entry["sha256"]] = name
    return out


def calibration_shards(calib_data: Path, train_data: Path | None) -> list[Path]:
    """The training shards GPTQ may calibrate on: `calib_data` is a data directory (its
    fineweb_train_*.bin, sorted) or one fineweb_train_*.bin file. Validation data is refused with a
    LegalityError (rules DATA-7): by name, or by content when a data manifest lists it as val."""
    rule = "(rules DATA-7: calibration uses training tokens inside the training budget, or self-generated ones)"
    if calib_data.is_file():
        name = calib_data.name
        if name.startswith(("fineweb_val_", "bytes_val_")):
            raise LegalityError(f"--calib-data {calib_data} is validation data, which may never calibrate {rule}",
                                "point --calib-data at a data directory or a fineweb_train_*.bin shard")
        if not datadir.SHARD_RE.match(name):
            raise DataError(f"--calib-data {calib_data} is not a training shard (fineweb_train_NNNNNN.bin)",
                            "point --calib-data at a data directory or a fineweb_train_*.bin shard")
        shards, home = [calib_data], calib_data.parent
    elif calib_data.is_dir():
        shards, home = datadir.list_shards(calib_data, "train"), calib_data
        if not shards:
            if datadir.list_shards(calib_data, "val"):
                raise LegalityError(f"--calib-data {calib_data} holds only validation shards, which may never "
                                    f"calibrate {rule}", "point --calib-data at a directory with fineweb_train_*.bin")
            raise DataError(f"--calib-data {calib_data} holds no fineweb_train_*.bin shards",
                            "build them with `pgolf data build` or fix --calib-data")
    else:
        raise DataError(f"calibration data {calib_data} does not exist", "fix --calib-data (or --data)")
    val = _val_hashes([home] + ([train_data] if train_data is not None else []))
    if val:
        for path in shards:
            sha = artifacts.sha256_file(path)
            if sha in val:
                raise LegalityError(f"{path} has the content of the validation file {val[sha]}; validation data "
                                    f"may never calibrate {rule}", "calibrate on the training shards")
    return shards


def train_calibration_tokens(shards: Sequence[Path], num_seqs: int, seq_len: int, vocab_size: int):
    """The first num_seqs * seq_len tokens of the training stream (sorted shards, from offset 0: the
    order the train stage reads them), as int64 [S, T], and the provenance of each shard read."""

    arrays = [datadir.open_shard(p) for p in shards]
    tokens = stream_calibration_tokens(arrays, num_seqs, seq_len, vocab_size)
    if tokens.shape[0] < num_seqs:
        total = sum(int(a.shape[0]) for a in arrays)
        console.warn(f"the calibration shards hold {total:,} tokens: {tokens.shape[0]} sequences of {seq_len} "
                     f"instead of {num_seqs}")
    read, used, need = [], 0, tokens.numel()
    for path, arr in zip(shards, arrays):
        if used >= need:
            break
        take = min(int(arr.shape[0]), need - used)
        read.append({"name": path.name, "sha256": artifacts.sha256_file(path), "tokens": take})
        used += take
    return tokens, read


# ----------------------------------------------------------------------------- calibration


def _calibrate(model, cfg, device, calib_dir: Path | None, shards: Sequence[Path] | None):
    """(Hessians, provenance, seconds) for GPTQ; ({}, None, 0.0) when GPTQ is off. `shards`: the
    training shards (`calibration_shards`) when calib = "train"."""

    if not cfg.gptq:
        return {}, None, 0.0
    names, extra = calibration_targets(model, cfg)
    t0 = time.perf_counter()
    num_seqs, seq_len = cfg.calib_tokens // cfg.calib_seq_len, cfg.calib_seq_len
    if cfg.calib == "self":
        console.info(f"calibration: generating {num_seqs} sequences of {seq_len} tokens (temperature "
                     f"{cfg.calib_temperature}, seed {cfg.calib_seed})")
        tokens = self_calibration_tokens(model, cfg, device)
        prov: dict[str, Any] = {"source": "self", "seed": cfg.calib_seed, "temperature": cfg.calib_temperature,
                                "sequences": int(tokens.shape[0]), "seq_len": seq_len,
                                "tokens": int(tokens.numel()), "device": device.type}
    else:
        assert shards, "calib = 'train' needs the training shards"
        tokens, read = train_calibration_tokens(shards, num_seqs, seq_len, model.cfg.vocab_size)
        console.info(f"calibration: {tokens.numel():,} training tokens ({tokens.shape[0]} x {seq_len}) from the "
                     f"start of the training stream in {calib_dir}")
        # `data` absolute: verify re-reads each shard as data/name (or data itself: one --calib-data file).
        prov = {"source": "train", "data": str(Path(calib_dir).resolve()) if calib_dir is not None else None,
                "shards": read, "order": "stream_start",
                "sequences": int(tokens.shape[0]), "seq_len": seq_len, "tokens": int(tokens.numel())}
    prov["weights"] = len(names)
    hessians = calibration_hessians(model, tokens, names, extra, device, cfg.calib_batch_tokens)
    synchronize(device)
    return hessians, prov, time.perf_counter() - t0


# ----------------------------------------------------------------------------- evaluation


def load_eval_data(data: Path, tokenizer: Path | None, num_tokens: int, vocab_size: int):
    """(tokens [n + 1], byte counts [n + 1], facts): the first n scored validation tokens of `data`
    (n = min(num_tokens, all targets)) with the sidecar's byte counts, or the tokenizer's tables."""


    d = datadir.resolve_data_dir(data, tokenizer)
    tokens = datadir.load_val_tokens(d.path, vocab_size)
    n = min(num_tokens, tokens.shape[0] - 1)
    if n < 1:
        raise DataError(f"{d.path} has {tokens.shape[0]} validation tokens; at least 2 are needed",
                        "check the val shards")
    tokens = np.asarray(tokens[: n + 1])
    side = datadir.load_val_bytes(d.path)
    if side is not None:
        token_bytes, source = side[: n + 1], "sidecar"
    elif d.tokenizer_path is not None:
        sp = load_tokenizer(d.tokenizer_path.read_bytes(), str(d.tokenizer_path))
        token_bytes, source = lut_stream_bytes(build_byte_tables(sp), tokens), "lut"
    else:
        raise DataError(f"{d.path} has no byte sidecar and no tokenizer: val_bpb cannot be computed",
                        "pass --tokenizer PATH.model")
    man = d.path / artifacts.MANIFEST
    facts = {"data": str(d.path), "data_manifest_sha256": artifacts.sha256_file(man) if man.is_file() else None,
             "bytes_source": source}
    return tokens, token_bytes, facts


def score(model, tokens, token_bytes, seq_len: int, bos_id: int) -> dict[str, Any]:
    """Plain-window val_loss / val_bpb of `model` on `tokens` (every position once, exact bytes)."""

    cfg = EvalConfig(mode="plain", seq_len=seq_len, time_budget_s=0.0)
    return evaluate(model, tokens, token_bytes, cfg, bos_id=bos_id).summary()


# ----------------------------------------------------------------------------- report


def _error_sums(state, deq, hessians) -> dict[str, dict[str, float]]:
    """Per float tensor: squared error and squared norm (for pooled relative errors), and with a
    Hessian the output error (W - Ŵ) H (W - Ŵ)^T against W H W^T on the calibration inputs."""


    out: dict[str, dict[str, float]] = {}
    for name, w in state.items():
        if not w.is_floating_point():
            continue
        w64, r64 = w.detach().double().cpu(), deq[name].double().cpu()
        entry = {"sq_err": float((w64 - r64).square().sum()), "sq_norm": float(w64.square().sum())}
        h = hessians.get(name)
        if h is not None:
            w32 = w.detach().float().reshape(w.shape[0], -1)
            err = hessian_row_error(w32, deq[name].to(w32.device).float().reshape(w32.shape), h).sum()
            base = hessian_row_error(w32, torch.zeros_like(w32), h).sum()
            entry["output_rel_err"] = math.sqrt(max(float(err), 0.0) / float(base)) if float(base) > 0 else 0.0
        out[name] = entry
    return out


def _pooled(rows: Sequence[Mapping[str, float]]) -> float:
    norm = sum(r["sq_norm"] for r in rows)
    return math.sqrt(sum(r["sq_err"] for r in rows) / norm) if norm > 0 else 0.0


def build_report(cfg, res, errors: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """report.json: per tensor (the library's report + output error), per class/scheme, totals, summary."""
    tensors: dict[str, dict[str, Any]] = {}
    for name, r in res.report["tensors"].items():
        tensors[name] = dict(r)
        if "output_rel_err" in errors.get(name, {}):
            tensors[name]["output_rel_err"] = errors[name]["output_rel_err"]
    groups: dict[str, dict[str, Any]] = {}
    for name, r in tensors.items():
        key = f"{r['class']}:{r['scheme']}"
        g = groups.setdefault(key, {"class": r["class"], "scheme": r["scheme"], "bits": r["bits"], "tensors": 0,
                                    "params": 0, "payload_bits": 0, "_rows": []})
        g["tensors"] += 1
        g["params"] += r["numel"]
        g["payload_bits"] += r["payload_bits"]
        if name in errors:
            g["_rows"].append(errors[name])
    classes = []
    for g in sorted(groups.values(), key=lambda g: (g["class"], g["scheme"])):
        rows = g.pop("_rows")
        classes.append({**g, "rel_err": _pooled(rows)})
    int_names = [n for n, r in tensors.items() if r["method"] != "passthrough"]
    worst = max(int_names, key=lambda n: tensors[n]["rel_err"], default=None)

    def weighted(key: str, names: Sequence[str]) -> float:  # an element-weighted mean over `names`
        numel = sum(tensors[n]["numel"] for n in names)
        return sum(tensors[n][key] * tensors[n]["numel"] for n in names) / numel if numel else 0.0

    summary = {
        "rel_err": _pooled([errors[n] for n in int_names]),  # pooled ||W - Ŵ|| / ||W|| of the integer tensors
        "rel_err_all": _pooled(list(errors.values())),
        "max_rel_err": tensors[worst]["rel_err"] if worst else 0.0,
        "max_rel_err_tensor": worst,
        "clipped_frac": weighted("clipped_frac", int_names),
        "pruned_frac": weighted("pruned_frac", list(tensors)),
    }
    with_h = [n for n in int_names if "output_rel_err" in tensors[n]]
    if with_h:
        summary["max_output_rel_err"] = max(tensors[n]["output_rel_err"] for n in with_h)
    return {"format": REPORT_FORMAT, "scheme": cfg.scheme, "totals": res.report["totals"], "summary": summary,
            "classes": classes, "tensors": tensors}


def _scheme_warnings(cfg, state, report: Mapping[str, Any]) -> list[str]:
    """Loud notes when the scheme did less than a user expects (matrices left in fp16 by their size)."""

    tensors = report["tensors"]
    warnings = []
    if report["totals"]["num_int_tensors"] == 0:
        warnings.append(f"nothing was quantized: every tensor stays float (the largest has "
                        f"{max((r['numel'] for r in tensors.values()), default=0):,} elements, passthrough_numel is "
                        f"{cfg.passthrough_numel:,})")
    small = [n for n, r in tensors.items() if r["class"] in ("attn", "mlp") and plan_tensor(
        n, tuple(state[n].shape), state[n].dtype, r["class"], cfg).reason == "small"]
    if small:
        warnings.append(f"{len(small)} attention/MLP matrices ({sum(tensors[n]['numel'] for n in small):,} params) "
                        f"stay fp16 because they have at most passthrough_numel = {cfg.passthrough_numel:,} elements; "
                        f"quantize them with --set passthrough_numel={min(tensors[n]['numel'] for n in small) - 1}")
    return warnings


# ----------------------------------------------------------------------------- the stage


def run(cfg, train_dir: str | Path, out: str | Path, *, force: bool = False, data: str | Path | None = None,
        calib_data: str | Path | None = None, tokenizer: str | Path | None = None, eval_tokens: int = 0,
        device: str = "auto") -> Manifest:
    """Quantize the model in `train_dir` with `cfg` (a QuantizeConfig) into `out`; returns the manifest.

    `data`: a data directory for `eval_tokens` (default: the one the model was trained on) and the
    default calibration source; `calib_data`: where GPTQ reads training tokens (a data directory or
    one fineweb_train_*.bin; default `data`, else the training data). `eval_tokens` > 0 also scores
    the float and the dequantized model on that many validation targets (plain windows of the
    training seq_len). `device`: "auto" (CUDA when available), "cpu" or "cuda".
    """
    t_start = time.perf_counter()
    train_dir = Path(train_dir)
    data = Path(data) if data is not None else None
    if eval_tokens < 0:
        raise ConfigError(f"--eval-tokens must be >= 0 (0: no evaluation); got {eval_tokens}")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda; got {device!r}")
    dev = resolve_device(device)
    # Every input is checked before any work, so a mistake costs nothing and leaves nothing behind.
    tm = artifacts.read_manifest(train_dir, "train")
    check_train_config(tm, train_dir)
    train_data = data_dir_of(train_dir, tm)
    calib_dir = Path(calib_data) if calib_data is not None else (data or train_data)
    inputs = [train_dir, data, calib_dir, train_data, tokenizer]
    with runner.claim(out, "quant", inputs=inputs, force=force) as output:
        return _quantize(cfg, train_dir, output, t_start=t_start, data=data, calib_data=calib_data,
                         calib_dir=calib_dir, train_data=train_data, tokenizer=tokenizer, eval_tokens=eval_tokens,
                         dev=dev)


def _quantize(cfg, train_dir: Path, output: runner.Output, *, t_start: float, data: Path | None,
              calib_data: str | Path | None, calib_dir: Path | None, train_data: Path | None,
              tokenizer: str | Path | None, eval_tokens: int, dev) -> Manifest:
    reads_train = cfg.gptq and cfg.calib == "train"
    warnings: list[str] = []
    shards = None
    if calib_data is not None or (reads_train and calib_dir is not None):
        shards = calibration_shards(calib_dir, train_data)  # refuses validation data even when unused
    if calib_data is not None and not reads_train:
        warnings.append("--calib-data is unused: only GPTQ with calib = \"train\" reads training tokens")
    if reads_train and shards is None:
        raise DataError("GPTQ calibrates on training tokens but the training data cannot be found",
                        "pass --calib-data DIR (or --data DIR), or --set calib=self")
    eval_data = data or train_data
    if eval_tokens and eval_data is None:
        raise DataError("--eval-tokens needs validation data but the training data cannot be found",
                        "pass --data DIR")

    model, model_cfg, tm = load_model(train_dir)  # checks the train files against their manifest
    model = model.to(dev)
    console.info(f"quantize: scheme {cfg.scheme}, clip {cfg.clip}, gptq {'on' if cfg.gptq else 'off'}, "
                 f"passthrough_numel {cfg.passthrough_numel:,}, device {describe(dev)}")
    hessians, calib, calib_s = _calibrate(model, cfg, dev, calib_dir, shards)
    t0 = time.perf_counter()
    state = {k: v.detach() for k, v in model.state_dict().items()}
    res = quantize_state(state, cfg, hessians if cfg.gptq else None)
    deq = dequantize_state(res.tensors, res.meta)
    synchronize(dev)
    quantize_s = time.perf_counter() - t0
    report = build_report(cfg, res, _error_sums(state, deq, hessians))
    warnings += _scheme_warnings(cfg, state, report)
    corrected = [n for n, e in res.meta["tensors"].items() if "lqer" in e]
    if cfg.lqer:
        console.info(f"LQER: rank-{cfg.lqer_rank} corrections on {', '.join(corrected) or 'no matrix'}")

    evaluation = None
    if eval_tokens:
        seq_len = int(tm.config.get("seq_len") or cfg.calib_seq_len)  # the training context
        evaluation = _evaluate(model, deq, model_cfg, eval_data, tokenizer, eval_tokens, seq_len, dev)
    for w in warnings:
        console.warn(w)
    report.update(calibration=calib, evaluation=evaluation, warnings=warnings)
    metadata = {"pgolf.format": FORMAT, "pgolf.model_config": cfgmod.to_dict(model_cfg), "pgolf.quant": res.meta}

    with output.publish() as work:
        artifacts.save_safetensors(work / QUANT_FILE, res.tensors, metadata)
        _check_round_trip(work / QUANT_FILE, res.tensors, deq)
        artifacts.write_json(work / REPORT_FILE, report)
        timing = {"calib_s": calib_s, "quantize_s": quantize_s,
                  "eval_s": evaluation["eval_s"] if evaluation else 0.0, "wall_s": time.perf_counter() - t_start}
        manifest = Manifest(
            kind="quant", config={**cfgmod.to_dict(cfg), "calibration": calib},
            inputs=[artifacts.input_entry("train", train_dir / artifacts.MANIFEST, work)],
            files=[artifacts.file_entry(work, QUANT_FILE, "pgolf.quant"),
                   artifacts.file_entry(work, REPORT_FILE, "pgolf.quant.report")],
            metrics=_metrics(cfg, report), timing=timing, seed=tm.seed, code=code_info(), env=env_info(dev.type, 1))
        artifacts.write_manifest(work, manifest)
    return manifest


def _evaluate(model, deq, model_cfg, data: Path, tokenizer, eval_tokens: int, seq_len: int, dev) -> dict[str, Any]:
    """Float and dequantized val_bpb on the first `eval_tokens` validation targets, and their facts."""

    t0 = time.perf_counter()
    tokens, token_bytes, facts = load_eval_data(data, tokenizer, eval_tokens, model_cfg.vocab_size)
    qmodel = GPT(model_cfg)
    qmodel.load_state_dict(deq, strict=True)
    qmodel = qmodel.to(dev).eval()
    console.info(f"evaluating the float and the quantized model on {tokens.shape[0] - 1:,} validation tokens "
                 f"(plain windows of {seq_len})")
    fl = score(model, tokens, token_bytes, seq_len, model_cfg.bos_id)
    qu = score(qmodel, tokens, token_bytes, seq_len, model_cfg.bos_id)
    return {**facts, "mode": "plain", "seq_len": seq_len, "eval_tokens": fl["val_tokens"], "val_bytes": fl["val_bytes"],
            "val_loss_float": fl["val_loss"], "val_loss_quant": qu["val_loss"], "val_bpb_float": fl["val_bpb"],
            "val_bpb_quant": qu["val_bpb"], "quant_gap_bpb": qu["val_bpb"] - fl["val_bpb"],
            "eval_s": time.perf_counter() - t0}


def _metrics(cfg, report: Mapping[str, Any]) -> dict[str, Any]:
    """manifest.metrics: sizes, the error summary, calibration and evaluation facts."""
    totals, calib, evaluation = report["totals"], report["calibration"], report["evaluation"]
    metrics = {
        "scheme": cfg.scheme, "params": totals["params"], "quantized_params": totals["quantized_params"],
        "bits_per_param": totals["bits_per_param"], "entropy_bits_per_param": totals["entropy_bits_per_param"],
        "payload_bytes": math.ceil(totals["payload_bits"] / 8), "container_bytes": totals["container_bytes"],
        "num_tensors": totals["num_tensors"], "num_int_tensors": totals["num_int_tensors"], **report["summary"],
        "gptq": cfg.gptq, "calib_source": calib["source"] if calib else None,
        "calib_tokens": calib["tokens"] if calib else 0, "warnings": list(report["warnings"]),
    }
    if evaluation is not None:
        metrics.update({k: evaluation[k] for k in ("eval_tokens", "val_bpb_float", "val_bpb_quant", "quant_gap_bpb",
                                                   "val_loss_float", "val_loss_quant")})
        metrics.update(eval_seq_len=evaluation["seq_len"], eval_data=evaluation["data"],
                       eval_data_manifest_sha256=evaluation["data_manifest_sha256"])
    return metrics


def _check_round_trip(path: Path, tensors: Mapping[str, Any], deq: Mapping[str, Any]) -> None:
    """The file on disk holds exactly the tensors that were measured, and dequantizes to the same bits."""


    loaded, meta = artifacts.load_safetensors(path)
    same = set(loaded) == set(tensors) and all(torch.equal(loaded[k], tensors[k].cpu()) for k in tensors)
    again = dequantize_state(loaded, meta["pgolf.quant"])
    same = same and all(torch.equal(again[k], deq[k].cpu()) for k in deq)
    assert same, f"{path} does not reproduce the quantized tensors"


def summary(manifest: Manifest, out: str | Path) -> dict[str, Any]:
    """The `--json` document of `pgolf quantize`."""
    m = manifest.metrics
    doc = {"out": str(out), **{k: m.get(k) for k in JSON_KEYS if k != "out"}}
    if "val_bpb_quant" in m:
        doc.update({k: m[k] for k in EVAL_JSON_KEYS})
    return doc


def print_classes(out: str | Path) -> None:
    """The per class/storage table of an artifact's report.json, on the console (stderr)."""


    report = json.loads((Path(out) / REPORT_FILE).read_text("utf-8"))
    table = Table(title="tensors by class", box=None, pad_edge=False, title_justify="left")
    for col in ("class", "storage", "tensors", "params", "bits/param", "rel_err"):
        table.add_column(col, justify="left" if col in ("class", "storage") else "right")
    for g in report["classes"]:
        table.add_row(g["class"], g["scheme"], str(g["tensors"]), f"{g['params']:,}",
                      f"{g['payload_bits'] / max(g['params'], 1):.2f}", f"{g['rel_err']:.4f}")
    console.console.print(table)
