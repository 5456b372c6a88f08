"""``seda:name`` - a bounded in-memory queue between routes, with N concurrent consumers.

The queue never grows without bound: when it is full, a send waits (back-pressure) until there
is room, or fails at once with ``block_when_full=false``, or after ``offer_timeout`` seconds.
A send puts a *copy* of the exchange on the queue (as Camel does), carrying the trace context.
By default the sender continues at once; with ``wait_for_completion=true`` (or an in-out
exchange) it waits for the consuming route and takes over its reply or its exception.

Messages on a seda queue live in memory only: use a broker endpoint where a crash must not lose
them. On shutdown the context lets the queue drain before the consumers stop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

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


@typed_spec(SedaSpec)
def seda(
    name: str,
    *,
    size: int = 1000,
    concurrent_consumers: int = 1,
    wait_for_completion: bool = False,
    block_when_full: bool = True,
    offer_timeout: float = 0.0,
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

    def queue(self, name: str) -> asyncio.Queue[Exchange]:
        queue = self.queues.get(name)
        if queue is None:
            queue = asyncio.Queue(self._sizes.get(name, 1000))
            self.queues[name] = queue
        return queue

    def create_producer(self, spec: Any) -> Producer:
        return SedaProducer(self, spec)

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        return SedaConsumer(self, spec, route)


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
        if not self.spec.block_when_full:
            raise EndpointError(
                f"seda:{self.spec.name} is full ({queue.maxsize} messages)",
                endpoint=f"seda:{self.spec.name}",
            )
        if self.spec.offer_timeout > 0:
            try:
                await asyncio.wait_for(queue.put(copy), self.spec.offer_timeout)
            except TimeoutError:
                raise ExchangeTimeoutError(
                    f"seda:{self.spec.name} stayed full for {self.spec.offer_timeout}s",
                    endpoint=f"seda:{self.spec.name}",
                ) from None
        else:
            await queue.put(copy)

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
        queue = self.component.queue(self.spec.name)
        self._stopping = False
        self._workers = [w for w in self._workers if not w.done()]  # busy ones carry on
        self._workers += [
            asyncio.create_task(self._work(queue), name=f"seda:{self.spec.name}#{n}")
            for n in range(len(self._workers), self.spec.concurrent_consumers)
        ]

    async def _work(self, queue: asyncio.Queue[Exchange]) -> None:
        route, busy, me = self.route, self._busy, asyncio.current_task()
        while not self._stopping:
            exchange = await queue.get()
            busy.add(me)
            try:
                await process_exchange(route, exchange)
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
