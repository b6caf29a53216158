"""The static scan of the shipped train_gpt.py: what it flags, what it follows, what it leaves alone."""

import base64
import lzma
import zlib

from pgolf.verify.codescan import declared_modules, import_name, parse_requirements, scan_code


def rules(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in scan_code(text).findings:
        out.setdefault(f.rule, set()).add(f.verdict)
    return out


def test_clean_code_has_no_findings():
    text = "import math\nimport torch\nfrom pathlib import Path\nblob = Path('model.bin').read_bytes()\n"
    scan = scan_code(text)
    assert scan.compiles and scan.findings == [] and scan.imports == {"math", "torch", "pathlib"}
    assert scan.third_party() == []


def test_exec_of_a_side_file_is_uncounted_code():
    for text in ('exec(open("side.py").read())',
                 'from pathlib import Path\nexec(Path("side.py").read_text())',
                 'src = open("side.py").read()\nexec(compile(src, "side", "exec"))',
                 'with open("side.py") as f:\n    exec(f.read())',
                 'import runpy\nrunpy.run_path("side.py")',
                 'import torch\ntorch.ops.load_library("kernels.so")',
                 'import importlib.util as u\nspec = u.spec_from_file_location("m", "m.py")'):
        assert rules(text).get("SIZE-3") == {"FAIL"}, text


def test_dynamic_loading_the_scan_cannot_resolve_warns():
    for text in ("import sys\nsys.path.insert(0, 'lib')",
                 "import importlib\nname = input()\nimportlib.import_module(name)",
                 "def f(code):\n    exec(code)",
                 "import ctypes\nctypes.CDLL('libfoo.so')"):
        assert rules(text).get("SIZE-3") == {"WARN"}, text


def test_self_extracting_payloads_are_followed():
    inner = b"import brotli\nexec(open('side.py').read())\n"
    wrapped = base64.b85encode(lzma.compress(inner)).decode()
    text = f'import lzma as L, base64 as B\nSRC = "{wrapped}"\nexec(L.decompress(B.b85decode(SRC)))\n'
    scan = scan_code(text)
    assert scan.payloads == 1 and "brotli" in scan.imports
    hit = scan.by_rule("SIZE-3")[0]
    assert hit.verdict == "FAIL" and "payload" in hit.where
    nested = base64.b64encode(zlib.compress(f"exec({text!r})".encode())).decode()
    deep = scan_code(f"import zlib, base64\nexec(zlib.decompress(base64.b64decode('{nested}')).decode())\n")
    assert deep.payloads == 3 and deep.by_rule("SIZE-3")[0].verdict == "FAIL"


def test_in_memory_streams_are_not_file_reads():
    blob = base64.b85encode(lzma.compress(b"x = 1\n")).decode()
    text = f"import io, lzma, base64\nexec(lzma.open(io.BytesIO(base64.b85decode('{blob}'))).read())\n"
    assert rules(text).get("SIZE-3") == {"WARN"}  # not resolved, but not a file either


def test_undeclared_imports_and_programs():
    scan = scan_code("import brotli\nimport zstandard\nimport numpy\nimport subprocess\n"
                     "subprocess.run(['lrzip', 'x'])\n")
    assert scan.third_party() == ["brotli", "zstandard"]
    assert scan.third_party(["brotli>=1.1", "zstandard"]) == []
    assert scan.programs == ["'lrzip'"] and scan.by_rule("SIZE-4")[0].verdict == "WARN"


def test_network_modules_are_static_warnings_and_downloads_fail():
    for text in ("import socket", "from urllib.request import urlopen", "from urllib import request",
                 "import requests"):
        assert rules(text).get("DATA-6") == {"WARN"}, text
    assert "DATA-6" not in rules("from urllib.parse import quote")
    # a call that downloads is no longer "a static hit alone"
    assert "FAIL" in rules("from huggingface_hub import hf_hub_download\nhf_hub_download('a', 'b')")["DATA-6"]


def test_loader_glob_matching_val_and_train():
    assert rules('import glob\nglob.glob("/data/fineweb_*.bin")').get("DATA-3") == {"FAIL"}
    assert "DATA-3" not in rules('import glob\nglob.glob("data/fineweb_train_*.bin")')


def test_loader_globs_built_by_concatenation():
    for text in ('import glob\nd = "data"\nglob.glob(d + "/*.bin")',
                 'import glob, os\nglob.glob(f"{os.environ[\'DATA\']}/fineweb_*.bin")',
                 'import glob, os\nglob.glob(os.path.join(DATA, "*.bin"))',
                 'from pathlib import Path\nPath(DATA).glob("fineweb_*")',
                 'import glob\nglob.iglob(DATA + "/fineweb_" + "*")'):
        findings = scan_code(text).by_rule("DATA-3")
        assert [f.verdict for f in findings] == ["FAIL"], text  # one finding, not one per literal piece
    for text in ('import glob\nglob.glob(DATA + "/fineweb_train_*.bin")',
                 'import glob\nglob.glob(f"{DATA}/{prefix}_*.bin")'):  # the name is not known: no verdict
        assert "DATA-3" not in rules(text), text


def test_side_files_read_by_name_are_uncounted_data():
    for text in ('import numpy as np\nx = np.fromfile("extra.bin", dtype=np.uint8)',
                 'import numpy as np, os\nx = np.load(os.path.join(os.path.dirname(__file__), "w.npy"))',
                 'import torch\nsd = torch.load("ckpt.pt")',
                 'from pathlib import Path\nHERE = Path(__file__).parent\nb = (HERE / "lut.bin").read_bytes()',
                 'data = open("side" + ".dat", "rb").read()',
                 'import numpy as np\nm = np.memmap(f"{HERE}/table.u16", mode="r")'):
        assert rules(text).get("SIZE-3") == {"FAIL"}, text
    legal = ('import numpy as np\nnp.fromfile("data/fineweb_val_000000.bin")\nopen("model.bin", "rb")\n'
             'open("./data/tokenizers/fineweb_1024_bpe.model", "rb")\nopen("logs/run.txt", "w")\n'
             'open("/proc/cpuinfo").read()\nopen(path, "rb")\nimport torch\ntorch.load(io.BytesIO(blob))\n')
    assert "SIZE-3" not in rules(legal)
    # a file the code writes itself and reads back (the records' final_model.int8.ptz round trip)
    roundtrip = ('import torch\nwith open("final_model.int8.ptz", "wb") as f:\n    f.write(blob)\n'
                 'with open("final_model.int8.ptz", "rb") as f:\n    blob = f.read()\n'
                 'torch.save(sd, "final_model.pt")\nsd = torch.load("final_model.pt")\n')
    assert "SIZE-3" not in rules(roundtrip)


def test_obfuscated_exec_fails_and_an_unresolvable_lookup_warns():
    for text in ('e = getattr(__builtins__, "ex" + "ec")\ne("print(1)")',
                 '__builtins__.__dict__["exec"]("x = 1")',
                 'import builtins as b\nb.exec("x = 1")',
                 'from builtins import exec as run\nrun("x = 1")',
                 'globals()["__builtins__"]["eval"]("1")',
                 'import sys\nsys.modules["builtins"].compile("x", "y", "exec")',
                 'vars(__import__("builtins"))["exec"]("x = 1")',
                 'r = exec\nr("x = 1")'):
        assert rules(text).get("SIZE-3") == {"FAIL"}, text
    assert rules('n = input()\ngetattr(__builtins__, n)("x")').get("SIZE-3") == {"WARN"}
    assert "SIZE-3" not in rules('import builtins\nbuiltins.exec("x = 1")\nprint(getattr(__builtins__, "len"))')
    # the hidden call's payload is still followed
    scan = scan_code('getattr(__builtins__, "exec")("import brotli")')
    assert scan.payloads == 1 and "brotli" in scan.imports


def test_local_modules_are_uncounted_code():
    for text in ("import helper", "from helper import f", "from . import helper", "from .helper import f",
                 "import pgolf.eval"):
        assert rules_local(text).get("SIZE-3") == {"FAIL"}, text
    assert "SIZE-3" not in rules_local("import numpy")


def rules_local(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in scan_code(text, local_modules=["helper"]).findings:
        out.setdefault(f.rule, set()).add(f.verdict)
    return out


def test_downloads_in_subprocesses_fail():
    for text, extra in (('import subprocess\nsubprocess.run(["curl", "-o", "w.bin", "https://x"])', None),
                        ('import os\nos.system("wget https://x/w.bin")', None),
                        ('import os\nos.popen(f"git clone {url}")', None),
                        ('import os\nos.system("pip install brotli")', "SIZE-4"),
                        ('import subprocess, sys\nsubprocess.check_call([sys.executable, "-m", "pip", "install", '
                         '"zstandard"])', "SIZE-4")):
        got = rules(text)
        assert got.get("DATA-6") == {"FAIL"}, text
        if extra:
            assert got[extra] == {"FAIL"}, text
    assert rules('import subprocess\nsubprocess.run(["git", "rev-parse", "HEAD"])') == {"SIZE-4": {"WARN"}}


def test_torch_hub_fails():
    got = rules('import torch\nm = torch.hub.load("owner/repo", "model")')
    assert got["DATA-6"] == {"FAIL"} and got["SIZE-3"] == {"FAIL"}
    assert rules("from torch import hub\nhub.load_state_dict_from_url('https://x')")["DATA-6"] == {"FAIL"}


def test_absolute_paths_and_syntax_errors():
    assert rules('open("/opt/pg/fineweb_val_000000.bin")')["FMT-3"] == {"FAIL"}
    assert "FMT-3" not in rules('open("data/x.bin")\nopen("/dev/null")\nx = "a/b"\ny = "/"')
    scan = scan_code("def f(:\n    pass\n")
    assert not scan.compiles and scan.by_rule("FMT-3")[0].verdict == "FAIL" and "line 1" in scan.error


def test_requirements_parsing():
    assert import_name("huggingface-hub>=0.2") == "huggingface_hub"
    assert import_name("flash-attn==2.6; platform_system=='Linux'") == "flash_attn"
    assert parse_requirements("# c\nbrotli==1.1  # codec\n\nzstandard\n") == ("brotli==1.1", "zstandard")
    assert {"torch", "triton", "numpy", "sentencepiece", "huggingface_hub"} <= declared_modules(
        ["torch", "numpy", "sentencepiece", "huggingface-hub"])


def test_names_are_read_in_their_own_scope():
    """A minifier reuses short names in every function: each occurrence is read where it is bound."""
    for first, second in (("numpy", "zlib"), ("zlib", "numpy")):  # the alias bound last must not win
        text = (f"def f():\n import {first} as A;B=A.crc32(b'') if A.__name__=='zlib' else A.fromfile('side.bin')\n"
                f" return B\ndef g():\n import {second} as A;B=A.crc32(b'') if A.__name__=='zlib' else "
                "A.fromfile('side.bin')\n return B\n")
        assert rules(text) == {"SIZE-3": {"FAIL"}}, (first, second)
    # a local literal folds in its own function, whatever the same name holds elsewhere
    text = ("import glob\ndef f(d):\n A=d+'/fineweb_*.bin';return glob.glob(A)\ndef g():\n A=3;A+=1;return A\n"
            "def h():\n A='x';exec(A)\n")
    scan = scan_code(text)
    assert {(f.rule, f.verdict) for f in scan.findings} == {("DATA-3", "FAIL")} and scan.payloads == 1
    # a function's own binding (an argument) shadows the module's alias; `global` binds in the module
    assert rules("import numpy as np\ndef f(np):\n return np.fromfile('side.bin')\n") == {}
    assert rules("def f():\n global np\n import numpy as np\ndef g():\n return np.fromfile('side.bin')\n") == \
        {"SIZE-3": {"FAIL"}}
    # a method does not see its class body's names; a comprehension variable stays in the comprehension
    assert rules("import numpy as A\nclass C:\n A=3\n def m(self):\n  return A.fromfile('side.bin')\n") == \
        {"SIZE-3": {"FAIL"}}
    assert rules("import numpy as A\ndef f(xs):\n B=[A for A in xs];return A.fromfile('side.bin')\n") == \
        {"SIZE-3": {"FAIL"}}
