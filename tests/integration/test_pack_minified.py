"""`minifier = "python-minifier"`: the submission file made smaller by python-minifier behaves as the
default one (same model.bin, same output to the bit), passes verify and its audit, and a violation
planted inside one of its minified modules still FAILs by its rule."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_pack_support import (  # noqa: F401
    invoke,
    pack_cli,
    pack_dir,
    quant_dir,
    result_line,
    write_val_slice,
)
from test_verify_support import EVAL_SET, edit_manifest, rehash

from pgolf import artifacts
from pgolf.pack import bundle as B

pytestmark = pytest.mark.slow
MINIFIED = ("--set", "minifier=python-minifier")


@pytest.fixture(scope="module")
def minified_pack(quant_dir) -> Path:
    out = quant_dir.parent / "pack-minified"
    result = pack_cli(quant_dir, out, *MINIFIED, "--json")
    assert result.exit_code == 0, result.output
    return out


def test_the_minified_file_is_smaller_and_the_model_the_same(pack_dir, minified_pack):
    plain, small = artifacts.read_manifest(pack_dir).metrics, artifacts.read_manifest(minified_pack).metrics
    assert (minified_pack / "model.bin").read_bytes() == (pack_dir / "model.bin").read_bytes()
    assert small["code_bytes"] < plain["code_bytes"] and small["code_minified_bytes"] < plain["code_minified_bytes"]
    assert small["code_minifier"] == f"python-minifier {B.PYTHON_MINIFIER}" and plain["code_minifier"] == "ast"
    assert small["code_bytes"] == (minified_pack / "train_gpt.py").stat().st_size
    assert small["total_bytes"] == small["code_bytes"] + small["model_bytes"]
    assert small["requirements"] == plain["requirements"] and small["code_modules"] == plain["code_modules"]


def _start_alone(pack: Path, folder: Path, val: Path) -> subprocess.Popen:
    """train_gpt.py started in a folder holding only it and model.bin (as test_submission.py runs it)."""
    folder.mkdir()
    for name in ("train_gpt.py", "model.bin"):
        shutil.copy(pack / name, folder / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVAL_", "PYTHON"))}
    env.update(DATA_PATH=str(val), OMP_NUM_THREADS="1", TOKENIZER_PATH=str(folder / "absent.model"))
    return subprocess.Popen([sys.executable, "train_gpt.py"], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    return out


def test_both_files_print_the_same_evaluation(pack_dir, minified_pack, embedded_data, tmp_path):
    val = write_val_slice(embedded_data, tmp_path / "val" / "shards")
    procs = [_start_alone(pack_dir, tmp_path / "plain", val), _start_alone(minified_pack, tmp_path / "small", val)]
    plain_out, small_out = (_finish(p) for p in procs)  # side by side: one wall clock for both
    a, b = result_line(plain_out), result_line(small_out)
    timing = ("code_bytes", "eval_time_s")
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert b["code_bytes"] == artifacts.read_manifest(minified_pack).metrics["code_bytes"] < a["code_bytes"]

    def steady(out: str) -> list[str]:  # every line but the byte counts and the clock
        return [x for x in out.splitlines() if not x.startswith(("model_bytes:", "pgolf_result ", "final_"))]

    assert steady(plain_out) == steady(small_out)
    final = [x.rsplit(" eval_time:", 1)[0] for x in (plain_out + small_out).splitlines() if x.startswith("final_")]
    assert len(final) == 2 and final[0] == final[1]


# ----------------------------------------------------------------------------- verify


@pytest.fixture(scope="module")
def minified_run(tmp_path_factory, embedded_data, tiny_train) -> Path:
    """A complete tiny run (data, train, quant, pack with python-minifier, eval) for `pgolf verify`."""
    run = tmp_path_factory.mktemp("minified") / "run"
    run.mkdir()
    shutil.copytree(embedded_data, run / "data")
    shutil.copytree(tiny_train, run / "train")
    edit_manifest(run / "train", lambda m: m.update(
        inputs=[artifacts.input_entry("data", run / "data" / "manifest.json", run / "train")]))
    rehash(run, ("train",))
    for args in (["quantize", run / "train", "--out", run / "quant"],
                 ["pack", run / "quant", "--out", run / "pack", *MINIFIED],
                 ["ttt-eval", run / "pack", "--data", run / "data", "--out", run / "eval",
                  *[x for kv in EVAL_SET for x in ("--set", kv)]]):
        result = invoke(*args)
        assert result.exit_code == 0, f"pgolf {args[0]}: {result.output}"
    return run


def verify(*args) -> tuple[int, dict]:
    result = invoke("verify", *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def test_a_minified_run_passes_verify_and_the_audit(minified_run, tmp_path):
    code, doc = verify(minified_run, "--audit", "--out", tmp_path / "v")
    assert code == 0 and not [c for c in doc["checks"] if c["verdict"] == "FAIL"], doc["checks"]
    assert [c["verdict"] for c in doc["checks"] if c["id"] == "AUDIT-1"] == ["PASS"]
    for rule in ("SIZE-3", "DATA-3", "DATA-6"):
        assert {c["verdict"] for c in doc["checks"] if c["id"] == rule} == {"PASS"}, rule


def test_a_violation_inside_a_minified_module_fails_verify(minified_run, tmp_path):
    """An entrant appends a side-file read to one embedded module, minified like the rest (the alias is a
    one-letter name that other functions reuse), and re-wraps the file: SIZE-3 still FAILs."""
    import python_minifier

    run = Path(shutil.copytree(minified_run, tmp_path / "run"))
    program = B.unwrap((run / "pack" / "train_gpt.py").read_text())
    tree = ast.parse(program)
    planted = python_minifier.minify("def _side_table():\n    import numpy as numeric\n"
                                     "    return numeric.fromfile('lut_extra.bin', dtype=numeric.uint8)\n",
                                     rename_locals=True, rename_globals=False, hoist_literals=False)
    execs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == "exec" and isinstance(n.args[0], ast.Constant)]
    execs[-1].args[0].value += "\n" + planted  # the last module executed before the entry call
    text, _ = B.wrap(ast.unparse(tree) + "\n", "lzma")
    (run / "pack" / "train_gpt.py").write_text(text)
    size = (run / "pack" / "train_gpt.py").stat().st_size
    edit_manifest(run / "pack", lambda m: m["metrics"].update(
        code_bytes=size, total_bytes=size + m["metrics"]["model_bytes"]))
    rehash(run, ("pack", "eval"))
    code, doc = verify(run, "--out", tmp_path / "v")
    failing = {c["id"] for c in doc["checks"] if c["verdict"] == "FAIL"}
    assert code == 3 and "SIZE-3" in failing and "LINEAGE" not in failing, failing
    assert "lut_extra.bin" in " ".join(c["detail"] for c in doc["checks"] if c["id"] == "SIZE-3")


def test_a_minifier_failure_is_one_line_and_writes_nothing(quant_dir, tmp_path, monkeypatch):
    import python_minifier

    from pgolf.stages import pack

    def boom(*args, **kwargs):
        raise RuntimeError("unsupported node")

    pack._build_submission.cache_clear()  # built by the fixtures with the real library
    monkeypatch.setattr(python_minifier, "minify", boom)
    result = pack_cli(quant_dir, tmp_path / "pack", *MINIFIED)
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert any("cannot build train_gpt.py: python-minifier failed on pgolf." in x and "RuntimeError: unsupported node"
               in x and "--set minifier=ast" in x for x in lines), result.output
    assert "Traceback" not in result.output and not (tmp_path / "pack").exists()
