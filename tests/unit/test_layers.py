"""The house's shape, checked on the source: imports run one way (lazy imports count), the carp layer is pure,
the product never imports the lab, and no function runs over 60 lines."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("wizard", "carpweb", "lab")
MAX_FUNCTION_LINES = 60
# Each layer may import itself and the layers after it, never one before it.
LAYERS = [
    ("entry", ["carpweb.asgi", "carpweb.wsgi", "carpweb.settings", "carpweb.supervise", "carpweb.processes"]),
    ("web", ["wizard.views", "wizard.views_audit", "wizard.views_users", "wizard.views_health", "wizard.views_live",
             "wizard.views_notify", "wizard.urls", "wizard.api", "wizard.forms", "wizard.documents",
             "wizard.context_processors", "wizard.middleware", "wizard.templatetags", "wizard.management",
             "carpweb.urls"]),
    ("tasks", ["wizard.tasks"]),
    ("live", ["wizard.live"]),
    ("services", ["wizard.services", "wizard.selectors", "wizard.health", "wizard.timeline", "wizard.metrics"]),
    ("execution", ["wizard.execution"]),
    ("plan", ["wizard.plan", "wizard.roles"]),
    ("transport", ["wizard.ssh", "wizard.sshpool"]),
    ("domain", ["wizard.carp"]),
    ("data", ["wizard.audit", "wizard.revisions", "wizard.models", "wizard.crypto", "wizard.signals", "wizard.apps",
              "wizard.validation", "wizard.migrations", "wizard"]),
    ("engines", ["carpweb.celery", "carpweb.broker", "carpweb.sqlite_backend", "carpweb"]),
]
# Whatever does I/O or keeps time: the carp layer is facts and operations, as data.
IMPURE = {"django", "paramiko", "socket", "subprocess", "os", "time", "threading", "urllib", "asyncio", "http",
          "select", "shutil", "requests", "httpx"}


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def _resolve(name: str) -> str | None:
    while name and name not in modules():
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name or None


@cache
def imports(module: str) -> frozenset[str]:
    """Every project module `module` imports, at the top, in functions or under TYPE_CHECKING."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name)
            if target and target != module and not module.startswith(target + ".") \
                    and not target.startswith(module + "."):
                targets.add(target)
    return frozenset(targets)


def _cycle_from(start: str) -> list[str] | None:
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in imports(node):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_import_cycles_lazy_imports_included():
    cycles = {" -> ".join(c) for m in modules() if (c := _cycle_from(m))}
    assert not cycles, "\n".join(sorted(cycles))


def _layer(module: str) -> int | None:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    return best[0] if best else None


def upward(graph: dict[str, frozenset[str]]) -> list[str]:
    """Every import in `graph` (module -> the project modules it imports) that goes up the layers."""
    found = []
    for module, targets in graph.items():
        mine = _layer(module)
        for target in targets:
            theirs = _layer(target)
            if mine is not None and theirs is not None and theirs < mine:
                found.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
    return sorted(found)


def test_every_product_module_has_a_layer():
    assert [m for m in modules() if not m.startswith("lab") and _layer(m) is None] == []


def test_imports_run_one_way_down_the_layers():
    graph = {m: imports(m) for m in modules() if m.startswith(("wizard", "carpweb"))}
    assert "carpweb.sqlite_backend.base" in graph and "carpweb.asgi" in graph
    found = upward(graph)
    assert not found, "\n".join(found)


def test_the_layer_test_catches_an_upward_import():
    """The check itself, on imports that are not there: each one is reported, carpweb/ included."""
    injected = {"wizard.carp.facts": frozenset({"wizard.views"}),
                "carpweb.sqlite_backend.base": frozenset({"wizard.services.runs"}),
                "wizard.execution.runner": frozenset({"wizard.tasks", "wizard.ssh"}),
                "wizard.views": frozenset({"wizard.services", "carpweb.celery"})}
    assert upward(injected) == [
        "carpweb.sqlite_backend.base (engines) imports wizard.services.runs (services)",
        "wizard.carp.facts (domain) imports wizard.views (web)",
        "wizard.execution.runner (execution) imports wizard.tasks (tasks)"]


def test_the_carp_layer_is_pure_and_the_product_never_imports_the_lab():
    for module in modules():
        path = modules()[module]
        text_imports = {n.split(".")[0] for node in ast.walk(ast.parse(path.read_text()))
                        for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                                  [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])}
        if module.startswith("wizard.carp"):
            assert not text_imports & IMPURE, (module, text_imports & IMPURE)
            assert all(t.startswith("wizard.carp") for t in imports(module)), (module, imports(module))
        if module.startswith(("wizard", "carpweb")):
            assert not any(t.startswith("lab") for t in imports(module)), module


def _long_functions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_runs_over_60_lines(package):
    long = [f for path in sorted((ROOT / package).rglob("*.py")) if "migrations" not in path.parts
            for f in _long_functions(path)]
    assert not long, "\n".join(long)
