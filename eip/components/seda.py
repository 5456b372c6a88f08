"""``seda:name`` - a bounded in-memory queue between routes, with N concurrent consumers.

The queue never grows without bound: when it is full, a send waits (back-pressure) until there
is room, or fails at once with ``block_when_full=false``, or after ``offer_timeout`` seconds.
A send puts a *copy* of the exchange on the queue (as Camel does), carrying the trace context.
By default the sender continues at once; with ``wait_for_completion=true`` (or an in-out
exchange) it waits for the consuming route and takes over its reply or its exception.

Messages on a seda queue live in memory only, unless the queue is **durable**
(``seda:orders?durable=true&path=data/seda.db``): then a send returns once the message is
committed to that SQLite file, and it is deleted only after the consuming exchange completed,
so a crash redelivers it at the next start (:mod:`eip.components.seda_durable`). Only headers
and a body of bytes, str, None or JSON-like values cross a durable queue. ``eip check`` and the
context's start warn when a route that acknowledges its source (RabbitMQ, file, HTTP in-only)
hands messages to a memory queue without waiting (:mod:`eip.runtime.memory_hops`). On shutdown
the context lets the queue drain before the consumers stop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from eip.components.base import (
    Component,
    Consumer,
    EndpointSpec,
    Producer,
    process_exchange,
)
from eip.components.typed import make_spec, typed_spec
from eip.errors import EndpointError, ExchangeTimeoutError
from eip.message import Exchange, ExchangePattern

if TYPE_CHECKING:
    from eip.components.seda_durable import DurableQueue, DurableStores
    from eip.runtime.route import Route

__all__ = ["SedaComponent", "SedaSpec", "seda"]


class SedaSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "seda"
    name: str
    size: int = 1000
    concurrent_consumers: int = 1
    wait_for_completion: bool = False
    block_when_full: bool = True
    offer_timeout: float = 0.0
    #: Keep the queue in the SQLite file ``path`` (at-least-once across the hop).
    durable: bool = False
    path: str = ""
    #: SQLite's ``synchronous`` for a durable file: ``normal`` survives a killed process,
    #: ``full`` also a power loss (an fsync per commit).
    synchronous: str = "normal"


@typed_spec(SedaSpec)
def seda(
    name: str,
    *,
    size: int = 1000,
    concurrent_consumers: int = 1,
    wait_for_completion: bool = False,
    block_when_full: bool = True,
    offer_timeout: float = 0.0,
    durable: bool = False,
    path: str = "",
    synchronous: Literal["normal", "full"] = "normal",
) -> SedaSpec:
    """Typed form of ``seda:name?...``."""
    return make_spec(
        SedaSpec,
        {
            "name": name,
            "size": size,
            "concurrent_consumers": concurrent_consumers,
            "wait_for_completion": wait_for_completion,
            "block_when_full": block_when_full,
            "offer_timeout": offer_timeout,
            "durable": durable,
            "path": path,
            "synchronous": synchronous,
        },
    )


class SedaComponent(Component):
    scheme: ClassVar[str] = "seda"
    spec_type: ClassVar[type[EndpointSpec]] = SedaSpec
    internal: ClassVar[bool] = True

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.queues: dict[str, asyncio.Queue[Exchange]] = {}
        self._sizes: dict[str, int] = {}
        self._storage: dict[str, str] = {}  # name -> "" (memory) or the durable file
        self._synchronous: dict[str, str] = {}  # durable file -> its synchronous
        self._durable: DurableStores | None = None

    def validate(self, spec: Any) -> None:
        if not spec.name:
            raise ValueError("seda endpoints need a name: seda:<name>")
        if spec.size < 1:
            raise ValueError(f"size must be >= 1, got {spec.size}")
        if spec.concurrent_consumers < 1:
            raise ValueError(f"concurrent_consumers must be >= 1, got {spec.concurrent_consumers}")
        known = self._sizes.setdefault(spec.name, spec.size)
        if known != spec.size:
            raise ValueError(
                f"seda:{spec.name} is declared with size {known} elsewhere; sizes must agree"
            )
        self._validate_storage(spec)

    def _validate_storage(self, spec: SedaSpec) -> None:
        if spec.durable and not spec.path:
            raise ValueError(
                "durable=true needs path=<SQLite file> (seda:orders?durable=true&path=data/seda.db)"
            )
        if spec.path and not spec.durable:
            raise ValueError(f"path={spec.path} is the file of a durable queue: add durable=true")
        if spec.synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be normal or full, got {spec.synchronous!r}")
        where = os.path.abspath(spec.path) if spec.durable else ""
        known = self._storage.setdefault(spec.name, where)
        if known != where:
            said = f"durable in {known}" if known else "in memory (no durable=true)"
            raise ValueError(
                f"seda:{spec.name} is declared {said} elsewhere; every endpoint of one queue "
                "must agree on durable and path"
            )
        if where and self._synchronous.setdefault(where, spec.synchronous) != spec.synchronous:
            raise ValueError(
                f"{spec.path} is declared with synchronous={self._synchronous[where]} elsewhere; "
                "the queues of one file must agree on synchronous"
            )

    async def durable_queue(self, spec: SedaSpec) -> DurableQueue:
        """The durable queue of ``spec``, its file opened (and its rows recovered) on first use."""
        if self._durable is None:
            from eip.components.seda_durable import DurableStores

            self._durable = DurableStores()
        return await self._durable.queue(spec)

    def durable_queues(self) -> dict[str, DurableQueue]:
        """The durable queues opened so far, by name."""
        return dict(self._durable.queues) if self._durable is not None else {}

    async def stop(self) -> None:
        durable, self._durable = self._durable, None
        if durable is not None:
            await durable.close()

    def queue(self, name: str) -> asyncio.Queue[Exchange]:
        queue = self.queues.get(name)
        if queue is None:
            queue = asyncio.Queue(self._sizes.get(name, 1000))
            self.queues[name] = queue
        return queue

    def create_producer(self, spec: Any) -> Producer:
        if spec.durable:
            from eip.components.seda_durable import DurableSedaProducer

            return DurableSedaProducer(self, spec)
        return SedaProducer(self, spec)

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        if spec.durable:
            from eip.components.seda_durable import DurableSedaConsumer

            return DurableSedaConsumer(self, spec, route)
        return SedaConsumer(self, spec, route)

    def acknowledges_source(self, spec: Any) -> bool:
        """A durable queue's row is deleted when its exchange completes."""
        return bool(spec.durable)


async def offer(queue: asyncio.Queue[Any], item: Any, spec: SedaSpec) -> None:
    """Put ``item`` on a full queue as ``spec`` says: fail at once (``block_when_full=false``),
    wait up to ``offer_timeout`` seconds, or wait for room."""
    if not spec.block_when_full:
        raise EndpointError(
            f"seda:{spec.name} is full ({queue.maxsize} messages)", endpoint=f"seda:{spec.name}"
        )
    if spec.offer_timeout > 0:
        try:
            await asyncio.wait_for(queue.put(item), spec.offer_timeout)
        except TimeoutError:
            raise ExchangeTimeoutError(
                f"seda:{spec.name} stayed full for {spec.offer_timeout}s",
                endpoint=f"seda:{spec.name}",
            ) from None
    else:
        await queue.put(item)


class SedaProducer(Producer):
    def __init__(self, component: SedaComponent, spec: SedaSpec) -> None:
        self.component = component
        self.spec = spec
        self._queue: asyncio.Queue[Exchange] | None = None

    def process(self, exchange: Exchange) -> Any:
        queue = self._queue
        if queue is None:
            queue = self._queue = self.component.queue(self.spec.name)
        copy = exchange.copy()
        if self.spec.wait_for_completion or exchange.pattern is ExchangePattern.IN_OUT:
            return self._send_and_wait(queue, exchange, copy)
        try:
            queue.put_nowait(copy)
        except asyncio.QueueFull:
            return self._offer(queue, copy)
        return None

    async def _offer(self, queue: asyncio.Queue[Exchange], copy: Exchange) -> None:
        await offer(queue, copy, self.spec)

    async def _send_and_wait(
        self, queue: asyncio.Queue[Exchange], exchange: Exchange, copy: Exchange
    ) -> None:
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settle(_ex: Exchange) -> None:
            if not finished.done():
                finished.set_result(None)

        copy.on_completion(on_success=settle, on_failure=settle)
        try:
            queue.put_nowait(copy)
        except asyncio.QueueFull:
            await self._offer(queue, copy)
        await finished
        if copy.exception is not None:
            raise copy.exception
        exchange.message = copy.message


class SedaConsumer(Consumer):
    """``concurrent_consumers`` workers taking exchanges off the queue.

    ``stop`` cancels the idle workers (a cancelled ``get`` leaves the message in the queue);
    a busy one routes its exchange to the end and then exits, so stopping (or suspending) the
    route never cuts an exchange short, and what is still queued waits for ``start``."""

    stops_after_drain: ClassVar[bool] = True

    def __init__(self, component: SedaComponent, spec: SedaSpec, route: Route) -> None:
        super().__init__(route)
        self.component = component
        self.spec = spec
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None] | None] = set()
        self._stopping = False

    @property
    def backlog(self) -> int:
        queue = self.component.queues.get(self.spec.name)
        return queue.qsize() if queue is not None else 0

    async def start(self) -> None:
        queue = await self._open()
        self._stopping = False
        self._workers = [w for w in self._workers if not w.done()]  # busy ones carry on
        self._workers += [
            asyncio.create_task(self._work(queue), name=f"seda:{self.spec.name}#{n}")
            for n in range(len(self._workers), self.spec.concurrent_consumers)
        ]

    async def _open(self) -> asyncio.Queue[Any]:
        """The queue the workers take from."""
        return self.component.queue(self.spec.name)

    def _handle(self, item: Any) -> Awaitable[bool]:
        """Route one item taken off the queue (here: the exchange itself)."""
        return process_exchange(self.route, item)

    async def _work(self, queue: asyncio.Queue[Any]) -> None:
        busy, me, handle = self._busy, asyncio.current_task(), self._handle
        while not self._stopping:
            item = await queue.get()
            busy.add(me)
            try:
                await handle(item)
            finally:
                busy.discard(me)

    async def stop(self) -> None:
        self._stopping = True
        idle = [worker for worker in self._workers if worker not in self._busy]
        for worker in idle:
            worker.cancel()
        await asyncio.gather(*idle, return_exceptions=True)
        self._workers = [w for w in self._workers if not w.done()]

    async def abort(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
