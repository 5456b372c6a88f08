"""The eip command, run as a real process, on route files with mistakes in them: each mistake is
one line naming the file, the route and the step (the traceback only under DEBUG); and the
command's own options (--version, --http-port, help for every argument)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from eip.cli import _parser
from tests.cli_support import free_port, run_cli

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = [("run", "--no-management"), ("check",), ("routes",)]


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("eip: error:")]


def _write(tmp_path: Path, name: str, configure: str) -> Path:
    path = tmp_path / name
    path.write_text(
        "import os\n"
        "from eip import RouteBuilder, seda\n"
        "class OrderRoutes(RouteBuilder):\n"
        "    def configure(self) -> None:\n" + configure
    )
    return path


TYPO = (
    "        (self.from_('timer:tick?repeat_count=1')\n"
    "             .route_id('orders')\n"
    "             .to('log:x')\n"
    "             .to(seda('orders', sise=5)))\n"
)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_typed_spec_typo_is_one_line_in_every_command(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    path = _write(tmp_path, "typo_routes.py", TYPO)
    result = run_cli(*command, str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert _errors(result) == [
        f"eip: error: {path}:8, OrderRoutes, route 'orders', step 2: unknown option 'sise' "
        "for endpoint seda:orders (valid options: block_when_full, concurrent_consumers, "
        "durable, offer_timeout, path, size, synchronous, wait_for_completion)"
    ]
    assert result.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_any_exception_in_configure_is_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    path = _write(
        tmp_path,
        "env_routes.py",
        "        self.from_('timer:a?repeat_count=1').route_id('first').to('log:a')\n"
        "        keys = os.environ['EIP_TEST_SURELY_UNSET_KEYS']\n"
        "        self.from_('timer:b?repeat_count=1').to('log:' + keys)\n",
    )
    result = run_cli(*command, str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert _errors(result) == [
        f"eip: error: {path}:6, OrderRoutes (after route 'first'): configure() failed: "
        "KeyError: 'EIP_TEST_SURELY_UNSET_KEYS'"
    ]


def test_debug_shows_the_configure_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "typo_routes.py", TYPO)
    result = run_cli("--log-level", "DEBUG", "check", str(path))
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert len(_errors(result)) == 1


def test_a_builder_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "init_routes.py"
    path.write_text(
        "from eip import RouteBuilder\n"
        "class NeedsArgs(RouteBuilder):\n"
        "    def __init__(self, region: str) -> None:\n"
        "        super().__init__()\n"
    )
    result = run_cli("check", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = _errors(result)
    assert line.startswith(f"eip: error: {path}:2: cannot create NeedsArgs(): TypeError:")


def test_check_reports_every_file_one_line_each(tmp_path: Path) -> None:
    _write(tmp_path, "a_routes.py", TYPO)
    (tmp_path / "b_routes.py").write_text("def (:\n")
    good = _write(tmp_path, "c_routes.py", "        self.from_('timer:c').to('log:c')\n")
    result = run_cli("check", str(tmp_path))
    assert result.returncode == 2
    errors = _errors(result)
    assert len(errors) == 2
    assert any("a_routes.py:8, OrderRoutes" in e and "'sise'" in e for e in errors)
    assert any("cannot load b_routes: SyntaxError" in e for e in errors)
    assert run_cli("check", str(good)).returncode == 0


# -- eip check does more of what run would find ---------------------------------------------


def test_check_fails_on_a_direct_endpoint_nothing_consumes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "nowhere_routes.py",
        "        self.from_('timer:t').route_id('orders').to('direct:does-not-exist')\n",
    )
    result = run_cli("check", str(path))
    assert result.returncode == 2
    assert _errors(result) == [
        f"eip: error: {path}:5, route 'orders', step 1: sends to direct:does-not-exist, which "
        "no route consumes: each message sent there would fail with NoConsumerError"
    ]


def test_check_warns_about_a_consumer_nothing_feeds_and_passes(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "unfed_routes.py", "        self.from_('seda:in').route_id('in').to('log:x')\n"
    )
    result = run_cli("check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"eip: warning: {path}:5, route 'in', step from: consumes seda:in, but no route sends "
        "to it (fine when a ProducerTemplate, an HTTP handler or a computed recipient feeds it)"
    ]
    assert result.stdout == "ok: 1 route(s) valid, 1 warning(s)\n"


def test_check_fails_where_run_would_on_an_unset_credentials_env() -> None:
    """The README's EIP_DEMO=0 case: the webhook's keys are read when its consumer starts."""
    env = {"EIP_DEMO": "0", "ERP_API_TOKEN": "t"}
    env_without = {k: v for k, v in os.environ.items() if k != "CRM_WEBHOOK_KEYS"}
    result = subprocess.run(
        [sys.executable, "-m", "eip.cli", "check", "routes/"],
        cwd=ROOT,
        env={**env_without, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    webhook = [line for line in _errors(result) if "'CRM_WEBHOOK_KEYS'" in line]
    assert len(webhook) == 1
    assert (
        "route 'crm-customer-webhook', step from: credentials_env 'CRM_WEBHOOK_KEYS' is "
        in (webhook[0])
    )
    assert webhook[0].startswith("eip: error: routes/crm_webhook.py:")


# -- route files, options, help --------------------------------------------------------------


def test_a_route_file_named_like_a_stdlib_module_is_loaded(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "logging.py", "        self.from_('timer:t').route_id('x').to('log:x')\n"
    )
    for command in ("check", "routes"):
        result = run_cli(command, str(path))
        assert result.returncode == 0, result.stderr
        assert "is named like the module 'logging' (of the standard library)" in result.stderr
    assert "x  from timer:t" in run_cli("routes", str(tmp_path)).stdout


def test_version() -> None:
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"eip {version('eip')}\n"


def test_every_argument_has_help() -> None:
    parser = _parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    assert len(parsers) == 9  # eip and run, routes, check, graph, get, route, reload, audit
    missing = [
        f"{p.prog} {a.dest}" for p in parsers for a in p._actions if not a.help and a.dest != "help"
    ]
    assert missing == []


HELLO = "        self.from_('http:/hello').route_id('hello').set_body('hi')\n"


def test_http_port_option_moves_the_http_server(tmp_path: Path) -> None:
    path = _write(tmp_path, "hello_routes.py", HELLO)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eip.cli",
            "run",
            "--no-management",
            "--http-port",
            str(port),
            *[str(path)],
        ],
        cwd=ROOT,
        env={**os.environ, "EIP_HTTP_PORT": "1"},  # the option wins over the environment
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=2) as reply:
                    assert reply.read() == b"hi"
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up in 20 s"
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_a_busy_http_port_blames_no_route(tmp_path: Path) -> None:
    path = _write(tmp_path, "hello_routes.py", HELLO)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "--no-management", "--http-port", str(port), str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert _errors(result) == [
        f"eip: error: cannot listen on 0.0.0.0:{port} for the HTTP server: the address is in "
        "use by another process; start eip with --http-port (or set $EIP_HTTP_PORT) to use "
        "another port"
    ]


def test_a_bad_port_is_refused_by_the_parser() -> None:
    result = run_cli("run", "--http-port", "70000", "routes/")
    assert result.returncode == 2
    assert "a port is 0..65535, got 70000" in result.stderr


def test_a_busy_management_port_names_its_own_option(tmp_path: Path) -> None:
    path = _write(tmp_path, "hello_routes.py", HELLO)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "--management-port", str(port), "--http-port", "0", str(path))
    assert result.returncode == 1
    assert _errors(result) == [
        f"eip: error: cannot listen on 0.0.0.0:{port} for the management endpoints: the address "
        "is in use by another process; start eip with --management-port (or set "
        "$EIP_MANAGEMENT_PORT) to use another port, or with --no-management"
    ]


def test_a_typed_spec_typo_outside_configure_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "module_routes.py"
    path.write_text(
        "from eip import RouteBuilder, seda\n"
        "ORDERS = seda('orders', sise=5)\n"
        "class OrderRoutes(RouteBuilder):\n"
        "    def configure(self) -> None:\n"
        "        self.from_('timer:t').to(ORDERS)\n"
    )
    result = run_cli("check", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = _errors(result)
    assert line.startswith("eip: error: cannot load module_routes: RouteDefinitionError: ")
    assert "unknown option 'sise' for endpoint seda:orders" in line
    assert line.endswith(f"({path}:2)")
