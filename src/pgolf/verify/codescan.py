"""Static scan of the shipped `train_gpt.py` with `ast` (rules SIZE-3, SIZE-4, DATA-3, DATA-6, FMT-3).

What it finds, and the verdict a finding suggests:
- code or data loaded from files the artifact does not count: `exec`/`eval`/`compile` of a file's
  contents, `runpy.run_path`, `importlib` loaders from files, `torch.ops.load_library`,
  `cpp_extension.load` of source files (SIZE-3 FAIL); native libraries, `sys.path` edits, dynamic
  imports and `exec` of values it cannot resolve (SIZE-3 WARN: the rulebook's "dynamic loading the
  AST cannot resolve");
- imports and subprocess targets (SIZE-4: third-party modules not declared are WARN);
- network modules (DATA-6 WARN: a static hit alone);
- loader globs that match both training and validation shards (DATA-3 FAIL);
- a syntax error or an absolute path in a string literal (FMT-3 FAIL).

Self-extracting files (the records' LZMA + base85 wrappers) are followed: the argument of `exec` or
`compile` is evaluated when it is built only from literals, the decoders in `DECODERS` and the
decompressors in `DECOMPRESSORS`, and the decoded source is scanned in turn. Decompression is
bounded (`pgolf.bounded`): a payload that would expand beyond MAX_PAYLOAD_BYTES, or past
MAX_DECODED_BYTES over the whole scan, is not decoded but reported (SIZE-3 WARN, like any code the
scan cannot see), so a few KB of bz2 cannot take gigabytes.
"""

from __future__ import annotations

import ast
import base64
import binascii
import fnmatch
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pgolf.bounded import OutputLimitError, decompress_bounded, human_bytes
from pgolf.verify.rules import FAIL, WARN, Verdict

# The upstream repository's requirements.txt (openai/parameter-golf), as import names, plus what
# its packages bring along (torch ships triton on CUDA; setuptools ships pkg_resources).
UPSTREAM_REQUIREMENTS = ("numpy", "tqdm", "torch", "huggingface-hub", "kernels", "setuptools", "typing-extensions",
                         "datasets", "tiktoken", "sentencepiece")
BUNDLED_WITH = {"torch": ("triton",), "setuptools": ("pkg_resources", "_distutils_hack")}
# Distribution names whose import name differs by more than '-' -> '_'.
IMPORT_NAMES = {"pyyaml": "yaml", "pillow": "PIL", "scikit-learn": "sklearn", "opencv-python": "cv2",
                "flash-attn": "flash_attn", "flash_attn_3": "flash_attn_interface", "python-dateutil": "dateutil"}

NETWORK_MODULES = ("socket", "ssl", "http.client", "http.server", "urllib.request", "urllib3", "requests", "httpx",
                   "aiohttp", "huggingface_hub", "ftplib", "smtplib", "websocket", "websockets", "paramiko",
                   "boto3", "datasets")
NETWORK_CALLS = ("hf_hub_download", "snapshot_download", "urlopen", "urlretrieve")
EXEC_CALLS = ("exec", "eval", "compile", "builtins.exec", "builtins.eval", "builtins.compile")
FILE_OPENS = ("open", "io.open", "codecs.open", "os.read", "importlib.resources.read_text",
              "importlib.resources.read_binary", "pkgutil.get_data", "linecache.getlines")
IN_MEMORY_STREAMS = ("io.BytesIO", "io.StringIO")
FILE_LOADERS = ("runpy.run_path", "importlib.util.spec_from_file_location", "importlib.machinery.SourceFileLoader",
                "importlib.machinery.ExtensionFileLoader", "imp.load_source", "imp.load_dynamic",
                "torch.ops.load_library", "torch.classes.load_library")
NATIVE_LOADERS = ("ctypes.CDLL", "ctypes.PyDLL", "ctypes.WinDLL", "ctypes.cdll.LoadLibrary",
                  "ctypes.pydll.LoadLibrary", "cffi.FFI")
DYNAMIC_IMPORTS = ("importlib.import_module", "__import__", "runpy.run_module")
PROCESS_CALLS = ("subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
                 "subprocess.Popen", "os.system", "os.popen", "os.execv", "os.execvp", "os.execl", "os.execlp",
                 "os.spawnv", "os.spawnl", "os.posix_spawn", "os.posix_spawnp")
SYS_PATH_EDITS = ("sys.path.insert", "sys.path.append", "sys.path.extend", "site.addsitedir")
# Text decoders: their output is smaller than their input (the file), so they run as they are.
DECODERS: dict[str, Callable] = {
    "base64.b85decode": base64.b85decode, "base64.b64decode": base64.b64decode,
    "base64.a85decode": base64.a85decode, "base64.b32decode": base64.b32decode,
    "base64.b16decode": base64.b16decode, "base64.urlsafe_b64decode": base64.urlsafe_b64decode,
    "base64.standard_b64decode": base64.standard_b64decode, "binascii.a2b_base64": binascii.a2b_base64,
}
# Decompressors: followed through `pgolf.bounded` (the same output, stopped at the bound).
DECOMPRESSORS: dict[str, str] = {"lzma.decompress": "lzma", "zlib.decompress": "zlib", "bz2.decompress": "bz2",
                                 "gzip.decompress": "gzip"}
ABSOLUTE_PATH = re.compile(r"^(/[\w.+-]+){2,}/?$|^[A-Za-z]:[\\/]")
HARMLESS_ROOTS = ("/dev/", "/proc/", "/sys/", "/tmp/", "/usr/bin/env")
MAX_PAYLOAD_DEPTH = 4
# Decoding bounds: one payload at most 64 MiB and 256 MiB over a whole scan, so that many payloads,
# or one payload exec'd from many places, cannot multiply the work. pgolf's own train_gpt.py (the
# whole toolkit) decodes 48 payloads, ~240 KB in all; a record's wrapper, one program of ~50 KB.
MAX_PAYLOAD_BYTES = 64 << 20
MAX_DECODED_BYTES = 256 << 20


@dataclass(frozen=True)
class Finding:
    """One static hit: the rule it bears on, the verdict it suggests, where, and what."""

    rule: str
    verdict: Verdict
    where: str  # "train_gpt.py:12", "train_gpt.py:3 > payload:40"
    message: str

    def text(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class CodeScan:
    """The outcome of `scan_code`."""

    compiles: bool
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)  # top-level module names, payloads included
    dotted_imports: set[str] = field(default_factory=set)
    programs: list[str] = field(default_factory=list)  # subprocess targets (literal program names)
    payloads: int = 0  # embedded payloads decoded and scanned
    decoded_bytes: int = 0  # what the decoders produced, toward MAX_DECODED_BYTES

    def by_rule(self, rule: str) -> list[Finding]:
        return [f for f in self.findings if f.rule == rule]

    def third_party(self, declared: Iterable[str] = ()) -> list[str]:
        """Imported top-level modules that are neither stdlib nor declared (SIZE-4)."""
        known = declared_modules((*UPSTREAM_REQUIREMENTS, *declared))
        std = set(sys.stdlib_module_names) | {"__future__", "__main__"}
        return sorted(m for m in self.imports if m not in std and m not in known)


def import_name(requirement: str) -> str:
    """`huggingface-hub>=0.2` -> `huggingface_hub` (the module a distribution is imported as)."""
    name = re.split(r"[<>=!~;\[\s@]", requirement.strip(), maxsplit=1)[0].strip().lower()
    return IMPORT_NAMES.get(name, name.replace("-", "_").replace(".", "_"))


def declared_modules(requirements: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for req in requirements:
        if not req.strip() or req.strip().startswith(("#", "-")):
            continue
        name = import_name(req)
        out.add(name)
        out.update(BUNDLED_WITH.get(name, ()))
    return out


def parse_requirements(text: str) -> tuple[str, ...]:
    return tuple(line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip())


class _Unresolved(Exception):
    pass


class _TooLarge(_Unresolved):
    """A payload the scan refuses to decode: it expands beyond the bound (the message says which)."""


class _Scanner(ast.NodeVisitor):
    def __init__(self, scan: CodeScan, tree: ast.Module, where: str, depth: int):
        self.scan, self.where, self.depth = scan, where, depth
        self.aliases: dict[str, str] = {}
        self.assigned: dict[str, ast.AST | None] = {}  # name -> its only assigned value (None: several)
        for node in ast.walk(tree):  # aliases and single assignments, from every scope
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        self.assigned[t.id] = node.value if t.id not in self.assigned else None

    # ------------------------------------------------------------------ names and values

    def add(self, rule: str, verdict: Verdict, node: ast.AST, message: str) -> None:
        self.scan.findings.append(Finding(rule, verdict, f"{self.where}:{getattr(node, 'lineno', 0)}", message))

    def dotted(self, node: ast.AST) -> str:
        """`L.decompress` -> `lzma.decompress` through the import aliases; '' when not a name chain."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Call):  # Path("x").read_text -> "Path.read_text" keeps the method visible
            inner = self.dotted(node.func)
            return ".".join([inner, *reversed(parts)]) if inner else ".".join(reversed(parts))
        if not isinstance(node, ast.Name):
            return ".".join(reversed(parts))
        parts.append(self.aliases.get(node.id, node.id))
        return ".".join(reversed(parts))

    def reads_file(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> bool:
        """The expression reads a file: open(...), Path.read_text/read_bytes, X.read() of a non-memory stream."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                name = self.dotted(sub.func)
                last = name.rsplit(".", 1)[-1]
                if name in FILE_OPENS or last in ("read_text", "read_bytes"):
                    return True
                in_memory = any(isinstance(s, ast.Call) and self.dotted(s.func) in IN_MEMORY_STREAMS
                                for s in ast.walk(sub.func))
                if last in ("read", "readlines") and not in_memory:
                    return True
            elif isinstance(sub, ast.Name) and sub.id not in seen and (source := self.assigned.get(sub.id)) is not None:
                if self.reads_file(source, seen | {sub.id}):
                    return True
        return False

    def resolve(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> str | bytes:
        """Evaluate an expression built only from literals and DECODERS; raise _Unresolved otherwise."""
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            return node.value
        if isinstance(node, ast.Name) and node.id not in seen and (source := self.assigned.get(node.id)) is not None:
            return self.resolve(source, seen | {node.id})
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.resolve(node.left, seen), self.resolve(node.right, seen)
            if isinstance(left, str) and isinstance(right, str):
                return left + right
            if isinstance(left, bytes) and isinstance(right, bytes):
                return left + right
            raise _Unresolved  # str + bytes
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("decode", "encode") and not node.keywords:
                value = self.resolve(func.value, seen)
                if func.attr == "decode" and isinstance(value, bytes):
                    return value.decode("utf-8")
                if func.attr == "encode" and isinstance(value, str):
                    return value.encode("utf-8")
                raise _Unresolved
            name = self.dotted(func)
            decoder, codec = DECODERS.get(name), DECOMPRESSORS.get(name)
            if decoder is not None or codec is not None:
                value = self.resolve(node.args[0], seen)
                return self.decode(value.encode("ascii") if isinstance(value, str) else value, decoder, codec)
        if isinstance(node, ast.Call) and not node.args and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("decode", "encode"):
            value = self.resolve(node.func.value, seen)
            if node.func.attr == "decode" and isinstance(value, bytes):
                return value.decode("utf-8")
            if node.func.attr == "encode" and isinstance(value, str):
                return value.encode("utf-8")
        raise _Unresolved

    def decode(self, data: bytes, decoder: Callable | None, codec: str | None) -> bytes:
        """One decoder or bounded decompressor over a resolved value; _TooLarge past the bounds."""
        left = MAX_DECODED_BYTES - self.scan.decoded_bytes
        limit = min(MAX_PAYLOAD_BYTES, left)
        too_large = (f"compressed payload that expands beyond {human_bytes(limit)}" if limit == MAX_PAYLOAD_BYTES
                     else f"payload past the {human_bytes(MAX_DECODED_BYTES)} the scan decodes in all")
        try:
            if codec is not None:
                out = decompress_bounded(data, codec, limit)
            elif decoder is not None:
                out = decoder(data)
            else:
                raise _Unresolved
        except OutputLimitError:
            raise _TooLarge(too_large) from None
        except Exception:  # a malformed payload: it cannot be what runs
            raise _Unresolved from None
        if len(out) > limit:
            raise _TooLarge(too_large)
        self.scan.decoded_bytes += len(out)
        return out

    # ------------------------------------------------------------------ visitors

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.note_import(a.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level:
            self.note_import(node.module, node)
            for a in node.names:
                if f"{node.module}.{a.name}" in NETWORK_MODULES:
                    self.note_import(f"{node.module}.{a.name}", node)

    def note_import(self, module: str, node: ast.AST) -> None:
        self.scan.imports.add(module.split(".")[0])
        self.scan.dotted_imports.add(module)
        if any(module == m or module.startswith(m + ".") for m in NETWORK_MODULES):
            self.add("DATA-6", WARN, node, f"imports {module}, a network module")
        if module.split(".")[0] == "pgolf":
            self.add("SIZE-3", WARN, node, "imports the pgolf package, which counts only if the file carries it")

    def visit_Call(self, node: ast.Call) -> None:
        name = self.dotted(node.func)
        short = name.rsplit(".", 1)[-1]
        if name in EXEC_CALLS and node.args:
            self.exec_call(node, name)
        elif name in FILE_LOADERS:
            self.add("SIZE-3", FAIL, node, f"{name}(...) loads code from a file outside the counted train_gpt.py")
        elif name == "torch.utils.cpp_extension.load" or name.endswith("cpp_extension.load"):
            self.add("SIZE-3", FAIL, node, "cpp_extension.load(...) compiles source files outside the counted file")
        elif name in NATIVE_LOADERS:
            self.add("SIZE-3", WARN, node, f"{name}(...) loads a native library, counted only if it ships and "
                                           "is counted")
        elif name in DYNAMIC_IMPORTS:
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                self.note_import(node.args[0].value, node)
            else:
                self.add("SIZE-3", WARN, node, f"{name}(...) of a name the static scan cannot resolve")
        elif name in SYS_PATH_EDITS:
            self.add("SIZE-3", WARN, node, f"{name}(...): imports may then come from uncounted files")
        elif name in PROCESS_CALLS:
            program = self.program(node)
            self.scan.programs.append(program)
            self.add("SIZE-4", WARN, node, f"{name}(...) runs {program}: a system binary must be declared")
        if short in NETWORK_CALLS:
            self.add("DATA-6", WARN, node, f"calls {name or short}(...), which downloads over the network")
        self.generic_visit(node)

    def program(self, node: ast.Call) -> str:
        arg = node.args[0] if node.args else None
        if isinstance(arg, (ast.List, ast.Tuple)) and arg.elts:
            arg = arg.elts[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return repr(arg.value.split()[0] if arg.value.split() else arg.value)
        return "a program the static scan cannot resolve"

    def exec_call(self, node: ast.Call, name: str) -> None:
        arg = node.args[0]
        if self.reads_file(arg):
            self.add("SIZE-3", FAIL, node, f"{name}(...) runs code read from a file (uncounted code)")
            return
        try:
            payload = self.resolve(arg)
        except _TooLarge as e:
            self.add("SIZE-3", WARN, node, f"{name}(...) of a {e}; refusing to decode it (the static scan "
                                           "cannot see that code)")
            return
        except _Unresolved:
            self.add("SIZE-3", WARN, node, f"{name}(...) of a value the static scan cannot resolve")
            return
        if isinstance(payload, bytes):
            try:
                payload = payload.decode("utf-8")
            except UnicodeDecodeError:
                self.add("SIZE-3", WARN, node, f"{name}(...) of a binary payload the static scan cannot read")
                return
        self.scan.payloads += 1
        if self.depth >= MAX_PAYLOAD_DEPTH:
            self.add("SIZE-3", WARN, node, f"{name}(...) payloads nested deeper than {MAX_PAYLOAD_DEPTH}")
            return
        _scan_into(self.scan, payload, f"{self.where}:{node.lineno} > payload", self.depth + 1)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if not isinstance(value, str) or len(value) > 300 or "\n" in value:
            return
        if ABSOLUTE_PATH.match(value) and not value.startswith(HARMLESS_ROOTS):
            self.add("FMT-3", FAIL, node, f"absolute path {value!r}: the folder must run on relative paths only")
        if "fineweb" in value and any(c in value for c in "*?["):
            base = value.rsplit("/", 1)[-1]
            if fnmatch.fnmatch("fineweb_train_000000.bin", base) and fnmatch.fnmatch("fineweb_val_000000.bin", base):
                self.add("DATA-3", FAIL, node, f"glob {value!r} matches training and validation shards alike")


def _scan_into(scan: CodeScan, text: str, where: str, depth: int) -> None:
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        if depth == 0:
            scan.compiles = False
            scan.error = f"line {e.lineno}: {e.msg}"
        scan.findings.append(Finding("FMT-3" if depth == 0 else "SIZE-3", FAIL if depth == 0 else WARN,
                                     f"{where}:{e.lineno}", f"does not compile ({e.msg})"))
        return
    _Scanner(scan, tree, where, depth).visit(tree)


def scan_code(text: str, name: str = "train_gpt.py") -> CodeScan:
    """Scan the source of a submission file (and the payloads it decodes from literals)."""
    scan = CodeScan(compiles=True)
    try:
        compile(text, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        scan.compiles = False
        scan.error = f"line {getattr(e, 'lineno', '?')}: {getattr(e, 'msg', e)}"
    _scan_into(scan, text, name, 0)
    if not scan.compiles and not scan.by_rule("FMT-3"):
        scan.findings.append(Finding("FMT-3", FAIL, name, f"does not compile ({scan.error})"))
    return scan
