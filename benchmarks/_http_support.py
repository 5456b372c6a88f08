"""The HTTP benchmarks' harness: a target server in its own process, load drivers, baselines.

- :func:`start_server_process` runs an ASGI app (``"module:attr"``) under uvicorn with
  httptools and uvloop in a **subprocess** on 127.0.0.1 and waits until it accepts
  connections; :meth:`ServerProcess.stop` ends it (terminate, then kill after a timeout).
- :func:`drive_wrk` loads a URL with ``wrk`` (POST of a fixed JSON body) and returns a
  :class:`LoadResult`: requests/s, latency p50/p99, errors. It raises :class:`LoadError` if
  any request failed, so a benchmark cannot silently measure failures. Without ``wrk`` it
  falls back to a Python load generator (aiohttp) run in a separate process.
- :func:`drive_client` runs N workers in *this* process, each calling ``call()`` in a loop
  until a deadline, and returns calls/s: eip's HTTP producer against :func:`aiohttp_caller`,
  the raw aiohttp baseline.

The server and the load generator never share a process with the code measured, but on this
2-core machine they share the cores: only ratios measured side by side in one run count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import aiohttp
import httpx

__all__ = [
    "HOST",
    "LoadError",
    "LoadResult",
    "ServerProcess",
    "aiohttp_caller",
    "check_result",
    "drive_client",
    "drive_python_load",
    "drive_wrk",
    "free_port",
    "parse_wrk",
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


# --------------------------------------------------------------------------- load results


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one load run measured. Latencies are in milliseconds."""

    requests_per_s: float
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    connections: int
    tool: Literal["wrk", "python"]

    @property
    def ok(self) -> bool:
        return self.non_2xx == 0 and self.socket_errors == 0 and self.requests > 0


class LoadError(RuntimeError):
    """A load run saw failed requests (or none at all): its figure would measure failures."""

    def __init__(self, message: str, result: LoadResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def check_result(result: LoadResult, url: str) -> LoadResult:
    """``result``, or :class:`LoadError` if it saw a failed request or no request at all."""
    if not result.ok:
        raise LoadError(
            f"{result.tool} against {url}: {result.requests} requests, {result.non_2xx} "
            f"non-2xx responses, {result.socket_errors} socket errors",
            result,
        )
    return result


async def _run(command: Sequence[str], timeout: float) -> tuple[int, str, str]:
    """Run a command; its exit code, stdout and stderr. Killed (and TimeoutError) on timeout."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# --------------------------------------------------------------------------- wrk

_WRK_MARK = "EIPWRK "

# wrk's own counters: errors.status counts statuses > 399. The response() hook that would see
# every status makes wrk parse every response, so it is not used; drive_wrk probes the URL
# once first and requires a 2xx instead.
_WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = "%(body)s"
wrk.headers["Content-Type"] = "%(content_type)s"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"status":%%d,"connect":%%d,"read":%%d,"write":%%d,"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def _lua_string(data: bytes) -> str:
    """``data`` as the inside of a double-quoted Lua string (``\\ddd`` for anything unsafe)."""
    out = []
    for byte in data:
        if 0x20 <= byte < 0x7F and byte not in (0x22, 0x5C):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def wrk_script(body: bytes, content_type: str = "application/json") -> str:
    """The Lua script :func:`drive_wrk` runs: POST ``body``, report in ``done()``."""
    return _WRK_SCRIPT % {
        "body": _lua_string(body),
        "mark": _WRK_MARK,
        "content_type": content_type,
    }


def parse_wrk(output: str, connections: int) -> LoadResult:
    """The :class:`LoadResult` in the line the script's ``done()`` printed."""
    for line in output.splitlines():
        if line.startswith(_WRK_MARK):
            data = json.loads(line[len(_WRK_MARK) :])
            break
    else:
        raise LoadError(f"no result line in wrk's output:\n{output}")
    seconds = data["duration_us"] / 1e6
    return LoadResult(
        requests_per_s=data["requests"] / seconds if seconds > 0 else 0.0,
        requests=data["requests"],
        seconds=seconds,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non_2xx=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        connections=connections,
        tool="wrk",
    )


async def _probe(url: str, body: bytes, content_type: str) -> None:
    """One POST before the run: a 3xx (which wrk does not count as an error) fails here."""
    headers = {"Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers, allow_redirects=False) as response,
    ):
        await response.read()
        if not 200 <= response.status < 300:
            raise LoadError(f"probe POST {url}: status {response.status}")


async def drive_wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    content_type: str = "application/json",
) -> LoadResult:
    """POST ``body`` (``content_type``) to ``url`` with wrk for ``seconds`` over ``connections``
    keep-alive connections on ``threads`` threads (``wrk --latency``).

    Raises :class:`LoadError` on any non-2xx response or socket error (connect, read, write,
    timeout). Without ``wrk`` on the PATH it runs :func:`drive_python_load` instead.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        return await drive_python_load(url, body, connections=connections, seconds=seconds)
    await _probe(url, body, content_type)
    duration = max(1, math.ceil(seconds))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="eip-wrk-") as script:
        script.write(wrk_script(body, content_type))
        script.flush()
        command = [
            wrk,
            f"--threads={max(1, min(threads, connections))}",
            f"--connections={connections}",
            f"--duration={duration}s",
            "--timeout=5s",
            "--latency",
            f"--script={script.name}",
            url,
        ]
        code, out, err = await _run(command, timeout=duration + 30)
    if code != 0:
        raise LoadError(f"wrk exited with {code}:\n{out}\n{err}")
    return check_result(parse_wrk(out, connections), url)


# --------------------------------------------------------------------------- Python fallback


async def drive_python_load(
    url: str, body: bytes, *, connections: int, seconds: float
) -> LoadResult:
    """The same load as :func:`drive_wrk`, from an aiohttp load generator in a separate process
    (``connections`` concurrent requests until the deadline). Raises :class:`LoadError` on
    failures, like :func:`drive_wrk`.
    """
    with tempfile.NamedTemporaryFile("wb", suffix=".json", prefix="eip-load-") as payload:
        payload.write(body)
        payload.flush()
        command = [
            sys.executable,
            "-m",
            "benchmarks._http_support",
            url,
            payload.name,
            str(connections),
            str(seconds),
        ]
        code, out, err = await _run(command, timeout=seconds + 30)
    if code != 0:
        raise LoadError(f"the Python load generator exited with {code}:\n{out}\n{err}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise LoadError(f"no result from the Python load generator:\n{out}\n{err}")
    data = json.loads(lines[-1])
    return check_result(LoadResult(**data, connections=connections, tool="python"), url)


async def _python_load(url: str, body: bytes, connections: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    non_2xx = 0
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        post = session.post
        clock = time.perf_counter
        began = clock()
        deadline = began + seconds

        async def worker() -> None:
            nonlocal non_2xx, errors
            while (start := clock()) < deadline:
                try:
                    async with post(url, data=body, headers=_JSON_HEADERS) as response:
                        await response.read()
                        if not 200 <= response.status < 300:
                            non_2xx += 1
                except (TimeoutError, aiohttp.ClientError, OSError):
                    errors += 1
                    continue
                latencies.append(clock() - start)

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = clock() - began
    requests = len(latencies)  # every response, 2xx or not
    p50 = p99 = 0.0
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    elif latencies:
        p50 = p99 = latencies[0]
    return {
        "requests_per_s": requests / elapsed,
        "requests": requests,
        "seconds": elapsed,
        "p50_ms": p50 * 1000,
        "p99_ms": p99 * 1000,
        "non_2xx": non_2xx,
        "socket_errors": errors,
    }


def _python_load_main(argv: Sequence[str]) -> None:
    """``python -m benchmarks._http_support URL BODY_FILE CONNECTIONS SECONDS``: one JSON line."""
    url, body_file, connections, seconds = argv
    body = Path(body_file).read_bytes()
    run = _python_load(url, body, int(connections), float(seconds))
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run)
    else:
        result = uvloop.run(run)
    print(json.dumps(result), flush=True)


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


if __name__ == "__main__":
    _python_load_main(sys.argv[1:])
