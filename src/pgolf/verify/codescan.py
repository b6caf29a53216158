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
import hashlib
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
                 "subprocess.Popen", "subprocess.getoutput", "subprocess.getstatusoutput", "os.system", "os.popen", "os.execv", "os.execvp", "os.execl", "os.execlp",
                 "os.spawnv", "os.spawnl", "os.posix_spawn", "os.posix_spawnp")
# Loaders of data files (SIZE-3: a file they read by a literal name must be counted or declared data).
DATA_LOADS = ("numpy.fromfile", "numpy.load", "numpy.memmap", "numpy.loadtxt", "numpy.genfromtxt", "torch.load",
              "torch.from_file", "safetensors.torch.load_file", "safetensors.safe_open", "pickle.load")
# What the artifact may read by name: the counted files and the declared data (val/train shards, byte
# sidecars, the tokenizer); anything else named by a literal is uncounted data.
COUNTED_OR_DATA = ("train_gpt.py", "model.bin", "fineweb_*.bin", "bytes_*.bin", "*.model", "*.vocab")
GLOB_CALLS = ("glob.glob", "glob.iglob")
# Programs that download (DATA-6) or install (SIZE-4) when run as a subprocess; the subcommands that do it.
DOWNLOADERS = {"curl": (), "wget": (), "aria2c": (), "scp": (), "rsync": (), "huggingface-cli": ("download",),
               "hf": ("download",), "git": ("clone", "fetch", "pull", "submodule", "lfs", "ls-remote"),
               "pip": ("install", "download"), "pip3": ("install", "download"), "uv": ("pip", "add", "sync"),
               "conda": ("install",), "apt-get": ("install",), "apt": ("install",)}
INSTALLERS = ("pip", "pip3", "uv", "conda", "apt-get", "apt")
BUILTIN_CODE = ("exec", "eval", "compile")
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
    sources: set[str] = field(default_factory=set)  # sha256 of the file's text and of every payload decoded (audit)
    written: set[str] = field(default_factory=set)  # file names the code writes itself (it may read them back)

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


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, *_COMPREHENSIONS)


class _Scanner(ast.NodeVisitor):
    def __init__(self, scan: CodeScan, tree: ast.Module, where: str, depth: int, local_modules: frozenset[str]):
        self.scan, self.where, self.depth, self.local_modules = scan, where, depth, local_modules
        # Import aliases and single assignments per scope (module, function, lambda, class), so that a
        # short name a minifier reuses in many functions (`import numpy as A` here, `import torch as A`
        # there) is read in the scope it belongs to: (scope id, name) -> module / its only value.
        self.aliases: dict[tuple[int, str], str] = {}
        self.assigned: dict[tuple[int, str], ast.AST | None] = {}  # None: assigned several times in that scope
        self.bound: dict[int, set[str]] = {0: set()}  # names each scope binds (0: the module)
        self.chain: dict[int, tuple[int, ...]] = {}  # id(node) -> its scopes, innermost first
        self.renamed: set[str] = set()  # names that hide exec/eval/compile or the builtins module under another name
        self.globbed: set[int] = set()  # literal glob patterns already judged by their glob call (DATA-3)
        self.classes: set[int] = set()
        self.comprehensions: set[int] = set()
        self.tree = tree
        self._index(tree, (0,), frozenset())

    def _index(self, node: ast.AST, chain: tuple[int, ...], declared_global: frozenset[str]) -> None:
        """Record every node's scope chain, and each scope's bindings, aliases and single assignments.
        Scopes: the module (0), functions, lambdas, classes, comprehensions; a function's names resolve
        past an enclosing class body, as Python's do; `global x` binds x in the module."""
        for child in ast.iter_child_nodes(node):
            self._node(child, chain, declared_global)

    def _node(self, child: ast.AST, chain: tuple[int, ...], declared_global: frozenset[str]) -> None:
        self.chain[id(child)] = chain
        if not isinstance(child, _SCOPES):
            self._bind(child, chain, declared_global)
            self._index(child, chain, declared_global)
            return
        outer: list[ast.AST] = []  # evaluated in the enclosing scope
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.bound.setdefault(0 if child.name in declared_global else chain[0], set()).add(child.name)
            outer += child.decorator_list
        if isinstance(child, ast.ClassDef):
            outer += [*child.bases, *child.keywords]
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            outer += [*child.args.defaults, *(d for d in child.args.kw_defaults if d is not None)]
        for part in outer:
            self._node(part, chain, declared_global)
        scope = id(child)
        self.bound[scope] = set()
        if isinstance(child, ast.ClassDef):
            self.classes.add(scope)
            inner = (scope, *chain)
        else:
            inner = (scope, *(c for c in chain if c not in self.classes))
        if isinstance(child, _COMPREHENSIONS):
            self.comprehensions.add(scope)
            body: list[ast.AST] = [*child.generators, *([child.key, child.value] if isinstance(child, ast.DictComp)
                                                       else [child.elt])]
            inner_global = declared_global
        else:
            body = list(child.body) if isinstance(child.body, list) else [child.body]
            inner_global = frozenset(n for stmt in body for sub in ast.walk(stmt) if isinstance(sub, ast.Global)
                                     for n in sub.names)
            if not isinstance(child, ast.ClassDef):
                args = child.args
                self.bound[scope].update(arg.arg for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs,
                                                             args.vararg, args.kwarg) if arg is not None)
        for part in body:
            self._node(part, inner, inner_global)

    def _bind(self, node: ast.AST, chain: tuple[int, ...], declared_global: frozenset[str]) -> None:
        """What one node binds in the innermost scope of `chain` (or the module, for a `global` name)."""

        def scope_of(name: str, walrus: bool = False) -> int:
            scopes = [c for c in chain if c not in self.comprehensions] if walrus else chain
            scope = 0 if name in declared_global or not scopes else scopes[0]
            self.bound.setdefault(scope, set()).add(name)
            return scope

        if isinstance(node, ast.Import):
            for a in node.names:
                name = a.asname or a.name.split(".")[0]
                self.aliases[(scope_of(name), name)] = a.name if a.asname else a.name.split(".")[0]
                if a.name == "builtins" and a.asname not in (None, "builtins"):
                    self.renamed.add(a.asname)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                name = a.asname or a.name
                self.aliases[(scope_of(name), name)] = f"{node.module}.{a.name}"
                if node.module == "builtins" and a.name in BUILTIN_CODE and a.asname not in (None, a.name):
                    self.renamed.add(a.asname)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            scope_of(node.id)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    key = (scope_of(t.id), t.id)
                    self.assigned[key] = node.value if key not in self.assigned else None
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            key = (scope_of(node.target.id, walrus=True), node.target.id)
            self.assigned[key] = node.value if key not in self.assigned else None
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            self.assigned[(scope_of(node.target.id), node.target.id)] = None  # built at run time

    def _scope(self, node: ast.Name) -> int | None:
        """The scope whose binding of the name this occurrence reads (None: a builtin or an unbound name)."""
        for scope in self.chain.get(id(node), (0,)):
            if node.id in self.bound.get(scope, ()):
                return scope
        return None

    def alias_of(self, node: ast.Name) -> str | None:
        """The module (or module.name) an occurrence of an imported name refers to, in its own scope."""
        scope = self._scope(node)
        return None if scope is None else self.aliases.get((scope, node.id))

    def value_of(self, node: ast.Name) -> ast.AST | None:
        """The only value assigned to the name in the scope this occurrence reads; None when several or none."""
        scope = self._scope(node)
        return None if scope is None else self.assigned.get((scope, node.id))

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
        parts.append(self.alias_of(node) or node.id)
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
            elif isinstance(sub, ast.Name) and sub.id not in seen and (source := self.value_of(sub)) is not None:
                if self.reads_file(source, seen | {sub.id}):
                    return True
        return False

    def resolve(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> str | bytes:
        """Evaluate an expression built only from literals and DECODERS; raise _Unresolved otherwise."""
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            return node.value
        if isinstance(node, ast.Name) and node.id not in seen and (source := self.value_of(node)) is not None:
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

    def text_of(self, node: ast.AST) -> str | None:
        try:
            value = self.resolve(node)
        except _Unresolved:
            return None
        return value if isinstance(value, str) else None

    def segments(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> list[str | None]:
        """A path or pattern expression folded into its literal pieces, None for each piece the scan cannot
        see: `d + "/*.bin"`, f"{d}/x_{i}.bin", os.path.join(d, "x"), Path(d) / "x"."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.Name) and node.id not in seen and (source := self.value_of(node)) is not None:
            return self.segments(source, seen | {node.id})
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Div)):
            sep = ["/"] if isinstance(node.op, ast.Div) else []
            return [*self.segments(node.left, seen), *sep, *self.segments(node.right, seen)]
        if isinstance(node, ast.JoinedStr):
            out: list[str | None] = []
            for v in node.values:
                if isinstance(v, ast.Constant):
                    out.append(str(v.value))
                elif isinstance(v, ast.FormattedValue) and v.format_spec is None and v.conversion == -1:
                    out += self.segments(v.value, seen)
                else:
                    out.append(None)
            return out
        if isinstance(node, ast.Call) and not node.keywords and node.args:
            name = self.dotted(node.func)
            if name in ("os.path.join", "posixpath.join"):
                out = []
                for i, a in enumerate(node.args):
                    out += [*([] if i == 0 else ["/"]), *self.segments(a, seen)]
                return out
            if name.rsplit(".", 1)[-1] in ("Path", "PurePath", "PosixPath", "str") and len(node.args) == 1:
                return self.segments(node.args[0], seen)
        return [None]

    def path_tail(self, node: ast.AST) -> tuple[str | None, str | None]:
        """(the last path component, the whole path) of an expression, each None where a piece is unknown."""
        segs = self.segments(node)
        whole = None if None in segs else "".join(s for s in segs if s is not None)
        tail: list[str] = []
        for seg in reversed(segs):
            if seg is None:
                return None, whole
            if "/" in seg:
                tail.append(seg.rsplit("/", 1)[-1])
                break
            tail.append(seg)
        return "".join(reversed(tail)), whole

    def builtins_namespace(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> bool:
        """The expression is the builtins module or its dict, reached dynamically (`__builtins__`,
        `globals()["__builtins__"]`, `vars(builtins)`, `__import__("builtins")`, `sys.modules["builtins"]`)."""
        if isinstance(node, ast.Name):
            if node.id == "__builtins__" or self.alias_of(node) == "builtins":
                return True
            source = self.value_of(node) if node.id not in seen else None
            return source is not None and self.builtins_namespace(source, seen | {node.id})
        if isinstance(node, ast.Attribute):
            return node.attr == "__builtins__" or (node.attr == "__dict__" and self.builtins_namespace(node.value, seen))
        if isinstance(node, ast.Call) and node.args:
            name = self.dotted(node.func)
            if name == "vars":
                return self.builtins_namespace(node.args[0], seen)
            if name in ("__import__", "importlib.import_module"):
                return self.text_of(node.args[0]) == "builtins"
            if name == "getattr" and len(node.args) >= 2 and self.text_of(node.args[1]) == "__builtins__":
                return True
        if isinstance(node, ast.Subscript):
            key = self.text_of(node.slice)
            return key == "__builtins__" or (key == "builtins" and self.dotted(node.value) == "sys.modules")
        return False

    def builtin_lookup(self, node: ast.AST) -> str | None:
        """The builtin a dynamic lookup fetches: getattr(<builtins>, K), <builtins dict>[K], <renamed builtins>.K;
        '?' when K cannot be folded to a constant; None when the node is no such lookup."""
        def key(k: ast.AST) -> str:
            return self.text_of(k) or "?"
        if isinstance(node, ast.Call) and self.dotted(node.func) == "getattr" and len(node.args) >= 2 \
                and self.builtins_namespace(node.args[0]):
            return key(node.args[1])
        if isinstance(node, ast.Subscript) and self.builtins_namespace(node.value):
            return key(node.slice)
        if isinstance(node, ast.Attribute) and node.attr in BUILTIN_CODE:
            plain = isinstance(node.value, ast.Name) and node.value.id == "builtins" \
                and self.alias_of(node.value) == "builtins"
            if not plain and (self.builtins_namespace(node.value)
                              or (isinstance(node.value, ast.Name) and node.value.id in self.renamed)):
                return node.attr
        return None

    def hidden_builtin(self, node: ast.AST) -> None:
        """exec/eval/compile reached by a dynamic lookup or under another name: SIZE-3 FAIL (the lookup exists
        to hide the call from a reader); a lookup by a name the scan cannot fold: WARN."""
        target = self.builtin_lookup(node)
        if target in BUILTIN_CODE:
            self.add("SIZE-3", FAIL, node, f"obfuscated {target}: fetched from the builtins namespace by a dynamic "
                                           "lookup (code hidden from review)")
        elif target == "?":
            self.add("SIZE-3", WARN, node, "a builtin fetched by a name the static scan cannot resolve (it may be "
                                           "exec/eval/compile)")

    def note_writes(self) -> None:
        """File names the code writes itself (open(X, "w"), torch.save(_, X), np.save(X, _), Path(X).write_bytes):
        reading them back is the run's own bytes (the records write final_model.int8.ptz and reload it)."""
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            name = self.dotted(node.func)
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            target: ast.expr | None = None
            if name in FILE_OPENS:
                mode_node = node.args[1] if len(node.args) > 1 else kw.get("mode")
                mode = self.text_of(mode_node) if mode_node is not None else None
                if mode is not None and any(c in mode for c in "wax"):
                    target = node.args[0] if node.args else kw.get("file")
            elif name in ("torch.save",) and len(node.args) > 1:
                target = node.args[1]
            elif name in ("numpy.save", "numpy.savez", "numpy.savez_compressed", "numpy.ndarray.tofile") \
                    and node.args:
                target = node.args[0]
            elif name.rsplit(".", 1)[-1] in ("write_bytes", "write_text", "tofile") \
                    and isinstance(node.func, ast.Attribute):
                target = node.func.value if name.rsplit(".", 1)[-1] != "tofile" else (node.args[0] if node.args
                                                                                     else None)
            if target is not None:
                tail, _ = self.path_tail(target)
                if tail:
                    self.scan.written.add(tail)

    def file_read(self, node: ast.Call, name: str) -> None:
        """open()/np.fromfile/np.load/torch.load/Path(...).read_bytes() of a file named by literals that is neither
        counted (train_gpt.py, model.bin) nor declared data (shards, sidecars, the tokenizer): SIZE-3 FAIL."""
        last = name.rsplit(".", 1)[-1]
        target: ast.expr | None
        if last in ("read_bytes", "read_text") and isinstance(node.func, ast.Attribute):
            target = node.func.value  # Path("x").read_bytes(), (HERE / "x").read_bytes(): path_tail folds both
        else:
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            target = node.args[0] if node.args else kw.get("file", kw.get("filename", kw.get("f")))
            mode_node = node.args[1] if len(node.args) > 1 and name in FILE_OPENS else kw.get("mode")
            mode = self.text_of(mode_node) if mode_node is not None else ""
            if mode is None or any(c in mode for c in "wax"):  # writing brings nothing in; an unknown mode: unknown
                return
        if target is None:
            return
        tail, whole = self.path_tail(target)
        if not tail or (whole is not None and whole.startswith(HARMLESS_ROOTS)):
            return
        if tail not in self.scan.written and not any(fnmatch.fnmatch(tail, p) for p in COUNTED_OR_DATA):
            self.add("SIZE-3", FAIL, node, f"{name}({tail!r}) reads a file the artifact does not count (uncounted "
                                           "data: only train_gpt.py, model.bin and the declared data are)")

    def glob_call(self, node: ast.Call) -> None:
        """A loader glob whose last component, folded from literals, matches both training and val shards."""
        arg = node.args[0] if node.args else None
        if arg is None:
            return
        tail, _ = self.path_tail(arg)
        if tail is None or not any(c in tail for c in "*?["):
            return
        self.globbed.update(id(c) for c in ast.walk(arg) if isinstance(c, ast.Constant))
        if fnmatch.fnmatch("fineweb_train_000000.bin", tail) and fnmatch.fnmatch("fineweb_val_000000.bin", tail):
            self.add("DATA-3", FAIL, node, f"glob of {tail!r} matches training and validation shards alike")

    def process_call(self, node: ast.Call, name: str) -> None:
        program = self.program(node)
        self.scan.programs.append(program)
        words = [w for sub in ast.walk(ast.Module(body=[ast.Expr(a) for a in [*node.args, *(k.value for k in
                                                                                               node.keywords)]],
                                                  type_ignores=[]))
                 if isinstance(sub, ast.Constant) and isinstance(sub.value, str) for w in sub.value.split()]
        for i, word in enumerate(words):
            base = word.rsplit("/", 1)[-1]
            subs = DOWNLOADERS.get(base)
            if subs is None or (subs and not any(w in subs for w in words[i + 1:i + 4])):
                continue
            self.add("DATA-6", FAIL, node, f"{name}(...) runs {base} {' '.join(words[i + 1:i + 3])}: it downloads "
                                           "over the network")
            if base in INSTALLERS:
                self.add("SIZE-4", FAIL, node, f"{name}(...) installs packages at run time ({base}): dependencies "
                                               "must be declared, not fetched")
            return
        self.add("SIZE-4", WARN, node, f"{name}(...) runs {program}: a system binary must be declared")

    # ------------------------------------------------------------------ visitors

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.note_import(a.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add("SIZE-3", FAIL, node, f"relative import from {'.' * node.level}{node.module or ''}: a local "
                                           "module the artifact does not count (uncounted code)")
        elif node.module:
            self.note_import(node.module, node)
            for a in node.names:
                if f"{node.module}.{a.name}" in NETWORK_MODULES:
                    self.note_import(f"{node.module}.{a.name}", node)

    def note_import(self, module: str, node: ast.AST) -> None:
        self.scan.imports.add(module.split(".")[0])
        self.scan.dotted_imports.add(module)
        if any(module == m or module.startswith(m + ".") for m in NETWORK_MODULES):
            self.add("DATA-6", WARN, node, f"imports {module}, a network module")
        top = module.split(".")[0]
        if top == "pgolf":
            self.add("SIZE-3", FAIL, node, "imports the pgolf package from outside the file: uncounted code (the "
                                           "counted file must carry what it runs, as pgolf's packed file does)")
        elif top in self.local_modules:
            self.add("SIZE-3", FAIL, node, f"imports {module}, a local module beside train_gpt.py that the artifact "
                                           "does not count (uncounted code)")

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self.hidden_builtin(node)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.hidden_builtin(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = self.dotted(node.func)
        short = name.rsplit(".", 1)[-1]
        self.hidden_builtin(node)
        hidden = self.builtin_lookup(node.func)
        called = node.func.id if isinstance(node.func, ast.Name) else None
        src = self.value_of(node.func) if isinstance(node.func, ast.Name) and called not in BUILTIN_CODE else None
        renamed = called is not None and (called in self.renamed or (isinstance(src, ast.Name)
                                                                      and src.id in BUILTIN_CODE))
        if renamed:
            self.add("SIZE-3", FAIL, node, f"obfuscated exec/eval/compile: called as {called}(...) under "
                                           "another name (code hidden from review)")
        if (hidden in BUILTIN_CODE or renamed) and node.args:
            self.exec_call(node, name or "exec", quiet=True)  # follow the payload; the FAIL is said
        if name in FILE_OPENS or name in DATA_LOADS or short in ("read_bytes", "read_text"):
            self.file_read(node, name)
        if name in GLOB_CALLS or (isinstance(node.func, ast.Attribute) and node.func.attr in ("glob", "rglob")
                                  and name not in GLOB_CALLS):
            self.glob_call(node)
        if name.startswith("torch.hub."):
            self.add("DATA-6", FAIL, node, f"{name}(...) downloads code or weights over the network")
            if short == "load":
                self.add("SIZE-3", FAIL, node, f"{name}(...) runs a hub repository's code, which the artifact "
                                               "does not count")
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
            self.process_call(node, name)
        if short in NETWORK_CALLS:
            self.add("DATA-6", FAIL, node, f"calls {name or short}(...), which downloads over the network")
        self.generic_visit(node)

    def program(self, node: ast.Call) -> str:
        arg = node.args[0] if node.args else None
        if isinstance(arg, (ast.List, ast.Tuple)) and arg.elts:
            arg = arg.elts[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return repr(arg.value.split()[0] if arg.value.split() else arg.value)
        return "a program the static scan cannot resolve"

    def exec_call(self, node: ast.Call, name: str, quiet: bool = False) -> None:
        """Follow exec/eval/compile's argument. `quiet`: the call is already a FAIL (obfuscated); only a
        payload that resolves is scanned, nothing more is said."""
        arg = node.args[0]
        if self.reads_file(arg):
            self.add("SIZE-3", FAIL, node, f"{name}(...) runs code read from a file (uncounted code)")
            return
        try:
            payload = self.resolve(arg)
        except _TooLarge as e:
            if not quiet:
                self.add("SIZE-3", WARN, node, f"{name}(...) of a {e}; refusing to decode it (the static scan "
                                               "cannot see that code)")
            return
        except _Unresolved:
            if not quiet:
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
        _scan_into(self.scan, payload, f"{self.where}:{node.lineno} > payload", self.depth + 1, self.local_modules)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if not isinstance(value, str) or len(value) > 300 or "\n" in value:
            return
        if ABSOLUTE_PATH.match(value) and not value.startswith(HARMLESS_ROOTS):
            self.add("FMT-3", FAIL, node, f"absolute path {value!r}: the folder must run on relative paths only")
        if "fineweb" in value and any(c in value for c in "*?[") and id(node) not in self.globbed:
            base = value.rsplit("/", 1)[-1]
            if fnmatch.fnmatch("fineweb_train_000000.bin", base) and fnmatch.fnmatch("fineweb_val_000000.bin", base):
                self.add("DATA-3", FAIL, node, f"glob {value!r} matches training and validation shards alike")


def _scan_into(scan: CodeScan, text: str, where: str, depth: int, local: frozenset[str] = frozenset()) -> None:
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        if depth == 0:
            scan.compiles = False
            scan.error = f"line {e.lineno}: {e.msg}"
        scan.findings.append(Finding("FMT-3" if depth == 0 else "SIZE-3", FAIL if depth == 0 else WARN,
                                     f"{where}:{e.lineno}", f"does not compile ({e.msg})"))
        return
    scan.sources.add(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())
    scanner = _Scanner(scan, tree, where, depth, local)
    scanner.note_writes()
    scanner.visit(tree)


def scan_code(text: str, name: str = "train_gpt.py", local_modules: Iterable[str] = ()) -> CodeScan:
    """Scan the source of a submission file (and the payloads it decodes from literals). `local_modules`:
    the module names of the other .py files shipped beside it (an import of one is uncounted code)."""
    scan = CodeScan(compiles=True)
    try:
        compile(text, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        scan.compiles = False
        scan.error = f"line {getattr(e, 'lineno', '?')}: {getattr(e, 'msg', e)}"
    _scan_into(scan, text, name, 0, frozenset(local_modules))
    if not scan.compiles and not scan.by_rule("FMT-3"):
        scan.findings.append(Finding("FMT-3", FAIL, name, f"does not compile ({scan.error})"))
    return scan
