"""No import cycle among the modules of ``mrsolve`` (module-level imports only)."""

import ast
from pathlib import Path

import mrsolve

ROOT = Path(mrsolve.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports executed when the module loads: at module level, also inside module-level
    ``if`` / ``try`` blocks, but not under ``if TYPE_CHECKING`` nor inside functions."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody
            todo += [stmt for handler in node.handlers for stmt in handler.body]
    return found


def _resolve(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]):
    """The mrsolve modules an import statement loads."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
    out = set()
    for name in targets:
        # importing a.b.c runs a, a.b and a.b.c; only edges inside mrsolve count
        parts = name.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in _top_level_imports(tree):
            edges |= _resolve(node, name, is_package, set(files))
        # a package's parents are imported first: they are not edges of the module itself
        graph[name] = edges - {name} - _parents(name)
    return graph


def _parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_known_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_package_imports_resolve():
    known = {"mrsolve", "mrsolve.x", "mrsolve.x.y", "mrsolve.x.z"}
    rel = ast.parse("from .z import f").body[0]
    assert _resolve(rel, "mrsolve.x.y", False, known) == {"mrsolve", "mrsolve.x", "mrsolve.x.z"}
    pkg = ast.parse("from mrsolve.x import y").body[0]
    assert _resolve(pkg, "mrsolve.x.z", False, known) == {"mrsolve", "mrsolve.x", "mrsolve.x.y"}


def test_no_import_cycle_in_mrsolve():
    graph = _graph()
    assert len(graph) > 50 and "mrsolve.recon.spectral.runner" in graph
    assert _cycles(graph) == []
