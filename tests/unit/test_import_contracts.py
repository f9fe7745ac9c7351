"""The import contracts in pyproject.toml hold (docs/architecture.md): the
layers, the plugin boundary, the private ctypes layer, a kernel layer without
wire types, and a core that never imports a plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def _module_graph() -> dict[str, set[str]]:
    """bpfman's modules -> the bpfman modules they import at run time (names
    imported only for annotations, under TYPE_CHECKING, left out)."""
    import ast

    core = ROOT / "core"
    modules = {}
    for path in (core / "bpfman").rglob("*.py"):
        parts = list(path.relative_to(core).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        edges = graph.setdefault(name, set())
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and not node.level and \
                    (node.module or "").startswith("bpfman"):
                subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                # `from package import submodule` depends on the submodule only
                edges |= subs if len(subs) == len(node.names) else subs | {node.module}
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
        edges &= modules.keys() - {name}
    return graph


def test_the_core_has_no_import_cycles() -> None:
    graph = _module_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
