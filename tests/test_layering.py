"""The layers of eip, pinned: what each part may import (read from the source with ``ast``).

The core (message, errors, clock, endpoint, failures...) imports no other layer; processors
import the core and each other, never the runtime, the DSL or a component; components never
import the context, the DSL or the processors, and at runtime nothing from ``eip.runtime`` but
the ``Route`` they feed. The context reaches them through protocols it satisfies
structurally (``ComponentHost``, ``EndpointResolver``, ``CompileHost``), checked here by mypy
and at runtime.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import NamedTuple

import pytest

from eip.clock import SystemClock
from eip.components.base import Component, ComponentHost
from eip.dsl.host import CompileHost
from eip.endpoint import EndpointResolver
from eip.message import Exchange
from eip.runtime.context import Context

EIP = Path(__file__).resolve().parent.parent / "eip"

#: The core: what every layer may import, and which imports only itself.
CORE = {
    "eip._callables",
    "eip.clock",
    "eip.endpoint",
    "eip.errors",
    "eip.failures",
    "eip.headers",
    "eip.logs",
    "eip.message",
    "eip.redaction",
}


class Import(NamedTuple):
    module: str  # the importing module
    target: str  # the eip module imported (a package when a name of it is imported)
    line: int
    kind: str  # "top" (at import time), "lazy" (in a function), "typing" (TYPE_CHECKING)


def _modules() -> dict[str, Path]:
    found = {}
    for path in EIP.rglob("*.py"):
        parts = list(path.relative_to(EIP.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _targets(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "eip"]
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(parent + ([base] if base else []))
    if base.split(".")[0] != "eip":
        return []
    # ``from eip.x import y`` imports the module eip.x.y when there is one, else names of eip.x
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


@functools.cache
def imports_of(module: str) -> tuple[Import, ...]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def walk(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    walk_one(stmt, "typing")
                for stmt in child.orelse:
                    walk_one(stmt, kind)
            else:
                walk_one(child, kind)

    def walk_one(node: ast.AST, kind: str) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.extend(Import(module, t, node.lineno, kind) for t in _targets(node, package))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            walk(node, "lazy" if kind == "top" else kind)
        else:
            walk(node, kind)

    walk(ast.parse(path.read_text(encoding="utf-8")), "top")
    return tuple(found)


def _in(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def _of_package(package: str) -> list[Import]:
    return [imp for m in sorted(MODULES) if _in(m, (package,)) for imp in imports_of(m)]


def _show(found: list[Import]) -> str:
    return "\n".join(f"{i.module}:{i.line} imports {i.target} ({i.kind})" for i in found)


def test_the_scanner_sees_every_kind_of_import() -> None:
    """The rules below are only as good as the scanner: it must see lazy, TYPE_CHECKING and
    relative imports, and tell a module from a name of a package."""
    route = imports_of("eip.runtime.route")
    assert any(i.target == "eip.processors.base" and i.kind == "top" for i in route)
    assert any(i.target == "eip.runtime.supervisor" and i.kind == "typing" for i in route)
    context = imports_of("eip.runtime.context")
    assert any(i.target == "eip.runtime.metrics" and i.kind == "lazy" for i in context)
    multicast = imports_of("eip.processors.multicast")
    assert any(i.target == "eip.headers" for i in multicast)  # from eip import headers as H


def test_the_core_imports_only_the_core() -> None:
    found = [imp for m in sorted(CORE) for imp in imports_of(m) if imp.target not in CORE]
    assert not found, "the core reaches into a layer above it:\n" + _show(found)


@pytest.mark.parametrize(
    "forbidden",
    ["eip.runtime", "eip.components", "eip.dsl", "eip.server", "eip.testing", "eip.cli"],
)
def test_processors_never_import_the_layers_above_them(forbidden: str) -> None:
    """Not even for type annotations: a processor is built from plain values and protocols
    (a ``Clock``, an ``EndpointResolver``), whatever the context is."""
    found = [i for i in _of_package("eip.processors") if _in(i.target, (forbidden,))]
    assert not found, _show(found)


def test_processors_never_import_the_package_root() -> None:
    """``from eip import X`` runs eip/__init__, which imports the whole engine."""
    found = [i for i in _of_package("eip.processors") if i.target == "eip"]
    assert not found, _show(found)


@pytest.mark.parametrize(
    "forbidden",
    ["eip.runtime.context", "eip.dsl", "eip.processors", "eip.server", "eip.testing", "eip.cli"],
)
def test_components_never_import_the_context_the_dsl_or_the_processors(forbidden: str) -> None:
    found = [i for i in _of_package("eip.components") if _in(i.target, (forbidden,))]
    assert not found, _show(found)


def test_components_import_only_the_route_from_the_runtime_when_running() -> None:
    found = [
        i
        for i in _of_package("eip.components")
        if i.kind != "typing" and _in(i.target, ("eip.runtime",))
        if i.target != "eip.runtime.route"
    ]
    assert not found, _show(found)


def test_the_dsl_never_imports_the_context() -> None:
    """The context compiles routes, so the DSL sees it only as a ``CompileHost``."""
    found = [i for i in _of_package("eip.dsl") if _in(i.target, ("eip.runtime.context",))]
    assert not found, _show(found)


def test_no_module_imports_itself_back_at_import_time() -> None:
    """No cycle of module-level imports among eip's modules (TYPE_CHECKING and function-level
    imports aside): a cycle makes import order matter and shows half-initialised modules."""
    graph = {
        m: {i.target for i in imports_of(m) if i.kind == "top" and i.target != m} for m in MODULES
    }
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _as_component_host(context: Context) -> ComponentHost:
    return context  # mypy checks that the context satisfies the protocol


def _as_endpoint_resolver(context: Context) -> EndpointResolver:
    return context  # mypy checks that the context satisfies the protocol


def _as_compile_host(context: Context) -> CompileHost:
    return context  # mypy checks that the context satisfies the protocol


async def test_the_context_serves_components_and_resolving_steps() -> None:
    context = Context(shutdown_timeout=7.0)
    host = _as_component_host(context)
    assert isinstance(host.clock, SystemClock)
    assert host.shutdown_timeout == 7.0
    assert isinstance(host.component("direct"), Component)
    compiler_host = _as_compile_host(context)
    assert compiler_host.metrics is None  # Context(metrics=False)
    _, spec = compiler_host.resolve_endpoint("seda:layering?size=5", route_id="r", step="1")
    assert spec.uri == "seda:layering?size=5"
    resolver = _as_endpoint_resolver(context)
    async with context:
        assert resolver.tracing is context.tracing
        producer = await resolver.producer("mock:layering")
        result = producer.process(Exchange("hello"))
        if result is not None:
            await result
        assert context.mock("layering").received_bodies == ["hello"]
