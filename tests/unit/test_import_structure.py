"""The layering of the code, read from its imports: the kernel imports no service and no tooling,
a service imports no other service and no tooling, and no module reaches itself through the
imports of others (a function-level import counts like one at the top)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "leadflow": ROOT / "shared" / "leadflow",
    "leadflow_tools": ROOT / "tools" / "leadflow_tools",
    **{
        path.name: path
        for path in sorted((ROOT / "services").glob("*/leadflow_*"))
        if (path / "__init__.py").exists()
    },
}
SERVICES = {name for name in PACKAGES if name not in ("leadflow", "leadflow_tools")}


def module_name(package: str, path: Path) -> str:
    parts = [package, *path.relative_to(PACKAGES[package]).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            if "migrations" in path.relative_to(root).parts[:1]:
                continue  # Alembic scripts are loaded by Alembic, not imported
            found[module_name(package, path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that `name` imports (a package's `__init__` for `from p import m`
    resolves to the module m when it is one)."""
    targets: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else base)
    return {t for t in targets if t in known and t != name}


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def top(module: str) -> str:
    return module.split(".", 1)[0]


def test_every_package_is_walked() -> None:
    assert SERVICES == {
        "leadflow_ingest",
        "leadflow_scoring",
        "leadflow_routing",
        "leadflow_notify",
        "leadflow_sla_timer",
        "leadflow_feedback",
    }
    assert len(graph()) > 60


def test_the_kernel_imports_no_service_and_no_tooling() -> None:
    wrong = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        if top(source) == "leadflow"
        for target in targets
        if top(target) != "leadflow"
    ]
    assert wrong == []


def test_a_service_imports_only_the_kernel_and_itself() -> None:
    wrong = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        if top(source) in SERVICES
        for target in targets
        if top(target) not in ("leadflow", top(source))
    ]
    assert wrong == []


def test_the_kernel_runtime_does_not_import_the_tests() -> None:
    for path in PACKAGES["leadflow"].rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "support.harness" not in text, path


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_anywhere() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    "edges, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_cycle_finder_finds_a_cycle(edges: dict, expected: list) -> None:
    assert cycles(edges) == expected
