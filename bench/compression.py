"""Bytes of `model.bin` per codec x layout: synthetic quantized models, or a trained model's quantizations.

    .venv/bin/python bench/compression.py                      # synthetic, 4 layers, d=512: ~4 min on one core
    .venv/bin/python bench/compression.py --layers 11          # the records' size (~26.5M params): ~15 min
    .venv/bin/python bench/compression.py --scenario hetero --layers 2
    .venv/bin/python bench/compression.py --train runs/bench/train --eval-tokens 32768   # a trained model

Synthetic (the default). A synthetic model follows the records' int6-attention / int5-MLP /
int8-embedding layout (d=512, 8 heads, 4 KV heads, MLP 3x, vocab 1024, tied embedding): weights
W = Z * r_row * c_col with Z Gaussian or Student-t(5) and lognormal row and column gains, quantized per
row with the row-max clip of `pgolf.quant.rowwise` (fp16 scales), plus fp32 control vectors. Scenarios:

  gauss   Gaussian, no row/column structure: only the row-max clip varies the rows
  t5      Student-t(5) entries (heavy tails), no row/column structure
  hetero  Student-t(5), row gains lognormal(0.15), column gains lognormal(0.3)
  hetero+ Student-t(5), row gains lognormal(0.25), column gains lognormal(0.5)

Prints one table per scenario (bytes, bits per code, ratio to the best general codec) and the rANS
decode time.

Trained (`--train DIR`, a `pgolf train` artifact). Each quantization variant (scheme x clip x GPTQ)
is made by the quantize stage itself (`pgolf.stages.quantize.run`, GPTQ calibrated on training
tokens), which also scores the float and the dequantized model on the first `--eval-tokens`
validation tokens (plain windows of the training length): the quantization gap. Each variant's
tensors are then encoded as `pgolf pack` encodes them (same meta) with every codec, and the challenge
baseline's container is rebuilt for comparison: torch.save of the int8 codes, scales and passthrough
tensors, zlib level 9 (`final_model.int8.ptz`). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from pgolf.pack import budget, decode_model, encode_model, entropy_report, inspect_model
from pgolf.quant import rowwise

SCENARIOS = {
    "gauss": ("gauss", 0.0, 0.0),
    "t5": ("t5", 0.0, 0.0),
    "hetero": ("t5", 0.15, 0.3),
    "hetero+": ("t5", 0.25, 0.5),
}


def synthetic_quant_model(layers: int, dim: int, vocab: int, dist: str, row_sigma: float, col_sigma: float,
                          seed: int = 0) -> tuple[dict[str, torch.Tensor], dict]:
    """A `pgolf quantize`-shaped dict (NAME.q int8, NAME.scale fp16, fp32 control) and its meta."""
    rng = np.random.default_rng(seed)
    kv, hidden = dim // 2, 3 * dim
    tensors: dict[str, torch.Tensor] = {}
    meta_tensors: dict[str, dict] = {}

    def matrix(name: str, rows: int, cols: int, bits: int) -> None:
        z = rng.standard_normal((rows, cols)) if dist == "gauss" else rng.standard_t(5, size=(rows, cols))
        w = z * np.exp(row_sigma * rng.standard_normal(rows))[:, None] * np.exp(col_sigma * rng.standard_normal(cols))
        w = torch.from_numpy((0.02 * w).astype(np.float32))
        scale = rowwise.row_scales(w, bits)
        tensors[name + ".q"] = rowwise.quantize_rows(w, scale, bits)
        tensors[name + ".scale"] = scale
        meta_tensors[name] = {"scheme": f"int{bits}_row_v1", "bits": bits, "qmax": rowwise.qmax_for(bits),
                              "shape": [rows, cols], "dtype": "bfloat16", "method": "rowmax"}

    matrix("tok_emb.weight", vocab, dim, 8)
    for i in range(layers):
        p = f"blocks.{i}"
        matrix(f"{p}.attn.c_q.weight", dim, dim, 6)
        matrix(f"{p}.attn.c_k.weight", kv, dim, 6)
        matrix(f"{p}.attn.c_v.weight", kv, dim, 6)
        matrix(f"{p}.attn.proj.weight", dim, dim, 6)
        matrix(f"{p}.mlp.fc.weight", hidden, dim, 5)
        matrix(f"{p}.mlp.proj.weight", dim, hidden, 5)
        for name, shape in ((f"{p}.attn_scale", (dim,)), (f"{p}.mlp_scale", (dim,)), (f"{p}.resid_mix", (2, dim)),
                            (f"{p}.attn.q_gain", (8,))):
            tensors[name] = torch.from_numpy(rng.normal(1.0, 0.1, size=shape).astype(np.float32))
            meta_tensors[name] = {"scheme": "passthrough_fp32", "shape": list(shape), "dtype": "float32"}
    meta = {"format": "pgolf.quant/1", "tensors": meta_tensors}
    return tensors, meta


def run_scenario(name: str, args: argparse.Namespace) -> None:
    dist, rs, cs = SCENARIOS[name]
    tensors, meta = synthetic_quant_model(args.layers, args.dim, args.vocab, dist, rs, cs, args.seed)
    codes = sum(t.numel() for k, t in tensors.items() if t.dtype == torch.int8)
    ent = entropy_report(tensors)["entropy_bytes"]
    print(f"\n## {name}: {dist} entries, row sigma {rs}, column sigma {cs}; {codes:,} codes, "
          f"order-0 entropy {ent:,.0f} bytes ({8 * ent / codes:.3f} bits/code)", flush=True)
    rows = []
    for codec, layout in [("zstd", "bytes"), ("zstd", "bitpack"), ("lzma", "bytes"), ("lzma", "bitpack"),
                          ("brotli", "bytes"), ("brotli", "bitpack"), ("rans", "-")]:
        t0 = time.perf_counter()
        blob = encode_model(tensors, meta, codec=codec, layout="bytes" if layout == "-" else layout)
        enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        out, _ = decode_model(blob)
        dec = time.perf_counter() - t0
        assert all(torch.equal(out[k], tensors[k]) for k in tensors)
        code_stored = sum(s["stored_bytes"] for s in inspect_model(blob)["sections"]
                          if s["kind"] in ("codes", "codes_packed", "rans_model"))
        rows.append((codec, layout, len(blob), code_stored, enc, dec))
        print(f"  {codec:7s} {layout:8s} {len(blob):>12,} bytes  codes {8 * code_stored / codes:.3f} bits/code  "
              f"encode {enc:6.1f} s  decode {dec:5.2f} s", flush=True)
    best_general = min(r[2] for r in rows if r[0] != "rans")
    rans_bytes = next(r[2] for r in rows if r[0] == "rans")
    print(f"  rans / best general = {rans_bytes / best_general:.4f} ({100 * (1 - rans_bytes / best_general):.2f}% "
          f"fewer model bytes); budget with 20,000 code bytes: {budget(20_000, rans_bytes)}")


# ----------------------------------------------------------------------------- trained models

# (label, quantize overrides): the challenge baseline's int8, then the records' int6 / int5-MLP recipes
# with round-to-nearest (row max, the records' quantile), the GPTQ-lite clip search, and full GPTQ.
VARIANTS = [
    ("int8 quantile (baseline)", ["scheme=int8", "clip=quantile"]),
    ("int6 rowmax", ["scheme=int6", "clip=rowmax"]),
    ("int6 quantile", ["scheme=int6", "clip=quantile"]),
    ("int6 search", ["scheme=int6", "clip=search"]),
    ("int6 search + GPTQ", ["scheme=int6", "clip=search", "gptq=true"]),
    ("int5mlp search", ["scheme=int5mlp", "clip=search"]),
    ("int5mlp search + GPTQ", ["scheme=int5mlp", "clip=search", "gptq=true"]),
    ("int4mlp search + GPTQ", ["scheme=int4mlp", "clip=search", "gptq=true"]),
]
CODECS = ["zstd", "lzma", "brotli", "rans"]
BASELINE_CODE_BYTES = 47_642  # the challenge baseline's train_gpt.py (its log: "Code size: 47642 bytes")


def baseline_container(tensors: dict, meta: dict) -> int:
    """Bytes of the challenge baseline's export of these tensors: torch.save, then zlib level 9."""
    import io
    import zlib

    buf = io.BytesIO()
    torch.save({"w": dict(sorted(tensors.items())), "m": meta}, buf)
    return len(zlib.compress(buf.getvalue(), 9))


def run_trained(args: argparse.Namespace) -> None:
    import json
    import tempfile
    from pathlib import Path

    from pgolf import artifacts
    from pgolf.artifacts import quant as quant_artifact
    from pgolf.config import to_dict
    from pgolf.pack.packed import packed_meta
    from pgolf.stages import pack as pack_stage
    from pgolf.stages import quantize

    train_dir = Path(args.train)
    tm = artifacts.read_manifest(train_dir, "train")
    pcfg = pack_stage.load_config()
    eval_only = pack_stage.build_submission(pcfg)[0].code_bytes
    rows = []
    with tempfile.TemporaryDirectory(prefix="pgolf-bench-") as tmp:
        for label, overrides in VARIANTS:
            if args.variants and not any(v in label for v in args.variants):
                continue
            out = Path(tmp) / f"q{len(rows)}"
            cfg = quantize.load_config(train_dir, overrides=overrides + list(args.quant_set))
            t0 = time.perf_counter()
            m = quantize.run(cfg, train_dir, out, data=args.data, eval_tokens=args.eval_tokens, device="cpu").metrics
            q_s = time.perf_counter() - t0
            tensors, qmeta, mcfg, qm = quant_artifact.load_quant(out)
            seq_len = int(tm.config["seq_len"])
            eval_cfg = pack_stage.resolve_eval(pcfg, seq_len)
            meta = packed_meta(qmeta, to_dict(mcfg), seq_len, to_dict(eval_cfg))
            recipe = json.dumps(pack_stage.recipe(pcfg, tm, qm, eval_cfg), sort_keys=True, separators=(",", ":"))
            code_bytes = pack_stage.build_submission(pcfg, recipe)[0].code_bytes  # the file that trains too
            sizes = {}
            for codec in CODECS:
                blob = encode_model(tensors, meta, codec=codec)
                out_t, _ = decode_model(blob)
                assert all(torch.equal(out_t[k], tensors[k]) for k in tensors)
                sizes[codec] = len(blob)
            sizes["zlib (baseline container)"] = baseline_container(tensors, qmeta)
            row = {"variant": label, "params": m["params"], "val_bpb_float": m.get("val_bpb_float"), "code": code_bytes,
                   "val_bpb": m.get("val_bpb_quant"), "gap": m.get("quant_gap_bpb"), "sizes": sizes,
                   "entropy": entropy_report(tensors)["entropy_bytes"], "quantize_s": q_s}
            rows.append(row)
            best = min(sizes[c] for c in ("zstd", "lzma", "brotli"))
            print(f"{label:26s} val_bpb {row['val_bpb']:.4f} (gap {row['gap']:+.4f})  "
                  + "  ".join(f"{c} {n:,}" for c, n in sizes.items())
                  + f"  rans vs best general {100 * (sizes['rans'] / best - 1):+.2f}%  ({q_s:.0f} s)", flush=True)

    base = next((r for r in rows if "baseline" in r["variant"]), None)
    print(f"\nfloat val_bpb {rows[0]['val_bpb_float']:.4f} on the first {args.eval_tokens:,} val tokens; "
          f"{rows[0]['params']:,} params; train_gpt.py {rows[0]['code']:,} bytes with training, {eval_only:,} without "
          f"(the baseline's: {BASELINE_CODE_BYTES:,})\n")
    head = ["variant", "val_bpb", "gap", *CODECS, "zlib container", "rans vs best general", "total vs baseline"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        s_ = r["sizes"]
        best = min(s_[c] for c in ("zstd", "lzma", "brotli"))
        total = r["code"] + s_["rans"]
        ref = BASELINE_CODE_BYTES + base["sizes"]["zlib (baseline container)"] if base else None
        cells = [r["variant"], f"{r['val_bpb']:.4f}", f"{r['gap']:+.4f}", *(f"{s_[c]:,}" for c in CODECS),
                 f"{s_['zlib (baseline container)']:,}", f"{100 * (s_['rans'] / best - 1):+.2f}%",
                 f"{total:,} ({100 * (total / ref - 1):+.1f}%)" if ref else "-"]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    ap.add_argument("--train", help="a `pgolf train` directory: benchmark its quantizations instead")
    ap.add_argument("--data", help="data directory for the val tokens (default: the one it was trained on)")
    ap.add_argument("--eval-tokens", type=int, default=32768, help="validation tokens scored per variant")
    ap.add_argument("--variants", nargs="*", default=[], help="only the variants whose label contains one of these")
    ap.add_argument("--quant-set", action="append", default=[], help="extra QuantizeConfig override (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train:
        run_trained(args)
        return 0
    for name in SCENARIOS if args.scenario == "all" else [args.scenario]:
        run_scenario(name, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
