"""The import graph of src/pgolf, read with `ast` (nothing is imported): dependencies between the pure
packages go one way, and `pgolf --help` stays lean.

Every import counts, those inside functions and `if TYPE_CHECKING:` blocks included: a lazy import
hides a cycle from Python, not from the design (docs/architecture.md).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "pgolf"
PURE = ("data", "model", "optim", "train", "quant", "pack", "eval", "verify")


def module_name(path: Path, root: Path = SRC) -> tuple[str, bool]:
    """(dotted name, is a package) of a source file under `root` (the pgolf directory)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imported(path: Path, root: Path = SRC) -> Iterator[tuple[str, int]]:
    """(module, line) for every import in a file; `from m import x` yields m and m.x (x may be a submodule)."""
    name, is_package = module_name(path, root)
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
            yield from ((f"{module}.{alias.name}", node.lineno) for alias in node.names)


def package_of(module: str) -> str | None:
    """The pure package a pgolf module belongs to (`pgolf.quant.state` -> `quant`), else None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pgolf" and parts[1] in PURE else None


def package_graph(root: Path = SRC) -> dict[str, dict[str, str]]:
    """{package: {package it imports: "where (file:line)" of the first such import}} among the pure packages."""
    graph: dict[str, dict[str, str]] = {p: {} for p in PURE}
    for path in sorted(root.rglob("*.py")):
        source = package_of(module_name(path, root)[0])
        if source is None:
            continue
        for module, line in imported(path, root):
            target = package_of(module)
            if target is not None and target != source:
                graph[source].setdefault(target, f"{path.relative_to(root.parent)}:{line} imports {module}")
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the DFS stack, "done" after

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return None


def test_model_never_imports_quant():
    """QAT's per-row fake quantization lives in pgolf.model.rowquant: quant depends on model, not back."""
    offenders = sorted({f"{path.relative_to(SRC.parent)}:{line}"
                        for path in sorted((SRC / "model").rglob("*.py"))
                        for module, line in imported(path)
                        if module == "pgolf.quant" or module.startswith("pgolf.quant.")})
    assert not offenders, "pgolf.model must not import pgolf.quant:\n" + "\n".join(offenders)


def test_pure_packages_have_no_import_cycle():
    graph = package_graph()
    cycle = find_cycle(graph)
    if cycle:
        edges = [graph[a][b] for a, b in zip(cycle, cycle[1:])]
        raise AssertionError(f"import cycle {' -> '.join(cycle)}:\n" + "\n".join(edges))


def test_find_cycle_reports_a_cycle():
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ""}, "b": {}, "c": {"a": "", "b": ""}}) is None


def test_cli_import_does_not_import_torch():
    """`pgolf --help` imports the CLI only: each command imports its stage (and torch) when it runs."""
    code = ("import sys, pgolf.cli\n"
            "if 'torch' in sys.modules:\n"
            "    print(' '.join(sorted(m for m in sys.modules if m.startswith('pgolf.'))))\n"
            "    raise SystemExit(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 3, f"`import pgolf.cli` imports torch; the pgolf modules it loaded: {proc.stdout}"
    assert proc.returncode == 0, proc.stderr


# The stage modules, and the two that are not stages: the contract every stage goes through, and the
# orchestrator (the only module allowed to compose stages).
STAGES_DIR = SRC / "stages"
NOT_STAGES = {"runner", "run", "__init__"}


def test_no_stage_imports_another_stage():
    """Stages read their inputs through pgolf.artifacts and the layout; only stages/run.py composes them."""
    offenders = []
    for path in sorted(STAGES_DIR.glob("*.py")):
        if path.stem in ("run", "__init__"):
            continue
        for module, line in imported(path):
            parts = module.split(".")
            if parts[:2] == ["pgolf", "stages"] and len(parts) > 2 and parts[2] not in ("runner",):
                offenders.append(f"{path.relative_to(SRC.parent)}:{line} imports {module}")
    assert not offenders, "a stage imports another stage:\n" + "\n".join(offenders)


def test_pure_packages_and_artifacts_never_import_stages_or_cli():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        name = module_name(path)[0]
        top = name.split(".")[1] if "." in name else ""
        if top not in (*PURE, "artifacts", "layout", "bounded", "config", "errors"):
            continue
        for module, line in imported(path):
            if module.startswith(("pgolf.stages", "pgolf.cli")):
                offenders.append(f"{path.relative_to(SRC.parent)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_every_stage_goes_through_the_runner():
    """Each stage module claims its output through pgolf.stages.runner (report and verify included)."""
    missing = [p.name for p in sorted(STAGES_DIR.glob("*.py"))
               if p.stem not in NOT_STAGES and "runner.claim(" not in p.read_text("utf-8")]
    assert not missing, f"stages that bypass the runner: {missing}"
