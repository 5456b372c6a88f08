"""Load drivers for the HTTP benchmarks: wrk when it is on the PATH, else a Python load
generator in its own process.

:func:`drive_wrk` is the one entry point the benchmarks call. :func:`load_driver` says which
driver it will use and why (wrk is a Debian package that ``.ci/run`` installs; a fresh machine
may lack it, and the benchmarks and their tests must still run there). Both drivers POST one
fixed body over keep-alive connections until a deadline and return a :class:`LoadResult`
naming the tool, and both raise :class:`LoadError` rather than report a figure that measured
failures: one probe POST must get a 2xx first, and any non-2xx reply or socket error during
the run fails it.

The Python generator (aiohttp, uvloop when installed) runs as ``python -m
benchmarks._http_load URL BODY_FILE CONNECTIONS SECONDS CONTENT_TYPE`` and prints one JSON
line; it is slower than wrk, so only ratios measured with one driver in one run compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp

__all__ = [
    "LoadDriver",
    "LoadError",
    "LoadResult",
    "check_result",
    "drive_python_load",
    "drive_wrk",
    "load_driver",
    "parse_wrk",
    "wrk_script",
]

_ROOT = Path(__file__).resolve().parent.parent
_TIMEOUT_S = 5  # per request, both drivers (wrk --timeout)

Tool = Literal["wrk", "python"]


# --------------------------------------------------------------------------- results


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
    tool: Tool

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


# --------------------------------------------------------------------------- choice of driver


@dataclass(frozen=True, slots=True)
class LoadDriver:
    """The driver :func:`drive_wrk` uses: its tool, the program it runs, and why (one line)."""

    tool: Tool
    program: str
    note: str


def load_driver(search_path: str | None = None) -> LoadDriver:
    """wrk if it is found on ``search_path`` (a PATH string; default ``$PATH``), else the
    Python load generator, run by this interpreter."""
    wrk = shutil.which("wrk", path=search_path)
    if wrk is not None:
        return LoadDriver("wrk", wrk, f"load from wrk ({wrk})")
    return LoadDriver(
        "python",
        sys.executable,
        "wrk not found on PATH: the load comes from a Python load generator (aiohttp) "
        "in its own process",
    )


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


async def _probe(url: str, body: bytes, content_type: str) -> None:
    """One POST before the run: a run against a URL that does not answer 2xx fails here, with
    its status, whichever driver runs (wrk would not count a 3xx as an error)."""
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
    search_path: str | None = None,
) -> LoadResult:
    """POST ``body`` (``content_type``) to ``url`` for ``seconds`` over ``connections``
    keep-alive connections: with wrk on ``threads`` threads (``wrk --latency``) if
    :func:`load_driver` finds it on ``search_path``, else with :func:`drive_python_load`.

    Raises :class:`LoadError` if the probe POST is not a 2xx, or on any non-2xx response or
    socket error (connect, read, write, timeout) during the run.
    """
    driver = load_driver(search_path)
    if driver.tool == "python":
        return await drive_python_load(
            url, body, connections=connections, seconds=seconds, content_type=content_type
        )
    await _probe(url, body, content_type)
    duration = max(1, math.ceil(seconds))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="eip-wrk-") as script:
        script.write(wrk_script(body, content_type))
        script.flush()
        command = [
            driver.program,
            f"--threads={max(1, min(threads, connections))}",
            f"--connections={connections}",
            f"--duration={duration}s",
            f"--timeout={_TIMEOUT_S}s",
            "--latency",
            f"--script={script.name}",
            url,
        ]
        code, out, err = await _run(command, timeout=duration + 30)
    if code != 0:
        raise LoadError(f"wrk exited with {code}:\n{out}\n{err}")
    return check_result(parse_wrk(out, connections), url)


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


# --------------------------------------------------------------------------- Python driver


async def drive_python_load(
    url: str,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    content_type: str = "application/json",
) -> LoadResult:
    """The same load as :func:`drive_wrk`, from an aiohttp load generator in a separate process
    (``connections`` concurrent requests until the deadline). Raises :class:`LoadError` on
    failures, like :func:`drive_wrk`.
    """
    await _probe(url, body, content_type)
    with tempfile.NamedTemporaryFile("wb", suffix=".body", prefix="eip-load-") as payload:
        payload.write(body)
        payload.flush()
        command = [
            sys.executable,
            "-m",
            "benchmarks._http_load",
            url,
            payload.name,
            str(connections),
            str(seconds),
            content_type,
        ]
        code, out, err = await _run(command, timeout=seconds + 30)
    if code != 0:
        raise LoadError(f"the Python load generator exited with {code}:\n{out}\n{err}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise LoadError(f"no result from the Python load generator:\n{out}\n{err}")
    data = json.loads(lines[-1])
    return check_result(LoadResult(**data, connections=connections, tool="python"), url)


async def _python_load(
    url: str, body: bytes, connections: int, seconds: float, content_type: str
) -> dict[str, float]:
    latencies: list[float] = []
    non_2xx = 0
    errors = 0
    headers = {"Content-Type": content_type}
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        post = session.post
        clock = time.perf_counter
        began = clock()
        deadline = began + seconds

        async def worker() -> None:
            nonlocal non_2xx, errors
            while (start := clock()) < deadline:
                try:
                    async with post(
                        url, data=body, headers=headers, allow_redirects=False
                    ) as response:
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
    """``python -m benchmarks._http_load URL BODY_FILE CONNECTIONS SECONDS [CONTENT_TYPE]``:
    one JSON line with the counts (no probe: :func:`drive_python_load` probes first)."""
    url, body_file, connections, seconds, *rest = argv
    content_type = rest[0] if rest else "application/json"
    body = Path(body_file).read_bytes()
    run = _python_load(url, body, int(connections), float(seconds), content_type)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run)
    else:
        result = uvloop.run(run)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    _python_load_main(sys.argv[1:])
