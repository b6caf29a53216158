"""The submission file `pack/train_gpt.py`: it runs alone in a folder with model.bin and scores the
same val_bpb, to the bit, as `pgolf.eval.evaluate` on `load_packed_model` and as `pgolf ttt-eval`;
its settings come from model.bin and the environment; it passes verify's static scan."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_pack_support import (  # noqa: F401
    SMALL_EVAL,
    VAL_TOKENS,
    invoke,
    pack_dir,
    quant_dir,
    result_line,
    val_arrays,
    write_val_slice,
)

from pgolf import artifacts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory, embedded_data) -> Path:
    """The first VAL_TOKENS tokens of the session's validation set, as challenge shards + byte sidecar."""
    return write_val_slice(embedded_data, tmp_path_factory.mktemp("val") / "shards")


def reference(pack: Path, directory: Path, **changes):
    """What `pgolf.eval.evaluate` scores for the packed model, with the recorded settings (and changes)."""
    from pgolf.artifacts.packed import load_packed_model
    from pgolf.eval import evaluate

    model, info = load_packed_model(pack)
    tokens, token_bytes = val_arrays(directory)
    cfg = dataclasses.replace(info.eval_config, **changes)
    res = evaluate(model, tokens, token_bytes, cfg, bos_id=model.cfg.bos_id, vocab_size=model.cfg.vocab_size)
    return res.summary()


def test_the_file_runs_alone_and_scores_like_evaluate_and_ttt_eval(pack_dir, val_dir, tmp_path):
    folder = tmp_path / "submission"  # what the records folder ships: the file and its model, nothing else
    folder.mkdir()
    for name in ("train_gpt.py", "model.bin"):
        shutil.copy(pack_dir / name, folder / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_", "PYTHON"))}
    env.update(DATA_PATH=str(val_dir), OMP_NUM_THREADS="1", TOKENIZER_PATH=str(tmp_path / "absent.model"))
    proc = subprocess.run([sys.executable, "train_gpt.py"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = result_line(proc.stdout)
    ref = reference(pack_dir, val_dir)
    assert (got["val_bpb"], got["val_loss"], got["val_tokens"]) == (ref["val_bpb"], ref["val_loss"], VAL_TOKENS - 1)
    assert got["val_bytes_source"] == "sidecar" and got["mode"] == "sliding" and got["seq_len"] == 64
    m = artifacts.read_manifest(pack_dir)
    assert got["model_sha256"] == m.metrics["model_sha256"] and got["code_bytes"] == m.metrics["code_bytes"]
    lines = proc.stdout.splitlines()
    assert f"final_sliding val_loss:{ref['val_loss']:.8f} val_bpb:{ref['val_bpb']:.8f}" in "\n".join(lines)
    assert lines[0] == (f"model_bytes:{m.metrics['model_bytes']} code_bytes:{m.metrics['code_bytes']} "
                        f"total_bytes:{m.metrics['total_bytes']} model_sha256:{m.metrics['model_sha256']}")
    assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "train_gpt.py"]  # it wrote nothing

    # `pgolf ttt-eval` on the same pack and shards, with the same settings: the same number
    ev = invoke("ttt-eval", pack_dir, "--data", val_dir, "--out", tmp_path / "eval", "--json",
                *[x for kv in SMALL_EVAL for x in ("--set", kv.removeprefix("eval."))])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["val_bpb"] == got["val_bpb"]


def test_settings_come_from_model_bin_and_the_environment(pack_dir, embedded_data, tmp_path):
    """The program in-process on the real files: EVAL_* overrides, the tokenizer's byte tables, TTT, errors."""
    import glob

    from pgolf.pack.program import Io, main

    shards = write_val_slice(embedded_data, tmp_path / "shards", sidecar=False)  # official layout: no sidecar
    lines: list[str] = []

    def run(**env) -> int:
        lines.clear()
        io = Io({"DATA_PATH": str(shards), "TOKENIZER_PATH": str(tmp_path / "shards.model"), **env},
                lambda p: Path(p).read_bytes(), lambda p: np.memmap(p, mode="r"), None, os.path.exists, glob.glob,
                lines.append)
        return main(io, str(pack_dir / "train_gpt.py"))  # no recipe: this program cannot train

    assert run(EVAL_MODE="plain") == 0, lines
    got = result_line("\n".join(lines))
    side = val_arrays(write_val_slice(embedded_data, tmp_path / "with_sidecar"))[1]
    assert got["val_bytes_source"] == "lut" and got["val_bytes"] == int(side[1:].sum())  # the two rules agree
    ref = reference(pack_dir, tmp_path / "with_sidecar", mode="plain")
    assert (got["mode"], got["stride"], got["val_bpb"]) == ("plain", 64, ref["val_bpb"])

    assert run(EVAL_MODE="ttt", EVAL_TTT_EPOCHS="1", EVAL_TTT_BATCH_SEQS="4", EVAL_CHUNK_TOKENS="1536") == 0, lines
    got = result_line("\n".join(lines))
    ref = reference(pack_dir, tmp_path / "with_sidecar", mode="ttt", chunk_tokens=1536,
                    ttt=dataclasses.replace(reference_ttt(pack_dir), epochs=1, batch_seqs=4))
    assert got["adapted_chunks"] == 1 and got["val_bpb"] == ref["val_bpb"]

    for env, needle in (({"EVAL_STRDE": "8"}, "EVAL_STRDE"), ({"VOCAB_SIZE": "8192"}, "VOCAB_SIZE=8192"),
                        ({"DATA_PATH": str(tmp_path)}, "no fineweb_val_*.bin"),
                        ({"MODEL_PATH": str(tmp_path / "none.bin")}, "none.bin"), ({"TRAIN": "1"}, "recipe")):
        assert run(**env) == 1
        assert lines[-1].startswith("error:") and needle in lines[-1], lines


def reference_ttt(pack):
    from pgolf.artifacts.packed import load_packed_model

    return load_packed_model(pack)[1].eval_config.ttt


def test_without_model_bin_the_file_trains_quantizes_and_packs_the_same_bytes(pack_dir, embedded_data, tiny_train,
                                                                            tmp_path):
    """The records folder ships train_gpt.py alone: run there, it remakes model.bin from its recipe
    (the run's TrainConfig, QuantizeConfig and codec) and evaluates it. Same data, seed and CPU:
    the bytes `pgolf pack` wrote."""
    data = write_val_slice(embedded_data, tmp_path / "data")
    for shard in sorted(embedded_data.glob("fineweb_train_*.bin")):
        shutil.copy(shard, data / shard.name)
    folder = tmp_path / "records"
    folder.mkdir()
    shutil.copy(pack_dir / "train_gpt.py", folder / "train_gpt.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_", "PYTHON", "SEED", "TRAIN"))}
    env.update(DATA_PATH=str(data), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "train_gpt.py"], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (folder / "model.bin").read_bytes() == (pack_dir / "model.bin").read_bytes()
    steps = artifacts.read_manifest(tiny_train).metrics["steps"]
    assert f"step:{steps}/{steps} train_loss:" in proc.stdout and "stop:iterations" in proc.stdout
    got = result_line(proc.stdout)
    assert got["val_bpb"] == reference(pack_dir, data)["val_bpb"]


def test_the_file_passes_the_static_scan(pack_dir):
    from pgolf.verify.codescan import scan_code

    text = (pack_dir / "train_gpt.py").read_text("utf-8")
    scan = scan_code(text)
    assert scan.compiles and scan.payloads > 20
    assert not [f for f in scan.findings if f.verdict in ("FAIL", "WARN")], scan.findings
    assert "pgolf" not in scan.imports and {"torch", "numpy", "sentencepiece"} <= scan.imports
    assert scan.third_party() == artifacts.read_manifest(pack_dir).metrics["requirements"]


def test_every_model_switch_survives_the_bundle(pack_dir, val_dir, tmp_path):
    """A model with every architecture switch on, packed from the pure API next to the same file:
    the code paths the tiny preset never takes are in the bundle too, and score identically."""
    from pgolf.config import to_dict
    from pgolf.eval import EvalConfig, evaluate
    from pgolf.model import GPT, ModelConfig
    from pgolf.pack import encode_model
    from pgolf.pack.packed import packed_meta, unpack_model
    from pgolf.quant import QuantizeConfig, quantize_state

    cfg = ModelConfig(vocab_size=1024, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, activation="swiglu",
                      tie_embeddings=False, rope_dims=8, rope_ref_len=32, xsa_last_n=2, attn_doc_mask=True,
                      init="ortho", skip_gates=True, ln_scale=True, parallel_resid_from=2, smear_gate=True,
                      bigram_buckets=512, bigram_dim=16, value_embed_layers=(2, 3), value_embed_dim=16,
                      recur_layers=(1, 2), backout=True)
    import torch

    torch.manual_seed(0)
    model = GPT(cfg)
    model.set_recurrence(True)
    res = quantize_state(model.state_dict(), QuantizeConfig(scheme="int5mlp", passthrough_numel=1024))
    ev = EvalConfig(mode="sliding", seq_len=64, stride=48, chunk_tokens=1024, batch_seqs=8, time_budget_s=0)
    blob = encode_model(res.tensors, packed_meta(res.meta, to_dict(cfg), 64, to_dict(ev)), codec="rans")
    folder = tmp_path / "full"
    folder.mkdir()
    shutil.copy(pack_dir / "train_gpt.py", folder / "train_gpt.py")
    (folder / "model.bin").write_bytes(blob)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_", "PYTHON"))}
    env.update(DATA_PATH=str(val_dir), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(folder / "train_gpt.py")], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = result_line(proc.stdout)
    packed, _ = unpack_model(blob)
    assert packed.recurrence_active  # the recurrence flag travels in model.bin
    tokens, token_bytes = val_arrays(val_dir)
    ref = evaluate(packed, tokens, token_bytes, ev, bos_id=cfg.bos_id, vocab_size=cfg.vocab_size).summary()
    assert got["val_bpb"] == ref["val_bpb"] and got["stride"] == 48
