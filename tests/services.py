"""The services the test suite talks to, and a quick check that each one answers.

The suite runs against a real RabbitMQ, PostgreSQL and Redis. Without one of them, dozens of
tests would each fail with a connection error deep in a client library, and a newcomer would
have to guess what is missing. ``tests/conftest.py`` calls :func:`missing_services` once at
session start and stops the run with :func:`report` instead: one line per service that does
not answer, naming it, its address, the environment variable that sets it, and the command
that starts it.

The check is a TCP connect (or a Unix socket connect) with a short timeout, nothing more: when
the services are up, all three cost about a millisecond together. It does not log in; a wrong
user or database still fails in the tests that use it, with the server's own message.

Addresses (defaults in :data:`SERVICES`):

- ``EIP_TEST_POSTGRES_DSN`` and ``EIP_TEST_REDIS_URL`` are read by ``tests/stores/backends.py``
  too: they set where the store tests connect.
- ``EIP_TEST_RABBITMQ_URL`` is read by this check only. The RabbitMQ tests use
  ``amqp://guest:guest@127.0.0.1:5672/`` as written in each of them (and make their own vhosts
  with ``rabbitmqctl``, which must be on the PATH); the variable exists so the check itself can
  be tested against a closed port.
"""

from __future__ import annotations

import os
import shutil
import socket
import urllib.parse
from dataclasses import dataclass

__all__ = ["SERVICES", "Address", "Service", "address_of", "missing_services", "probe", "report"]

PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class Service:
    """One service the suite needs: how it is named, configured and started."""

    name: str
    env: str
    default: str
    start: str  # the command that starts it on this machine ({port}: the configured port)
    default_port: int

    def url(self) -> str:
        return os.environ.get(self.env) or self.default


SERVICES: tuple[Service, ...] = (
    Service(
        "RabbitMQ",
        "EIP_TEST_RABBITMQ_URL",
        "amqp://guest:guest@127.0.0.1:5672/",
        "rabbitmq-server -detached",
        5672,
    ),
    Service(
        "PostgreSQL",
        "EIP_TEST_POSTGRES_DSN",
        "postgresql://postgres@127.0.0.1:5432/test",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        5432,
    ),
    Service(
        "Redis",
        "EIP_TEST_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        'redis-server --daemonize yes --bind 127.0.0.1 --port {port} --save "" --appendonly no',
        6379,
    ),
)


@dataclass(frozen=True, slots=True)
class Address:
    """Where a service listens: a TCP host and port, or a Unix socket path (``socket_path``)."""

    host: str
    port: int
    socket_path: str | None = None

    def __str__(self) -> str:
        if self.socket_path is not None:
            return self.socket_path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def address_of(service: Service, url: str) -> Address:
    """The address in ``url`` (a ``scheme://[user[:password]@]host[:port]/...`` URL); a Unix
    socket for ``unix://PATH`` (Redis) or ``?host=/DIR`` (PostgreSQL, libpq's convention).
    ValueError if ``url`` is no such URL."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or "://" not in url:
        raise ValueError(f"not a URL: expected {service.default} or the like")
    if parts.scheme == "unix":
        return Address("", 0, parts.path)
    port = parts.port or (5671 if parts.scheme == "amqps" else service.default_port)
    query_host = urllib.parse.parse_qs(parts.query).get("host", [""])[0]
    if query_host.startswith("/"):
        return Address("", port, f"{query_host}/.s.PGSQL.{port}")
    return Address(parts.hostname or query_host or "localhost", port)


def probe(address: Address, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if something accepts a connection at ``address`` within ``timeout`` s, else why
    not (the OS's reason: "connection refused", "timed out", ...)."""
    try:
        if address.socket_path is not None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(address.socket_path)
        else:
            socket.create_connection((address.host, address.port), timeout=timeout).close()
    except TimeoutError:
        return f"no answer in {timeout:g} s"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _problem(service: Service) -> str | None:
    """One line saying what is wrong with ``service`` and how to fix it, or None if it is up."""
    url = service.url()
    where = f"{service.env}={_redacted(url)}" if service.env in os.environ else service.env
    try:
        address = address_of(service, url)
    except ValueError as exc:
        return f"{service.name}: cannot read {where}: {exc}"
    why = probe(address)
    if why is not None:
        start = service.start.format(port=address.port or service.default_port)
        return (
            f"{service.name} is not reachable at {address} ({why}; set by {where}). "
            f"Start it with: {start}   (or set {service.env} to a running one)"
        )
    if service.name == "RabbitMQ" and shutil.which("rabbitmqctl") is None:
        return (
            "RabbitMQ answers, but rabbitmqctl is not on the PATH: the RabbitMQ tests make "
            "their own vhosts with it, so they need the broker's own tools on this machine"
        )
    return None


def missing_services(services: tuple[Service, ...] = SERVICES) -> list[str]:
    """One line per service in ``services`` that is down or misconfigured; [] if all answer."""
    return [line for service in services if (line := _problem(service)) is not None]


def report(problems: list[str]) -> str:
    """The message that stops the run: every problem, then how to start all three at once."""
    lines = [
        "the test suite needs RabbitMQ, PostgreSQL and Redis; "
        f"{len(problems)} of them {'is' if len(problems) == 1 else 'are'} not ready:",
        *(f"  - {problem}" for problem in problems),
        "`bash .ci/run` starts every service that is down, then runs the suite.",
    ]
    return "\n".join(lines)
