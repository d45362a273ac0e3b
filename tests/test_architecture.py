"""The architecture, checked on the source: the device package imports no host library, and
no module of the installed ``ppg_edge`` package imports itself back through others.

Both read the files with ``ast`` (nothing is imported), and count every import: top level,
inside functions and under ``if TYPE_CHECKING``. Module names are the installed ones: the
role folders map to ``ppg_edge.<role>`` (setup.py).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLE_FOLDERS = ("train", "convert", "edge_runtime", "hil_tests", "boards")  # as in setup.py
HOST_ONLY = ("tensorflow", "tf_keras", "keras", "neurokit2", "scipy", "sklearn", "matplotlib",
             "pandas", "pywt")

#: Import cycles known and owned by a change in progress: frozenset of the modules in one
#: cycle -> why. A cycle not listed here, or one that gains a module, fails the test.
KNOWN_CYCLES: dict[frozenset, str] = {}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Installed module name -> (file, is_package)."""
    out = {}
    for top in ("ppg_edge", *ROLE_FOLDERS):
        prefix = ("ppg_edge",) if top == "ppg_edge" else ("ppg_edge", top)
        for f in sorted((ROOT / top).rglob("*.py")):
            parts = prefix + f.relative_to(ROOT / top).with_suffix("").parts
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _imports(name: str, path: Path, is_pkg: bool, known) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file; ``from X import y`` is the module
    ``X.y`` when that is a module of the package, else ``X``."""
    package = name if is_pkg else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.append((sub if sub in known else mod, node.lineno))
    return found


def test_device_package_imports_no_host_library():
    mods = _modules()
    bad = []
    for name, (path, is_pkg) in mods.items():
        if not name.startswith("ppg_edge.edge_runtime"):
            continue
        for mod, line in _imports(name, path, is_pkg, mods):
            if mod.split(".")[0] in HOST_ONLY:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {mod}")
    assert len([n for n in mods if n.startswith("ppg_edge.edge_runtime.")]) > 5  # the walk found it
    assert not bad, "the device package imports host-only libraries:\n" + "\n".join(bad)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _graph() -> tuple[dict[str, dict[str, int]], dict]:
    mods = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_pkg) in mods.items():
        graph[name] = {}
        for mod, line in _imports(name, path, is_pkg, mods):
            if mod in mods and mod != name:
                graph[name].setdefault(mod, line)
    return graph, mods


def test_cycle_finder_finds_a_cycle():
    g = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []


def test_no_import_cycles():
    graph, mods = _graph()
    assert "ppg_edge.edge_runtime.interpreter" in graph and "ppg_edge.cli.evaluate" in graph
    report = []
    for comp in _cycles(graph):
        if frozenset(comp) in KNOWN_CYCLES:
            continue
        members = set(comp)
        lines = [f"  {a} -> {b}  ({mods[a][0].relative_to(ROOT)}:{line})"
                 for a in comp for b, line in graph[a].items() if b in members]
        report.append("import cycle between " + ", ".join(comp) + ":\n" + "\n".join(lines))
    assert not report, "\n".join(report)
