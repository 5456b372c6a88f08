"""The ``eip`` command: ``eip run``, ``eip routes``, ``eip check``.

Routes are loaded from files, directories or packages: every :class:`~eip.RouteBuilder`
subclass defined in a loaded module (and not marked ``abstract = True``) is instantiated with
no arguments. A directory with an ``__init__.py`` is imported as a package, so its modules can
import each other as ``<package>.<module>``.

Errors come out as one line naming the route and step (or endpoint, redacted), never a bare
traceback (``--log-level DEBUG`` adds it); the exit code is 2 for invalid routes and 1 for
runtime failures, a consumer or producer that cannot start included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import importlib.util
import inspect
import logging
import os
import pkgutil
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

from eip.dsl.builder import RouteBuilder
from eip.dsl.model import StepDef
from eip.errors import EipError, RouteDefinitionError
from eip.runtime.context import Context

__all__ = ["load_builders", "main"]

log = logging.getLogger("eip.cli")


class LoadError(Exception):
    """A route module could not be imported."""


def load_builders(paths: Sequence[str]) -> list[RouteBuilder]:
    """Import the given files, directories, packages or module names; return their builders."""
    builders: list[RouteBuilder] = []
    for target in paths:
        for module in _modules(target):
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if (
                    issubclass(cls, RouteBuilder)
                    and cls is not RouteBuilder
                    and cls.__module__ == module.__name__
                    and not cls.__dict__.get("abstract", False)
                ):
                    builders.append(cls())
    return builders


def _modules(target: str) -> Iterator[ModuleType]:
    path = Path(target)
    if path.is_dir():
        if (path / "__init__.py").exists():
            package = _import(path.resolve().name, path.resolve().parent)
            yield package
            for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
                yield _import(info.name, None)
        else:
            for file in sorted(path.glob("*.py")):
                if not file.name.startswith("_"):
                    yield _import(file.stem, path.resolve())
    elif path.suffix == ".py":
        if not path.exists():
            raise LoadError(f"{target}: no such file")
        yield _import(path.stem, path.resolve().parent)
    else:
        yield _import(target, Path.cwd())


def _import(name: str, search: Path | None) -> ModuleType:
    if search is not None and str(search) not in sys.path:
        sys.path.insert(0, str(search))
    try:
        return importlib.import_module(name)
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" ({frame.filename}:{frame.lineno})" if frame else ""
        if isinstance(exc, SyntaxError):
            where = f" ({exc.filename}:{exc.lineno})"
        raise LoadError(f"cannot load {name}: {type(exc).__name__}: {exc}{where}") from exc


def describe_routes(context: Context) -> str:
    lines = []
    for model in context.route_models:
        lines.append(f"{model.route_id}  from {model.source_uri}")
        if model.description:
            lines.append(f"    # {model.description}")
        _describe_steps(model.steps, lines, "    ")
        for clause in model.on_exceptions:
            lines.append(f"    {clause.describe()}")
            _describe_steps(clause.steps, lines, "        ")
    return "\n".join(lines)


def _describe_steps(steps: list[StepDef], lines: list[str], indent: str) -> None:
    for number, step in enumerate(steps, 1):
        lines.append(f"{indent}{number}. {step.describe()}")
        for label, children in step.children():
            lines.append(f"{indent}   {label}:")
            _describe_steps(children, lines, indent + "      ")


def _context_for(
    paths: Sequence[str], shutdown_timeout: float = 30.0, metrics: bool = False
) -> Context:
    context = Context(shutdown_timeout=shutdown_timeout, metrics=metrics)
    builders = load_builders(paths)
    if not builders:
        raise LoadError(f"no RouteBuilder found in {', '.join(paths)}")
    context.add_routes(*builders)
    return context


async def _run(context: Context, management: tuple[str, int] | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    ops = None
    if management is not None:
        from eip.server.management import ManagementServer

        # Up before the routes, so probes see "live, not ready" while they start.
        ops = ManagementServer(context, *management)
        await ops.start()
        log.info("management endpoints on %s (/health/live, /health/ready, /metrics)", ops.base_url)
    try:
        await _serve(context, stop)
    finally:
        if ops is not None:
            await ops.stop()
    return 0


async def _serve(context: Context, stop: asyncio.Event) -> None:
    await context.start()
    # Routes, modules and compiled pipelines live as long as the server: move them out of the
    # garbage collector's way so per-message garbage is all it scans.
    gc.collect()
    gc.freeze()
    log.info("eip is running %d route(s); SIGINT or SIGTERM stops it", len(context.routes))
    await stop.wait()
    log.info("shutting down (draining in-flight exchanges, up to %ss)", context.shutdown_timeout)
    await context.stop()


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()  # type: ignore[attr-defined,unused-ignore]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eip", description="The eip integration engine.")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run routes until SIGINT/SIGTERM")
    run.add_argument("paths", nargs="+", help="route files, directories or packages")
    run.add_argument("--shutdown-timeout", type=float, default=30.0)
    run.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    run.add_argument(
        "--management-port",
        type=int,
        default=int(os.environ.get("EIP_MANAGEMENT_PORT", "8081")),
        help="port of /health/live, /health/ready and /metrics ($EIP_MANAGEMENT_PORT, 8081)",
    )
    run.add_argument(
        "--management-host",
        default=os.environ.get("EIP_MANAGEMENT_HOST", "0.0.0.0"),
        help="address of the management endpoints ($EIP_MANAGEMENT_HOST, 0.0.0.0)",
    )
    run.add_argument("--no-management", action="store_true", help="serve no management endpoints")
    routes = sub.add_parser("routes", help="print each route and its steps")
    routes.add_argument("paths", nargs="+")
    check = sub.add_parser("check", help="validate routes without starting them")
    check.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO; the routes log what matters (and URLs may carry
    # query secrets). uvicorn's per-connection chatter is not an operator's concern either.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.root.level))
    try:
        if args.command == "run":
            context = _context_for(args.paths, args.shutdown_timeout, metrics=True)
            if not args.no_uvloop:
                _install_uvloop()
            management = (
                None if args.no_management else (args.management_host, args.management_port)
            )
            return asyncio.run(_run(context, management))
        context = _context_for(args.paths)
        if args.command == "routes":
            print(describe_routes(context))
            return 0
        context.validate()
        print(f"ok: {len(context.route_models)} route(s) valid")
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _report(exc)


def _report(exc: Exception) -> int:
    """One line on stderr for any failure: the route, the step or endpoint (redacted) and the
    cause, never a bare traceback; ``--log-level DEBUG`` adds the traceback for maintainers.
    Exit code 2 when the routes are invalid, 1 when they failed at run time."""
    # A fault eip did not map: its type is the most useful clue.
    text = str(exc) if isinstance(exc, (EipError, LoadError)) else f"{type(exc).__name__}: {exc}"
    print(f"eip: error: {' '.join(text.split())}", file=sys.stderr)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("the error's traceback", exc_info=exc)
    return 2 if isinstance(exc, (RouteDefinitionError, LoadError)) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
