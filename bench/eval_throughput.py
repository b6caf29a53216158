#!/usr/bin/env python3
"""Evaluation throughput of pgolf: scored tokens/s of plain, sliding-window and score-first TTT evaluation.

Builds a model from a training preset (shrunk or grown with `--set`), scores a stream of random
tokens with `pgolf.eval.evaluate` in each mode, and reports per mode the scored targets per second
over the whole loop (scoring, parameter checksums, ledger, and for TTT the adaptation), plus the
split into scoring and adaptation time.

From a rate measured on one GPU it projects the time of the full sp1024 validation set (62,021,632
targets) on 8 GPUs of that kind, assuming the split across ranks scales linearly (the records'
8xH100 reference points: sliding stride 64 in ~70-80 s, TTT 3 epochs in ~410 s, techniques.md §6.6).
On a machine without a GPU it says so and projects one CPU process only.

With `--pack DIR --data DIR` it times the whole `pgolf ttt-eval` stage instead, on a real packed
artifact and data directory: the eval clock (load, decode and dequantize model.bin, hash and read the
val split, score, adapt) and its split, per mode. This is what TIME-3 judges.

Examples:
  python bench/eval_throughput.py --preset tiny --tokens 8192
  python bench/eval_throughput.py --pack runs/demo/pack --data runs/demo/data --threads 1 \\
      --eval-set chunk_tokens=4096 --eval-set ttt.epochs=1      # the ttt-eval stage, end to end
  python bench/eval_throughput.py --preset baseline --set seq_len=1024 --tokens 65536 \\
      --eval-set chunk_tokens=32768 --modes sliding                 # one GPU
  python bench/eval_throughput.py --preset baseline --tokens 262144 --eval-set compile=true

This is a benchmark, not a test; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

FULL_VAL_TARGETS = 62_021_632  # sp1024 val positions in every record log since PR #65 (techniques.md §2.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="training preset giving the model shape and seq_len")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="training-config override (model shape)")
    ap.add_argument("--eval-set", dest="eval_sets", action="append", default=[],
                    help="evaluation-config override key=value (e.g. stride=64, ttt.epochs=3)")
    ap.add_argument("--modes", default="plain,sliding,ttt", help="comma-separated modes to time")
    ap.add_argument("--tokens", type=int, default=8192, help="validation tokens to score (random ids)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--gpus", type=int, default=8, help="GPUs of the projection")
    ap.add_argument("--json", dest="json_out", default=None, help="write the records to this file")
    ap.add_argument("--pack", default=None, help="time the ttt-eval stage on this pack directory (needs --data)")
    ap.add_argument("--data", default=None, help="the data directory of --pack")
    args = ap.parse_args()
    if args.pack is not None:
        if args.data is None:
            ap.error("--pack needs --data")
        return stage_main(args)

    import numpy as np
    import torch

    from pgolf.config import build
    from pgolf.eval import EvalConfig, evaluate
    from pgolf.model import GPT, num_params
    from pgolf.runtime import device as devmod
    from pgolf.stages.train import load_config

    if args.threads:
        torch.set_num_threads(args.threads)
    train_cfg = load_config(args.preset, None, args.sets)
    device = devmod.resolve_device(args.device)
    torch.manual_seed(0)
    model = GPT(train_cfg.model).to(device)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, train_cfg.model.vocab_size, args.tokens).astype(np.int64)
    tokens[0] = train_cfg.model.bos_id
    token_bytes = np.full(args.tokens, 2, dtype=np.int64)  # throughput does not depend on byte counts
    on_gpu = device.type == "cuda"

    records = []
    for mode in args.modes.split(","):
        cfg = build(EvalConfig, {"mode": mode, "seq_len": train_cfg.seq_len, "time_budget_s": 0},
                    args.eval_sets)
        state = {k: v.clone() for k, v in model.state_dict().items()}  # TTT adapts: restore for the next mode
        result = evaluate(model, tokens, token_bytes, cfg, bos_id=train_cfg.model.bos_id)
        model.load_state_dict(state)
        s = result.summary()
        wall = result.score_time_s + result.adapt_time_s
        rate = s["val_tokens"] / wall
        record = {
            "mode": mode, "preset": args.preset, "sets": args.sets, "eval_sets": args.eval_sets,
            "device": devmod.describe(device), "params": num_params(model), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "seq_len": cfg.seq_len, "stride": cfg.window_stride, "chunk_tokens": cfg.chunk_tokens,
            "ttt_epochs": cfg.ttt.epochs if mode == "ttt" else 0, "targets": s["val_tokens"],
            "score_s": round(result.score_time_s, 3), "adapt_s": round(result.adapt_time_s, 3),
            "warmup_s": round(result.warmup_time_s, 3), "tok_s": round(rate, 1),
        }
        if on_gpu:
            record[f"projected_{args.gpus}gpu_full_val_s"] = round(FULL_VAL_TARGETS / (rate * args.gpus), 1)
        else:
            record["projected_1cpu_full_val_s"] = round(FULL_VAL_TARGETS / rate, 1)
        records.append(record)
        print(" ".join(f"{k}={v}" for k, v in record.items()), file=sys.stderr)
        print("RESULT " + json.dumps(record))
    if not on_gpu:
        print("no GPU on this machine: no 8xH100 projection; the CPU projection is one process on this CPU",
              file=sys.stderr)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(records, f, indent=2)


def stage_main(args) -> None:
    """Time `pgolf.stages.ttt_eval.run` end to end in each mode (outputs go to a temporary directory)."""
    import tempfile
    from pathlib import Path

    import torch

    from pgolf.artifacts import read_manifest
    from pgolf.stages import ttt_eval

    if args.threads:
        torch.set_num_threads(args.threads)
    model_bytes = read_manifest(args.pack, "pack").metrics.get("model_bytes")
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            cfg = ttt_eval.load_config(None, ["time_budget_s=0", *args.eval_sets], mode,
                                       pack=args.pack)
            m = ttt_eval.run(cfg, args.pack, args.data, Path(tmp) / mode, device=args.device)
            t, x = m.timing, m.metrics
            record = {"mode": mode, "pack": args.pack, "model_bytes": model_bytes,
                      "device": m.env.get("gpu") or m.env.get("cpu"), "threads": m.env.get("num_threads"),
                      "torch": m.env.get("torch"), "python": m.env.get("python"), "seq_len": x["seq_len"],
                      "stride": x["stride"], "chunk_tokens": m.config["chunk_tokens"],
                      "ttt_epochs": m.config["ttt"]["epochs"] if mode == "ttt" else 0, "targets": x["val_tokens"],
                      "eval_time_s": round(t["eval_time_s"], 3), "load_s": round(t["load_s"], 3),
                      "data_s": round(t["data_s"], 3), "score_s": round(t["score_s"], 3),
                      "adapt_s": round(t["adapt_s"], 3), "tok_s": round(x["tokens_per_s"], 1),
                      "val_bpb": x["val_bpb"]}
            records.append(record)
            print(" ".join(f"{k}={v}" for k, v in record.items()), file=sys.stderr)
            print("RESULT " + json.dumps(record))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
