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


#: non-skflow attributes with a leading underscore that scripts may use (namedtuple's public API)
_PUBLIC_UNDERSCORE_ATTRIBUTES = {"_asdict", "_replace", "_fields", "_make"}


def _private_skflow_uses(path):
    """``[(line, what)]``: the private skflow names a script uses, and the skflow objects it patches.

    Read with ``ast`` (docstrings and comments do not count): an import of a module of skflow whose path has a
    component starting with ``_`` (``skflow._training``, ``skflow.flows._fused``) or of a name starting with
    ``_`` from a skflow module; an attribute starting with ``_`` (dunders and
    :data:`_PUBLIC_UNDERSCORE_ATTRIBUTES` aside), on anything (a script cannot tell a skflow object from another
    by its name); ``getattr`` / ``setattr`` / ``hasattr`` / ``delattr`` of such a name; an assignment to an
    attribute of a name imported from skflow (monkeypatching, e.g. ``MeanFieldSHLFlow.step = wrapper``).
    """
    tree = ast.parse(path.read_text(), filename=str(path))

    def private(name):
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    found, skflow_names = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "skflow":
                    skflow_names.add((alias.asname or alias.name).split(".")[0])
                    if any(private(part) for part in alias.name.split(".")):
                        found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "skflow":
            for alias in node.names:
                skflow_names.add(alias.asname or alias.name)
                if any(private(part) for part in node.module.split(".")) or private(alias.name):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
        elif isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in _PUBLIC_UNDERSCORE_ATTRIBUTES:
            found.append((node.lineno, ast.unparse(node)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and private(node.args[1].value)):
            found.append((node.lineno, ast.unparse(node)))
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                base = t
                while isinstance(base, ast.Attribute):
                    base = base.value
                if t is not base and isinstance(base, ast.Name) and base.id in skflow_names:
                    found.append((node.lineno, f"assignment to {ast.unparse(t)}"))
    return sorted(set(found))


_SCRIPTS = sorted((PACKAGE.parent / "benchmarks").glob("*.py")) + sorted((PACKAGE.parent / "examples").glob("*.py"))


def test_the_scripts_are_read(tmp_path):
    assert any(p.parent.name == "benchmarks" for p in _SCRIPTS) and any(p.parent.name == "examples" for p in _SCRIPTS)
    script = tmp_path / "script.py"  # the check bites: each kind of private use is found
    script.write_text("import skflow._training as training\n"
                      "from skflow import VarProSHLRegressor, _training\n"
                      "training.run_epoch = None\n"
                      "VarProSHLRegressor.fit = None\n"
                      "est = VarProSHLRegressor()\n"
                      "est._finalize_fit(None)\n"
                      "getattr(est, '_monitor')\n")
    found = {line for line, _ in _private_skflow_uses(script)}
    assert found == {1, 2, 3, 4, 6, 7}, _private_skflow_uses(script)


@pytest.mark.parametrize("path", _SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_benchmarks_and_examples_use_no_private_skflow_name_and_patch_nothing(path):
    uses = _private_skflow_uses(path)
    where = path.relative_to(PACKAGE.parent)
    assert not uses, f"{where} uses private skflow names or patches skflow: " + "; ".join(
        f"line {line}: {what}" for line, what in uses)
