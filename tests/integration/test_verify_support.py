"""Run directories for the verify tests (functions only; no tests here).

`build_run` makes a complete, legal tiny run: the data dir (a copy of the session's embedded data),
`pgolf train` (a few steps of the tiny preset), then quant/ pack/ eval/ written by the stages when
pgolf has them (`pgolf.stages.quantize`, `.pack`, `.ttt_eval`), otherwise to the contract of
docs/architecture.md from the pure APIs (quantize_state, encode_model, evaluate + ScoreLedger).
Either way verify reads the same layout. The tampering functions edit a copy and fix up what a cheater
would fix up (the manifests' hashes), so the tests see the violation, not a broken hash. `verify_json`
runs `pgolf verify --json` in-process and `checks_with_id` picks checks out of its document.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path
from typing import Any

import zstandard

from pgolf import artifacts
from pgolf.artifacts import Manifest
from pgolf.config import to_dict

HAVE_STAGES = all(importlib.util.find_spec(f"pgolf.stages.{m}") is not None for m in ("quantize", "pack", "ttt_eval"))

# A small, legal submission file (the contract run's stand-in for pack's train_gpt.py).
SUBMISSION_CODE = '''"""Tiny submission: decode model.bin next to this file and evaluate it."""
import io
import json
import lzma
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    blob = (HERE / "model.bin").read_bytes()
    print(len(blob), np.__version__, torch.__version__, json.dumps({"ok": True}))
    print(lzma.CHECK_NONE, io.DEFAULT_BUFFER_SIZE)


if __name__ == "__main__":
    main()
'''

# Sliding windows without adaptation keep the run fast on 2 CPU cores; TTT ledgers are covered by
# the unit tests (tests/unit/test_verify_ledger.py) on a short stream.
EVAL_SET = ["mode=sliding", "seq_len=128", "stride=128", "chunk_tokens=16384", "batch_seqs=64", "time_budget_s=0",
            "autocast=false"]


def _manifest(directory: Path, kind: str, config: dict, inputs: list, files: list[str], metrics: dict,
              timing: dict | None = None, seed: int | None = None, env: dict | None = None) -> Manifest:
    from pgolf.runtime.env import env_info

    m = Manifest(kind=kind, config=config, inputs=inputs,
                 files=[artifacts.file_entry(directory, f, f.rsplit(".", 1)[-1]) for f in files],
                 metrics=metrics, timing=timing or {}, seed=seed, env=env or env_info("cpu", 1))
    artifacts.write_manifest(directory, m)
    return m


def contract_quant(run: Path) -> None:
    from pgolf.artifacts.model import load_model
    from pgolf.quant import QuantizeConfig, quantize_state

    model, mcfg, tm = load_model(run / "train")
    out = run / "quant"
    out.mkdir()
    cfg = QuantizeConfig(scheme="int8")
    res = quantize_state(model.state_dict(), cfg)
    artifacts.save_safetensors(out / "quant.safetensors", res.tensors, {
        "pgolf.format": "pgolf.quant/1", "pgolf.model_config": to_dict(mcfg), "pgolf.quant": res.meta})
    artifacts.write_json(out / "report.json", res.report["totals"])
    _manifest(out, "quant", to_dict(cfg), [artifacts.input_entry("train", run / "train" / "manifest.json", out)],
              ["quant.safetensors", "report.json"], {"params": res.report["totals"]["params"]},
              {"quantize_s": 0.1}, seed=tm.seed)


def contract_pack(run: Path, code: str = SUBMISSION_CODE) -> None:
    from pgolf.pack import encode_model

    tensors, meta = artifacts.load_safetensors(run / "quant" / "quant.safetensors")
    out = run / "pack"
    out.mkdir()
    blob = encode_model(tensors, {"quant": meta["pgolf.quant"], "model_config": meta["pgolf.model_config"]}, "zstd")
    (out / "model.bin").write_bytes(blob)
    (out / "train_gpt.py").write_text(code)
    code_bytes, model_bytes = len(code.encode()), len(blob)
    qm = artifacts.read_manifest(run / "quant")
    _manifest(out, "pack", {"codec": "zstd"}, [artifacts.input_entry("quant", run / "quant" / "manifest.json", out)],
              ["model.bin", "train_gpt.py"],
              {"code_bytes": code_bytes, "model_bytes": model_bytes, "total_bytes": code_bytes + model_bytes,
               "limit_bytes": 16_000_000, "fits": True}, seed=qm.seed)


def packed_model(pack_dir: Path):
    """Decode model.bin -> dequantize -> GPT (what pack's `load_packed_model` does)."""
    from pgolf.config import from_dict
    from pgolf.model import GPT, ModelConfig
    from pgolf.pack import decode_model
    from pgolf.quant import dequantize_state

    tensors, meta = decode_model((Path(pack_dir) / "model.bin").read_bytes())
    model = GPT(from_dict(ModelConfig, meta["model_config"]))
    model.load_state_dict({k: v.float() for k, v in dequantize_state(tensors, meta["quant"]).items()}, strict=True)
    return model.eval()


def contract_eval(run: Path, overrides=EVAL_SET) -> None:
    from pgolf.artifacts import data as datadir
    from pgolf.config import build
    from pgolf.eval import EvalConfig, evaluate

    cfg = build(EvalConfig, {}, list(overrides))
    model = packed_model(run / "pack")
    tokens = datadir.load_val_tokens(run / "data")
    side = datadir.load_val_bytes(run / "data")
    t0 = time.perf_counter()
    res = evaluate(model, tokens, side, cfg)
    elapsed = time.perf_counter() - t0
    out = run / "eval"
    out.mkdir()
    (out / "ledger.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(res.ledger.to_jsonl().encode()))
    s = res.summary()
    artifacts.write_json(out / "report.json", s)
    pm = artifacts.read_manifest(run / "pack")
    model_bin = artifacts.input_entry("pack", run / "pack" / "model.bin", out)  # the bytes decoded (SIZE-5)
    _manifest(out, "eval", to_dict(cfg),
              [artifacts.input_entry("pack", run / "pack" / "manifest.json", out), model_bin,
               artifacts.input_entry("data", run / "data" / "manifest.json", out)],
              ["report.json", "ledger.jsonl.zst"],
              {"mode": s["mode"], "val_loss": s["val_loss"], "val_bpb": s["val_bpb"], "val_tokens": s["val_tokens"],
               "val_bytes": s["val_bytes"], "eval_time_s": elapsed, "tokens_per_s": s["val_tokens"] / elapsed,
               "model_sha256": model_bin["sha256"], "warmup_source": "synthetic"},
              {"eval_time_s": elapsed}, seed=pm.seed)


def build_run(run: Path, data: Path, train: Path) -> Path:
    """A complete legal tiny run in `run`: copies of the data and train artifacts (the train
    manifest's lineage re-pointed at the copy), then quant/ pack/ eval/."""
    run.mkdir(parents=True)
    shutil.copytree(data, run / "data")
    shutil.copytree(train, run / "train")
    edit_manifest(run / "train", lambda m: m.update(
        inputs=[artifacts.input_entry("data", run / "data" / "manifest.json", run / "train")]))
    rehash(run, ("train",))
    if HAVE_STAGES:  # pragma: no cover - depends on the stages being present
        _real_stages(run)
    else:
        contract_quant(run)
        contract_pack(run)
        contract_eval(run)
    return run


def _real_stages(run: Path) -> None:
    """quantize -> pack -> ttt-eval through the stages' CLI (the pipeline a user runs)."""
    from typer.testing import CliRunner

    from pgolf.cli import app

    runner = CliRunner()
    for args in (["quantize", str(run / "train"), "--out", str(run / "quant")],
                 ["pack", str(run / "quant"), "--out", str(run / "pack")],
                 ["ttt-eval", str(run / "pack"), "--data", str(run / "data"), "--out", str(run / "eval"),
                  *[x for kv in EVAL_SET for x in ("--set", kv)]]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"pgolf {' '.join(args)}: {result.output}"


# ----------------------------------------------------------------------------- tampering


def rehash(run: Path, stages=("data", "train", "quant", "pack", "eval")) -> None:
    """Re-hash every stage's files into its manifest and every manifest into its consumers' inputs,
    in pipeline order, as a cheater would: only the planted violation remains, no broken hash."""
    for kind in stages:
        directory = run / kind
        m = artifacts.read_manifest(directory)
        m.files = [artifacts.file_entry(directory, f["path"], f.get("format", ""), f.get("format_version", 1))
                   for f in m.files]
        if kind != "data":
            m.inputs = [artifacts.input_entry(e["kind"], artifacts.resolve_input(directory, e), directory)
                        for e in m.inputs]
        artifacts.write_manifest(directory, m)


def edit_manifest(directory: Path, fn) -> None:
    """Apply fn(manifest dict) to a stage's manifest (hashes are not updated: call rehash)."""
    path = directory / "manifest.json"
    raw = json.loads(path.read_text())
    fn(raw)
    path.write_text(json.dumps(raw, indent=2))


def read_ledger(run: Path) -> str:
    return zstandard.ZstdDecompressor().stream_reader((run / "eval" / "ledger.jsonl.zst").read_bytes()).read().decode()


def write_ledger(run: Path, lines: list[dict], metrics: dict[str, Any] | None = None) -> None:
    """Replace the ledger (and optionally eval metrics), re-hashing the eval manifest."""
    text = "\n".join(json.dumps(x, sort_keys=True) for x in lines) + "\n"
    (run / "eval" / "ledger.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(text.encode()))
    if metrics:
        edit_manifest(run / "eval", lambda m: m["metrics"].update(metrics))
    rehash(run, ("eval",))


def ledger_lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in read_ledger(run).splitlines() if x.strip()]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def verify_json(*args: object) -> tuple[Any, dict | None]:
    """`pgolf verify ARGS --json` in this process: (the CliRunner result, the JSON document it printed,
    or None when it printed none)."""
    from typer.testing import CliRunner

    from pgolf.cli import app

    result = CliRunner().invoke(app, ["verify", *map(str, args), "--json"])
    doc = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, doc


def checks_with_id(doc: dict, check_id: str) -> list[dict]:
    """The checks of a verify JSON document that carry `check_id` (REPRO-1, REPRO-2, ...)."""
    return [c for c in doc["checks"] if c["id"] == check_id]


__all__ = ["HAVE_STAGES", "build_run", "checks_with_id", "copy_run", "edit_manifest", "ledger_lines", "packed_model",
           "read_ledger", "rehash", "verify_json", "write_ledger"]
