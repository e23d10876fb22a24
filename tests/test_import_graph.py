"""No two maskbench modules import each other, directly or around a circle, counting imports inside
functions (they run too) and those under `if TYPE_CHECKING:` (a circle for the type checker is still a circle)."""

from __future__ import annotations

import ast
from pathlib import Path

import maskbench

ROOT = Path(maskbench.__file__).parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The maskbench modules `name` imports (`from pkg import module` counts as the module)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_checker_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_resolve_to_modules():
    edges = graph()
    assert "maskbench.models.checkpoint" in edges["maskbench.models.loading"]
    assert "maskbench.train.state" in edges["maskbench.train.loop"]


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_stage_commands_do_not_import_the_cli():
    edges = graph()
    for name, imported in edges.items():
        if name.endswith(".commands"):
            assert "maskbench.cli" not in imported, name


def test_help_loads_neither_torch_nor_tokenizers():
    """`maskbench --help` builds every stage's parser; the lazy imports exist so that it stays fast."""
    import subprocess
    import sys

    code = ("import sys; from maskbench.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'tokenizers', 'transformers', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
