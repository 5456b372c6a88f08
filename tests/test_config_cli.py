"""The config file and placeholders through the ``eip`` command, as real processes: ``--config``
and ./eip.toml, the environment over the file and flags over both, missing properties in
``check`` and ``run``, and secrets kept out of ``routes``, ``graph``, the logs and the API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cli_support import free_port, run_cli

ROOT = Path(__file__).resolve().parent.parent

ROUTES = """\
from eip import RouteBuilder


class Orders(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("timer:orders?period=60")
            .route_id("orders")
            .to("{{erp.url}}/api/orders?timeout=2")
        )
"""

SERVED = """\
from eip import RouteBuilder


class Ping(RouteBuilder):
    def configure(self) -> None:
        self.from_("http:/ping").route_id("ping").set_body("pong")
"""

SECRET_ROUTES = """\
from eip import RouteBuilder


class Tenant(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("timer:tenant?repeat_count=1&delay=0.1")
            .route_id("tenant")
            .set_body("{}")
            .to("http://127.0.0.1:{{dead.port}}/{{env:EIP_TEST_TENANT}}/x?timeout=2")
        )
"""


def _file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


@contextmanager
def _running(args: list[str], cwd: Path, env: dict[str, str], ready: str) -> Iterator[Path]:
    """``eip run ARGS`` until ``ready`` answers 200 (within 30 s); SIGTERM at the end. Yields
    the file its output goes to (a file, so the server never blocks on a full pipe)."""
    log = cwd / f"eip-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "eip.cli", *args],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while _get(ready)[0] != 200:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"{ready} did not answer: {log.read_text()}"
            time.sleep(0.05)
        yield log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, log.read_text()


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("eip: error:")]


# -- check and routes ---------------------------------------------------------------------------
def test_check_names_a_missing_property_and_passes_once_the_config_has_it(tmp_path: Path) -> None:
    routes = _file(tmp_path, "orders_routes.py", ROUTES)
    missing = run_cli("check", str(routes), cwd=tmp_path)
    assert missing.returncode == 2, missing.stderr
    assert _errors(missing) == [
        f"eip: error: {routes.name}:7, route 'orders', step 1: endpoint {{{{erp.url}}}}/api/orders?"
        "timeout=2: placeholder {{erp.url}} has no value: set url in the [erp] table of "
        "eip.toml, or $EIP_ERP__URL"
    ]
    config = _file(tmp_path, "prod.toml", '[erp]\nurl = "https://erp.example.com"\n')
    named = run_cli("check", "--config", str(config), str(routes), cwd=tmp_path)
    assert (named.returncode, named.stdout) == (0, "ok: 1 route(s) valid\n"), named.stderr
    from_env = run_cli("check", str(routes), cwd=tmp_path, env={"EIP_ERP__URL": "http://erp"})
    assert from_env.returncode == 0, from_env.stderr
    _file(tmp_path, "eip.toml", '[erp]\nurl = "https://erp.example.com"\n')
    default = run_cli("check", str(routes), cwd=tmp_path)  # ./eip.toml, read without --config
    assert default.returncode == 0, default.stderr


def test_a_config_file_that_is_wrong_is_one_line(tmp_path: Path) -> None:
    routes = _file(tmp_path, "orders_routes.py", ROUTES)
    absent = run_cli("check", "--config", str(tmp_path / "none.toml"), str(routes))
    assert (absent.returncode, _errors(absent)) == (
        2,
        [f"eip: error: config file {tmp_path / 'none.toml'} does not exist"],
    )
    bad = _file(tmp_path, "bad.toml", "[server]\nhttp_port = 80 80\n")
    invalid = run_cli("run", "--config", str(bad), str(routes))
    assert invalid.returncode == 2
    [line] = _errors(invalid)
    assert line.startswith(f"eip: error: {bad}: invalid TOML: ")
    assert "line 2" in line
    typo = _file(tmp_path, "typo.toml", "[server]\nmanagment_port = 1\n")
    unknown = run_cli("run", "--config", str(typo), str(routes))
    assert unknown.returncode == 2
    assert "unknown server setting 'managment_port'" in unknown.stderr
    assert "Traceback" not in invalid.stderr + unknown.stderr


def test_routes_and_graph_show_placeholders_never_secret_values(tmp_path: Path) -> None:
    routes = _file(tmp_path, "tenant_routes.py", SECRET_ROUTES)
    tenant = f"tenant-{uuid.uuid4().hex[:10]}"
    env = {"EIP_TEST_TENANT": tenant, "EIP_DEAD__PORT": "1"}
    listed = run_cli("routes", str(routes), cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "/{{env:EIP_TEST_TENANT}}/x" in listed.stdout
    graph = run_cli("graph", "--format", "mermaid", str(routes), cwd=tmp_path, env=env)
    assert graph.returncode == 0, graph.stderr
    for text in (listed.stdout, listed.stderr, graph.stdout, graph.stderr):
        assert tenant not in text


def test_without_the_demo_check_names_the_settings_the_examples_need() -> None:
    unset = ("EIP_ERP__URL", "EIP_ERP__SOAP_URL", "EIP_ERP__SOAP_USER", "ERP_SOAP_PASSWORD")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    result = subprocess.run(
        [sys.executable, "-m", "eip.cli", "check", "routes/"],
        cwd=ROOT,  # the shipped eip.toml: its [erp] table is commented out
        env={**env, "EIP_DEMO": "0", "ERP_API_TOKEN": "t", "CRM_WEBHOOK_KEYS": "k"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    errors = "\n".join(_errors(result))
    for expected in (
        "placeholder {{erp.url}} has no value: set url in the [erp] table of eip.toml, or "
        "$EIP_ERP__URL",
        "placeholder {{erp.soap_url}} has no value: set soap_url in the [erp] table",
        "placeholder {{erp.soap_user}} has no value: set soap_user in the [erp] table",
        "ws_password_env 'ERP_SOAP_PASSWORD' is not set",
    ):
        assert expected in errors, errors
    assert "route 'crm-customer-webhook', step 4: endpoint {{erp.url}}/api/customers" in errors
    assert "Traceback" not in result.stderr


# -- run ----------------------------------------------------------------------------------------
def test_run_fails_at_start_on_a_missing_property(tmp_path: Path) -> None:
    routes = _file(tmp_path, "orders_routes.py", ROUTES)
    result = run_cli("run", "--no-management", str(routes), cwd=tmp_path)
    assert result.returncode == 2
    assert _errors(result) == [
        f"eip: error: {routes.name}:7, route 'orders', step 1: endpoint {{{{erp.url}}}}/api/orders?"
        "timeout=2: placeholder {{erp.url}} has no value: set url in the [erp] table of "
        "eip.toml, or $EIP_ERP__URL"
    ]


def test_server_settings_flag_over_environment_over_file(tmp_path: Path) -> None:
    routes = _file(tmp_path, "ping_routes.py", SERVED)
    in_file, in_env, in_flag, http = (free_port() for _ in range(4))
    config = _file(
        tmp_path,
        "eip.toml",
        f'[server]\nmanagement_port = {in_file}\nmanagement_host = "127.0.0.1"\n'
        f'http_port = {http}\nhttp_host = "127.0.0.1"\nshutdown_timeout = 5\n',
    )
    cases = [
        ([], {}, in_file),  # the file
        ([], {"EIP_MANAGEMENT_PORT": str(in_env)}, in_env),  # the environment over it
        (["--management-port", str(in_flag)], {"EIP_MANAGEMENT_PORT": str(in_env)}, in_flag),
    ]
    for flags, env, port in cases:
        args = ["run", "--config", str(config), *flags, str(routes)]
        with _running(args, tmp_path, env, f"http://127.0.0.1:{port}/health/live"):
            others = {in_file, in_env, in_flag} - {port}
            assert all(_get(f"http://127.0.0.1:{p}/health/live")[0] == 0 for p in others)
            assert _get(f"http://127.0.0.1:{http}/ping") == (200, b"pong")  # the file's port


def test_run_keeps_a_secret_out_of_its_logs_and_its_api(tmp_path: Path) -> None:
    routes = _file(tmp_path, "tenant_routes.py", SECRET_ROUTES)
    tenant = f"tenant-{uuid.uuid4().hex[:10]}"
    management = free_port()
    env = {"EIP_TEST_TENANT": tenant, "EIP_DEAD__PORT": str(free_port())}
    args = [
        "--log-level",
        "DEBUG",  # every line there is
        "run",
        "--management-port",
        str(management),
        "--management-host",
        "127.0.0.1",
        "--http-port",
        "0",
        str(routes),
    ]
    api = f"http://127.0.0.1:{management}"
    with _running(args, tmp_path, env, f"{api}/health/live") as log:
        deadline = time.monotonic() + 20
        while "failed exchange" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        answers = [_get(f"{api}{path}") for path in ("/routes", "/routes/tenant/failures")]
    assert [status for status, _ in answers] == [200, 200]
    [route] = json.loads(answers[0][1])["routes"]
    assert route["id"] == "tenant"
    [failure] = json.loads(answers[1][1])["failures"]
    assert "/***/x" in failure["message"]  # the failure is there, the value is not
    output = log.read_text()
    assert "route tenant failed exchange" in output
    for text in (output, *(body.decode() for _, body in answers)):
        assert tenant not in text
