"""docs/design.md's layering holds: a module imports only what stands to its left, no cycles.

Type-only imports (under ``TYPE_CHECKING``) count: a cycle there is still a
design knot, whatever the interpreter allows.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "bullet_py"

# Left to right, as docs/design.md draws them. A module belongs to the first
# layer whose name is its dotted name or a prefix of it.
LAYERS = [
    "exceptions",
    "config",
    "logs",
    "core",
    "codec",
    "boundary",
    "connection",
    "handler",
    "registry",
    "backends",
    "hub",
    "router",
    "web",
    "metrics",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if name == layer or name.startswith(layer + "."):
            return index
    return None


def imports_of(path: Path) -> set[str]:
    """Every bullet_py module ``path`` imports, type-only imports included."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target else alias.name
                if (PACKAGE / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    PACKAGE / Path(*candidate.split(".")) / "__init__.py"
                ).exists():
                    found.add(candidate)
                elif target:
                    found.add(target)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("bullet_py.")
        ):
            found.add(node.module.removeprefix("bullet_py."))
    return found


def modules() -> dict[str, set[str]]:
    return {
        module_name(p): imports_of(p)
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "__init__.py" or p.parent != PACKAGE
    }


def test_every_module_has_a_layer() -> None:
    assert [m for m in modules() if layer_of(m) is None] == []


def test_no_module_imports_from_its_right() -> None:
    wrong = []
    for name, imported in modules().items():
        own = layer_of(name)
        assert own is not None
        for target in imported:
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = {
        name: {t for t in imported if t != name and not _is_package_of(t, name)}
        for name, imported in modules().items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_checker_sees_type_only_imports() -> None:
    """A module importing only under TYPE_CHECKING is still seen (or the cycle test is blind)."""
    assert "connection" in imports_of(PACKAGE / "handler.py")


def _is_package_of(candidate: str, name: str) -> bool:
    """``web`` for ``web.endpoint``: a package's __init__ re-exports, it is no cycle."""
    return name.startswith(candidate + ".")
