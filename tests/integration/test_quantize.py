"""`pgolf quantize` on a really trained tiny model: every scheme, bit-exact round trips, clip search
and GPTQ against round-to-nearest, val_bpb of the float and the quantized model, calibration
provenance and its legality (rules DATA-7), and every bad input."""

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pgolf import artifacts
from pgolf.artifacts import data as datadir
from pgolf.artifacts import quant as quant_artifact
from pgolf.artifacts.model import load_model
from pgolf.cli import app
from pgolf.errors import ArtifactError, LegalityError
from pgolf.quant import QuantizeConfig, dequantize_state, quantize_state
from pgolf.quant import calib as qcalib
from pgolf.quant.matrix import hessian_row_error
from pgolf.stages import quantize as stage
from pgolf.train.validate import ValData
from pgolf.train.validate import evaluate as validate

runner = CliRunner()

# (mlp bits, attention bits) of each scheme; the embedding is int8, control tensors fp32.
SCHEME_BITS = {"int8": (8, 8), "int6": (6, 6), "int5mlp": (5, 6), "int4mlp": (4, 6)}
TINY_PASSTHROUGH = 96 * 96 // 4  # the tiny preset's model_dim is 96


@pytest.fixture(scope="module")
def scheme_dirs(tiny_train, tmp_path_factory):
    """One quant artifact per scheme (round-to-nearest, defaults), written by the stage."""
    root = tmp_path_factory.mktemp("quant")
    out = {}
    for scheme in SCHEME_BITS:
        cfg = stage.load_config(tiny_train, scheme=scheme)
        stage.run(cfg, tiny_train, root / scheme, device="cpu")
        out[scheme] = root / scheme
    return out


def _no_leftovers(parent, name="q"):
    """Nothing half-written: no output and no temporary stage directory."""
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


# ----------------------------------------------------------------------------- every scheme


def test_every_scheme_quantizes_and_round_trips_bit_for_bit(scheme_dirs, tiny_train):
    model, model_cfg, _ = load_model(tiny_train)
    float_state = model.state_dict()
    train_sha = artifacts.sha256_file(tiny_train / "manifest.json")
    bits_per_param = []
    for scheme, out in scheme_dirs.items():
        tensors, meta, cfg, manifest = quant_artifact.load_quant(out)
        assert cfg == model_cfg and meta["format"] == "pgolf.quant/1"
        assert [(e["kind"], e["sha256"]) for e in manifest.inputs] == [("train", train_sha)]
        assert artifacts.resolve_input(out, manifest.inputs[0]) == (tiny_train / "manifest.json").resolve()
        assert manifest.config["scheme"] == scheme and manifest.config["calibration"] is None
        assert manifest.config["passthrough_numel"] == TINY_PASSTHROUGH  # the default follows model_dim

        mlp_bits, attn_bits = SCHEME_BITS[scheme]
        deq = dequantize_state(tensors, meta)
        for name, entry in meta["tensors"].items():
            expected = {"mlp": mlp_bits, "attn": attn_bits, "embed": 8, "control": 32}.get(entry["class"])
            assert entry["bits"] == expected, (scheme, name, entry)
            if entry["bits"] <= 8:  # integer: weights are exactly codes * per-row scales
                codes, scale = tensors[f"{name}.q"], tensors[f"{name}.scale"]
                assert codes.dtype == torch.int8 and scale.dtype == torch.float16
                assert scale.shape == (codes.shape[0],) and int(codes.abs().max()) <= 2 ** (entry["bits"] - 1) - 1
                torch.testing.assert_close(deq[name], codes.float() * scale.float()[:, None], rtol=0, atol=0)

        # The artifact holds exactly what quantizing the same weights in memory gives, bit for bit.
        res = quantize_state(float_state, stage.load_config(tiny_train, scheme=scheme))
        assert set(res.tensors) == set(tensors) and all(torch.equal(res.tensors[k], tensors[k]) for k in tensors)
        again = dequantize_state(res.tensors, res.meta)
        assert all(torch.equal(again[k], deq[k]) for k in deq)
        qmodel = quant_artifact.load_quant_model(out)
        assert all(torch.equal(v, deq[k]) for k, v in qmodel.state_dict().items())

        report = json.loads((out / "report.json").read_text())
        some = report["tensors"]["blocks.0.mlp.fc.weight"]
        assert {"scheme", "bits", "rel_err", "mse", "clipped_frac", "pruned_frac", "payload_bits"} <= set(some)
        assert some["bits"] == mlp_bits and 0 < some["rel_err"] < 0.2
        assert report["totals"]["params"] == manifest.metrics["params"] == 358_096
        assert manifest.metrics["warnings"] == [] and manifest.timing["quantize_s"] > 0
        bits_per_param.append(manifest.metrics["bits_per_param"])
    assert bits_per_param == sorted(bits_per_param, reverse=True) and len(set(bits_per_param)) == 4


# ----------------------------------------------------------------------------- error against RTN


def test_clip_search_and_gptq_beat_round_to_nearest(tiny_train, embedded_data):
    """Clip search lowers the weight error; GPTQ lowers the output error on held-out training
    activations (Hessians from the end of the training stream, calibration from its start)."""
    model, _, _ = load_model(tiny_train)
    state = model.state_dict()
    cfg = QuantizeConfig(scheme="int4mlp", passthrough_numel=TINY_PASSTHROUGH, gptq=True, calib_seq_len=128,
                         calib_tokens=8192)
    names, extra = qcalib.calibration_targets(model, cfg)
    assert "tok_emb.weight" in names and extra == {"tok_emb.weight": ("final_norm", "output")}
    shards = stage.calibration_shards(embedded_data, None)
    tokens, _ = stage.train_calibration_tokens(shards, 64, 128, 1024)
    held = torch.from_numpy(np.asarray(datadir.open_shard(shards[-1])[-64 * 128:], dtype=np.int64)).view(64, 128)
    cpu = torch.device("cpu")
    h_calib = qcalib.calibration_hessians(model, tokens, names, extra, cpu)
    h_held = qcalib.calibration_hessians(model, held, names, extra, cpu)

    def errors(c, hessians=None):
        res = quantize_state(state, c, hessians)
        deq = dequantize_state(res.tensors, res.meta)
        weight = sum(float((state[n] - deq[n]).square().sum()) for n in names)
        output = sum(float(hessian_row_error(state[n], deq[n], h_held[n]).sum()) for n in names)
        return weight, output

    base = sum(float(hessian_row_error(state[n], torch.zeros_like(state[n]), h_held[n]).sum()) for n in names)
    rtn = errors(dataclasses.replace(cfg, gptq=False))
    search = errors(dataclasses.replace(cfg, gptq=False, clip="search"))
    gptq = errors(cfg, h_calib)
    print(f"\nint4mlp on the tiny model: weight sq. error rtn {rtn[0]:.4f}, search {search[0]:.4f}, "
          f"gptq {gptq[0]:.4f}; "
          f"held-out output rel. error rtn {math.sqrt(rtn[1] / base):.4f}, search {math.sqrt(search[1] / base):.4f}, "
          f"gptq {math.sqrt(gptq[1] / base):.4f}")
    assert search[0] < rtn[0]
    assert gptq[1] < 0.75 * rtn[1]  # measured: about 0.22x (output error 0.0146 vs 0.0313)


# ----------------------------------------------------------------------------- evaluation


@pytest.mark.slow
def test_eval_tokens_reports_float_and_quant_val_bpb(tiny_train, embedded_data, tmp_path):
    # The training stage's validation on the same windows (16,384 targets, plain windows of 128).
    model, _, _ = load_model(tiny_train)
    val = ValData(datadir.load_val_tokens(embedded_data), datadir.load_val_bytes(embedded_data))
    train_bpb = validate(model, val, 128, 16384, torch.device("cpu"), max_tokens=16384).bpb
    gaps = {}
    for scheme in ("int8", "int4mlp"):
        out = tmp_path / scheme
        result = runner.invoke(app, ["quantize", str(tiny_train), "--scheme", scheme, "--out", str(out),
                                     "--eval-tokens", "16384", "--device", "cpu", "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert list(doc) == [*stage.JSON_KEYS, *stage.EVAL_JSON_KEYS] and doc["out"] == str(out)
        assert doc["scheme"] == scheme and doc["params"] == 358_096 and doc["eval_tokens"] == 16384
        assert doc["quant_gap_bpb"] == doc["val_bpb_quant"] - doc["val_bpb_float"]
        gaps[scheme] = doc["quant_gap_bpb"]
        assert doc["val_bpb_float"] == pytest.approx(train_bpb, rel=1e-12)
        m = artifacts.read_manifest(out, "quant")
        assert m.metrics["eval_seq_len"] == 128 and m.metrics["eval_data_manifest_sha256"] is not None
        assert m.timing["eval_s"] > 0
    print(f"\nval_bpb gap on 16,384 val tokens: int8 {gaps['int8']:+.6f}, int4mlp {gaps['int4mlp']:+.6f}")
    assert -1e-3 < gaps["int8"] < 2e-3  # int8 is nearly lossless
    assert gaps["int8"] < gaps["int4mlp"] < 0.05


def test_eval_bytes_from_the_tokenizer_equal_the_sidecar(embedded_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(embedded_data, data)
    for side in data.glob("bytes_val_*.bin"):
        side.unlink()
    tokens, side_bytes, facts = stage.load_eval_data(embedded_data, None, 5000, 1024)
    tokens2, lut_bytes, facts2 = stage.load_eval_data(data, None, 5000, 1024)
    assert (facts["bytes_source"], facts2["bytes_source"]) == ("sidecar", "lut")
    assert len(tokens) == 5001 and np.array_equal(tokens, tokens2)
    assert np.array_equal(side_bytes[1:], lut_bytes[1:])


# ----------------------------------------------------------------------------- calibration


def test_train_calibration_provenance(tiny_train, embedded_data, tmp_path):
    cfg = stage.load_config(tiny_train, overrides=["gptq=true", "calib_tokens=4096"], scheme="int6")
    assert cfg.calib_seq_len == 128  # the training sequence length
    m = stage.run(cfg, tiny_train, tmp_path / "q", device="cpu")
    calib = m.config["calibration"]
    data_files = {f["path"]: f["sha256"] for f in artifacts.read_manifest(embedded_data, "data").files}
    assert calib["source"] == "train" and calib["order"] == "stream_start"
    assert calib["shards"] == [{"name": "fineweb_train_000000.bin", "sha256": data_files["fineweb_train_000000.bin"],
                                "tokens": 4096}]
    assert (calib["tokens"], calib["sequences"], calib["seq_len"]) == (4096, 32, 128)
    assert m.config["gptq"] is True and m.config["calib"] == "train"
    assert m.metrics["calib_source"] == "train" and m.metrics["calib_tokens"] == 4096 and m.timing["calib_s"] > 0
    _, meta, _, _ = quant_artifact.load_quant(tmp_path / "q")
    methods = {n: e["method"] for n, e in meta["tensors"].items() if e["bits"] <= 8}
    assert set(methods.values()) == {"gptq"} and "tok_emb.weight" in methods  # the tied head too
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert all("output_rel_err" in report["tensors"][n] for n in methods)
    # The calibration tokens are the start of the training stream, in the train stage's order.
    tokens, _ = stage.train_calibration_tokens(datadir.list_shards(embedded_data, "train"), 2, 128, 1024)
    first = np.asarray(datadir.open_shard(embedded_data / "fineweb_train_000000.bin")[:256], dtype=np.int64)
    assert np.array_equal(tokens.flatten().numpy(), first)


def test_self_generated_calibration_is_recorded_and_deterministic(tiny_train, tmp_path):
    sets = ["gptq=true", "calib=self", "calib_tokens=256", "calib_seq_len=32", "calib_seed=3"]
    cfg = stage.load_config(tiny_train, overrides=sets, scheme="int5mlp")
    a = stage.run(cfg, tiny_train, tmp_path / "a", device="cpu")
    b = stage.run(cfg, tiny_train, tmp_path / "b", device="cpu")
    calib = a.config["calibration"]
    assert {k: calib[k] for k in ("source", "seed", "temperature", "sequences", "seq_len", "tokens")} == {
        "source": "self", "seed": 3, "temperature": 0.8, "sequences": 8, "seq_len": 32, "tokens": 256}
    assert "shards" not in calib and a.metrics["calib_source"] == "self"
    assert a.file("quant.safetensors")["sha256"] == b.file("quant.safetensors")["sha256"]


@pytest.mark.parametrize("how", ["val_shard", "val_only_dir", "renamed_val_shard", "set_calib_val", "config_val"])
def test_calibration_on_validation_data_is_refused(how, tiny_train, embedded_data, tmp_path):
    args = ["quantize", str(tiny_train), "--out", str(tmp_path / "q"), "--set", "gptq=true"]
    if how == "val_shard":
        args += ["--calib-data", str(embedded_data / "fineweb_val_000000.bin")]
    elif how in ("val_only_dir", "renamed_val_shard"):
        d = tmp_path / "calib"
        d.mkdir()
        name = "fineweb_val_000000.bin" if how == "val_only_dir" else "fineweb_train_000000.bin"
        shutil.copy(embedded_data / "fineweb_val_000000.bin", d / name)
        args += ["--calib-data", str(d)]
    elif how == "set_calib_val":
        args += ["--set", "calib=val"]
    else:
        (tmp_path / "q.toml").write_text('[quantize]\ncalib = "validation"\n')
        args += ["--config", str(tmp_path / "q.toml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "DATA-7" in result.output and "Traceback" not in result.output
    _no_leftovers(tmp_path)


def test_stage_refuses_validation_calibration_directly(embedded_data):
    with pytest.raises(LegalityError, match="DATA-7"):
        stage.calibration_shards(embedded_data / "fineweb_val_000000.bin", None)
    with pytest.raises(LegalityError, match="DATA-7"):
        stage.refuse_val_calibration("val")


# ----------------------------------------------------------------------------- the command


def test_cli_human_output_default_out_and_next_step(tiny_train, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_train, run / "train")  # its data lineage does not follow: no GPTQ, no eval
    result = runner.invoke(app, ["quantize", str(run / "train"), "--scheme", "int6", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (run / "quant" / "manifest.json").is_file()
    assert "bits_per_param" in result.output and "tensors by class" in result.output
    assert f"pgolf pack {run / 'quant'} --out {run / 'pack'}" in result.output.replace("\n", "")


def test_matrices_left_fp16_by_size_are_warned_about(tiny_train, tmp_path):
    args = ["quantize", str(tiny_train), "--device", "cpu", "--scheme", "int6"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--set", "passthrough_numel=65536"])
    assert result.exit_code == 0, result.output
    warnings = artifacts.read_manifest(tmp_path / "a", "quant").metrics["warnings"]
    assert len(warnings) == 1 and "24 attention/MLP matrices" in warnings[0] and "stay fp16" in result.output
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "b"), "--set", "passthrough_numel=1000000",
                                 "--set", "embed_bits=16"])
    assert result.exit_code == 0, result.output
    m = artifacts.read_manifest(tmp_path / "b", "quant")
    assert m.metrics["num_int_tensors"] == 0 and "nothing was quantized" in m.metrics["warnings"][0]


def _tampered_train(tiny_train, tmp_path):
    d = tmp_path / "tampered"
    shutil.copytree(tiny_train, d)
    raw = bytearray((d / "model.safetensors").read_bytes())
    raw[-100] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(raw))
    return d


def _no_manifest(tiny_train, tmp_path):
    d = tmp_path / "nomanifest"
    shutil.copytree(tiny_train, d)
    (d / "manifest.json").unlink()
    return d


BAD_INPUTS = {
    "missing train dir": (lambda t, p: ([str(p / "nope")], "does not exist")),
    "no manifest": (lambda t, p: ([str(_no_manifest(t, p))], "is not a train artifact")),
    "tampered model": (lambda t, p: ([str(_tampered_train(t, p))], "does not match its sha256")),
    "unknown scheme": (lambda t, p: ([str(t), "--scheme", "int3"], "int8, int6, int5mlp, int4mlp")),
    "unknown scheme in --set": (lambda t, p: ([str(t), "--set", "scheme=int3"], "int8, int6, int5mlp, int4mlp")),
    "config typo": (lambda t, p: ([str(t), "--set", "clip_quantle=0.99"], "did you mean 'clip_quantile'")),
    "bad value": (lambda t, p: ([str(t), "--set", "prune_frac=1.5"], "prune_frac")),
    "config file typo": (lambda t, p: ([str(t), "--config", str(_toml(p, "[quantize]\nsheme = 'int6'\n"))],
                                       "did you mean 'scheme'")),
    "config without [quantize]": (lambda t, p: ([str(t), "--config", str(_toml(p, "[train]\nseq_len = 1\n"))],
                                                "has no [quantize] table")),
    "negative eval tokens": (lambda t, p: ([str(t), "--eval-tokens", "-1"], "--eval-tokens must be >= 0")),
    "bad device": (lambda t, p: ([str(t), "--device", "tpu"], "--device must be auto, cpu or cuda")),
    "calib data missing": (lambda t, p: ([str(t), "--calib-data", str(p / "nowhere")], "does not exist")),
}


def _toml(tmp_path, text):
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line_and_leaves_nothing(case, tiny_train, tmp_path):
    args, message = BAD_INPUTS[case](tiny_train, tmp_path)
    result = runner.invoke(app, ["quantize", *args, "--out", str(tmp_path / "q")])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
    _no_leftovers(tmp_path)


def test_existing_output_needs_force_and_never_replaces_an_input(scheme_dirs, tiny_train, tmp_path):
    out = tmp_path / "q"
    shutil.copytree(scheme_dirs["int8"], out)
    result = runner.invoke(app, ["quantize", str(tiny_train), "--scheme", "int6", "--out", str(out)])
    assert result.exit_code == 1 and "--force" in result.output
    assert artifacts.read_manifest(out, "quant").config["scheme"] == "int8"  # untouched
    for target in (tiny_train, tiny_train.parent):
        result = runner.invoke(app, ["quantize", str(tiny_train), "--out", str(target), "--force"])
        assert result.exit_code == 1 and "an input of this stage" in result.output
    assert (tiny_train / "manifest.json").is_file()
    result = runner.invoke(app, ["quantize", str(tiny_train), "--scheme", "int6", "--out", str(out), "--force",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert artifacts.read_manifest(out, "quant").config["scheme"] == "int6"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".q.")]


def test_load_quant_checks_its_files(scheme_dirs, tmp_path):
    out = tmp_path / "q"
    shutil.copytree(scheme_dirs["int6"], out)
    raw = bytearray((out / "quant.safetensors").read_bytes())
    raw[-10] ^= 0x01
    (out / "quant.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        quant_artifact.load_quant(out)
    with pytest.raises(ArtifactError, match="not a quant artifact"):
        quant_artifact.load_quant(tmp_path)
