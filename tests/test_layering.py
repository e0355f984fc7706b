"""The import structure of rtha: no circles, and the libraries never import the front ends.

Read from the source with ``ast`` (imports inside functions count too: a lazy
import is still a dependency). ``from pkg import submodule`` depends on the
submodule only, as Python runs the package's ``__init__`` once either way.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rtha"
#: Front ends: command-line options, dataset scoring, the live audio engine.
FRONT_ENDS = ("rtha.cli", "rtha.commands", "rtha.score", "rtha.live")
#: Libraries the front ends build on; they must not import a front end.
LIBRARIES = ("rtha.dsp", "rtha.metrics", "rtha.enhance", "rtha.hearing_loss", "rtha.data", "rtha.stage", "rtha.chain",
             "rtha.audiogram", "rtha.hearing_aid", "rtha.audio_io", "rtha.errors")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: the rtha modules it imports}`` over every module of the package."""
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                subs = [f"{module}.{a.name}" for a in node.names]
                deps.update(subs if all(s in paths for s in subs) else [module])
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def _in(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_no_import_circles():
    graph = import_graph()
    done, path = set(), []

    def visit(m):
        path.append(m)
        for d in sorted(graph[m]):
            assert d not in path, f"import circle: {' -> '.join(path[path.index(d):] + [d])}"
            if d not in done:
                visit(d)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        if m not in done:
            visit(m)


def test_libraries_do_not_import_front_ends():
    graph = import_graph()
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() if _in(m, LIBRARIES) for d in deps if _in(d, FRONT_ENDS))
    assert not upward, f"library modules import a front end: {upward}"
    assert len(graph) > 50 and _in("rtha.metrics.haspi", LIBRARIES)  # the walk saw the package
