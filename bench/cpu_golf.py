"""The CPU golf track: pgolf's cpu-golf recipe against the challenge baseline, side by side.

    .venv/bin/python bench/cpu_golf.py                           # compare, 3 seeds (~25 min)
    .venv/bin/python bench/cpu_golf.py --seeds 1337 --skip-anchor
    .venv/bin/python bench/cpu_golf.py ablate                     # each technique off, one seed
    .venv/bin/python bench/cpu_golf.py schemes --plot docs/img/cpu_golf_schemes.png

The track (README, "The CPU golf track"): code + model <= 1,000,000 bytes, training <= 60 s and
evaluation <= 180 s of wall-clock on a 2-core CPU with 2 threads, the official sp1024 tokenizer.

Data. `--data DIR` names a pgolf data directory (e.g. held-out FineWeb documents built with
`pgolf data build`). Without it, one is built under WORK from `--corpus` (default: the shared
web-text sample) with the LAST `--val-docs` documents as the validation split, so that no
document a run trains on is scored.

compare (default). For each seed, the anchor and pgolf run one after the other, their order
alternating from seed to seed so that machine drift cancels:
  anchor  the challenge baseline's own train_gpt.py, through ../shared/tools/ref_baseline.py
          (`--anchor-tool` or $PGOLF_REF_TOOL; it imports the baseline from $PGOLF_REF_REPO):
          2 layers, dim 128, 4/2 heads, sequence 256, 4,096 tokens a step, bf16, `--anchor-steps`
          (480, the ~60 s the track allows it on this class of machine; its measured seconds are
          printed), warm-down steps // 4, int8 + zlib, val_bpb of the dequantized model on every
          validation token. Its bytes = the int8+zlib file + its train_gpt.py.
  pgolf   `pgolf run CONFIG --set train.seed=SEED` (default configs/cpu-golf-run.toml).
Prints the table (val_bpb, bytes, seconds per run; mean, std, and the one-sided Welch test that
pgolf beats the anchor by more than `--margin` bpb). Without $PGOLF_REF_REPO the anchor is skipped
with a message and only pgolf's rows are printed.

ablate. One pgolf run per technique with that technique switched off (or, for the techniques the
recipe leaves off, switched on), same seed and data, 60 s of training each, against the recipe
itself scored the same way: Δval_bpb, Δbytes, steps reached in the 60 s (the cost in time). Rows
are scored with plain windows, to keep each row under 2 minutes; `sliding_eval` and `ttt` are the
recipe's own evaluation modes as rows of their own. Rows that change only quantization or
evaluation reuse the recipe's trained model (`--from quantize`). `--only NAME` runs one row; `--list` prints the rows.

schemes. The recipe's trained model (reused from the compare run of the first seed, or trained once)
requantized under each scheme (`pgolf run --from quantize`), each packed with the best codec
(`pack.codec=auto`) and scored with plain windows: val_bpb against total bytes, printed and (with
`--plot`) drawn.

Every run is a `pgolf run` directory (or, for the anchor, a JSON record) under WORK (default
runs/cpu-golf), so a finished run is reused when the script is run again (`--fresh` deletes WORK
first; the anchor is iteration-bound and bit-reproducible, so its reused score is what a rerun
gives); `--json-out` writes every row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DEFAULT_CORPUS = SHARED / "data" / "corpus" / "webtext_sample.jsonl.zst"
DEFAULT_TOKENIZER = SHARED / "data" / "tokenizers" / "fineweb_1024_bpe.model"
DEFAULT_TOOL = SHARED / "tools" / "ref_baseline.py"

# The anchor: the shape the track names for the challenge baseline on 2 cores.
ANCHOR_SHAPE = ["--num-layers", "2", "--model-dim", "128", "--num-heads", "4", "--num-kv-heads", "2",
                "--seq-len", "256", "--batch-seqs", "16", "--precision", "bf16", "--train-batch-tokens", "4096"]

# ablate: name -> the --set overrides that flip the technique against configs/cpu-golf.toml.
ABLATIONS: dict[str, list[str]] = {
    "bigram_hash": ["train.model.bigram_buckets=0"],
    "smear_gate": ["train.model.smear_gate=false"],
    "value_embed": ["train.model.value_embed_layers=[]"],
    "xsa": ["train.model.xsa_last_n=0"],
    "ln_scale": ["train.model.ln_scale=false"],
    "unet_skips": ["train.model.unet_skips=false"],
    "partial_rope": ["train.model.rope_dims=16"],
    "recurrence": ["train.model.recur_layers=[1]", "train.model.recur_loops=2"],
    "backout": ["train.model.backout=true"],
    "ema": ["train.ema_decay=0.99"],
    "swa": ["train.swa_every=10", "train.swa_start_frac=0.5"],
    "leaky_relu2": ["train.model.activation=leaky_relu2"],
    "qat_int6": ["train.qat_start_frac=0.8", "quantize.scheme=int6"],
    "int6_export": ["quantize.scheme=int6"],
    "compile": ["train.compile=false"],
    "bf16": ["train.dtype=fp32"],
    "sliding_eval": ["eval.mode=sliding"],
    "ttt": ["eval.mode=ttt"],
    # PR #2135's components at this size
    "ngram_tilt": ["eval.tilt=none"],
    "sparse_attn_gate": ["train.model.sparse_attn_gate=true"],
    "window_smear": ["train.model.smear_kind=window"],
    "parallel_lanes": ["train.model.parallel_lanes_from=1"],
    "asym_softcap": ["train.model.asym_softcap=true"],
    "polar_express": ["train.ns_coefficients=polar_express_pr1344"],
    "lqer": ["quantize.lqer=true"],
}
ABLATE_EVAL = "eval.mode=plain"  # rows score with plain windows; sliding windows and TTT are rows of their own

# schemes: name -> the quantize/pack overrides of one point of the val_bpb-vs-bytes plot.
SCHEMES: dict[str, list[str]] = {
    "int8": ["quantize.scheme=int8"],
    "int6": ["quantize.scheme=int6"],
    "int5mlp": ["quantize.scheme=int5mlp"],
    "int4mlp": ["quantize.scheme=int4mlp"],
    "int6+gptq": ["quantize.scheme=int6", "quantize.gptq=true"],
    "int5mlp+gptq": ["quantize.scheme=int5mlp", "quantize.gptq=true"],
    "int4mlp+gptq": ["quantize.scheme=int4mlp", "quantize.gptq=true"],
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data
def build_data(args: argparse.Namespace, work: Path) -> Path:
    """A pgolf data dir whose validation split is the last `--val-docs` documents of the corpora."""
    if args.data:
        return Path(args.data)
    out = work / "data"
    if (out / "manifest.json").exists():
        return out
    import zstandard

    docs: list[str] = []
    for path in args.corpus:
        if not str(path).endswith((".jsonl", ".jsonl.zst")):
            sys.exit(f"error: {path}: the benchmark reads .jsonl or .jsonl.zst corpora (one {{\"text\": ...}} a line); "
                     "build other data with `pgolf data build` and pass --data DIR")
        raw = Path(path).read_bytes()
        if str(path).endswith(".zst"):
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        docs += [json.loads(line)["text"] for line in raw.decode().splitlines() if line.strip()]
    if len(docs) <= args.val_docs:
        sys.exit(f"error: the corpora hold {len(docs)} documents, fewer than --val-docs {args.val_docs} + 1")
    reordered = work / "corpus_val_last.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    with reordered.open("w") as f:
        for text in docs[-args.val_docs:] + docs[: -args.val_docs]:
            f.write(json.dumps({"text": text}) + "\n")
    run([pgolf_bin(), "data", "build", "--corpus", str(reordered), "--tokenizer", str(args.tokenizer),
         "--val-docs", str(args.val_docs), "--out", str(out)], args.threads)
    return out


# ----------------------------------------------------------------------------- runs
def pgolf_bin() -> str:
    exe = Path(sys.executable).parent / "pgolf"
    return str(exe) if exe.exists() else "pgolf"


def run(cmd: list[str], threads: int, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **(env or {})}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode not in (0, 3):  # 3: verify FAILed, the run itself completed
        log(p.stderr[-3000:])
        sys.exit(f"error: {' '.join(cmd[:3])} ... exited {p.returncode}")
    return p


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def pgolf_row(args: argparse.Namespace, data: Path, out: Path, sets: list[str], extra: list[str] = ()) -> dict:
    """Run (or reuse) one `pgolf run` and read its figures back from the artifacts."""
    cmd = [pgolf_bin(), "run", str(args.config), "--out", str(out), "--data", str(data), "--json", *extra]
    for s in [*args.sets, *sets]:
        cmd += ["--set", s]
    t0 = time.time()
    p = run(cmd, args.threads)
    result = json.loads(p.stdout)
    train = read_json(out / "train" / "manifest.json").get("metrics", {})
    quant = read_json(out / "quant" / "report.json").get("evaluation") or {}
    ev = read_json(out / "eval" / "report.json")
    return {
        "who": "pgolf", "run_dir": str(out), "val_bpb": result.get("val_bpb"), "total_bytes": result.get("total_bytes"),
        "verify_ok": result.get("verify_ok"), "train_s": train.get("train_time_s"), "steps": train.get("steps"),
        "train_tokens": train.get("tokens"), "params": train.get("params"), "float_bpb": train.get("val_bpb"),
        "quant_bpb": quant.get("val_bpb_quant"), "eval_s": ev.get("eval_time_s"), "eval_mode": ev.get("mode"),
        "wall_s": round(time.time() - t0, 1), "sets": [*args.sets, *sets],
    }


def anchor_row(args: argparse.Namespace, data: Path, out: Path, seed: int) -> dict | None:
    """Train and score the challenge baseline through ref_baseline.py; None when it cannot run here."""
    if not os.environ.get("PGOLF_REF_REPO"):
        return None
    record = out / f"anchor-seed-{seed}.json"
    if not record.exists():
        manifest = read_json(data / "manifest.json")
        val_tokens = manifest.get("splits", {}).get("val", {}).get("tokens") or 10**9
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(args.anchor_tool), *ANCHOR_SHAPE, "--threads", str(args.threads),
               "--train-steps", str(args.anchor_steps), "--data-dir", str(data), "--tokenizer",
               str(data / "tokenizer.model"), "--allow-tokenizer-mismatch", "--val-tokens", str(val_tokens),
               "--seed", str(seed), "--log-every", "100", "--json-out", str(record)]
        run(cmd, args.threads)
    train = read_json(record).get("train", {})
    return {
        "who": "anchor", "run_dir": str(record), "val_bpb": train.get("q_val_bpb"),
        "total_bytes": (train.get("int8_zlib_bytes") or 0) + (train.get("code_bytes") or 0),
        "train_s": train.get("train_seconds"), "steps": train.get("steps"),
        "train_tokens": (train.get("steps") or 0) * (train.get("batch_tokens") or 0),
        "float_bpb": train.get("val_bpb"), "quant_bpb": train.get("q_val_bpb"), "eval_s": train.get("eval_seconds"),
    }


# ----------------------------------------------------------------------------- modes
def compare(args: argparse.Namespace, work: Path, data: Path) -> list[dict]:
    anchor_ok = bool(os.environ.get("PGOLF_REF_REPO")) and not args.skip_anchor
    if not anchor_ok and not args.skip_anchor:
        log("anchor skipped: set PGOLF_REF_REPO to a clone of openai/parameter-golf to run the challenge "
            "baseline beside pgolf (and --anchor-tool or PGOLF_REF_TOOL if ref_baseline.py is elsewhere)")
    elif anchor_ok and not Path(args.anchor_tool).exists():
        sys.exit(f"error: the anchor tool {args.anchor_tool} does not exist; pass --anchor-tool PATH or --skip-anchor")
    rows: list[dict] = []
    for i, seed in enumerate(args.seeds):
        order = ["anchor", "pgolf"] if i % 2 == 0 else ["pgolf", "anchor"]
        for who in order:
            if who == "anchor" and anchor_ok:
                log(f"seed {seed}: anchor ...")
                row = anchor_row(args, data, work / "anchor", seed)
            elif who == "pgolf":
                log(f"seed {seed}: pgolf ...")
                row = pgolf_row(args, data, work / "pgolf" / f"seed-{seed}", [f"train.seed={seed}"])
            else:
                continue
            row["seed"] = seed
            rows.append(row)
            log(f"  val_bpb {row['val_bpb']:.4f}  bytes {row['total_bytes']:,}  train {row['train_s']:.1f} s")
    print_compare(rows, args.margin)
    return rows


def print_compare(rows: list[dict], margin: float) -> None:
    from pgolf.verify.stats import mean_std, welch_test

    print("| seed | who | val_bpb | float bpb | total bytes | train s | steps | eval s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['who']} | {r['val_bpb']:.4f} | {r['float_bpb']:.4f} | {r['total_bytes']:,} | "
              f"{r['train_s']:.1f} | {r['steps']} | {r['eval_s']:.1f} |")
    sides = {who: [r["val_bpb"] for r in rows if r["who"] == who] for who in ("pgolf", "anchor")}
    for who, vals in sides.items():
        if vals:
            m, s = mean_std(vals)
            print(f"\n{who}: mean val_bpb {m:.4f}, std {s:.4f} over {len(vals)} seed(s)")
    if sides["pgolf"] and sides["anchor"]:
        delta = mean_std(sides["anchor"])[0] - mean_std(sides["pgolf"])[0]
        print(f"pgolf - anchor: {-delta:+.4f} bpb")
        if len(sides["pgolf"]) >= 2:
            t = welch_test(sides["pgolf"], sides["anchor"], margin, unit="bpb")
            print(f"one-sided Welch test of a gain > {margin} bpb: t = {t.t:.2f}, df = {t.df:.1f}, p = {t.p:.2e}")


def ablate(args: argparse.Namespace, work: Path, data: Path) -> list[dict]:
    names = args.only or list(ABLATIONS)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        sys.exit(f"error: unknown ablation {unknown}; the rows are {', '.join(ABLATIONS)}")
    seed = args.seeds[0]
    base = pgolf_row(args, data, work / "ablate" / f"recipe-seed-{seed}", [f"train.seed={seed}", ABLATE_EVAL])
    base.update(name="recipe", seed=seed)
    rows = [base]
    for name in names:
        log(f"ablation {name} ...")
        out = work / "ablate" / f"{name}-seed-{seed}"
        sets = [f"train.seed={seed}", ABLATE_EVAL, *ABLATIONS[name]]
        if all(s.startswith(("quantize.", "eval.")) for s in ABLATIONS[name]):
            # a row after training reuses the recipe's trained model: its delta is free of step-count noise
            row = pgolf_row(args, data, reuse_training(base["run_dir"], out), sets, ["--from", "quantize"])
        else:
            row = pgolf_row(args, data, out, sets)
        row.update(name=name, seed=seed)
        rows.append(row)
    print("| technique | flipped with | val_bpb | Δ bpb vs recipe | total bytes | Δ bytes | steps in 60 s | eval s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        flips = " ".join(f"`{s}`" for s in ABLATIONS.get(r["name"], []))
        print(f"| {r['name']} | {flips} | {r['val_bpb']:.4f} | {r['val_bpb'] - base['val_bpb']:+.4f} | "
              f"{r['total_bytes']:,} | {r['total_bytes'] - base['total_bytes']:+,} | {r['steps']} | "
              f"{r['eval_s']:.1f} |")
    return rows


def reuse_training(source: str | Path, out: Path) -> Path:
    """`out` as a copy of run `source` up to its training (quantize and later stages rerun there)."""
    if not (out / "train" / "manifest.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(source, out, ignore=shutil.ignore_patterns("quant", "pack", "eval", "verify", "report"))
    return out


def schemes(args: argparse.Namespace, work: Path, data: Path) -> list[dict]:
    seed = args.seeds[0]
    source = work / "pgolf" / f"seed-{seed}"
    if not (source / "train" / "manifest.json").exists():
        log("training the recipe once ...")
        pgolf_row(args, data, source, [f"train.seed={seed}"])
    rows = []
    for name, sets in SCHEMES.items():
        log(f"scheme {name} ...")
        out = reuse_training(source, work / "schemes" / f"{name}-seed-{seed}")
        row = pgolf_row(args, data, out, [f"train.seed={seed}", "pack.codec=auto", "eval.mode=plain", *sets],
                        ["--from", "quantize"])
        row.update(name=name, seed=seed)
        rows.append(row)
    print("| scheme | val_bpb (plain windows) | total bytes |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['val_bpb']:.4f} | {r['total_bytes']:,} |")
    if args.plot:
        plot_schemes(rows, Path(args.plot))
    return rows


def plot_schemes(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for r in rows:
        gptq = "gptq" in r["name"]
        ax.scatter(r["total_bytes"] / 1e6, r["val_bpb"], marker="o" if gptq else "s", color="C1" if gptq else "C0")
        ax.annotate(r["name"], (r["total_bytes"] / 1e6, r["val_bpb"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.set_xlabel("total bytes (code + model), MB")
    ax.set_ylabel("val_bpb (plain windows)")
    ax.set_title("CPU golf: one trained model, each quantization scheme")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    log(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", default="compare", choices=["compare", "ablate", "schemes"])
    ap.add_argument("--config", default=str(REPO / "configs" / "cpu-golf-run.toml"), help="pgolf run config")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra pgolf run --set (repeatable)")
    ap.add_argument("--data", default=None, help="an existing pgolf data dir (skips the build)")
    ap.add_argument("--corpus", action="append", default=None, help=f"corpus to build from (default {DEFAULT_CORPUS})")
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER))
    ap.add_argument("--val-docs", type=int, default=300, help="the last N documents are the validation split")
    ap.add_argument("--work", default=str(REPO / "runs" / "cpu-golf"))
    ap.add_argument("--seeds", default="1337,42,2025")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--anchor-tool", default=os.environ.get("PGOLF_REF_TOOL", str(DEFAULT_TOOL)))
    ap.add_argument("--anchor-steps", type=int, default=480)
    ap.add_argument("--skip-anchor", action="store_true")
    ap.add_argument("--margin", type=float, default=0.10, help="the gain in bpb the Welch test asks for")
    ap.add_argument("--only", action="append", default=None, help="ablate: only this row (repeatable)")
    ap.add_argument("--list", action="store_true", help="ablate: print the rows and exit")
    ap.add_argument("--plot", default=None, help="schemes: write the val_bpb-vs-bytes PNG here")
    ap.add_argument("--fresh", action="store_true", help="delete WORK first")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if args.list:
        for name, sets in ABLATIONS.items():
            print(f"{name:14s} {' '.join(sets)}")
        return
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.corpus = args.corpus or [str(DEFAULT_CORPUS)]
    if not args.data:
        missing = [p for p in [*args.corpus, args.tokenizer] if not Path(p).exists()]
        if missing:
            sys.exit(f"error: {missing[0]} does not exist; pass --corpus and --tokenizer, or --data DIR")
    work = Path(args.work)
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    data = build_data(args, work)
    rows = {"compare": compare, "ablate": ablate, "schemes": schemes}[args.mode](args, work, data)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
