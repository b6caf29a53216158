"""Self-extracting submission files: pgolf's own modules, minified and compressed into one script (pure).

The challenge counts every byte of `train_gpt.py` (rules.md SIZE-1..3), so the submission carries
exactly the modules its program imports, made small, in one compressed literal:

    import lzma as L,base64 as B
    exec(L.decompress(B.b85decode('...')))

The decompressed program registers every embedded module under its own name in `sys.modules`,
executes each one's source from a string literal (dependencies first) and finally runs the entry
call. Nothing is written to disk and nothing is loaded from outside the file (SIZE-3): a static
scan (`pgolf.verify.codescan`) can follow every `exec` back to literals, and sees every import.

What `build_bundle` does to the sources, each step checked by comparing syntax trees:

- the import closure of the entry module is taken (imports at module level and inside functions);
  a package's `__init__` runs only when something imports a name from the package itself;
- docstrings, bare string statements, comments, function annotations, `if TYPE_CHECKING:` blocks
  and `__all__` lists are dropped (class-level annotations stay: dataclasses read them);
- `from pgolf.x import y` becomes `y = _I('pgolf.x').y` (or `_I('pgolf.x.y')` for a submodule), so
  the scan sees no import of a package it would have to find installed; `_I` only looks a module up;
- module-level functions, classes and constants that nothing in the bundle names are removed
  (`shake`; any occurrence of the name, as a variable, attribute or string, keeps a definition);
- the code is printed with `ast.unparse` and re-indented by one space per level (`minifier="ast"`),
  or printed and then minified by python-minifier (`minifier="python-minifier"`: local names
  renamed, statements joined; the module-level names every other module reaches are kept, checked);
- the program is compressed with lzma (the .lzma container, 13 header bytes) or zlib, whichever is
  smaller, and base85-coded (the scan's decoders read both).

The output depends only on the sources and the Python version that parses them (ast.unparse).
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import lzma
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

WRAPPERS = ("auto", "lzma", "zlib")
MINIFIERS = ("ast", "python-minifier")
PYTHON_MINIFIER = "3.4.0"  # the version pyproject.toml pins: its output is part of the counted bytes
_LOADER = "_I"


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A built submission script and what went into it (sizes in bytes)."""

    text: str  # the script: UTF-8, ASCII in practice
    program: str  # the decompressed program the script executes
    modules: tuple[str, ...]  # embedded modules, in execution order
    source_bytes: int  # the embedded modules' source as written
    minified_bytes: int  # the same after minification
    wrapper: str  # "lzma" or "zlib"
    minifier: str = "ast"  # "ast", or "python-minifier X.Y.Z" (the version that printed it)

    @property
    def code_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


class BundleError(ValueError):
    """The sources cannot be bundled (an import the bundle cannot resolve, a cycle, bad syntax)."""


# ----------------------------------------------------------------------------- module table


def module_table(sources: Mapping[str, str]) -> dict[str, tuple[str, bool]]:
    """{module name: (source, is_package)} from {"pgolf/x/y.py": source} (posix paths)."""
    table: dict[str, tuple[str, bool]] = {}
    for path, text in sources.items():
        if not path.endswith(".py"):
            continue
        parts = path[:-3].split("/")
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        table[".".join(parts)] = (text, is_package)
    return table


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_str_statement(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


class _Rewriter(ast.NodeTransformer):
    """Minifies one module and rewrites its imports of the bundled package into `_I(...)` lookups.

    Records the modules it depends on: `top` (needed while the module executes) and `lazy` (inside
    functions: needed before they are called, i.e. before the entry call).
    """

    def __init__(self, name: str, is_package: bool, table: Mapping[str, tuple[str, bool]], root: str):
        self.name, self.table, self.root = name, table, root
        self.package = name if is_package else name.rpartition(".")[0]
        self.top: set[str] = set()
        self.lazy: set[str] = set()
        self.depth = 0  # function nesting

    # -- structure

    def _body(self, body: list[ast.stmt], in_class: bool = False) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            if _is_str_statement(stmt):
                continue  # docstrings and attribute docstrings
            if isinstance(stmt, ast.If) and _is_type_checking(stmt.test):
                if stmt.orelse:
                    out.extend(self._body(stmt.orelse, in_class))
                continue
            if isinstance(stmt, ast.AnnAssign) and not in_class:
                if stmt.value is None:
                    continue
                stmt = ast.Assign(targets=[stmt.target], value=stmt.value, lineno=stmt.lineno)
            if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
                continue
            result = self.visit(stmt)
            if result is None:
                continue
            out.extend(result if isinstance(result, list) else [result])
        return out or [ast.Pass()]

    def visit_Module(self, node: ast.Module) -> ast.Module:
        node.body = self._body(node.body)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        node.bases = [self.visit(b) for b in node.bases]
        node.keywords = [self.visit(k) for k in node.keywords]
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.body = self._body(node.body, in_class=True)
        return node

    def _function(self, node):
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.returns = None
        args = node.args
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if a is not None:
                a.annotation = None
        args.defaults = [self.visit(d) for d in args.defaults]
        args.kw_defaults = [self.visit(d) if d is not None else None for d in args.kw_defaults]
        self.depth += 1
        node.body = self._body(node.body)
        self.depth -= 1
        return node

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda) -> ast.Lambda:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1
        return node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        """NodeTransformer's walk, with statement lists (if/for/with/try bodies) cleaned like any body."""
        for field, old in ast.iter_fields(node):
            if isinstance(old, list):
                if old and isinstance(old[0], ast.stmt):
                    setattr(node, field, self._body(old))
                    continue
                new: list = []
                for value in old:
                    if isinstance(value, ast.AST):
                        value = self.visit(value)
                        if value is None:
                            continue
                        if not isinstance(value, ast.AST):
                            new.extend(value)
                            continue
                    new.append(value)
                old[:] = new
            elif isinstance(old, ast.AST):
                setattr(node, field, self.visit(old))
        return node

    # -- imports

    def _absolute(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        base = self.package.split(".")
        if level > 1:
            base = base[: len(base) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def _in_package(self, module: str) -> bool:
        return module == self.root or module.startswith(self.root + ".")

    def _need(self, module: str) -> None:
        if module not in self.table:
            raise BundleError(f"{self.name} imports {module}, which is not among the sources")
        (self.lazy if self.depth else self.top).add(module)

    @staticmethod
    def _load(module: str) -> ast.expr:
        return ast.Call(func=ast.Name(_LOADER, ast.Load()), args=[ast.Constant(module)], keywords=[])

    def _assign(self, target: str, value: ast.expr, like: ast.stmt) -> ast.Assign:
        return ast.copy_location(ast.Assign(targets=[ast.Name(target, ast.Store())], value=value), like)

    def visit_ImportFrom(self, node: ast.ImportFrom):
        module = self._absolute(node.module, node.level)
        if not self._in_package(module):
            return node
        out = []
        for alias in node.names:
            if alias.name == "*":
                raise BundleError(f"{self.name}: 'from {module} import *' cannot be bundled")
            sub = f"{module}.{alias.name}"
            if sub in self.table:
                self._need(sub)
                value: ast.expr = self._load(sub)
            else:
                self._need(module)
                value = ast.Attribute(value=self._load(module), attr=alias.name, ctx=ast.Load())
            out.append(self._assign(alias.asname or alias.name, value, node))
        return out

    def visit_Import(self, node: ast.Import):
        keep: list[ast.alias] = []
        out: list[ast.stmt] = []
        for alias in node.names:
            if not self._in_package(alias.name):
                keep.append(alias)
                continue
            self._need(alias.name)
            if alias.asname:
                out.append(self._assign(alias.asname, self._load(alias.name), node))
            else:  # `import pgolf.a.b` binds `pgolf`; the submodules hang off it as attributes
                out.append(self._assign(alias.name.split(".")[0], self._load(self.root), node))
        if keep:
            out.insert(0, ast.copy_location(ast.Import(names=keep), node))
        return out


# ----------------------------------------------------------------------------- tree shaking


def _defined_names(stmt: ast.stmt) -> list[str] | None:
    """Names a removable module-level statement defines (a def, a class, a plain constant), else None."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name] if _plain_definition(stmt) else None
    if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
        if _side_effect_free(stmt.value):
            return [t.id for t in stmt.targets if isinstance(t, ast.Name)]  # all of them (checked above)
    return None


_SAFE_CALLS = {_LOADER, "frozenset", "set", "tuple", "dict", "list", "float", "int", "re.compile", "struct.Struct",
               "np.dtype", "TypeVar"}
_SAFE_DECORATORS = {"dataclass", "dataclasses.dataclass", "staticmethod", "classmethod", "property",
                    "functools.lru_cache", "functools.cache", "lru_cache", "cache", "contextmanager",
                    "contextlib.contextmanager", "torch.no_grad", "torch.inference_mode"}


def _side_effect_free(value: ast.expr) -> bool:
    """Literals, names, attribute reads and a few constructors: defining them changes nothing else."""
    for node in ast.walk(value):
        if isinstance(node, ast.Call) and ast.unparse(node.func) not in _SAFE_CALLS:
            return False
        if isinstance(node, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
    return True


def _plain_definition(stmt: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    """A def or class whose definition has no effect beyond binding its name (no registering decorator)."""
    for dec in stmt.decorator_list:
        func = dec.func if isinstance(dec, ast.Call) else dec
        if ast.unparse(func) not in _SAFE_DECORATORS:
            return False
    return not (isinstance(stmt, ast.ClassDef) and stmt.keywords)


def _referenced(nodes: Iterable[ast.AST]) -> set[str]:
    """Every identifier the nodes mention: names, attributes, keyword names and identifier-like strings."""
    out: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Name):
                out.add(node.id)
            elif isinstance(node, ast.Attribute):
                out.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.update(part for part in node.value.replace(".", " ").split() if part.isidentifier())
    return out


def shake(trees: Mapping[str, ast.Module], keep: Iterable[str] = ()) -> dict[str, int]:
    """Remove module-level definitions that no kept code names (in place); returns removals per module.

    A definition is kept when its name occurs anywhere in kept code of any module (conservative: a
    name is a name, whatever object it refers to). Dunder names and `keep` are always kept.
    """
    candidates: dict[int, tuple[ast.stmt, list[str]]] = {}
    roots: list[ast.AST] = []
    for tree in trees.values():
        for stmt in tree.body:
            names = _defined_names(stmt)
            if names is None or any(n.startswith("__") for n in names):
                roots.append(stmt)
            else:
                candidates[id(stmt)] = (stmt, names)
    live = _referenced(roots) | set(keep)
    alive: set[int] = set()
    changed = True
    while changed:
        changed = False
        for key, (stmt, names) in candidates.items():
            if key not in alive and any(n in live for n in names):
                alive.add(key)
                live |= _referenced([stmt])
                changed = True
    removed: dict[str, int] = {}
    for name, tree in trees.items():
        before = len(tree.body)
        tree.body = [s for s in tree.body if id(s) not in candidates or id(s) in alive] or [ast.Pass()]
        if len(tree.body) != before:
            removed[name] = before - len(tree.body)
    return removed


# ----------------------------------------------------------------------------- printing


def reindent(text: str) -> str:
    """One space per indentation level instead of four (ast.unparse's); the caller checks the result."""
    lines = []
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        lines.append(" " * ((len(line) - len(stripped)) // 4) + stripped)
    return "\n".join(lines)


def _same_tree(a: str, b: str) -> bool:
    return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))


def minify(tree: ast.Module, minifier: str = "ast", name: str = "<module>") -> str:
    """The module's source, small: `ast.unparse` re-indented ("ast"), or that text through
    python-minifier ("python-minifier"; BundleError when it fails or changes the module's names)."""
    text = ast.unparse(ast.fix_missing_locations(tree))
    if minifier == "python-minifier":
        return _python_minifier(text, name)
    small = reindent(text)
    return small if _same_tree(small, text) else text


def python_minifier_version() -> str:
    """The installed python-minifier's version; BundleError when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("python-minifier")
    except PackageNotFoundError:
        raise BundleError(f"minifier 'python-minifier' needs the python-minifier package: pip install "
                          f"python-minifier=={PYTHON_MINIFIER}") from None


def _python_minifier(text: str, name: str) -> str:
    """python-minifier with the settings that keep a bundled module's behaviour: local names renamed,
    module-level names kept (other modules reach them as attributes), no literal hoisting (it costs
    bytes after compression), asserts, `__debug__` blocks, positional-only parameters and
    constant expressions kept as written. Checked: the result compiles and binds the same
    module-level names."""
    python_minifier_version()
    import python_minifier

    try:
        out = python_minifier.minify(
            text, filename=name, rename_locals=True, rename_globals=False, hoist_literals=False,
            remove_literal_statements=True, remove_asserts=False, remove_debug=False, constant_folding=False,
            convert_posargs_to_args=False, prefer_single_line=True,
            remove_annotations=python_minifier.RemoveAnnotationsOptions(remove_class_attribute_annotations=False))
    except Exception as e:  # noqa: BLE001 - any failure of the library is one line naming the module
        raise BundleError(f"python-minifier failed on {name}: {type(e).__name__}: {e}") from None
    try:
        after = ast.parse(out)
        compile(after, name, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise BundleError(f"python-minifier's output for {name} does not compile: {e}") from None
    lost = module_names(ast.parse(text)) ^ module_names(after)
    if lost:
        raise BundleError(f"python-minifier changed the module-level names of {name}: {', '.join(sorted(lost))}")
    return out


def module_names(tree: ast.Module) -> set[str]:
    """Names a module binds in its own namespace (definitions, imports, assignments at module level)."""
    names: set[str] = set()
    scopes = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(child.name)
                walk_outer(child)
                continue
            if isinstance(child, scopes):
                continue
            if isinstance(child, ast.alias):
                names.add((child.asname or child.name).split(".")[0])
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                names.add(child.id)
            walk(child)

    def walk_outer(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        """Decorators, bases and defaults run in the module's scope (a walrus there binds a module name)."""
        outer: list[ast.AST] = [*node.decorator_list]
        if isinstance(node, ast.ClassDef):
            outer += [*node.bases, *node.keywords]
        else:
            outer += [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
        for part in outer:
            walk(part)

    walk(tree)
    return names


# ----------------------------------------------------------------------------- the bundle


def _loads(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Modules a (rewritten) tree looks up with `_I(...)`: (at module level, inside functions)."""
    top: set[str] = set()
    lazy: set[str] = set()

    def walk(node: ast.AST, inside: bool) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == _LOADER \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            (lazy if inside else top).add(node.args[0].value)
        inner = inside or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            walk(child, inner)

    walk(tree, False)
    return top, lazy


def _order(entry: str, trees: Mapping[str, ast.Module]) -> list[str]:
    """The modules the entry still needs after shaking, each after those it needs at import time."""
    loads = {name: _loads(tree) for name, tree in trees.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m: str, path: tuple[str, ...]) -> None:
        if state.get(m) == 2:
            return
        if state.get(m) == 1:
            raise BundleError(f"import cycle at module level: {' -> '.join((*path, m))}")
        state[m] = 1
        for dep in sorted(loads[m][0] & set(trees)):
            visit(dep, (*path, m))
        state[m] = 2
        order.append(m)

    pending = [entry]
    while pending:  # the entry, then whatever kept code loads lazily, transitively
        m = pending.pop(0)
        if state.get(m) == 2:
            continue
        visit(m, ())
        pending.extend(sorted(d for n in order for d in (loads[n][0] | loads[n][1]) & set(trees)
                              if state.get(d) != 2))
    return order


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def program_text(modules: Sequence[tuple[str, str]], packages: Iterable[str], entry_call: str,
                 prelude: str = "") -> str:
    """The decompressed program: `prelude`, create the module objects, execute each source, run `entry_call`.

    `modules`: (name, minified source) in execution order; `packages`: names that get a `__path__`
    (every ancestor of an embedded module must be among the created names).
    """
    packages = set(packages)
    names = sorted({*packages, *(m for m, _ in modules)}, key=lambda n: (n.count("."), n))
    created = " ".join(n + ("/" if n in packages else "") for n in names)
    head = (
        (prelude.rstrip("\n") + "\n" if prelude else "") +
        "import sys,types\n"
        f"def {_LOADER}(n):\n"
        " try:return sys.modules[n]\n"
        " except KeyError:raise ModuleNotFoundError(n) from None\n"
        f"for n in {created!r}.split():\n"
        " p=n[-1]=='/';n=n.rstrip('/');m=types.ModuleType(n);m.__package__=n if p else n.rpartition('.')[0]\n"
        f" m.{_LOADER}={_LOADER};sys.modules[n]=m;a,_,b=n.rpartition('.')\n"
        " if p:m.__path__=[]\n"
        " if a:setattr(sys.modules[a],b,m)\n"
    )
    body = "".join(f"exec({src!r},sys.modules[{name!r}].__dict__)\n" for name, src in modules)
    return head + body + entry_call.rstrip("\n") + "\n"


def _lzma(data: bytes) -> bytes:
    """The smallest of a few LZMA1 literal-context settings (".lzma" container: 13 header bytes, no check)."""
    outs = [lzma.compress(data, format=lzma.FORMAT_ALONE, filters=[{
        "id": lzma.FILTER_LZMA1, "preset": 9 | lzma.PRESET_EXTREME, "lc": lc, "lp": 0, "pb": pb, "nice_len": 273}])
        for lc, pb in ((3, 0), (3, 2), (4, 0), (2, 0))]
    return min(outs, key=len)


def wrap(program: str, wrapper: str = "auto") -> tuple[str, str]:
    """(script text, wrapper used): the program compressed, base85-coded and executed by two lines."""
    if wrapper not in WRAPPERS:
        raise BundleError(f"unknown wrapper {wrapper!r}; choose one of {', '.join(WRAPPERS)}")
    data = program.encode("utf-8")
    options = {
        "lzma": ("import lzma as L,base64 as B\nexec(L.decompress(B.b85decode('{}')))\n", _lzma(data)),
        "zlib": ("import zlib as Z,base64 as B\nexec(Z.decompress(B.b85decode('{}')))\n", zlib.compress(data, 9)),
    }
    texts = {name: (tpl.format(base64.b85encode(blob).decode("ascii")), name) for name, (tpl, blob) in options.items()}
    if wrapper != "auto":
        return texts[wrapper]
    return min(texts.values(), key=lambda t: (len(t[0]), t[1]))


def build_bundle(sources: Mapping[str, str], entry: str, entry_call: str, *, prelude: str = "",
                 root: str = "pgolf", exclude: Iterable[str] = (), keep: Iterable[str] = (),
                 shake_defs: bool = True, wrapper: str = "auto", minifier: str = "ast") -> Bundle:
    """Bundle the import closure of module `entry` into one self-extracting script.

    sources: {"pgolf/x/y.py": source text} for the package `root` (posix paths from its parent).
    entry_call: Python run after every module, with `_I(name)` to reach a module, e.g.
        "_I('pgolf.pack.program').main(...)".
    prelude: Python run first, before any module (e.g. starting a clock).
    exclude: modules never embedded; importing one raises ModuleNotFoundError when it runs.
    keep: names tree shaking must keep (besides those the code mentions).
    minifier: "ast" (ast.unparse, one space per indent) or "python-minifier" (see `minify`).
    """
    if minifier not in MINIFIERS:
        raise BundleError(f"unknown minifier {minifier!r}; choose one of {', '.join(MINIFIERS)}")
    table = module_table(sources)
    if entry not in table:
        raise BundleError(f"entry module {entry} is not among the sources")
    excluded = set(exclude)
    trees: dict[str, ast.Module] = {}
    top: dict[str, set[str]] = {}
    pending = [entry]
    while pending:
        name = pending.pop()
        if name in trees:
            continue
        text, is_package = table[name]
        try:
            tree = ast.parse(text, filename=name)
        except SyntaxError as e:
            raise BundleError(f"{name} does not parse: {e}") from None
        rw = _Rewriter(name, is_package, table, root)
        trees[name] = rw.visit(tree)
        top[name] = rw.top - excluded
        pending.extend(sorted((rw.top | rw.lazy) - excluded - set(trees)))
    for name, deps in top.items():
        hidden = deps & excluded
        if hidden:
            raise BundleError(f"{name} needs {', '.join(sorted(hidden))} at import time, but it is excluded")

    entry_tree = ast.parse(prelude + "\n" + entry_call)
    if shake_defs:
        shake(trees, keep=_referenced([entry_tree]) | set(keep))
    order = _order(entry, trees)
    minified = [(name, minify(trees[name], minifier, name)) for name in order]
    packages = {n for n in trees if table[n][1]} | {a for n in trees for a in _ancestors(n)}
    program = program_text(minified, packages, entry_call, prelude)
    compile(program, "<bundle>", "exec", dont_inherit=True)  # a syntax error here is a bug, not user input
    text, used = wrap(program, wrapper)
    return Bundle(text=text, program=program, modules=tuple(order),
                  source_bytes=sum(len(table[n][0].encode("utf-8")) for n in order),
                  minified_bytes=sum(len(s.encode("utf-8")) for _, s in minified), wrapper=used,
                  minifier=minifier if minifier == "ast" else f"{minifier} {python_minifier_version()}")


def unwrap(text: str) -> str:
    """The program a script built by `wrap` executes (the inverse of `wrap`, for checks)."""
    tree = ast.parse(text)
    last: Any = tree.body[-1]  # an ast.Expr of nested ast.Calls, read by position
    call = last.value  # exec(X.decompress(B.b85decode('...')))
    decompress = call.args[0]
    blob = base64.b85decode(decompress.args[0].args[0].value)
    kind = decompress.func.value.id
    data = lzma.decompress(blob) if kind == "L" else zlib.decompress(blob)
    return data.decode("utf-8")
