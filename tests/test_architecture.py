"""The layering holds: no import cycles in `core/` (function-local imports count), each subpackage imports only
the layers below it, no Streamlit in `core/`, and every public function of `core/` says in a docstring why it exists."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"
# docs/ARCHITECTURE.md: at load time a module imports the top-level foundation and the layers before its own
LAYERS = ("runs", "data", "lm", "attack", "pscanner", "views", "cli")


def module_name(path: Path) -> str:
    """`pscanner.scan` for core/pscanner/scan.py, `pscanner` for its __init__.py, `errors` for core/errors.py."""
    parts = path.relative_to(CORE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The `core` modules a file imports (relative or absolute), at any depth except under `if TYPE_CHECKING:`."""
    return imports_from(ast.parse(path.read_text()), path, known)


def imports_from(tree: ast.AST, path: Path, known: set[str]) -> set[str]:
    """The `core` modules the imports in `tree` (parsed from `path`) name; the known module names tell
    `from core.pscanner import campaign` (a module) from `from core.pscanner.scan import run_scan` (a name)."""
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    own = module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
        elif node.module == "core" or (node.module or "").startswith("core."):
            base = node.module.split(".")[1:]
        else:
            continue
        for alias in node.names:  # `from pkg import module` names a module; `from module import name` does not
            dotted = ".".join([*base, alias.name])
            out.add(dotted if dotted in known else ".".join(base))
    return out - {""}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) & set(mods) - {name} for name, path in mods.items()}


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


def layer(module: str) -> int:
    """0 for the top-level foundation (errors, config, settings, progress, metrics, triggers ...), then 1, 2 ... in
    `LAYERS` order."""
    top = module.split(".")[0]
    return LAYERS.index(top) + 1 if top in LAYERS else 0


def load_time_imports(path: Path, known: set[str]) -> set[str]:
    """The `core` modules a file imports when it is loaded (its top-level statements only)."""
    loaded = ast.Module(body=[n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ImportFrom)],
                        type_ignores=[])
    return imports_from(loaded, path, known)


def test_each_layer_loads_only_the_layers_below_it():
    """The folders are the architecture: data, then language models, attack, scanner, views, CLI; a function may
    reach up at the edges (jobs and the Ray engine run attacks and scans), a module's imports may not."""
    mods = modules()
    upward = [f"{name} -> {dep}" for name, path in mods.items() if name != "__main__"
              for dep in load_time_imports(path, set(mods)) & set(mods) if layer(dep) > layer(name)]
    assert upward == []


def test_core_never_imports_streamlit():
    for path in CORE.rglob("*.py"):
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
                    out.append(f"{module_name(path) if path.is_relative_to(CORE) else path.stem}.{prefix}{node.name}")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                if ast.get_docstring(node) is None:
                    out.append(f"{module_name(path) if path.is_relative_to(CORE) else path.stem}.{prefix}{node.name}")
                visit(node.body, f"{node.name}.")

    visit(ast.parse(path.read_text()).body, "")
    return out


def test_the_docstring_check_finds_a_bare_function(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    pass\n\n\ndef _g():\n    pass\n\n\nclass C:\n    def h(self):\n        'Why.'\n"
                    "\n\nclass D:\n    'Why.'\n")
    assert undocumented(path) == ["m.f", "m.C"]


def test_every_public_function_and_class_in_core_has_a_docstring():
    missing = [name for path in sorted(CORE.rglob("*.py")) for name in undocumented(path)]
    assert missing == []
