"""``mock:name`` - records what it receives and checks expectations in tests.

Like Camel's MockEndpoint: set expectations, run the route, then ``await
mock.assert_satisfied(timeout)``. Each received exchange is recorded as a snapshot (a copy of
its message at the time it arrived), so later changes by the route do not show. A behaviour set
with :meth:`MockEndpoint.whenever` runs on each arrival and can raise, to simulate a failing
endpoint, or set a reply body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from eip._callables import is_async_callable
from eip.components.base import Component, EndpointSpec, Producer
from eip.components.typed import make_spec, typed_spec
from eip.message import Exchange

if TYPE_CHECKING:
    pass

__all__ = ["MockComponent", "MockEndpoint", "MockSpec", "mock"]


class MockSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "mock"
    name: str
    retain: int = -1


@typed_spec(MockSpec)
def mock(name: str, *, retain: int = -1) -> MockSpec:
    """Typed form of ``mock:name``; ``retain`` caps how many snapshots are kept (-1: all)."""
    return make_spec(MockSpec, {"name": name, "retain": retain})


class MockEndpoint(Producer):
    """A recording endpoint with expectations."""

    def __init__(self, name: str, retain: int = -1) -> None:
        self.name = name
        self.uri = f"mock:{name}"
        self._behaviour: Callable[[Exchange], Any] | None = None
        self._arrived: asyncio.Event | None = None
        #: Nothing to do on arrival but count (no snapshots kept, no waiter, no behaviour).
        self.lean = False
        self.retain = retain
        self.received: list[Exchange] = []
        self.count = 0
        self._expected_count: int | None = None
        self._min_count: int | None = None
        self._expected_bodies: list[Any] | None = None
        self._any_order = False
        self._checks: list[tuple[str, Callable[[Exchange], Any]]] = []

    @property
    def retain(self) -> int:
        """How many snapshots are kept (-1: all, 0: none, which costs nothing per message)."""
        return self._retain

    @retain.setter
    def retain(self, retain: int) -> None:
        self._retain = retain
        self._relean()

    def _relean(self) -> None:
        self.lean = self._retain == 0 and self._arrived is None and self._behaviour is None

    # -- receiving ----------------------------------------------------------------------
    def process(self, exchange: Exchange) -> Any:
        self.count += 1
        if self.lean:
            return None
        return self._arrive(exchange)

    def inline_send(self) -> tuple[list[str], tuple[Any, ...]]:
        """Counted inline in the fused pipeline; the rest of an arrival is called only when
        there is more to do (the lean flag is kept by every change that adds work)."""
        return ["{0}.count += 1", "r = None if {0}.lean else {1}(ex)"], (self, self._arrive)

    def _arrive(self, exchange: Exchange) -> Any:
        """An arrival, after its count: the snapshot, the waiter, the behaviour."""
        if self._retain != 0:
            snapshot = Exchange(exchange.body, dict(exchange.headers), exchange.pattern)
            snapshot.properties = dict(exchange.properties)
            snapshot.route_id = exchange.route_id
            snapshot._id = exchange.id
            self.received.append(snapshot)
            if self._retain > 0 and len(self.received) > self._retain:
                del self.received[0]
        if self._arrived is not None:
            self._arrived.set()
        behaviour = self._behaviour
        if behaviour is not None:
            return behaviour(exchange)
        return None

    def whenever(self, behaviour: Callable[[Exchange], Any]) -> MockEndpoint:
        """Run ``behaviour(exchange)`` on each arrival (it may raise, or be async)."""
        if is_async_callable(behaviour):
            self._behaviour = behaviour
        else:

            def run(exchange: Exchange) -> None:
                behaviour(exchange)

            self._behaviour = run
        self._relean()
        return self

    def fail_times(self, times: int, error: Callable[[], BaseException]) -> MockEndpoint:
        """Raise ``error()`` on the first ``times`` arrivals, then accept."""
        remaining = [times]

        def fail(_exchange: Exchange) -> None:
            if remaining[0] > 0:
                remaining[0] -= 1
                raise error()

        return self.whenever(fail)

    # -- expectations -------------------------------------------------------------------
    def expect_count(self, count: int) -> MockEndpoint:
        self._expected_count = count
        return self

    def expect_min_count(self, count: int) -> MockEndpoint:
        self._min_count = count
        return self

    def expect_bodies(self, *bodies: Any, any_order: bool = False) -> MockEndpoint:
        self._expected_bodies = list(bodies)
        self._any_order = any_order
        if self._expected_count is None:
            self._expected_count = len(bodies)
        return self

    def expect_header(self, name: str, value: Any) -> MockEndpoint:
        """Every received message has header ``name`` equal to ``value``."""

        def check(ex: Exchange) -> bool:
            return bool(ex.headers.get(name, _ABSENT) == value)

        self._checks.append((f"header {name!r} == {value!r}", check))
        return self

    def expect(self, predicate: Callable[[Exchange], Any], description: str = "") -> MockEndpoint:
        """Every received exchange satisfies ``predicate``."""
        self._checks.append((description or getattr(predicate, "__name__", "predicate"), predicate))
        return self

    @property
    def received_bodies(self) -> list[Any]:
        return [ex.body for ex in self.received]

    @property
    def received_headers(self) -> list[dict[str, Any]]:
        return [ex.headers for ex in self.received]

    def reset(self) -> None:
        self.received.clear()
        self.count = 0
        self._expected_count = self._min_count = None
        self._expected_bodies = None
        self._checks.clear()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait (real time) until at least ``count`` messages arrived."""
        deadline = time.monotonic() + timeout
        while self.count < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            arrived = self._arrived = asyncio.Event()
            self._relean()
            try:
                await asyncio.wait_for(arrived.wait(), remaining)
            except TimeoutError:
                break
            finally:
                self._arrived = None
                self._relean()

    async def assert_satisfied(self, timeout: float = 5.0, settle: float = 0.0) -> None:
        """Wait until the expected count arrived (up to ``timeout``), then check everything.

        ``settle`` keeps watching that long after the count is reached, to catch extra
        messages that arrive late.
        """
        wanted = max(self._expected_count or 0, self._min_count or 0)
        await self.wait_for(wanted, timeout)
        if settle:
            await asyncio.sleep(settle)
        problems = self._problems()
        if problems:
            raise AssertionError(f"mock:{self.name} is not satisfied: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        out = []
        if self._expected_count is not None and self.count != self._expected_count:
            out.append(f"expected {self._expected_count} message(s), received {self.count}")
        if self._min_count is not None and self.count < self._min_count:
            out.append(f"expected at least {self._min_count} message(s), received {self.count}")
        if self._expected_bodies is not None:
            got = self.received_bodies
            if self._any_order:
                if sorted(map(repr, got)) != sorted(map(repr, self._expected_bodies)):
                    out.append(
                        f"expected bodies {self._expected_bodies!r} in any order, got {got!r}"
                    )
            elif got != self._expected_bodies:
                out.append(f"expected bodies {self._expected_bodies!r}, got {got!r}")
        for description, check in self._checks:
            for index, ex in enumerate(self.received):
                if not check(ex):
                    out.append(f"message {index + 1} fails {description}: {ex.message!r}")
                    break
        return out


_ABSENT = object()


class MockComponent(Component):
    scheme: ClassVar[str] = "mock"
    spec_type: ClassVar[type[EndpointSpec]] = MockSpec

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.endpoints: dict[str, MockEndpoint] = {}

    def endpoint(self, name: str, retain: int = -1) -> MockEndpoint:
        found = self.endpoints.get(name)
        if found is None:
            found = self.endpoints[name] = MockEndpoint(name, retain)
        return found

    def create_producer(self, spec: Any) -> Producer:
        endpoint = self.endpoint(spec.name, spec.retain)
        if spec.retain != -1:
            endpoint.retain = spec.retain
        return endpoint
