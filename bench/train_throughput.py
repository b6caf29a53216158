#!/usr/bin/env python3
"""Training throughput of pgolf: tokens/s of full training steps (forward, backward, optimizer).

Runs the real training loop (`pgolf.train.train`) on random tokens for a preset shrunk or grown with
`--set`, and reports:

- `train_tok_s`: tokens per second over the timed steps (the loop's own clock: compile warm-up
  steps excluded, exactly as `pgolf train` measures a run);
- `fwd_bwd_tok_s`: median tokens per second of forward + backward alone over one micro-batch (the
  number ../shared/tools/ref_baseline.py reports as fwd_bwd_tok_s), for a like-for-like comparison
  with the challenge baseline's model;
- on GPU, `mfu`: model FLOPs utilization against the GPU's dense bf16 peak, with FLOPs per token
  = 6 * (matrix parameters incl. the output head) + 6 * virtual_layers * seq_len * model_dim
  (causal attention scores and values, forward + backward).

With `--compare-baseline` it also times the challenge baseline's own training step (its GPT, Muon
and Adam from train_gpt.py, through ref_baseline.py's helpers) against pgolf's loop step,
interleaved round by round in this one process, so the machine's load hits both alike (`ab_*`
keys). Only for configs with every switch off (the baseline architecture); CPU. It needs:
- ref_baseline.py: `--ref-tool`, else $PGOLF_REF_TOOL, else ../shared/tools/ref_baseline.py
  (relative to the repository root, found from this script's own location);
- the challenge repository (an openai/parameter-golf checkout or bare git directory):
  `--ref-repo`, else $PGOLF_REF_REPO.

Examples:
  python bench/train_throughput.py --preset baseline --set num_layers=2 --set model_dim=128 \\
      --set num_heads=4 --set num_kv_heads=2 --set seq_len=256 --set batch_tokens=4096 --set grad_accum_base=1
  PGOLF_REF_REPO=path/to/parameter-golf python bench/train_throughput.py --preset baseline \\
      --set num_layers=2 --set model_dim=128 --set num_heads=4 --set num_kv_heads=2 --set seq_len=256 \\
      --set batch_tokens=4096 --set grad_accum_base=1 --set dtype=fp32 --threads 1 --compare-baseline
  python bench/train_throughput.py --preset baseline --set grad_accum_base=1 --set batch_tokens=65536 \\
      --set compile=true --steps 30 --warmup 10          # one GPU, bf16 autocast (dtype auto)

This is a benchmark, not a test; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REF_TOOL = REPO.parent / "shared" / "tools" / "ref_baseline.py"  # ../shared/tools from the repo root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="baseline")
    ap.add_argument("--config", default=None, help="a TOML file instead of a preset")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (reset afterwards, as in training)")
    ap.add_argument("--fwd-bwd-iters", type=int, default=5, help="timed forward+backward calls (0 = skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--compare-baseline", action="store_true",
                    help="also time the challenge baseline's training step, interleaved in this process")
    ap.add_argument("--ref-tool", default=os.environ.get("PGOLF_REF_TOOL") or str(DEFAULT_REF_TOOL),
                    help="the challenge baseline driver ref_baseline.py (default $PGOLF_REF_TOOL, else "
                         "../shared/tools/ref_baseline.py relative to the repository root)")
    ap.add_argument("--ref-repo", default=os.environ.get("PGOLF_REF_REPO"),
                    help="the challenge repository, an openai/parameter-golf checkout or bare git directory "
                         "(default $PGOLF_REF_REPO); needed by --compare-baseline")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved A/B rounds for --compare-baseline")
    ap.add_argument("--json", dest="json_out", default=None, help="write the result record to this file")
    args = ap.parse_args()

    import numpy as np
    import torch

    from pgolf.data.stream import TokenBatches, TokenStream
    from pgolf.model import GPT, num_params
    from pgolf.runtime import device as devmod
    from pgolf.stages.train import load_config
    from pgolf.train import train
    from pgolf.train.loop import Runtime

    if args.compare_baseline:  # fail before any timing, with one line
        if not args.ref_repo:
            raise SystemExit("error: --compare-baseline needs the challenge repository: pass --ref-repo PATH or "
                             "set PGOLF_REF_REPO (an openai/parameter-golf checkout or bare git directory)")
        if not Path(args.ref_tool).is_file():
            raise SystemExit(f"error: --compare-baseline needs ref_baseline.py, not found at {args.ref_tool}: pass "
                             "--ref-tool PATH or set PGOLF_REF_TOOL")
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [*args.sets, f"iterations={args.steps}", f"warmup_steps={args.warmup}", "max_seconds=0",
                 "val_every=0", "log_every=0", "checkpoint_every_s=0"]
    cfg = load_config(None if args.config else args.preset, args.config, overrides)
    device = devmod.resolve_device(cfg.device)
    amp = devmod.autocast_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model).to(device)
    params = num_params(model)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.model.vocab_size, cfg.batch_tokens * 4 + 1).astype(np.uint16)

    record: dict = {
        "preset": args.config or args.preset, "sets": args.sets, "device": devmod.describe(device),
        "dtype": str(amp).replace("torch.", "") if amp else "fp32", "compile": cfg.compile, "params": params,
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
        "seq_len": cfg.seq_len, "batch_tokens": cfg.batch_tokens, "grad_accum": cfg.grad_accum(1),
    }

    # (1) forward + backward alone, one micro-batch, median call (first, as ref_baseline.py does)
    if args.fwd_bwd_iters > 0:
        micro = cfg.batch_tokens // cfg.grad_accum(1)
        x = torch.from_numpy(tokens[:micro].astype(np.int64)).view(-1, cfg.seq_len).to(device)
        y = torch.from_numpy(tokens[1 : micro + 1].astype(np.int64)).view(-1, cfg.seq_len).to(device)
        step = torch.compile(model.loss, dynamic=False) if cfg.compile else model.loss
        times = []
        for _ in range(2 + args.fwd_bwd_iters):
            devmod.synchronize(device)
            t0 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            with devmod.autocast(device, amp):
                loss = step(x, y)
            loss.backward()
            devmod.synchronize(device)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times[2:])
        record["fwd_bwd_tok_s"] = round(micro / med, 1)
        record["fwd_bwd_ms"] = round(1000 * med, 2)

    # (2) full training steps through the training loop
    result = train(model, cfg, TokenBatches(TokenStream([tokens])), Runtime(device=device, amp_dtype=amp))
    record.update({
        "steps": result.steps, "warmup_steps": cfg.warmup_steps, "train_s": round(result.train_time_s, 3),
        "train_tok_s": round(result.tokens_per_s, 1), "ms_per_step": round(1000 * result.train_time_s / result.steps, 2),
    })

    if args.compare_baseline:
        record.update(compare_with_baseline(cfg, tokens, args))

    peak = devmod.peak_bf16_flops(device)
    if peak:
        m = cfg.model
        matrix = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "tok_emb" not in n)
        head = m.vocab_size * m.model_dim  # the tied head is a matmul too
        virtual_layers = len(m.layer_order(True)) if m.recur_layers else m.num_layers
        flops_per_token = 6 * (matrix + head) + 6 * virtual_layers * cfg.seq_len * m.model_dim
        record["flops_per_token"] = flops_per_token
        record["peak_bf16_flops"] = peak
        record["mfu"] = round(flops_per_token * result.tokens_per_s / peak, 4)
        record["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)

    print(" ".join(f"{k}={v}" for k, v in record.items()), file=sys.stderr)
    print("RESULT " + json.dumps(record))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(record, f, indent=2)


def compare_with_baseline(cfg, tokens, args) -> dict:
    """Interleaved A/B: one training step of the challenge baseline (ref_baseline.py's train() body:
    lr and momentum schedule, zero_grad, forward, backward, its Muon + Adam) against one step of
    pgolf's loop, alternating (ABBA) for `args.rounds` rounds after 3 warm-up rounds of each."""
    import numpy as np
    import torch

    from pgolf.data.stream import TokenBatches, TokenStream
    from pgolf.model import GPT, num_params
    from pgolf.train.loop import Hooks, Runtime, _Trainer  # the loop's own step, not a re-statement

    sys.path.insert(0, str(Path(args.ref_tool).resolve().parent))
    import ref_baseline as rb

    m = cfg.model
    path, info = rb.locate_baseline(args.ref_repo, None, "train_gpt.py", tempfile.mkdtemp())
    mod = rb.import_baseline(path)
    hp = mod.Hyperparameters()
    hp.vocab_size, hp.num_layers, hp.model_dim = m.vocab_size, m.num_layers, m.model_dim
    hp.num_heads, hp.num_kv_heads, hp.train_seq_len = m.num_heads, m.num_kv_heads, cfg.seq_len
    hp.mlp_mult = int(m.mlp_mult) if float(m.mlp_mult).is_integer() else m.mlp_mult  # the baseline wants an int
    torch.manual_seed(cfg.seed)
    ref = rb.build_model(mod, hp, "fp32", torch.device("cpu"))
    ref_opts, ref_muon = rb.build_optimizers(mod, hp, ref)
    pg = GPT(m)
    if sum(p.numel() for p in ref.parameters()) != num_params(pg):
        raise SystemExit("--compare-baseline needs the baseline architecture (every model switch off)")
    trainer = _Trainer(pg, cfg, TokenBatches(TokenStream([tokens])), Runtime(), None, Hooks(), time.perf_counter)
    accum = cfg.grad_accum(1)
    micro = cfg.batch_tokens // accum
    starts = [i * micro for i in range(len(tokens) // (micro + 1))]

    def ref_step(step: int) -> None:
        frac = min(step / hp.muon_momentum_warmup_steps, 1.0)
        for g in ref_muon.param_groups:
            g["momentum"] = (1 - frac) * hp.muon_momentum_warmup_start + frac * hp.muon_momentum
        for o in ref_opts:
            for g in o.param_groups:
                g["lr"] = g["base_lr"]
            o.zero_grad(set_to_none=True)
        for a in range(accum):
            s = starts[(step * accum + a) % len(starts)]
            chunk = torch.from_numpy(tokens[s : s + micro + 1].astype(np.int64))
            loss = ref(chunk[:-1].view(-1, cfg.seq_len), chunk[1:].view(-1, cfg.seq_len))
            (loss / accum).backward()
        float(loss.detach())
        for o in ref_opts:
            o.step()

    def pg_step(step: int) -> None:
        trainer.step = step
        float(trainer._train_step(1.0))

    for i in range(3):
        ref_step(i)
        pg_step(i)
    t_ref, t_pg = [], []
    for i in range(3, 3 + args.rounds):
        order = [(ref_step, t_ref), (pg_step, t_pg)]
        for fn, times in order if i % 2 else order[::-1]:  # ABBA: neither always goes first
            t = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t)
    med_ref, med_pg = statistics.median(t_ref), statistics.median(t_pg)
    return {"ab_ref_commit": info.get("commit", ""), "ab_rounds": args.rounds,
            "ab_ref_tok_s": round(cfg.batch_tokens / med_ref, 1), "ab_pgolf_tok_s": round(cfg.batch_tokens / med_pg, 1),
            "ab_speed_ratio": round(med_ref / med_pg, 3),
            "ab_pgolf_faster_rounds": sum(a > b for a, b in zip(t_ref, t_pg))}


if __name__ == "__main__":
    main()
