"""`pgolf pack`: quant/ -> pack/ (model.bin, train_gpt.py, report.json, manifest.json).

1. Read the quant artifact (`pgolf.artifacts.quant.load_quant`: files checked against its manifest)
   and, through its lineage, the train manifest: the training sequence length and the recipe.
2. Encode model.bin (`pgolf.pack.encode_model`): the codes, scales and passthrough tensors, and in
   its meta everything evaluation needs (`pgolf.pack.packed`).
3. Round trip before counting: decode the blob, check every tensor and the meta are identical, that
   the dequantized weights equal those of quant.safetensors bit for bit, and that the model builds.
4. Build the submission file (`pgolf.pack.bundle`): the program of `pgolf.pack.submission` and the
   pgolf modules it imports, minified (`minifier`: ast.unparse, or python-minifier on top; a failure
   is a ConfigError, never a fallback) and compressed, with the run's recipe (TrainConfig,
   QuantizeConfig, codec, evaluation) so that it can remake model.bin (`trainable`); check that it
   decodes to that program and that a static scan finds nothing it loads from outside (rules SIZE-3).
5. Count: code_bytes = bytes of train_gpt.py, model_bytes = bytes of model.bin, against the limit
   (16,000,000 decimal by default). Over the limit, the artifact is still written (to inspect) with
   `fits: false`, a loud warning is printed, and the command exits 3; `pgolf verify` fails it.

`pgolf.artifacts.packed.load_packed_model(pack_dir)` is the only way evaluation gets weights:
model.bin alone (checked against the pack manifest), decoded, dequantized, built.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.text import Text

from pgolf import artifacts, layout
from pgolf import config as cfgmod
from pgolf.artifacts import MANIFEST, Manifest
from pgolf.artifacts.packed import CODE_FILE, CODE_FORMAT, MODEL_FILE, MODEL_FORMAT, REPORT_FILE, REPORT_FORMAT
from pgolf.artifacts.quant import load_quant, train_manifest_of
from pgolf.errors import ArtifactError, ConfigError
from pgolf.pack import FORMAT_VERSION, budget, decode_model, encode_model, entropy_report, inspect_model
from pgolf.pack.bundle import BundleError, build_bundle, unwrap
from pgolf.pack.config import PackConfig
from pgolf.pack.packed import packed_meta, unpack_model
from pgolf.pack.reproduce import make_recipe
from pgolf.quant import dequantize_state
from pgolf.quant.config import SCHEMES
from pgolf.runtime import console
from pgolf.runtime.env import PACKAGE_DIR, code_info, env_info
from pgolf.stages import runner
from pgolf.verify.codescan import scan_code

JSON_KEYS = ("out", "codec", "model_bytes", "code_bytes", "total_bytes", "limit_bytes", "entropy_bytes", "fits")

# The submission file's program: `pgolf.pack.submission.main`, wired to the real world, with the run's
# recipe (JSON, or None when packed without training). `_T` is taken before anything else runs, so the
# evaluation clock includes loading (rules TIME-3).
ENTRY = "pgolf.pack.program"
TRAINING = "pgolf.pack.reproduce"  # left out of files packed with trainable = false
NGRAM_TILT, LORA_TTT = "pgolf.eval.ngram_tilt", "pgolf.eval.lora_ttt"  # left out when the evaluation does not use them
ENTRY_CALL = ("import os,glob,numpy\n"
              "S=_I('pgolf.pack.program')\n"
              "raise SystemExit(S.main(S.Io(os.environ,lambda p:open(p,'rb').read(),lambda p:numpy.memmap(p,mode='r'),"
              "lambda p,d:open(p,'wb').write(d),os.path.exists,glob.glob,print),__file__,_T,recipe={recipe}))")
PRELUDE = "import time;_T=time.perf_counter()"


# ----------------------------------------------------------------------------- config


def load_config(config: str | Path | None = None, overrides: Sequence[str] = (), codec: str | None = None):
    """PackConfig: defaults <- the file's `[pack]` table (or the whole file) <- `--set` <- `--codec`."""

    table = cfgmod.load_section(config, "pack", nested=("eval",)) if config is not None else {}
    overrides = [*overrides, *([f"codec={codec}"] if codec is not None else [])]
    return cfgmod.build(PackConfig, table, overrides)


def default_out(quant_dir: str | Path) -> Path:
    """`pack/` next to the quant directory (the run layout: runs/<run>/quant -> runs/<run>/pack)."""
    return layout.next_to(quant_dir, "pack")


def resolve_eval(cfg, train_seq_len: int):
    """The EvalConfig train_gpt.py runs: seq_len 0 becomes the training length (a plain stride is clamped)."""
    ev = cfg.eval
    if ev.seq_len:
        return ev
    return dataclasses.replace(ev, seq_len=train_seq_len, stride=min(ev.stride, train_seq_len))


def train_seq_len(cfg, train: Manifest | None) -> int:
    """The training sequence length: `train_seq_len` when set, else the train manifest's `seq_len`."""
    if cfg.train_seq_len:
        return cfg.train_seq_len
    seq_len = train.config.get("seq_len") if train is not None else None
    if not isinstance(seq_len, int) or seq_len < 2:
        raise ArtifactError(f"the train manifest records no valid seq_len ({seq_len!r})", "pass --set train_seq_len=L")
    return seq_len


def recipe(cfg, train: Manifest, quant: Manifest, eval_cfg) -> dict[str, Any]:
    """What train_gpt.py needs to remake model.bin: the run's TrainConfig, QuantizeConfig, codec, evaluation.

    The seed is left out (`make_recipe`): SEED gives it (default 1337, as in the challenge), so every
    seed of one config packs the same train_gpt.py and a multi-seed submission ships one file."""

    quantize = {k: v for k, v in quant.config.items() if k != "calibration"}  # its provenance, not a setting
    return make_recipe(train.config, quantize, cfgmod.to_dict(cfg), cfgmod.to_dict(eval_cfg))


# ----------------------------------------------------------------------------- the submission file


def package_sources() -> dict[str, str]:
    """{"pgolf/x/y.py": source} of the pgolf that is running: what the submission file embeds."""
    root = PACKAGE_DIR.parent
    return {p.relative_to(root).as_posix(): p.read_text("utf-8") for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def build_submission(cfg, recipe_json: str | None = None, eval_cfg=None) -> Any:
    """(Bundle, CodeScan) of train_gpt.py, checked: it decodes to its program, and a static scan finds
    nothing loaded from outside the file, no dynamic code it cannot follow, no absolute path.

    recipe_json: the run's recipe (the file can then train); None leaves the training code out.
    eval_cfg: the EvalConfig it evaluates with; the n-gram tilt and the phased LoRA TTT are embedded only
    when it uses them (None: both)."""
    call = ENTRY_CALL.format(recipe=repr(recipe_json) if recipe_json is not None else "None")
    exclude = () if recipe_json is not None else (TRAINING,)
    if eval_cfg is not None:
        exclude += tuple(module for module, used in ((NGRAM_TILT, eval_cfg.tilt != "none"),
                                                     (LORA_TTT, eval_cfg.mode == "ttt" and eval_cfg.ttt.method == "phased_lora"))
                         if not used)
    try:
        return _build_submission(tuple(sorted(package_sources().items())), call, exclude, cfg.shake, cfg.wrapper,
                                 cfg.minifier)
    except BundleError as e:
        hint = "pack with --set minifier=ast" if cfg.minifier != "ast" else "this is a bug in pgolf's bundler"
        raise ConfigError(f"cannot build train_gpt.py: {e}", hint) from None


@functools.lru_cache(maxsize=4)
def _build_submission(sources: tuple[tuple[str, str], ...], call: str, exclude: tuple[str, ...], shake: bool,
                      wrapper: str, minifier: str = "ast"):
    """Cached by its inputs: the same pgolf and recipe build the same file once per process."""

    bundle = build_bundle(dict(sources), ENTRY, call, prelude=PRELUDE, exclude=exclude, shake_defs=shake,
                          wrapper=wrapper, minifier=minifier)
    if unwrap(bundle.text) != bundle.program:
        raise AssertionError("the submission file does not decode to its program")
    scan = scan_code(bundle.text)
    bad = [f.text() for f in scan.findings if f.verdict in ("FAIL", "WARN")]
    if not scan.compiles or bad:
        raise AssertionError(f"the submission file fails its own static scan: {bad}")
    return bundle, scan


# ----------------------------------------------------------------------------- round trip


def _same_bits(a, b) -> bool:

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def check_round_trip(blob: bytes, tensors: Mapping[str, Any], meta: Mapping[str, Any],
                     quant_meta: Mapping[str, Any]) -> None:
    """model.bin decodes to exactly the quantized tensors and meta, dequantizes to the bits quant.safetensors
    dequantizes to, and builds its model (what `load_packed_model` will do)."""

    decoded, meta2 = decode_model(blob)
    if meta2 != meta or set(decoded) != set(tensors):
        raise AssertionError("model.bin does not decode to the meta and tensor names it was made from")
    bad = [k for k in tensors if not _same_bits(decoded[k], tensors[k].cpu())]
    ref = dequantize_state(tensors, quant_meta)
    got = dequantize_state(decoded, meta2["quant"])
    bad += [k for k in ref if set(got) != set(ref) or not _same_bits(got[k], ref[k].cpu())]
    if bad:
        raise AssertionError(f"model.bin does not reproduce the quantized model exactly: {bad[:5]}")
    unpack_model(blob)


# ----------------------------------------------------------------------------- the stage


def run(cfg, quant_dir: str | Path, out: str | Path, *, force: bool = False) -> Manifest:
    """Pack the quant artifact in `quant_dir` with `cfg` (a PackConfig) into `out`; returns the manifest.

    The manifest's `fits` says whether code + model bytes are within `cfg.limit_bytes`; over the
    limit the artifact is written anyway and a warning printed (the CLI then exits 3).
    """
    quant_dir = Path(quant_dir)
    artifacts.read_manifest(quant_dir, "quant")  # the wrong kind of input is named before anything else
    with runner.claim(out, "pack", inputs=[quant_dir], force=force) as output:
        return _pack(cfg, quant_dir, output)


def _pack(cfg, quant_dir: Path, output: runner.Output) -> Manifest:
    t_start = time.perf_counter()
    out = output.out
    tensors, quant_meta, model_cfg, qm = load_quant(quant_dir)
    tm = train_manifest_of(quant_dir, qm) if cfg.trainable or not cfg.train_seq_len else None
    seq_len = train_seq_len(cfg, tm)
    eval_cfg = resolve_eval(cfg, seq_len)
    recipe_json = json.dumps(recipe(cfg, tm, qm, eval_cfg), sort_keys=True, separators=(",", ":")) \
        if cfg.trainable else None
    meta = packed_meta(quant_meta, cfgmod.to_dict(model_cfg), seq_len, cfgmod.to_dict(eval_cfg))
    console.info(f"pack: codec {cfg.codec}, {len(tensors)} tensors, eval {eval_cfg.mode} "
                 f"(window {eval_cfg.seq_len}, stride {eval_cfg.window_stride})")

    t0 = time.perf_counter()
    blob = encode_model(tensors, meta, codec=cfg.codec, layout=cfg.layout, shuffle=cfg.shuffle)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    check_round_trip(blob, tensors, meta, quant_meta)
    roundtrip_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bundle, scan = build_submission(cfg, recipe_json, eval_cfg)
    code_s = time.perf_counter() - t0

    b = budget(bundle.code_bytes, len(blob), cfg.limit_bytes)
    entropy = entropy_report(tensors)
    sections = inspect_model(blob)["sections"]
    params = sum(_numel(e["shape"]) for e in quant_meta["tensors"].values())
    requirements = scan.third_party()
    metrics = {
        **{k: b[k] for k in ("code_bytes", "model_bytes", "total_bytes", "limit_bytes", "margin_bytes")},
        "entropy_bytes": round(entropy["entropy_bytes"]), "fits": b["fits"], "codec": cfg.codec,
        "codecs": sorted({s["codec"] for s in sections}), "sections": sections,
        "params": params, "model_bits_per_param": 8 * b["model_bytes"] / params if params else None,
        "train_seq_len": seq_len, "eval": cfgmod.to_dict(eval_cfg),
        "code_modules": len(bundle.modules), "code_source_bytes": bundle.source_bytes,
        "code_minified_bytes": bundle.minified_bytes, "code_wrapper": bundle.wrapper,
        "code_minifier": bundle.minifier,
        "requirements": requirements, "trainable": cfg.trainable,
    }
    report = {"format": REPORT_FORMAT, **metrics, "modules": list(bundle.modules), "tensors": entropy["tensors"]}
    with output.publish() as work:
        artifacts.atomic_write_bytes(work / MODEL_FILE, blob)
        artifacts.atomic_write_bytes(work / CODE_FILE, bundle.text.encode("utf-8"))
        artifacts.write_json(work / REPORT_FILE, report)
        files = [artifacts.file_entry(work, MODEL_FILE, MODEL_FORMAT, _model_format_version()),
                 artifacts.file_entry(work, CODE_FILE, CODE_FORMAT),
                 artifacts.file_entry(work, REPORT_FILE, REPORT_FORMAT)]
        metrics["model_sha256"] = files[0]["sha256"]
        metrics["code_sha256"] = files[1]["sha256"]
        manifest = Manifest(
            kind="pack", config=cfgmod.to_dict(cfg),
            inputs=[artifacts.input_entry("quant", quant_dir / MANIFEST, work)],
            files=files, metrics=metrics, seed=qm.seed, code=code_info(), env=env_info("cpu", 1),
            timing={"encode_s": encode_s, "roundtrip_s": roundtrip_s, "code_s": code_s,
                    "wall_s": time.perf_counter() - t_start})
        artifacts.write_manifest(work, manifest)
    if not b["fits"]:
        _shout(over_budget_line(b, qm.config.get("scheme"), out))
    return manifest


def over_budget_line(b: Mapping[str, Any], scheme: str | None, out: Path) -> str:
    """One line for a pack over its limit: the bytes, the overshoot, and how to fit (`b`: `budget`'s dict)."""

    smaller = SCHEMES[SCHEMES.index(scheme) + 1] if scheme in SCHEMES[:-1] else None
    fixes = [*([f"a smaller scheme (pgolf quantize --scheme {smaller})"] if smaller else []),
             "pruning (pgolf quantize --set prune_frac=0.05)", "or a smaller model"]
    return (f"OVER BUDGET: code {b['code_bytes']:,} + model {b['model_bytes']:,} = {b['total_bytes']:,} bytes > "
            f"limit {b['limit_bytes']:,} by {-b['margin_bytes']:,} bytes; to fit: {', '.join(fixes)} "
            f"({out} is written for inspection; `pgolf verify` FAILs it, SIZE-1)")


def _shout(message: str) -> None:
    """A warning nobody can miss: bold red on the console (stderr)."""

    console.console.print(Text(message, style="bold red"), soft_wrap=True)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _model_format_version() -> int:

    return FORMAT_VERSION


def summary(manifest: Manifest, out: str | Path) -> dict[str, Any]:
    """The `--json` document of `pgolf pack`."""
    m = manifest.metrics
    return {"out": str(out), **{k: m.get(k) for k in JSON_KEYS if k != "out"}}
