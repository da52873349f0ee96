"""The shape of the code: small modules, and imports that only go one way (no cycle, lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("serve_app", "deployments")
MAX_MODULE_LINES = 300


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (a function's lazy import counts too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_module_is_over_300_lines() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text("utf-8").splitlines())) > 300}
    assert not long, long


def test_no_import_cycle() -> None:
    modules = _modules()
    # A package's __init__ is imported with any of its modules; edges into a package's own modules from
    # its __init__ would make every package a cycle, and none of ours imports anything in its __init__.
    graph = {
        name: {t for t in _imports(path, name, modules) if not name.startswith(t + ".")}
        for name, path in modules.items()
    }
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_the_top_of_each_package_holds_only_its_shared_modules(package: str) -> None:
    loose = sorted(p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__")
    allowed = {
        "serve_app": ["concurrency", "config", "errors", "normalize", "schemas", "settings", "timing"],
        "deployments": ["app", "extractor", "handles", "ingress", "job_worker", "metrics", "model_server", "trainer"],
    }
    assert loose == allowed[package]
