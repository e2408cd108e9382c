"""The layout of the package: engines independent of each other, no import cycle, modules of a readable size.

The imports are read from the source with ``ast``, every one of them: at module level and inside functions (a
lazy import closes a cycle as surely as an eager one, it only hides it until the function runs).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "skflow"
#: the engines: each is one model's training flow, written on the shared pieces of skflow/flows/_*.py only
ENGINES = {"skflow.flows.node", "skflow.flows.rkhs", "skflow.flows.varpro", "skflow.flows.varpronet"}
MAX_LINES = 600


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name, path):
    """``[(module imported, names taken from it, line)]`` for every import statement of the module ``name``: a
    ``from package import submodule`` counts as an import of the submodule."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    found.append((sub, (), node.lineno))
                else:
                    found.append((target, (alias.name,), node.lineno))
    return [(t, names, line) for t, names, line in found if t == "skflow" or t.startswith("skflow.")]


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_import_graph_is_read():
    """Sanity of the parser: known edges, lazy ones included, are found."""
    assert any(t == "skflow.flows._flow" for t, _, _ in GRAPH["skflow.flows.node"])
    assert any(t == "skflow._certificate" for t, _, _ in GRAPH["skflow.node"])
    assert ENGINES <= set(MODULES)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_no_engine_imports_another_engine(engine):
    others = sorted({t for t, _, _ in GRAPH[engine] if t in ENGINES - {engine}})
    assert not others, f"{engine} imports the engine(s) {others}: share the piece through a skflow/flows/_*.py module"


def test_engines_import_no_private_name_of_another_module():
    """The pieces the engines share are public in their module (``flows/_ridge.py``'s ``ridge_projection``, not a
    ``_risk_parts`` reached into from outside)."""
    bad = [f"{name}:{line} imports {n} from {t}" for name, edges in GRAPH.items() if name.startswith("skflow.flows")
           for t, names, line in edges for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def _cycles():
    """Every strongly connected component of more than one module (Tarjan), and the modules importing themselves."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []
    edges = {n: sorted({t for t, _, _ in e if t in MODULES and t != n}) for n, e in GRAPH.items()}

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return comps


def test_no_import_cycle_lazy_imports_included():
    cycles = _cycles()
    assert not cycles, f"import cycles among skflow modules (lazy imports included): {cycles}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_600_lines(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name].relative_to(PACKAGE.parent)} has {n} lines (at most {MAX_LINES})"
