"""The import graph of the packages, read statically (every import statement, lazy ones included):
no cycle between modules of one package, and the Ray worker's part of the search stays small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def import_graph(package: str) -> dict[str, set[str]]:
    """Module → the modules of `package` it imports (a module's own package __init__ excluded)."""
    paths = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join(prefix + ([node.module] if node.module else []))
                names = [target] + [f"{target}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                while name and name not in paths:  # `from .x import f` imports the module .x
                    name = name.rpartition(".")[0]
                if name and name != module and not module.startswith(f"{name}."):
                    targets.add(name)
        graph[module] = targets
    return graph


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


@pytest.mark.parametrize("package", ["ssm", "orchestrator", "api"])
def test_no_import_cycle_within_a_package(package):
    graph = import_graph(package)
    cycles = sorted(module for module in graph if module in reach(graph, module))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_the_worker_side_of_the_search_imports_neither_ray_nor_the_coordinator():
    graph = import_graph("orchestrator")
    reached = reach(graph, "orchestrator.search.pruning") | {"orchestrator.search.pruning"}
    assert not reached & {"orchestrator.search.coordinator", "orchestrator.scheduler", "orchestrator.cluster"}
    for module in reached:
        tree = ast.parse((ROOT / Path(*module.split("."))).with_suffix(".py").read_text())
        imported = {
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not any(name == "ray" or name.startswith("ray.") for name in imported), module
