"""The layering holds: no import cycles in `core/` (function-local imports count), no Streamlit in `core/`, and
every public function of `core/` says in a docstring why it exists."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"


def imports_of(path: Path) -> set[str]:
    """The `core` modules a file imports, at any depth except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom) or node.level != 1:
            continue
        out |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return out


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in CORE.glob("*.py")}
    return {p.stem: imports_of(p) & modules for p in CORE.glob("*.py")}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_has_no_import_cycles():
    assert cycles(graph()) == []


def test_core_never_imports_streamlit():
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                  and n.level == 0}
        assert "streamlit" not in names, path.name


def undocumented(path: Path) -> list[str]:
    """Public functions, public classes and their public methods in a file that have no docstring."""
    out = []

    def visit(body, prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                if ast.get_docstring(node) is None:
                    out.append(f"{path.stem}.{prefix}{node.name}")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                if ast.get_docstring(node) is None:
                    out.append(f"{path.stem}.{prefix}{node.name}")
                visit(node.body, f"{node.name}.")

    visit(ast.parse(path.read_text()).body, "")
    return out


def test_the_docstring_check_finds_a_bare_function(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    pass\n\n\ndef _g():\n    pass\n\n\nclass C:\n    def h(self):\n        'Why.'\n"
                    "\n\nclass D:\n    'Why.'\n")
    assert undocumented(path) == ["m.f", "m.C"]


def test_every_public_function_and_class_in_core_has_a_docstring():
    missing = [name for path in sorted(CORE.glob("*.py")) for name in undocumented(path)]
    assert missing == []
