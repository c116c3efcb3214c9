"""The shape of the house: inference does not depend on training, and no module imports itself back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tracect"


def import_graph() -> dict[str, set[str]]:
    """Every ``tracect`` module -> the ``tracect`` modules it imports, at any depth of the file (imports
    inside functions count: a lazy import is still a dependency). ``from a.b import c`` is an edge to
    ``a.b.c`` when that is a module, else to ``a.b``."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tracect"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    graph[name].add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
    return {m: {d for d in deps if d in modules and d != m} for m, deps in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 50 and "tracect.generate.pipeline" in graph
    assert cycles(graph) == []
    # the checker sees a cycle when there is one
    graph["tracect.runtime"].add("tracect.generate.pipeline")
    assert any("tracect.runtime" in c for c in cycles(graph))


def test_inference_does_not_depend_on_training():
    graph = import_graph()

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for d in graph[todo.pop()]:
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    for module in ("tracect.generate.pipeline", "tracect.generate.batch", "tracect.evaluate.harness"):
        assert not {m for m in reachable(module) if m.startswith("tracect.train")}, module
    code = ("import sys, tracect.generate.pipeline, tracect.generate.batch; "
            "print(sorted(m for m in sys.modules if m.startswith('tracect.train')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
