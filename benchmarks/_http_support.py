"""The HTTP benchmarks' harness: a target server in its own process, load drivers, baselines.

- :func:`start_server_process` runs an ASGI app (``"module:attr"``) under uvicorn with
  httptools and uvloop in a **subprocess** on 127.0.0.1 and waits until it accepts
  connections; :meth:`ServerProcess.stop` ends it (terminate, then kill after a timeout).
- :func:`drive_wrk` (from :mod:`benchmarks._http_load`) loads a URL with a POST of a fixed
  body and returns a :class:`LoadResult`: requests/s, latency p50/p99, errors, and the tool. It
  uses ``wrk`` when it is on the PATH, else a Python load generator (aiohttp) in a separate
  process (:func:`load_driver` says which, and why). It raises :class:`LoadError` if any
  request failed, so a benchmark cannot silently measure failures.
- :func:`drive_client` runs N workers in *this* process, each calling ``call()`` in a loop
  until a deadline, and returns calls/s: eip's HTTP producer against :func:`aiohttp_caller`,
  the raw aiohttp baseline.

The server and the load generator never share a process with the code measured, but on this
2-core machine they share the cores: only ratios measured side by side in one run count.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import aiohttp
import httpx

from benchmarks._http_load import (
    LoadDriver,
    LoadError,
    LoadResult,
    check_result,
    drive_python_load,
    drive_wrk,
    load_driver,
    parse_wrk,
    wrk_script,
)

__all__ = [
    "HOST",
    "LoadDriver",
    "LoadError",
    "LoadResult",
    "ServerProcess",
    "aiohttp_caller",
    "check_result",
    "drive_client",
    "drive_python_load",
    "drive_wrk",
    "free_port",
    "load_driver",
    "parse_wrk",
    "start_module_process",
    "start_server_process",
    "wrk_script",
]

HOST = "127.0.0.1"
_ROOT = Path(__file__).resolve().parent.parent
_JSON_HEADERS = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------- server process


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(slots=True)
class ServerProcess:
    """A uvicorn subprocess serving one ASGI app on 127.0.0.1. Use :meth:`stop` (or ``with``)."""

    app_path: str
    port: int
    process: subprocess.Popen[bytes]
    _log: IO[bytes]

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        """What the server wrote to stdout/stderr so far (warnings and errors only)."""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        self._log.seek(0, os.SEEK_END)
        return text

    def stop(self, timeout: float = 5.0) -> int:
        """Terminate (uvicorn shuts down gracefully), kill after ``timeout`` s; the exit code.

        Safe to call more than once.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if not self._log.closed:
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _uvicorn_command(app_path: str, port: int, factory: bool) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app_path,
        "--app-dir",
        str(_ROOT),
        "--host",
        HOST,
        "--port",
        str(port),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if factory:
        command.append("--factory")
    return command


def _accepts(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
    except OSError:
        return False
    return True


def start_server_process(
    app_path: str,
    port: int | None = None,
    *,
    factory: bool = False,
    ready_timeout: float = 15.0,
) -> ServerProcess:
    """Run ``app_path`` (``"module:attr"``, importable from the repository root) under uvicorn
    (httptools, uvloop, no access log) in a subprocess on 127.0.0.1, and return once it accepts
    connections.

    ``port=None`` picks a free port (and retries with another if that one was taken in the
    meantime). ``factory=True`` means ``attr`` is a function returning the app. Raises
    RuntimeError, with the server's output, if it exits or is not ready in ``ready_timeout`` s.
    """
    attempts = 3 if port is None else 1
    failure = ""
    for _ in range(attempts):
        chosen = free_port() if port is None else port
        log = tempfile.TemporaryFile()  # noqa: SIM115 (owned by the ServerProcess)
        process = subprocess.Popen(
            _uvicorn_command(app_path, chosen, factory),
            cwd=_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = ServerProcess(app_path, chosen, process, log)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and server.running():
            if _accepts(chosen):
                return server
            time.sleep(0.02)
        why = "exited" if not server.running() else f"not ready after {ready_timeout:g} s"
        output = server.log()
        code = server.stop()
        failure = f"uvicorn for {app_path} on port {chosen}: {why} (code {code})\n{output}"
        if "address already in use" not in output.lower():
            break
    raise RuntimeError(failure)


def start_module_process(
    module: str, probe_path: str, probe_body: bytes, content_type: str
) -> ServerProcess:
    """``python -m <module> <port>`` (a server of eip's own, e.g. ``benchmarks.
    _http_eip_server``) on a free port, returned once a POST of ``probe_body`` to
    ``probe_path`` gets a 2xx; RuntimeError with its output if it never does."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (owned by the ServerProcess)
    process = subprocess.Popen(
        [sys.executable, "-m", module, str(port)],
        cwd=_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ServerProcess(module, port, process, log)
    deadline = time.monotonic() + 20
    headers = {"content-type": content_type}
    while time.monotonic() < deadline and server.running():
        try:
            answer = httpx.post(
                f"{server.url}{probe_path}", content=probe_body, headers=headers, timeout=1
            )
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        if answer.is_success:
            return server
        break
    output = server.log()
    server.stop()
    raise RuntimeError(f"{module} did not start and answer:\n{output}")


# --------------------------------------------------------------------------- in-process client

Call = Callable[[], Awaitable[None]]


async def drive_client(call: Call, *, concurrency: int, seconds: float) -> float:
    """Run ``concurrency`` workers in this process, each awaiting ``call()`` in a loop until
    ``seconds`` have passed; return completed calls per second (over the time until the last
    worker finished its last call). An exception from ``call()`` stops the run and propagates:
    a failed call is never counted.
    """
    done = 0
    clock = time.perf_counter

    async def worker(deadline: float) -> None:
        nonlocal done
        while clock() < deadline:
            await call()
            done += 1

    began = clock()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker(began + seconds))
    return done / (clock() - began)


async def aiohttp_caller(
    url: str, body: bytes, *, limit: int = 100
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """The raw aiohttp baseline for the producer: one ``ClientSession`` (connector limit
    ``limit``), and a call that POSTs ``body`` as application/json, reads the whole reply and
    raises unless the status is 200. Returns ``(call, close)``.
    """
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
    post = session.post
    headers = dict(_JSON_HEADERS)

    async def call() -> None:
        async with post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"POST {url}: status {response.status}")

    return call, session.close
