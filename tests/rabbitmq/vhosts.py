"""A vhost of its own for each test that closes connections or changes broker state.

The broker is shared (other tests, a developer's own work): a test that runs
``close_all_connections`` on the default vhost cuts every client. :func:`broker_vhost` creates
``eip-test-<uuid>`` with full permissions for guest, yields a :class:`BrokerVhost` and deletes
the vhost afterwards (which also closes its connections and drops its queues)::

    async def test_x(broker_vhost: BrokerVhost) -> None:
        route_uri = f"rabbitmq:?queue=q&url={broker_vhost.url}"
        ...
        await broker_vhost.close_connections("test: broker restart")

Every ``rabbitmqctl`` call starts an Erlang VM (~1 s), so calls are few: the vhost and its
permissions are made by one ``rabbitmqctl eval`` (falling back to ``add_vhost`` +
``set_permissions`` if the broker's internal API ever changes), and the calls run in a thread
so the event loop (and the code under test) keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import subprocess
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from pytest_asyncio import fixture as async_fixture

from eip.components.rabbitmq._amqp import ChannelClosedError, connect

__all__ = [
    "BrokerVhost",
    "broker_vhost",
    "create_vhost",
    "create_vhost_sync",
    "delete_vhost",
    "delete_vhost_sync",
    "module_vhost",
    "rabbitmqctl",
    "rabbitmqctl_sync",
]

_ACTOR = "eip-tests"


def rabbitmqctl_sync(*args: str, timeout: float = 60.0) -> str:
    """Run ``rabbitmqctl -q ARGS``; returns stdout, raises with stderr on failure."""
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


async def rabbitmqctl(*args: str, timeout: float = 60.0) -> str:
    """:func:`rabbitmqctl_sync` in a thread, so the event loop keeps running."""
    return await asyncio.to_thread(rabbitmqctl_sync, *args, timeout=timeout)


def _erl_bin(text: str) -> str:
    """An Erlang binary literal of ``text`` (vhost names here are [a-z0-9-], kept strict)."""
    if not all(c.isalnum() or c in "-_." for c in text):
        raise ValueError(f"unsafe name for rabbitmqctl eval: {text!r}")
    return f'<<"{text}">>'


class BrokerVhost:
    """A vhost made for one test (or module): its name, URLs and broker-side faults."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<BrokerVhost {self.name}>"

    @property
    def url(self) -> str:
        """``amqp://guest:guest@127.0.0.1:5672/<vhost>``; safe inside an endpoint URI's
        ``url=`` option as it is (the name needs no escaping)."""
        return self.url_via(5672)

    def url_via(self, port: int, host: str = "127.0.0.1") -> str:
        """The vhost's URL through another port, e.g. a :class:`FaultProxy`'s."""
        return f"amqp://guest:guest@{host}:{port}/{urllib.parse.quote(self.name, safe='')}"

    async def close_connections(self, reason: str = "closed by test") -> None:
        """The broker closes every connection of this vhost (320 CONNECTION_FORCED, with
        ``reason``); connections elsewhere are untouched. Takes ~1 s."""
        await rabbitmqctl("close_all_connections", "-p", self.name, reason)

    async def delete_queue(self, name: str) -> int:
        """Delete queue ``name`` under its consumers (they get Basic.Cancel); returns how many
        messages it held. Done over AMQP (milliseconds), or ``rabbitmqctl`` for a queue held
        exclusively by another connection."""
        connection = await connect(self.url, client_name="eip-test-admin")
        try:
            channel = await connection.channel()
            return await channel.queue_delete(name)
        except ChannelClosedError as exc:
            if exc.code != 405:  # RESOURCE_LOCKED: exclusive to another connection
                raise
        finally:
            await connection.close()
        await rabbitmqctl("delete_queue", "-p", self.name, name)
        return 0

    async def close_channels(self, peer_port: int, channel: int | None = None) -> int:
        """Make the broker close the channels (or the one numbered ``channel``) of the
        connection whose peer port is ``peer_port`` (the client's local port, or a proxied
        connection's ``upstream_port``); returns how many. Each gets Channel.Close 406
        PRECONDITION_FAILED "unknown delivery tag", as after a ``consumer_timeout``: the
        broker's channel process is handed a Basic.Ack it never delivered. The connection and
        its other channels stay open. One ``rabbitmqctl eval`` (~1 s)."""
        prefix = f"127.0.0.1:{int(peer_port)} -> "
        suffix = f" ({int(channel)})" if channel is not None else ""
        expr = (
            f'P = <<"{prefix}">>, S = byte_size(P), X = <<"{suffix}">>, XS = byte_size(X), '
            "L = [Ch || Ch <- rabbit_channel:list(), "
            "case catch rabbit_channel:info(Ch, [name, vhost]) of "
            f"[{{name, <<P:S/binary, _/binary>> = N}}, {{vhost, {_erl_bin(self.name)}}}] -> "
            "XS =:= 0 orelse binary:longest_common_suffix([N, X]) =:= XS; "
            "_ -> false end], "
            "[rabbit_channel:do(Ch, {'basic.ack', 16#7fffffff, false}) || Ch <- L], "
            "length(L)."
        )
        return int((await rabbitmqctl("eval", expr)).strip())


def create_vhost_sync(prefix: str = "eip-test") -> BrokerVhost:
    """Create ``<prefix>-<uuid>`` with guest's full permissions (one Erlang VM start)."""
    vhost = BrokerVhost(f"{prefix}-{uuid.uuid4().hex[:12]}")
    name = _erl_bin(vhost.name)
    actor = _erl_bin(_ACTOR)
    expr = (
        f"ok = rabbit_vhost:add({name}, {actor}), "
        "ok = rabbit_auth_backend_internal:set_permissions("
        f'<<"guest">>, {name}, <<".*">>, <<".*">>, <<".*">>, {actor}), ok.'
    )
    try:
        rabbitmqctl_sync("eval", expr)
    except RuntimeError:  # the internal API moved: the documented commands (~1 s each)
        rabbitmqctl_sync("add_vhost", vhost.name)
        rabbitmqctl_sync("set_permissions", "-p", vhost.name, "guest", ".*", ".*", ".*")
    return vhost


async def create_vhost(prefix: str = "eip-test") -> BrokerVhost:
    return await asyncio.to_thread(create_vhost_sync, prefix)


def delete_vhost_sync(vhost: BrokerVhost) -> None:
    rabbitmqctl_sync("delete_vhost", vhost.name)


async def delete_vhost(vhost: BrokerVhost) -> None:
    await asyncio.to_thread(delete_vhost_sync, vhost)


@async_fixture
async def broker_vhost() -> AsyncIterator[BrokerVhost]:
    """A fresh vhost for this test, deleted afterwards (~2 s in all)."""
    vhost = await create_vhost()
    try:
        yield vhost
    finally:
        await delete_vhost(vhost)


@pytest.fixture(scope="module")
def module_vhost() -> Iterator[BrokerVhost]:
    """One vhost shared by a module's tests, for those that only fault their own connections
    (proxy faults, closing their own channels); cheaper than one per test."""
    vhost = create_vhost_sync("eip-test-module")
    try:
        yield vhost
    finally:
        delete_vhost_sync(vhost)
