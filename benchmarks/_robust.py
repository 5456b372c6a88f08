"""Rounds that survive a broker connection closed by someone else: retried once, and said so.

The broker is shared. Tests close connections in vhosts of their own, but a
``rabbitmqctl close_all_connections`` or a broker restart also hits a benchmark's connections,
and a round then dies halfway with ``320 CONNECTION_FORCED`` or a refused connection. Such a
round measured nothing, so :class:`BrokerRetry` runs it once more (after the broker accepts
connections again) and prints one line saying so::

    round 3, aio-pika best (a): the broker closed the connection (ConnectionClosed: 320
    CONNECTION_FORCED - ...); retrying the round once

A second such failure in the same round raises :class:`BenchmarkFailed`, whose message is the
one line ``python -m benchmarks`` prints (no traceback). Any other error is the benchmark's
own and propagates unchanged.

:func:`benchmarks._report.interleave` takes a ``retry=BrokerRetry(url)`` and runs every round
of every variant through it, so a benchmark opts in with one argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator

import aiormq.exceptions

from benchmarks._report import BenchmarkFailed
from eip.components.rabbitmq._amqp import ChannelClosedError, ConnectionClosedError, connect

__all__ = ["NOTE_RE", "BenchmarkFailed", "BrokerRetry", "broker_closed"]

NOTE_RE = re.compile(r"^(?:warm-up round|round \d+)\b.*; retrying the round once$")
"""Matches the note :class:`BrokerRetry` prints; ``benchmarks all`` collects these lines."""

_NOT_CLOSED = (
    aiormq.exceptions.AuthenticationError,  # a wrong password or vhost is no dropped connection
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.IncompatibleProtocolError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the exceptions of a group, and their causes and contexts, each once."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        for linked in (current.__context__, current.__cause__):
            if linked is not None:
                stack.append(linked)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = re.sub(r"\[Errno (\d+)\] ", r"\1 ", text)  # aiormq's way of showing the reply code
    text = re.sub(r" at 0x[0-9a-f]+>", ">", text)  # aiormq's channel repr
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_connection_loss(exc: BaseException) -> bool:
    if isinstance(exc, _NOT_CLOSED):
        return False
    if isinstance(exc, ConnectionClosedError):
        return exc.code != 200  # 200: closed by this process itself, a benchmark bug
    return isinstance(
        exc, aiormq.exceptions.AMQPConnectionError | ConnectionError | asyncio.IncompleteReadError
    )


def _is_channel_loss(exc: BaseException) -> bool:
    """A channel that died with its connection (aiormq says only "closed")."""
    if isinstance(exc, ChannelClosedError):
        return exc.code in (0, 320)
    return isinstance(exc, aiormq.exceptions.ChannelInvalidStateError)


def broker_closed(exc: BaseException, reply: str | None = None) -> str | None:
    """What the broker did, when ``exc`` (or an exception it carries) means that the broker
    closed or refused this process's connection; ``None`` for any other error.

    ``reply`` is the broker's Connection.Close reply seen meanwhile (``"320 CONNECTION_FORCED
    - ..."``), for an error that does not carry it: aiormq's ChannelInvalidStateError, raised
    by a call on a channel whose connection was closed, says only "closed".
    """
    chain = list(_chain(exc))
    for linked in chain:
        if _is_connection_loss(linked):
            verb = "refused" if isinstance(linked, ConnectionRefusedError) else "closed"
            return f"the broker {verb} the connection ({_one_line(linked)})"
    for linked in chain:
        if _is_channel_loss(linked):
            if reply is not None:
                return f"the broker closed the connection ({reply}; then {_one_line(linked)})"
            return f"the broker closed the channel ({_one_line(linked)})"
    return None


class _CloseReplies(logging.Handler):
    """Keeps the last Connection.Close reply that aiormq logs while a round runs (its only
    trace once later calls fail with a bare ChannelInvalidStateError)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if str(record.msg).startswith("Unexpected connection close from remote") and (
            isinstance(args, tuple) and len(args) == 3
        ):
            self.last = f"{args[1]} {args[2]}"

    @classmethod
    @contextlib.contextmanager
    def watching(cls) -> Iterator[_CloseReplies]:
        handler = cls()
        logger = logging.getLogger("aiormq.connection")
        logger.addHandler(handler)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)


class BrokerRetry:
    """Runs a round, and once more if the broker dropped its connection (see the module).

    ``url`` is the broker the round talks to: before the retry, a connection to it is tried
    until one opens (for up to ``wait`` seconds), so a restarting broker gets time to come
    back.
    """

    def __init__(self, url: str, *, wait: float = 60.0) -> None:
        self.url = url
        self.wait = wait

    async def __call__(self, attempt: Callable[[], Awaitable[float]], where: str) -> float:
        """``await attempt()``, retried once if :func:`broker_closed` says so; ``where`` names
        the round in the note, e.g. ``"round 3, eip"``."""
        with _CloseReplies.watching() as replies:
            try:
                return await attempt()
            except Exception as exc:
                reason = broker_closed(exc, replies.last)
                if reason is None:
                    raise
                print(f"{where}: {reason}; retrying the round once", flush=True)
        await self.until_broker_accepts()
        with _CloseReplies.watching() as replies:
            try:
                return await attempt()
            except Exception as exc:
                reason = broker_closed(exc, replies.last)
                if reason is None:
                    raise
                raise BenchmarkFailed(f"{where}: {reason}, again after one retry") from exc

    async def until_broker_accepts(self) -> None:
        """Return once a connection to :attr:`url` opens; BenchmarkFailed after ``wait`` s."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                connection = await connect(self.url, client_name="eip-bench-probe")
            except (OSError, ConnectionClosedError, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise BenchmarkFailed(
                        f"the broker at {self.url.rsplit('@', 1)[-1]} accepted no connection "
                        f"for {self.wait:g} s ({_one_line(exc)})"
                    ) from exc
                await asyncio.sleep(1.0)
            else:
                await connection.close()
                return
