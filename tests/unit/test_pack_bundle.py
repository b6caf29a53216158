"""Self-extracting submission files (pgolf.pack.bundle) and the packed-model meta (pgolf.pack.packed)."""

import ast
import sys

import pytest
import torch

from pgolf.errors import ArtifactError, ConfigError
from pgolf.pack import bundle as B
from pgolf.pack import encode_model
from pgolf.pack.packed import FORMAT, check_meta, packed_meta, unpack_model

# A small package that exercises what the bundler must get right.
PKG = {
    "bpkg/__init__.py": '"""Package doc."""\nfrom bpkg.core import VALUE as VALUE\n',
    "bpkg/core.py": '''"""Core: docstrings, annotations, dataclasses, a TYPE_CHECKING block, an unused function."""
from __future__ import annotations

import dataclasses
import typing
from typing import TYPE_CHECKING, Literal

from bpkg import util
from bpkg.util import double as twice

if TYPE_CHECKING:
    from bpkg.never import Missing

VALUE: int = 21
UNUSED_TABLE = {"a": 1}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Settings with annotations that get_type_hints must still resolve."""

    mode: Literal["x", "y"] = "x"
    """An attribute docstring."""
    width: int = 3

    def hints(self) -> dict[str, typing.Any]:
        return typing.get_type_hints(type(self))


def compute(n: int = 2) -> int:
    """Uses a module-level import, an aliased import and a lazy one."""
    from bpkg.lazy import offset  # only inside the function

    return twice(util.double(n)) + offset() + VALUE


def never_called(x: int) -> int:
    """Nothing names this: the shaker removes it."""
    return x * 1000
''',
    "bpkg/util.py": 'def double(n):\n    """Twice n."""\n    return 2 * n\n',
    "bpkg/lazy.py": "import bpkg.util\n\n\ndef offset():\n    return bpkg.util.double(0) + 1\n",
    "bpkg/main.py": '''from bpkg.core import Settings, compute


def main(out):
    s = Settings(mode="y")
    out.append((compute(), s.mode, sorted(s.hints())))
    return 0
''',
}
CALL = "R=[]\n_I('bpkg.main').main(R)"


def run_program(text: str) -> dict:
    """Execute a bundle's script in a fresh namespace; remove the modules it registered afterwards."""
    ns = {"__name__": "__main__"}
    try:
        exec(compile(text, "train_gpt.py", "exec"), ns)
    finally:
        for name in [n for n in sys.modules if n == "bpkg" or n.startswith("bpkg.")]:
            del sys.modules[name]
    return ns


def test_bundle_runs_and_keeps_semantics():
    b = B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg")
    ns = run_program(b.text)
    assert ns["R"] == [(2 * 2 * 2 + 1 + 21, "y", ["mode", "width"])]
    assert set(b.modules) == {"bpkg.core", "bpkg.util", "bpkg.lazy", "bpkg.main"}  # the __init__ is not needed
    # util runs before core (core needs it at import time); lazy only before the call
    assert b.modules.index("bpkg.util") < b.modules.index("bpkg.core") < b.modules.index("bpkg.main")


def test_minification_drops_docs_annotations_and_unused_code():
    b = B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg")
    p = b.program
    for gone in ("Package doc", "Twice n", "attribute docstring", "never_called", "UNUSED_TABLE", "bpkg.never",
                 "-> int", "n: int"):
        assert gone not in p, gone
    assert "mode: Literal" in p  # dataclass fields keep their annotations
    assert b.minified_bytes < b.source_bytes
    unshaken = B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg", shake_defs=False)
    assert "never_called" in unshaken.program and len(unshaken.program) > len(p)
    assert run_program(unshaken.text)["R"] == run_program(b.text)["R"]


def test_imports_of_the_package_are_rewritten_for_the_scan():
    from pgolf.verify.codescan import scan_code

    b = B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg")
    scan = scan_code(b.text)
    assert scan.compiles and scan.payloads == 1 + len(b.modules)  # the program, then every module
    assert "bpkg" not in scan.imports and {"dataclasses", "typing"} <= scan.imports
    assert not [f for f in scan.findings if f.verdict in ("FAIL", "WARN")]


@pytest.mark.parametrize("wrapper", ["lzma", "zlib", "auto"])
def test_wrappers_decode_to_the_program_and_are_deterministic(wrapper):
    a = B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg", wrapper=wrapper)
    b = B.build_bundle(dict(reversed(list(PKG.items()))), "bpkg.main", CALL, root="bpkg", wrapper=wrapper)
    assert a.text == b.text and B.unwrap(a.text) == a.program
    assert a.wrapper == (wrapper if wrapper != "auto" else min(
        ("lzma", "zlib"), key=lambda w: (len(B.wrap(a.program, w)[0]), w)))
    assert a.text.isascii() and len(a.text.splitlines()) == 2
    assert run_program(a.text)["R"][0][0] == 30


def test_reindent_is_checked():
    src = "def f(x):\n    if x:\n        return 'a    b'\n    return 0\n"
    assert B.minify(ast.parse(src)) == "def f(x):\n if x:\n  return 'a    b'\n return 0"


def test_errors():
    with pytest.raises(B.BundleError, match="not among the sources"):
        B.build_bundle({**PKG, "bpkg/util.py": "from bpkg.gone import x\n"}, "bpkg.main", CALL, root="bpkg")
    with pytest.raises(B.BundleError, match="cycle"):
        B.build_bundle({**PKG, "bpkg/util.py": "from bpkg.core import VALUE\ndef double(n):\n return VALUE\n"},
                       "bpkg.main", CALL, root="bpkg")
    with pytest.raises(B.BundleError, match="import \\*"):
        B.build_bundle({**PKG, "bpkg/util.py": "from bpkg.lazy import *\n"}, "bpkg.main", CALL, root="bpkg")
    with pytest.raises(B.BundleError, match="entry module"):
        B.build_bundle(PKG, "bpkg.nope", CALL, root="bpkg")
    with pytest.raises(B.BundleError, match="unknown wrapper"):
        B.wrap("pass\n", "gzip")


def test_excluded_module_fails_only_when_used():
    src = {**PKG, "bpkg/main.py": "def main(out):\n from bpkg.util import double\n out.append(double(1))\n"}
    b = B.build_bundle(src, "bpkg.main", CALL, root="bpkg", exclude=["bpkg.util"])
    assert "bpkg.util" not in b.modules
    with pytest.raises(ModuleNotFoundError, match="bpkg.util"):
        run_program(b.text)


# ----------------------------------------------------------------------------- python-minifier


def test_python_minifier_keeps_semantics_is_smaller_and_deterministic():
    from pgolf.verify.codescan import scan_code

    plain = B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg")
    small = B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg", minifier="python-minifier")
    again = B.build_bundle(dict(reversed(list(PKG.items()))), "bpkg.main", CALL, root="bpkg",
                           minifier="python-minifier")
    assert small.text == again.text and B.unwrap(small.text) == small.program
    assert run_program(small.text)["R"] == run_program(plain.text)["R"] == [(30, "y", ["mode", "width"])]
    assert small.minified_bytes < plain.minified_bytes and small.modules == plain.modules
    assert small.minifier == f"python-minifier {B.PYTHON_MINIFIER}" and plain.minifier == "ast"
    scan = scan_code(small.text)
    assert scan.payloads == 1 + len(small.modules)
    assert not [f for f in scan.findings if f.verdict in ("FAIL", "WARN")]


def test_python_minifier_failures_are_one_error_never_a_fallback(monkeypatch):
    import importlib.metadata

    import python_minifier

    def build():
        return B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg", minifier="python-minifier")

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(python_minifier, "minify", boom)
    with pytest.raises(B.BundleError, match=r"^python-minifier failed on bpkg\.\w+: RuntimeError: boom$"):
        build()
    monkeypatch.setattr(python_minifier, "minify", lambda text, **kw: text.replace("def double", "def twice_"))
    with pytest.raises(B.BundleError, match="changed the module-level names of bpkg.util: double, twice_"):
        build()
    monkeypatch.setattr(python_minifier, "minify", lambda text, **kw: text + "\n)(")
    with pytest.raises(B.BundleError, match="output for bpkg.\\w+ does not compile"):
        build()

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(B.BundleError, match="needs the python-minifier package: pip install python-minifier==3.4.0"):
        build()
    with pytest.raises(B.BundleError, match="unknown minifier 'pyminify'"):
        B.build_bundle(PKG, "bpkg.main", CALL, root="bpkg", minifier="pyminify")


# Violations an entrant could hide in one embedded module; python-minifier renames the locals to
# short names reused across functions (`import numpy as A` in one, `import zlib as A` in the next).
PLANTED = {
    "np.fromfile of a side file": ("SIZE-3", """
def side_table():
    import numpy as numeric
    table = numeric.fromfile("lut_extra.bin", dtype=numeric.uint8)
    return table

def double(n):
    import zlib as packer
    checksum = packer.crc32(b"x")
    return 2 * n if checksum or side_table else 0
"""),
    "a glob of train and val shards": ("DATA-3", """
import glob, os

def double(n):
    pattern = os.environ.get("DATA_PATH", "data") + "/fineweb_*.bin"
    return 2 * n + 0 * len(glob.glob(pattern))
"""),
    "exec of a file's contents": ("SIZE-3", """
import os

def double(n):
    helper_text = open(os.path.join(os.path.dirname(__file__), "helpers.txt")).read()
    exec(helper_text, {})
    return 2 * n
"""),
}


@pytest.mark.parametrize("minifier", B.MINIFIERS)
@pytest.mark.parametrize("case", list(PLANTED))
def test_a_violation_inside_a_minified_payload_fails_by_its_rule(case, minifier):
    from pgolf.verify.codescan import scan_code

    rule, source = PLANTED[case]
    b = B.build_bundle({**PKG, "bpkg/util.py": source}, "bpkg.main", CALL, root="bpkg", minifier=minifier)
    fails = [f for f in scan_code(b.text).findings if f.verdict == "FAIL"]
    assert {f.rule for f in fails} == {rule}, (case, [f.text() for f in fails])
    assert "> payload" in fails[0].where  # found in the decoded module, two payloads deep


# ----------------------------------------------------------------------------- packed meta


def tiny_packed(eval_cfg=None):
    from pgolf.config import to_dict
    from pgolf.eval.config import EvalConfig
    from pgolf.model import GPT, ModelConfig
    from pgolf.quant import QuantizeConfig, quantize_state

    cfg = ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)
    torch.manual_seed(0)
    model = GPT(cfg)
    res = quantize_state(model.state_dict(), QuantizeConfig(scheme="int6", passthrough_numel=256))
    meta = packed_meta(res.meta, to_dict(cfg), 64, to_dict(eval_cfg or EvalConfig(seq_len=64)))
    return model, res, meta


def test_packed_meta_keeps_what_dequantization_reads():
    _, res, meta = tiny_packed()
    assert meta["format"] == FORMAT and meta["train_seq_len"] == 64 and meta["eval"]["seq_len"] == 64
    assert set(meta["quant"]) == {"format", "tensors"} and meta["quant"]["tensors"].keys() == res.meta["tensors"].keys()
    assert all(set(e) == {"scheme", "shape", "dtype"} for e in meta["quant"]["tensors"].values())
    with pytest.raises(ArtifactError, match="lacks"):
        packed_meta({"format": "pgolf.quant/1", "tensors": {"w": {"scheme": "fp16_v1"}}}, {}, 2, {})
    with pytest.raises(ArtifactError, match="format"):
        check_meta({"format": "pgolf.quant/1"})
    with pytest.raises(ArtifactError, match="train_seq_len"):
        check_meta({**meta, "train_seq_len": "64"})


def test_unpack_model_gives_the_dequantized_model():
    from pgolf.model import GPT
    from pgolf.quant import dequantize_state

    model, res, meta = tiny_packed()
    blob = encode_model(res.tensors, meta, codec="rans")
    got, meta2 = unpack_model(blob)
    ref = GPT(model.cfg)
    ref.load_state_dict(dequantize_state(res.tensors, res.meta))
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(got(idx), ref.eval()(idx))
    assert meta2 == meta and not got.training
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(ArtifactError):
        unpack_model(bytes(bad))
    with pytest.raises(ArtifactError):
        unpack_model(blob[:-7])
    wrong = {**meta, "model_config": {**meta["model_config"], "model_dim": 48}}
    with pytest.raises(ArtifactError, match="does not fit its model config"):
        unpack_model(encode_model(res.tensors, wrong, codec="zstd"))


def test_submission_reads_eval_overrides_from_the_environment():
    from pgolf.pack.program import env_keys, eval_config

    _, _, meta = tiny_packed()
    assert env_keys()["EVAL_TTT_LR"] == "ttt.lr" and env_keys()["EVAL_SEQ_LEN"] == "seq_len"
    cfg = eval_config(meta, {"EVAL_MODE": "ttt", "EVAL_TTT_LR": "0.005", "EVAL_STRIDE": "32", "HOME": "/x"})
    assert (cfg.mode, cfg.ttt.lr, cfg.stride, cfg.seq_len) == ("ttt", 0.005, 32, 64)
    assert eval_config(meta, {"EVAL_SEQ_LEN": "0"}).seq_len == 64  # 0: the training length
    with pytest.raises(ConfigError, match="EVAL_STRDE"):
        eval_config(meta, {"EVAL_STRDE": "32"})
    with pytest.raises(ConfigError):
        eval_config(meta, {"EVAL_STRIDE": "128"})  # longer than the window
