"""The session-start check of tests/conftest.py: with a service down, ``pytest`` stops before
any test, exits non-zero and says which service, where, and how to start it.

The check runs in a child pytest on a one-test file (``-p tests.conftest`` loads the same
hook the suite uses), with the addresses pointed at a port that is bound but not listening,
so a connect there is refused for sure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import SERVICES, Address, address_of, missing_services, probe, report
from tests.stores import backends

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound by this test and never listened on: connects are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


Run = subprocess.CompletedProcess[str]


def _child_pytest(tmp_path: Path, env: dict[str, str]) -> tuple[Run, Path]:
    """pytest with the suite's conftest on a file whose one test writes a marker file."""
    marker = tmp_path / "ran"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_tiny.py").write_text(
        "from pathlib import Path\n\n\n"
        f"def test_tiny() -> None:\n    Path({str(marker)!r}).write_text('yes')\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
            "-q",
            str(tmp_path / "test_tiny.py"),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, marker


def test_a_run_with_every_service_down_stops_and_says_how_to_start_each(
    tmp_path: Path, closed_port: int
) -> None:
    at = f"127.0.0.1:{closed_port}"
    done, marker = _child_pytest(
        tmp_path,
        {
            "EIP_TEST_RABBITMQ_URL": f"amqp://guest:s3cret@{at}/",
            "EIP_TEST_POSTGRES_DSN": f"postgresql://postgres@{at}/test",
            "EIP_TEST_REDIS_URL": f"redis://{at}/0",
        },
    )
    output = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert not marker.exists()  # no test ran
    assert "3 of them are not ready" in output
    lines = [line for line in output.splitlines() if line.startswith("  - ")]
    assert len(lines) == 3, output
    rabbitmq, postgres, redis = lines
    assert f"RabbitMQ is not reachable at {at} (connection refused" in rabbitmq
    assert f"EIP_TEST_RABBITMQ_URL=amqp://guest:***@{at}/" in rabbitmq
    assert "Start it with: rabbitmq-server -detached" in rabbitmq
    assert f"PostgreSQL is not reachable at {at}" in postgres
    assert f"EIP_TEST_POSTGRES_DSN=postgresql://postgres@{at}/test" in postgres
    assert "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start" in postgres
    assert f"Redis is not reachable at {at}" in redis
    assert f"redis-server --daemonize yes --bind 127.0.0.1 --port {closed_port} " in redis
    assert "`bash .ci/run` starts every service that is down" in output
    assert "s3cret" not in output
    assert "skipped" not in output


def test_one_service_down_is_the_only_one_named(
    monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    monkeypatch.setenv("EIP_TEST_REDIS_URL", f"redis://127.0.0.1:{closed_port}/0")
    problems = missing_services()
    assert len(problems) == 1
    assert problems[0].startswith(f"Redis is not reachable at 127.0.0.1:{closed_port} ")
    assert report(problems).splitlines()[0].endswith("; 1 of them is not ready:")


def test_with_the_services_up_the_run_goes_on(tmp_path: Path) -> None:
    done, marker = _child_pytest(tmp_path, {})
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert marker.read_text() == "yes"


def test_the_check_is_quick_when_the_services_are_up() -> None:
    began = time.perf_counter()
    problems = missing_services()
    elapsed = time.perf_counter() - began
    assert problems == []
    # ~5 ms measured here; the bound catches a sleep or a timeout on the way, not jitter
    assert elapsed < 0.25, f"{elapsed * 1000:.1f} ms"


def test_rabbitmqctl_is_needed_on_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    problems = missing_services()
    assert problems == [
        "RabbitMQ answers, but rabbitmqctl is not on the PATH: the RabbitMQ tests make their "
        "own vhosts with it, so they need the broker's own tools on this machine"
    ]


def test_the_defaults_are_the_ones_the_store_tests_use() -> None:
    by_env = {service.env: service.url() for service in SERVICES}
    assert by_env["EIP_TEST_POSTGRES_DSN"] == backends.PG_DSN
    assert by_env["EIP_TEST_REDIS_URL"] == backends.REDIS_URL
    rabbitmq, postgres, redis = SERVICES
    assert rabbitmq.default == "amqp://guest:guest@127.0.0.1:5672/"
    assert postgres.default == "postgresql://postgres@127.0.0.1:5432/test"
    assert redis.default == "redis://127.0.0.1:6379/0"


def test_addresses_are_read_from_each_kind_of_url() -> None:
    rabbitmq, postgres, redis = SERVICES
    assert address_of(rabbitmq, "amqp://u:p@broker:5673/vh") == Address("broker", 5673)
    assert address_of(rabbitmq, "amqps://broker/") == Address("broker", 5671)
    assert address_of(postgres, "postgresql://postgres@/test") == Address("localhost", 5432)
    assert address_of(postgres, "postgres://u@[::1]:6000/db") == Address("::1", 6000)
    assert address_of(postgres, "postgresql:///test?host=/run/postgresql") == Address(
        "", 5432, "/run/postgresql/.s.PGSQL.5432"
    )
    assert address_of(redis, "unix:///tmp/redis.sock") == Address("", 0, "/tmp/redis.sock")
    assert str(Address("::1", 6000)) == "[::1]:6000"
    with pytest.raises(ValueError, match="not a URL"):
        address_of(redis, "127.0.0.1:6379")


def test_probe_names_the_reason(tmp_path: Path, closed_port: int) -> None:
    assert probe(Address("127.0.0.1", closed_port)) == "connection refused"
    assert probe(Address("", 0, str(tmp_path / "none.sock"))) == "no such file or directory"
    assert probe(address_of(SERVICES[2], SERVICES[2].url())) is None
