"""The eip command, run as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from eip.cli import load_builders, main
from tests.cli_support import free_port, run_cli

ROOT = Path(__file__).resolve().parent.parent


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_run_processes_the_sample_and_stops_on_sigterm(tmp_path: Path) -> None:
    http_port, management_port = free_port(), free_port()
    env = {
        **os.environ,
        "EIP_DATA_DIR": str(tmp_path),
        "EIP_HTTP_PORT": str(http_port),
        "EIP_MANAGEMENT_PORT": str(management_port),
    }
    ops = f"http://127.0.0.1:{management_port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "eip.cli", "run", "routes/"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        erp_file = tmp_path / "outbox" / "erp-customers" / "erp-customers-crm_customers.json"
        done = tmp_path / "inbox" / "crm-customer-export" / ".done" / "crm_customers.csv"
        # the other examples' outputs: lead feed, customer view, ERP nightly export
        outputs = [
            erp_file,
            done,
            tmp_path / "inbox" / "marketing-leads" / ".done" / "leads-20240502-0900.ndjson",
            tmp_path / "outbox" / "customer-views" / "customer-1001.json",
            tmp_path / "outbox" / "customer-views" / "customer-1002.json",
            tmp_path / "outbox" / "crm-account-batches" / "erp_accounts_20240502.manifest.json",
            tmp_path / "demo" / "erp-api" / "C-001001.json",  # the webhook example, via HTTP
            # each example's failure path, taken by one of its samples
            tmp_path / "rejected" / "customer-import" / "rejected-crm_customers.csv",
            tmp_path / "rejected" / "lead-feed" / "rejected-leads-20240502-0900.json",
            tmp_path / "rejected" / "customer-view" / "customer-1005.xml.json",
            tmp_path / "rejected" / "erp-nightly-export" / "erp_accounts_20240503.json",
            tmp_path / "inbox" / "erp-account-export" / ".error" / "erp_accounts_20240503.csv",
            tmp_path / "dead-letter" / "customer-events" / "crm-evt-20261123-0003.json",
            tmp_path / "dead-letter" / "webhook" / "evt-20261123-0002.json",
            # the SOAP example: the sample customer upserted in the (demo) ERP over SOAP
            tmp_path / "inbox" / "crm-soap-upserts" / ".done" / "customer-1001.json",
            tmp_path / "rejected" / "soap-upsert" / "customer-1002.json",
        ]
        upserts = tmp_path / "demo" / "erp-upserts"  # the RabbitMQ example (a demo event relayed)
        deadline = time.monotonic() + 30
        while not (
            all(path.exists() for path in outputs) and upserts.exists() and any(upserts.iterdir())
        ):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the sample was not processed in 30 s"
            time.sleep(0.05)
        assert _get(f"{ops}/health/live")[0] == 200
        assert _get(f"{ops}/health/ready") == (200, b'{"status":"ready"}')
        status, metrics = _get(f"{ops}/metrics")
        assert status == 200
        assert b'eip_exchanges_total{route="crm-customer-webhook"} 2.0' in metrics
        status, document = _get(f"http://127.0.0.1:{http_port}/openapi.json")
        assert status == 200
        assert b"/webhooks/crm/customer-changed" in document
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "route crm-customer-import started" in output
    assert "imported crm_customers.csv: 4 accepted, 3 rejected, 1 duplicate(s) skipped" in output
    assert (
        "lead file leads-20240502-0900.ndjson: 2 accepted, 1 duplicate(s) skipped, "
        "1 from other sources, 2 rejected" in output
    )
    assert "customer view 1001 written" in output
    assert "erp export erp_accounts_20240502: 1234 row(s) in 3 batch(es)" in output
    accepted = sorted(p.name for p in (tmp_path / "outbox" / "crm-leads").iterdir())
    assert len(accepted) == 5
    assert "ERP received upsert" in output  # the RabbitMQ example relayed a demo event
    assert "ERP customer C001001 upserted (version 1)" in output
    assert 'CRM webhook answered b\'{"status":"synced","erp_id":"E-C-001001"}\'' in output
    assert "shutting down" in output
    assert "context eip stopped" in output
    assert "Traceback" not in output


def test_routes_lists_steps() -> None:
    result = run_cli("routes", "routes/")
    assert result.returncode == 0, result.stderr
    assert "crm-customer-import  from file:" in result.stdout
    assert "unmarshal(csv)" in result.stdout
    assert "crm-demo-seed  from timer:crm-demo-seed?repeat_count=1" in result.stdout
    assert "crm-lead-feed  from file:" in result.stdout
    assert "aggregate(header('customer_id'), completion_timeout=3600.0" in result.stdout
    assert "split(groups(500, csv_rows(ErpAccountRow)))" in result.stdout


def test_check_ok() -> None:
    result = run_cli("check", "routes/")
    assert result.returncode == 0, result.stderr
    # every route of the demo, and nothing sent where no route consumes (warnings allowed)
    listed = run_cli("routes", "routes/").stdout
    count = sum(1 for line in listed.splitlines() if line and not line.startswith(" "))
    assert count >= 20
    assert f"ok: {count} route(s) valid" in result.stdout
    assert "eip: error" not in result.stderr


def test_check_reports_bad_route_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad_routes.py").write_text(
        "from eip import RouteBuilder\n"
        "class Bad(RouteBuilder):\n"
        "    def configure(self) -> None:\n"
        "        self.from_('timer:a').route_id('orders').to('seda:x?sise=1')\n"
    )
    result = run_cli("check", str(tmp_path / "bad_routes.py"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    # the file and line of the route, the route, the step
    where = f"{tmp_path / 'bad_routes.py'}:4"
    assert lines[0].startswith(f"eip: error: {where}, route 'orders', step 1")
    assert "unknown option 'sise'" in lines[0]


def test_unloadable_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def (:\n")
    result = run_cli("check", str(tmp_path / "broken.py"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "cannot load broken: SyntaxError" in result.stderr
    assert "broken.py:1" in result.stderr


def test_no_builders_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty_mod.py").write_text("X = 1\n")
    assert main(["check", str(tmp_path / "empty_mod.py")]) == 2
    assert "no RouteBuilder found" in capsys.readouterr().err


def test_load_builders_skips_abstract(tmp_path: Path) -> None:
    (tmp_path / "abstract_mod.py").write_text(
        "from eip import RouteBuilder\n"
        "class Base(RouteBuilder):\n"
        "    abstract = True\n"
        "class Real(Base):\n"
        "    def configure(self) -> None:\n"
        "        self.from_('direct:a').to('mock:b')\n"
    )
    builders = load_builders([str(tmp_path / "abstract_mod.py")])
    assert [type(b).__name__ for b in builders] == ["Real"]


# -- credentials in `eip routes`, and endpoints that cannot start ---------------------------

SECRET_ROUTES = (
    "from eip import RouteBuilder\n"
    "class Secret(RouteBuilder):\n"
    "    def configure(self) -> None:\n"
    "        (self.from_('rabbitmq:?queue=q&url=amqp%3A%2F%2Fuser%3Ahunter2%40host%2Fvh')\n"
    "             .route_id('relay')\n"
    "             .to('rabbitmq:x?url=amqp://user:hunter2%40x@host/&routing_key=k')\n"
    "             .to('http://erp:hunter2@erp.local/api?secret=hunter2&auth=basic&username=erp'))\n"
)


def test_routes_and_check_never_show_credentials(tmp_path: Path) -> None:
    (tmp_path / "secret_routes.py").write_text(SECRET_ROUTES)
    listed = run_cli("routes", str(tmp_path / "secret_routes.py"))
    assert listed.returncode == 0, listed.stderr
    assert "relay  from rabbitmq:?queue=q&url=amqp://user:***@host/vh" in listed.stdout
    assert "to(rabbitmq:x?url=amqp://user:***@host/&routing_key=k)" in listed.stdout
    assert "to(http://erp:***@erp.local/api?secret=***&auth=basic&username=erp)" in listed.stdout
    checked = run_cli("check", str(tmp_path / "secret_routes.py"))
    assert checked.returncode == 0, checked.stderr
    for output in (listed.stdout, listed.stderr, checked.stdout, checked.stderr):
        assert "hunter2" not in urllib.parse.unquote(urllib.parse.unquote(output))


GUEST_URL = "url=amqp%3A%2F%2Fguest%3Aguest%40127.0.0.1%3A5672%2F"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +[\w.]+: ")


def _failing_start(tmp_path: Path, endpoint: str, *args: str) -> tuple[int, list[str]]:
    """Run a route file whose endpoint cannot start; the exit code and the non-log lines."""
    (tmp_path / "failing_routes.py").write_text(
        "from eip import RouteBuilder\n"
        "class Failing(RouteBuilder):\n"
        "    def configure(self) -> None:\n"
        f"        {endpoint}\n"
    )
    result = run_cli(
        *args, "run", "--fail-fast", "--no-management", str(tmp_path / "failing_routes.py")
    )
    assert "Traceback" not in result.stderr
    assert "guest:guest" not in urllib.parse.unquote(result.stderr)
    assert result.stdout == ""
    return result.returncode, [
        line for line in result.stderr.splitlines() if not LOG_LINE.match(line)
    ]


@pytest.mark.parametrize("level", [(), ("--log-level", "WARNING")])
def test_a_producer_that_fails_at_start_is_one_line(tmp_path: Path, level: tuple[str]) -> None:
    missing = f"no.such.exchange.{uuid.uuid4().hex}"
    to = f"rabbitmq:{missing}?declare=false&routing_key=x&{GUEST_URL}"
    code, lines = _failing_start(
        tmp_path, f"self.from_('timer:tick?period=1.0').route_id('pub').to('{to}')", *level
    )
    assert code == 1
    assert lines == [
        f"eip: error: route 'pub' (step 1) could not start its producer rabbitmq:{missing}"
        "?declare=false&routing_key=x&url=amqp://guest:***@127.0.0.1:5672/: channel closed "
        f"(404) on Exchange.Declare: NOT_FOUND - no exchange '{missing}' in vhost '/'"
    ]


def test_a_consumer_that_fails_at_start_is_one_line_too(tmp_path: Path) -> None:
    missing = f"no.such.queue.{uuid.uuid4().hex}"
    source = f"rabbitmq:?queue={missing}&declare=false&{GUEST_URL}"
    code, lines = _failing_start(
        tmp_path, f"self.from_('{source}').route_id('sub').to('log:x')", "--log-level", "WARNING"
    )
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(
        f"eip: error: route 'sub' could not start its consumer rabbitmq:?queue={missing}"
    )
    assert "url=amqp://guest:***@127.0.0.1:5672/" in lines[0]
    assert "NOT_FOUND" in lines[0]


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "debug_routes.py").write_text(
        "from eip import RouteBuilder\n"
        "class Failing(RouteBuilder):\n"
        "    def configure(self) -> None:\n"
        f"        self.from_('timer:t?period=1.0').to('rabbitmq:no.such.{uuid.uuid4().hex}"
        "?declare=false')\n"
    )
    result = run_cli(
        "--log-level",
        "DEBUG",
        "run",
        "--fail-fast",
        "--no-management",
        str(tmp_path / "debug_routes.py"),
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ChannelClosedError" in result.stderr  # the broker's fault, chained
    assert result.stderr.count("eip: error: route 'route1' (step 1) could not start") == 1


def test_graph_writes_svg_and_mermaid(tmp_path: Path) -> None:
    from lxml import etree

    svg = tmp_path / "routes.svg"
    done = run_cli("graph", "routes/", "-o", str(svg))
    assert done.returncode == 0, done.stderr
    root = etree.fromstring(svg.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    routes = root.xpath("//*[@data-route]")
    assert isinstance(routes, list)
    assert len(routes) > 10
    mermaid = run_cli("graph", "routes/", "--format", "mermaid")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD\n")
