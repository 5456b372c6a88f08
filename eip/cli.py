"""The ``eip`` command: ``eip run``, ``eip routes``, ``eip check``.

``run``, ``routes``, ``check`` and ``graph`` read ``--config FILE`` (default ``eip.toml`` in
the working directory, if there is one; see :mod:`eip.config`): the values of the routes'
placeholders, and the server's settings, where a flag wins over the environment, which wins
over the file.

Routes are loaded from files, directories or packages (see :mod:`eip.routefiles`): every
:class:`~eip.RouteBuilder` subclass defined in a loaded module (and not marked
``abstract = True``) is instantiated with no arguments.

Errors come out as one line naming the file, the route and the step (or endpoint, redacted),
never a bare traceback (``--log-level DEBUG`` adds it); the exit code is 2 for invalid routes
and 1 for runtime failures, a consumer or producer that cannot start included. ``eip check``
reports every problem it finds, one line each (see :mod:`eip.runtime.check`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eip.config import Config, ConfigError, ServerSettings, load_config
from eip.dsl.diagnostics import locate
from eip.dsl.model import StepDef
from eip.errors import EipError, RouteDefinitionError
from eip.routefiles import LoadError, load_builders, route_roots
from eip.runtime.check import check_routes
from eip.runtime.context import Context
from eip.runtime.secrets import ScrubSecrets, scrub

if TYPE_CHECKING:
    from eip.runtime.reload import Reloader

__all__ = ["describe_routes", "load_builders", "main"]

log = logging.getLogger("eip.cli")


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
    paths: Sequence[str],
    shutdown_timeout: float = 30.0,
    metrics: bool = False,
    problems: list[Exception] | None = None,
    config: Config | None = None,
    supervise: bool = False,
) -> Context:
    """A context with the routes of ``paths``, resolving placeholders from ``config``; with
    ``problems``, a file or builder that fails is added to it and the others still load
    (``eip check`` reports them all); ``supervise``: routes that cannot start wait and retry."""
    context = Context(shutdown_timeout=shutdown_timeout, metrics=metrics, supervise=supervise)
    if config is not None:
        context.use_config(config)
        from eip.audit.config import configure_audit

        configure_audit(context, config)  # [audit] in the config: which routes, which store
    builders = load_builders(paths, problems)
    if not builders and not problems:
        raise LoadError(f"no RouteBuilder found in {', '.join(paths)}")
    for builder in builders:
        try:
            context.add_routes(builder)
        except RouteDefinitionError as exc:
            locate(exc, context.route_models)
            if problems is None:
                raise
            problems.append(exc)
    return context


def _check(paths: Sequence[str], config: Config | None = None) -> int:
    """Print every problem, one line each on stderr; exit 2 when there is an error."""
    problems: list[Exception] = []
    context = _context_for(paths, problems=problems, config=config)
    errors = [_one_line(exc) for exc in problems]
    warnings: list[str] = []
    if context.route_models:
        for finding in check_routes(context, complete=not problems):
            (errors if finding.severity == "error" else warnings).append(finding.message)
    for text in errors:
        print(f"eip: error: {scrub(text)}", file=sys.stderr)
    for text in warnings:
        print(f"eip: warning: {scrub(text)}", file=sys.stderr)
    for exc in problems:
        _debug_traceback(exc)
    if errors:
        return 2
    note = f", {len(warnings)} warning(s)" if warnings else ""
    print(f"ok: {len(context.route_models)} route(s) valid{note}")
    return 0


async def _run(
    context: Context,
    management: tuple[str, int] | None,
    reloader: Reloader | None = None,
    watch: bool = False,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    background: set[asyncio.Task[Any]] = set()
    if reloader is not None:

        def hangup() -> None:
            task = loop.create_task(reloader.reload())
            background.add(task)
            task.add_done_callback(background.discard)

        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, hangup)
    ops = None
    if management is not None:
        from eip.server.management import ManagementServer

        # Up before the routes, so probes see "live, not ready" while they start.
        ops = ManagementServer(context, *management, reloader=reloader)
        ops.http.label = "the management endpoints"
        ops.http.address_hint = (
            "start eip with --management-port (or set $EIP_MANAGEMENT_PORT) to use another "
            "port, or with --no-management"
        )
        await ops.start()
        log.info("management endpoints on %s (/health/live, /health/ready, /metrics)", ops.base_url)
    if watch and reloader is not None:
        from eip.runtime.watch import snapshot
        from eip.runtime.watch import watch as watch_files

        baseline = snapshot(reloader.watched)
        watcher = loop.create_task(
            watch_files(reloader.watched, reloader.reload, baseline=baseline)
        )
        background.add(watcher)
    try:
        await _serve(context, stop)
    finally:
        for task in background:
            task.cancel()
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


def _reloader(context: Context, args: argparse.Namespace, settings: ServerSettings) -> Reloader:
    """What reloads the routes of ``eip run``: it imports the route files and reads the
    config again, into a scratch context that validates them (see :mod:`eip.runtime.reload`)."""
    from eip.runtime.reload import Reloader

    def load() -> Context:
        config, _ = _load_settings(args)
        return _context_for(args.paths, settings.shutdown_timeout, config=config)

    config_file = Path(args.config) if args.config else Path("eip.toml")
    reloader = Reloader(context, load, route_roots(args.paths))
    if config_file.is_file():
        reloader.watched.append(config_file.resolve())
    return reloader


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()  # type: ignore[attr-defined,unused-ignore]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def _version() -> str:
    try:
        return importlib.metadata.version("eip")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eip", description="The eip integration engine.")
    parser.add_argument("--version", action="version", version=f"eip {_version()}")
    parser.add_argument(
        "--log-level",
        default=None,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR (server.log_level in the config, default INFO); "
        "DEBUG adds tracebacks to errors",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="text for people (default), or json: one object per line with time, level, "
        "logger, message and route_id, exchange_id, trace_id, span_id where known "
        "($EIP_LOG_FORMAT, server.log_format in the config)",
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="run, routes, check, graph, get or route ('eip COMMAND --help' tells more)",
    )
    paths = "route files, directories or packages (or dotted module names)"
    run = sub.add_parser("run", help="run routes until SIGINT/SIGTERM")
    run.add_argument("paths", nargs="+", help=paths)
    _config_option(run)
    run.add_argument(
        "--shutdown-timeout",
        type=float,
        metavar="SECONDS",
        default=None,
        help="seconds to drain in-flight exchanges on shutdown (server.shutdown_timeout in "
        "the config, default 30)",
    )
    run.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    run.add_argument(
        "--http-port",
        type=_port,
        metavar="PORT",
        default=None,
        help="port of the HTTP and SOAP routes' server ($EIP_HTTP_PORT, server.http_port in "
        "the config, else 8080; an endpoint's own port option wins)",
    )
    run.add_argument(
        "--http-host",
        default=None,
        metavar="HOST",
        help="address of the HTTP and SOAP routes' server ($EIP_HTTP_HOST, server.http_host "
        "in the config, else 0.0.0.0)",
    )
    run.add_argument(
        "--management-port",
        type=_port,
        metavar="PORT",
        default=None,
        help="port of /health/live, /health/ready and /metrics ($EIP_MANAGEMENT_PORT, "
        "server.management_port in the config, else 8081)",
    )
    run.add_argument(
        "--management-host",
        default=None,
        metavar="HOST",
        help="address of the management endpoints ($EIP_MANAGEMENT_HOST, "
        "server.management_host in the config, else 0.0.0.0)",
    )
    run.add_argument("--no-management", action="store_true", help="serve no management endpoints")
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="exit when a route cannot start (an unreachable broker); by default such a route "
        "waits and is retried in the background (1 s doubling to 30 s) while the others run, "
        "and /health/ready names it",
    )
    run.add_argument(
        "--reload",
        action="store_true",
        help="watch the route files and the config file, and reload the routes that changed "
        "(for development; in production send SIGHUP, POST /reload or run 'eip reload')",
    )
    routes = sub.add_parser("routes", help="print each route and its steps")
    routes.add_argument("paths", nargs="+", help=paths)
    _config_option(routes)
    check = sub.add_parser(
        "check",
        help="validate routes without starting them or connecting anywhere",
        description="Compile every route and report, one line each, what run would fail on: "
        "invalid endpoints and options, direct:/seda: endpoints sent to that no route "
        "consumes, environment variables the endpoints need that are not set (errors, exit "
        "code 2), and direct:/seda: consumers that no route feeds (warnings).",
    )
    check.add_argument("paths", nargs="+", help=paths)
    _config_option(check)
    graph = sub.add_parser(
        "graph",
        help="draw the routes as an SVG picture or as Mermaid text",
        description="Draw each route from its model, as the console does: SVG (the default), "
        "or Mermaid with --format mermaid or an output ending in .mmd or .md (.md writes a "
        "Markdown page with a fenced flowchart per route). Endpoint URIs are shown redacted.",
    )
    graph.add_argument("paths", nargs="+", help=paths)
    _config_option(graph)
    graph.add_argument(
        "-o", "--output", metavar="FILE", help="file to write (default: standard output)"
    )
    graph.add_argument(
        "--format",
        choices=("svg", "mermaid"),
        default=None,
        help="svg or mermaid (default: mermaid for a .mmd or .md FILE, else svg)",
    )
    _remote_parsers(sub)
    from eip.audit.cli import add_audit_parser

    add_audit_parser(sub, _config_option)
    return parser


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file of settings and placeholder values (default: eip.toml in the working "
        "directory, if there is one); EIP_<SECTION>__<KEY> variables override it",
    )


def _load_settings(args: argparse.Namespace) -> tuple[Config, ServerSettings]:
    """The config (``--config`` or ./eip.toml, the environment over it) and the effective
    server settings (flag > environment > file > default), written back into the config so
    ``{{server.http_port}}`` is the port really served."""
    if hasattr(args, "config"):
        config = load_config(args.config)
    else:  # get and route configure no routes: only how they log, from the environment
        server = Config.from_environment().get("server", {})
        config = Config({"server": {k: v for k, v in server.items() if k.startswith("log_")}})
    flags = {
        name: getattr(args, name, None)
        for name in (
            "http_port",
            "http_host",
            "management_port",
            "management_host",
            "shutdown_timeout",
            "log_level",
            "log_format",
        )
    }
    flags["management"] = False if getattr(args, "no_management", False) else None
    settings = ServerSettings.from_config(config, **flags)
    return config.with_values(settings.as_config()), settings


def _remote_parsers(sub: Any) -> None:
    """``eip get ...``, ``eip route ...`` and ``eip reload``: talk to a running server's
    control API."""
    from eip.remote import DEFAULT_URL

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--url",
            default=os.environ.get("EIP_MANAGEMENT_URL", DEFAULT_URL),
            help=f"the server's management URL ($EIP_MANAGEMENT_URL, default {DEFAULT_URL})",
        )
        parser.add_argument("--json", action="store_true", help="print the API's JSON answer")

    get = sub.add_parser(
        "get", help="show routes, one route, its failures or its exchanges in flight"
    )
    get.add_argument(
        "what",
        choices=("routes", "route", "failures", "inflight"),
        help="routes, route ID, failures ID or inflight ID",
    )
    get.add_argument("route_id", nargs="?", help="the route's id (for route, failures, inflight)")
    common(get)
    route = sub.add_parser(
        "route",
        help="stop, start, suspend, resume or trigger a route of a running server",
        description="Needs the server's token in $EIP_MANAGEMENT_TOKEN. suspend stops intake "
        "and keeps connections (resume continues); trigger runs a timer or cron route now.",
    )
    route.add_argument(
        "action", choices=("stop", "start", "suspend", "resume", "trigger"), help="what to do"
    )
    route.add_argument("route_id", help="the route's id")
    common(route)
    reload = sub.add_parser(
        "reload",
        help="make a running server reload its route files",
        description="Needs the server's token in $EIP_MANAGEMENT_TOKEN. Prints the routes "
        "added, changed and removed; a broken route file changes nothing and exits 1.",
    )
    common(reload)


def _remote(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from eip.remote import run

    if args.command == "reload":
        return run(args.url, "reload", "POST", "/reload", args.json, timeout=120.0)
    if args.command == "route":
        path = f"/routes/{quote(args.route_id, safe='')}/{args.action}"
        return run(args.url, "status", "POST", path, args.json, timeout=120.0)
    if args.what == "routes":
        return run(args.url, "routes", "GET", "/routes", args.json)
    if not args.route_id:
        print(f"eip: error: 'eip get {args.what}' needs a route id", file=sys.stderr)
        return 2
    suffix = {"failures": "/failures", "inflight": "/inflight"}.get(args.what, "")
    path = f"/routes/{quote(args.route_id, safe='')}{suffix}"
    return run(args.url, args.what, "GET", path, args.json)


def _graph(context: Context, output: str | None, fmt: str | None) -> int:
    """``eip graph``: the routes drawn offline by the console's renderer."""
    from eip.server.graph import render_mermaid, render_svg

    suffix = Path(output).suffix.lower() if output else ""
    fmt = fmt or ("mermaid" if suffix in {".mmd", ".mermaid", ".md"} else "svg")
    models = context.route_models
    text = render_svg(models) if fmt == "svg" else render_mermaid(models, markdown=suffix == ".md")
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
        print(f"wrote {len(models)} route(s) to {output} ({fmt})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config, settings = _load_settings(args)
    except ConfigError as exc:
        return _report(exc)
    level = settings.log_level.upper()
    if not isinstance(logging.getLevelName(level), int):
        print(f"eip: error: unknown log level {settings.log_level!r}", file=sys.stderr)
        return 2
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if settings.log_format == "json":
        from eip.logs import JsonFormatter

        for handler in logging.root.handlers:
            handler.setFormatter(JsonFormatter())
    for handler in logging.root.handlers:
        handler.addFilter(ScrubSecrets())  # values of {{env:...}} and {{file:...}} never show
    # httpx logs every request at INFO; the routes log what matters (and URLs may carry
    # query secrets). uvicorn's per-connection chatter is not an operator's concern either.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.root.level))
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.root.level))
    context: Context | None = None
    try:
        if args.command == "run":
            # Through the environment, so the HTTP component (and route files that build URLs
            # of their own HTTP routes) see the address the server listens on.
            os.environ["EIP_HTTP_PORT"] = str(settings.http_port)
            os.environ["EIP_HTTP_HOST"] = settings.http_host
            context = _context_for(
                args.paths,
                settings.shutdown_timeout,
                metrics=True,
                config=config,
                supervise=not args.fail_fast,
            )
            if not args.no_uvloop:
                _install_uvloop()
            management = (
                (settings.management_host, settings.management_port)
                if settings.management
                else None
            )
            reloader = _reloader(context, args, settings)
            return asyncio.run(_run(context, management, reloader, args.reload))
        if args.command == "check":
            return _check(args.paths, config)
        if args.command in ("get", "route", "reload"):
            return _remote(args)
        if args.command == "audit":
            from eip.audit.cli import run_audit

            return run_audit(args, config)
        if args.command == "graph":
            return _graph(_context_for(args.paths, config=config), args.output, args.format)
        context = _context_for(args.paths, config=config)
        print(describe_routes(context))
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if isinstance(exc, RouteDefinitionError) and context is not None:
            locate(exc, context.route_models)  # found across routes at start: one consumer per name
        return _report(exc)


def _machine_fault(exc: BaseException) -> BaseException | None:
    """A cause that is no route's fault (an address another process holds), if there is one:
    it is reported alone, so the route that happened to start first is not blamed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "route_independent", False):
            return current
        current = current.__cause__ or current.__context__
    return None


def _one_line(exc: BaseException) -> str:
    exc = _machine_fault(exc) or exc
    # A fault eip did not map: its type is the most useful clue.
    text = str(exc) if isinstance(exc, (EipError, LoadError)) else f"{type(exc).__name__}: {exc}"
    return scrub(" ".join(text.split()))


def _debug_traceback(exc: BaseException) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug("the error's traceback", exc_info=exc)


def _report(exc: Exception) -> int:
    """One line on stderr for any failure: the file, the route, the step or endpoint
    (redacted) and the cause, never a bare traceback; ``--log-level DEBUG`` adds the
    traceback for maintainers. Exit code 2 when the routes are invalid, 1 when they failed at
    run time."""
    print(f"eip: error: {_one_line(exc)}", file=sys.stderr)
    _debug_traceback(exc)
    return 2 if isinstance(exc, (RouteDefinitionError, LoadError, ConfigError)) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
