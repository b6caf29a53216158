"""The byte budget of the `sota` preset (PR #2135's model) on paper: a randomly initialized model at full
size, quantized and packed as pgolf would, plus the submission file's bytes, against 16,000,000.

    OMP_NUM_THREADS=1 python bench/sota_budget.py                    # ~10 min on one core (brotli-11 dominates)
    OMP_NUM_THREADS=1 python bench/sota_budget.py --codecs rans,zstd --init record
    OMP_NUM_THREADS=1 python bench/sota_budget.py --quantize-set sdclip_k=11.5 --pack-set layout=auto
    OMP_NUM_THREADS=1 python bench/sota_budget.py --trained runs/r1/train --codecs rans   # trained vs random codes

What it does:
1. builds the preset's model on the CPU (`pgolf.model.GPT`, the record's initialization: orthogonal
   matrices, zero output projections, its embedding std) and checks the parameter count (35,945,673
   for `sota`, the record's logged `model_params`);
2. `--init`: `record` keeps that initialization; `dense` also draws the quantized matrices the record
   zero-initializes (attention and MLP output projections, 40% of the parameters) orthogonal, because a
   trained model has no all-zero matrix; `both` (default) reports the two;
3. quantizes with `pgolf.quant.quantize_state` and the recipe closest to the record's export among the
   quantize stage's (`DEFAULT_QUANTIZE`: int6 matrices and int7 embedding, SDClip k 13.0 attention /
   11.5 MLP / 12.85 other / 14.0 embedding, LQER rank 4 on the 3 largest errors, fp16 passthrough up to
   65,536 elements), without GPTQ: GPTQ needs a Hessian from real activations and, on a random model,
   only moves codes between neighbouring values (it does not change how many bits they need);
4. encodes the result as `pgolf pack` does (`pgolf.pack.encode_model`, the same meta) with every codec
   in `--codecs`, checking that each blob decodes to the same tensors;
5. builds the submission file `pgolf pack` would write for this recipe (`pack.build_submission`, with
   the preset's TrainConfig, the quantize recipe and the evaluation) and adds its bytes.

Prints a markdown table (model bytes per codec, code bytes, total, margin to the limit) and, with
`--json`, one JSON document on stdout. `--trained DIR` (a `pgolf train` artifact) instead compares the
codes of that trained model with a random model of its own config under the same recipe: order-0
entropy per code and bytes per codec. `--quantize-set` / `--quantize-config` and `--pack-set` take any
QuantizeConfig / PackConfig key, so new quantizers and codecs are measured by naming them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from pgolf import config as cfgmod
from pgolf.errors import ConfigError
from pgolf.pack import budget, decode_model, encode_model, entropy_report
from pgolf.pack.budget import LIMIT_BYTES

SOTA_PARAMS = 35_945_673  # PR #2135's logged model_params
# The quantize stage's keys closest to PR #2135's export (MATRIX_BITS 6, EMBED_BITS 7, SDClip
# MATRIX_CLIP_SIGMAS 12.85 / EMBED_CLIP_SIGMAS 14.0 from its launch, 65,536-element fp16 passthrough).
# Per class: ATTN_CLIP_SIGMAS 13.0, MLP_CLIP_SIGMAS 11.5; LQER rank 4 on the 3 largest errors, as it runs.
DEFAULT_QUANTIZE = ("scheme=int6", "clip=sdclip", "sdclip_k=12.85", "sdclip_k_attn=13.0", "sdclip_k_mlp=11.5",
                    "sdclip_k_embed=14.0", "embed_bits=7", "passthrough_numel=65536", "gptq=false",
                    "lqer=true", "lqer_rank=4", "lqer_top_k=3", "lqer_factor_bits=4", "lqer_asym=true",
                    "lqer_group=32")
DEFAULT_PACK = ("layout=bytes", "shuffle=auto", "minifier=python-minifier")
DEFAULT_CODECS = ("zstd", "lzma", "brotli", "rans")
CODEC_LABELS = {"zstd": "zstd-22", "lzma": "lzma-9e", "brotli": "brotli-11", "rans": "rans", "none": "none"}
# PR #2135's logs (seed 42): what its trained model and code weighed, for the table's last row.
RECORD = {"model_bytes": 15_910_335, "code_bytes": 37_155, "total_bytes": 15_947_490}


# ----------------------------------------------------------------------------- pure pieces


def quantize_config(overrides: Sequence[str] = (), table: Mapping[str, Any] | None = None):
    """QuantizeConfig: DEFAULT_QUANTIZE <- the file's table <- `overrides` (a typo is a ConfigError)."""
    from pgolf.quant.config import QuantizeConfig

    base = cfgmod.build(QuantizeConfig, {}, list(DEFAULT_QUANTIZE))
    return cfgmod.build(QuantizeConfig, {**cfgmod.to_dict(base), **dict(table or {})}, list(overrides))


def pack_config(overrides: Sequence[str] = ()):
    """PackConfig: DEFAULT_PACK <- `overrides`."""
    from pgolf.pack.config import PackConfig

    return cfgmod.build(PackConfig, {}, [*DEFAULT_PACK, *overrides])


def check_codecs(codecs: Sequence[str], pack_cfg) -> list[str]:
    """The codecs, each one PackConfig accepts (an unknown one is a ConfigError naming the valid ones)."""
    out = []
    for c in codecs:
        cfgmod.apply_overrides(pack_cfg, [f"codec={c}"])  # typed against PackConfig's codecs
        out.append(c)
    if not out:
        raise ConfigError("no codec given", f"e.g. --codecs {','.join(DEFAULT_CODECS)}")
    return out


def densify(state: Mapping[str, torch.Tensor], seed: int = 0,
            min_numel: int = 0) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The state with every all-zero float matrix of more than `min_numel` elements (the recipe's
    passthrough size: the matrices it quantizes) drawn orthogonal (rows or columns orthonormal, scaled
    to the mean std of the model's non-zero matrices of that shape, else of all of them), as a
    stand-in for trained weights; returns (state, names drawn)."""
    gen = torch.Generator().manual_seed(seed)
    dense = {k: v for k, v in state.items()
             if v.is_floating_point() and v.dim() == 2 and min(v.shape) > 1 and v.numel() > min_numel}
    live = [v for v in dense.values() if v.any()]
    out, drawn = dict(state), []
    for name in sorted(dense):
        w = dense[name]
        if w.any():
            continue
        same = [v for v in live if v.shape == w.shape] or live
        std = float(torch.stack([v.float().std() for v in same]).mean()) if same else 1.0 / math.sqrt(w.shape[1])
        q = torch.empty(w.shape, dtype=torch.float32)
        g = torch.randn(max(w.shape), min(w.shape), generator=gen)
        basis, _ = torch.linalg.qr(g)  # orthonormal columns
        q.copy_(basis if w.shape[0] >= w.shape[1] else basis.T)
        out[name] = (q * (std / float(q.std()))).to(w.dtype)
        drawn.append(name)
    return out, drawn


def code_class(name: str) -> str:
    """The tensor class a code tensor's bits are summed under: embedding, mlp, attn or other."""
    return "embedding" if "tok_emb" in name else "mlp" if ".mlp." in name else "attn" if ".attn." in name else "other"


def code_stats(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Codes (int8 tensors) and their order-0 entropy: `codes`, `entropy_bytes`, `bits_per_code`, and
    `by_class` {class: bits per code} (per-tensor entropies weighted by size)."""
    rep = entropy_report(tensors)
    codes = sum(int(v["numel"]) for v in rep["tensors"].values())
    sums: dict[str, list[float]] = {}
    for name, v in rep["tensors"].items():
        acc = sums.setdefault(code_class(name), [0.0, 0.0])
        acc[0] += v["numel"]
        acc[1] += v["numel"] * v["bits_per_code"]
    return {"codes": codes, "entropy_bytes": round(rep["entropy_bytes"]),
            "bits_per_code": 8 * rep["entropy_bytes"] / codes if codes else 0.0,
            "by_class": {k: round(b / n, 4) for k, (n, b) in sorted(sums.items()) if n}}


def budget_rows(params: int, model_bytes: Mapping[str, Mapping[str, int]], code_bytes: int,
                limit: int = LIMIT_BYTES) -> list[dict[str, Any]]:
    """One row per (init, codec): model, code and total bytes, bits per parameter, margin and fit."""
    rows = []
    for init, by_codec in model_bytes.items():
        for codec, nbytes in by_codec.items():
            b = budget(code_bytes, nbytes, limit)
            rows.append({"init": init, "codec": codec, "model_bytes": nbytes, "code_bytes": code_bytes,
                         "total_bytes": b["total_bytes"], "margin_bytes": b["margin_bytes"], "fits": b["fits"],
                         "bits_per_param": 8 * nbytes / params})
    return rows


def render(rows: Sequence[Mapping[str, Any]], params: int, limit: int = LIMIT_BYTES,
           record: Mapping[str, int] | None = None) -> str:
    """The rows as a markdown table, with the record's own logged bytes last when given."""
    out = [f"parameters: {params:,}", "",
           "| init | codec | model bytes | bits/param | code bytes | total | margin to "
           f"{limit:,} | fits |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['init']} | {CODEC_LABELS.get(r['codec'], r['codec'])} | {r['model_bytes']:,} | "
                   f"{r['bits_per_param']:.3f} | {r['code_bytes']:,} | {r['total_bytes']:,} | "
                   f"{r['margin_bytes']:,} | {'yes' if r['fits'] else 'NO'} |")
    if record:
        out.append(f"| PR #2135, trained (its log) | per-group (lrzip + brotli) | {record['model_bytes']:,} | "
                   f"{8 * record['model_bytes'] / params:.3f} | {record['code_bytes']:,} | "
                   f"{record['total_bytes']:,} | {limit - record['total_bytes']:,} | "
                   f"{'yes' if record['total_bytes'] <= limit else 'NO'} |")
    return "\n".join(out)


# ----------------------------------------------------------------------------- measuring


def encode_all(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], codecs: Sequence[str], pack_cfg,
               log=print) -> dict[str, int]:
    """model.bin bytes per codec, each checked to decode to the same tensors."""
    out = {}
    for codec in codecs:
        t0 = time.perf_counter()
        blob = encode_model(tensors, meta, codec=codec, layout=pack_cfg.layout, shuffle=pack_cfg.shuffle)
        decoded, _ = decode_model(blob)
        assert all(torch.equal(decoded[k], tensors[k].cpu()) for k in tensors), codec
        out[codec] = len(blob)
        log(f"  {CODEC_LABELS.get(codec, codec)}: {len(blob):,} bytes ({time.perf_counter() - t0:.1f} s)")
    return out


def quantize(state: Mapping[str, torch.Tensor], qcfg, model_cfg, seq_len: int, eval_cfg):
    """(tensors, model.bin meta) as the quantize and pack stages make them."""
    from pgolf.pack.packed import packed_meta
    from pgolf.quant import quantize_state

    res = quantize_state({k: v.detach() for k, v in state.items()}, qcfg)
    meta = packed_meta(res.meta, cfgmod.to_dict(model_cfg), seq_len, cfgmod.to_dict(eval_cfg))
    return res.tensors, meta


def code_bytes_for(train_cfg, qcfg, pack_cfg) -> tuple[int, Any]:
    """Bytes of the train_gpt.py `pgolf pack` writes for this recipe (it trains too when `trainable`)."""
    from pgolf.pack.reproduce import make_recipe
    from pgolf.stages import pack

    eval_cfg = pack.resolve_eval(pack_cfg, train_cfg.seq_len)
    recipe = make_recipe(cfgmod.to_dict(train_cfg), cfgmod.to_dict(qcfg), cfgmod.to_dict(pack_cfg),
                         cfgmod.to_dict(eval_cfg)) if pack_cfg.trainable else None
    bundle, _ = pack.build_submission(pack_cfg, json.dumps(recipe, sort_keys=True, separators=(",", ":"))
                                      if recipe is not None else None)
    return bundle.code_bytes, bundle


def build_model(train_cfg, seed: int):
    from pgolf.model import GPT

    torch.manual_seed(seed)
    model = GPT(train_cfg.model)
    return model, sum(p.numel() for p in model.parameters())


def run_budget(args, log=print) -> dict[str, Any]:
    from pgolf.stages.train import load_config

    train_cfg = load_config(preset=args.preset, overrides=args.train_set)
    qcfg = quantize_config(args.quantize_set, _table(args.quantize_config, "quantize"))
    pcfg = pack_config(args.pack_set)
    codecs = check_codecs(args.codecs.split(","), pcfg)
    t0 = time.perf_counter()
    model, params = build_model(train_cfg, args.seed)
    log(f"{args.preset}: {params:,} parameters ({time.perf_counter() - t0:.1f} s)")
    if args.preset == "sota" and not args.train_set:
        assert params == SOTA_PARAMS, f"the sota preset has {params:,} parameters, the record {SOTA_PARAMS:,}"
    from pgolf.stages import pack

    eval_cfg = pack.resolve_eval(pcfg, train_cfg.seq_len)
    state = model.state_dict()
    inits = ("record", "dense") if args.init == "both" else (args.init,)
    model_bytes: dict[str, dict[str, int]] = {}
    stats: dict[str, Any] = {}
    for init in inits:
        st, drawn = densify(state, args.seed, qcfg.passthrough_numel) if init == "dense" else (state, [])
        tensors, meta = quantize(st, qcfg, train_cfg.model, train_cfg.seq_len, eval_cfg)
        stats[init] = {**code_stats(tensors), "drawn": len(drawn)}
        log(f"init {init}: {stats[init]['codes']:,} codes, order-0 entropy {stats[init]['bits_per_code']:.3f} "
            f"bits/code ({stats[init]['entropy_bytes']:,} bytes){f', {len(drawn)} zero matrices drawn' if drawn else ''}")
        model_bytes[init] = encode_all(tensors, meta, codecs, pcfg, log)
    code, bundle = code_bytes_for(train_cfg, qcfg, pcfg)
    log(f"train_gpt.py: {code:,} bytes ({bundle.minifier}, {bundle.wrapper}, trainable={pcfg.trainable})")
    rows = budget_rows(params, model_bytes, code, pcfg.limit_bytes)
    return {"preset": args.preset, "params": params, "quantize": cfgmod.to_dict(qcfg),
            "pack": {k: v for k, v in cfgmod.to_dict(pcfg).items() if k != "eval"}, "code_bytes": code,
            "code_minifier": bundle.minifier, "codes": stats, "rows": rows, "limit_bytes": pcfg.limit_bytes,
            "record": RECORD if args.preset == "sota" else None}


def run_trained(args, log=print) -> dict[str, Any]:
    """Codes of a trained model against a random model of its own config, same recipe and codecs."""
    from pgolf.artifacts.model import load_model
    from pgolf.stages import pack
    from pgolf.train.config import TrainConfig

    trained, _, manifest = load_model(Path(args.trained))
    train_cfg = cfgmod.from_dict(TrainConfig, manifest.config)
    qcfg = quantize_config(args.quantize_set, _table(args.quantize_config, "quantize"))
    pcfg = pack_config(args.pack_set)
    codecs = check_codecs(args.codecs.split(","), pcfg)
    eval_cfg = pack.resolve_eval(pcfg, train_cfg.seq_len)
    random_model, params = build_model(train_cfg, args.seed)
    out: dict[str, Any] = {"trained": str(args.trained), "params": params, "quantize": cfgmod.to_dict(qcfg)}
    for label, state in (("trained", trained.state_dict()), ("random (record init)", random_model.state_dict()),
                         ("random (dense)", densify(random_model.state_dict(), args.seed, qcfg.passthrough_numel)[0])):
        tensors, meta = quantize(state, qcfg, train_cfg.model, train_cfg.seq_len, eval_cfg)
        out[label] = {**code_stats(tensors), "bytes": encode_all(tensors, meta, codecs, pcfg, log=lambda s: None)}
        classes = ", ".join(f"{k} {v:.3f}" for k, v in out[label]["by_class"].items())
        log(f"{label}: {out[label]['codes']:,} codes, {out[label]['bits_per_code']:.3f} bits/code (order 0; "
            f"{classes}); " + ", ".join(f"{CODEC_LABELS.get(c, c)} {n:,}" for c, n in out[label]["bytes"].items()))
    return out


def _table(path: str | None, section: str) -> dict[str, Any]:
    return cfgmod.load_section(path, section) if path else {}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="sota")
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE", help="TrainConfig override")
    p.add_argument("--quantize-set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"QuantizeConfig key over {' '.join(DEFAULT_QUANTIZE)}")
    p.add_argument("--quantize-config", help="a TOML file whose [quantize] table (or whole) sets QuantizeConfig")
    p.add_argument("--pack-set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"PackConfig key over {' '.join(DEFAULT_PACK)}")
    p.add_argument("--codecs", default=",".join(DEFAULT_CODECS), help="comma-separated PackConfig codecs")
    p.add_argument("--init", choices=("record", "dense", "both"), default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trained", help="a `pgolf train` directory: compare its codes with a random model's")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = p.parse_args(argv)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    try:
        doc = run_trained(args, log) if args.trained else run_budget(args, log)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    elif not args.trained:
        print()
        print(render(doc["rows"], doc["params"], doc["limit_bytes"], doc["record"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
