"""Route metrics: real routes, instrumented, scraped through render() and parsed back."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import prometheus_client
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from eip import Context, Exchange, RouteBuilder
from eip.runtime.metrics import DEFAULT_BUCKETS, Metrics, RouteTimings, timed_dispatch

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: Metrics) -> Samples:
    text, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def buckets(samples: Samples, route: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of one route's histogram, in bound order."""
    found = [
        (float(dict(labels)["le"]), count)
        for (name, labels), count in samples.items()
        if name == "eip_exchange_duration_seconds_bucket" and ("route", route) in labels
    ]
    return sorted(found)


def check_histogram(samples: Samples, route: str, count: int) -> list[tuple[float, float]]:
    found = buckets(samples, route)
    assert [le for le, _ in found] == [*DEFAULT_BUCKETS, math.inf]
    counts = [n for _, n in found]
    assert counts == sorted(counts), "cumulative bucket counts must not decrease"
    assert counts[-1] == count
    assert value(samples, "eip_exchange_duration_seconds_count", route=route) == count
    return found


def busy(exchange: Exchange) -> None:
    time.sleep(0.001)


async def sleepy(exchange: Exchange) -> None:
    await asyncio.sleep(0.002)


def boom(exchange: Exchange) -> None:
    raise KeyError("missing")


async def async_boom(exchange: Exchange) -> None:
    await asyncio.sleep(0)
    raise ValueError("late")


class Routes(RouteBuilder):
    def configure(self) -> None:
        self.from_("direct:sync").route_id("sync").set_header("seen", True)
        self.from_("direct:slow-sync").route_id("slow-sync").process(busy)
        self.from_("direct:async").route_id("async").process(sleepy)
        self.from_("direct:fail").route_id("fail").process(boom)
        self.from_("direct:async-fail").route_id("async-fail").process(async_boom)


async def instrumented(context: Context, builder: RouteBuilder | None = None) -> Metrics:
    context.add_routes(builder or Routes())
    await context.start()
    metrics = Metrics(context)
    for route in context.routes.values():
        metrics.instrument(route)
    return metrics


# -- RouteTimings ------------------------------------------------------------------------------
def test_observe_counts_bounds_inclusively_and_overflow_in_inf() -> None:
    timings = RouteTimings((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 1.0, 3.0):
        timings.observe(seconds)
    assert timings.counts == [2, 2, 1]
    assert timings.count == 5
    cumulative, total = timings.cumulative()
    assert cumulative == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert total == pytest.approx(4.65)


def test_buckets_must_increase_and_inf_is_implied() -> None:
    assert RouteTimings((0.5, 1.0, math.inf)).bounds == (0.5, 1.0)
    for bad in ((), (1.0, 0.5), (0.5, 0.5)):
        with pytest.raises(ValueError, match="increasing"):
            RouteTimings(bad)
    with pytest.raises(ValueError, match="increasing"):
        Metrics(Context(), buckets=(2.0, 1.0))


# -- routes ------------------------------------------------------------------------------------
async def test_slow_sync_exchange_lands_past_the_first_bucket(eip_context: Context) -> None:
    metrics = await instrumented(eip_context)
    assert eip_context.routes["slow-sync"].dispatch(Exchange("x")) is None
    samples = scrape(metrics)
    found = dict(check_histogram(samples, "slow-sync", 1))
    assert found[0.0005] == 0
    assert found[10.0] == 1
    assert value(samples, "eip_exchange_duration_seconds_sum", route="slow-sync") >= 0.001


async def test_sync_route_counts_and_stays_sync(eip_context: Context) -> None:
    metrics = await instrumented(eip_context)
    route = eip_context.routes["sync"]
    result = route.dispatch(Exchange("direct"))
    assert result is None  # no coroutine on the sync path
    template = eip_context.template()
    for n in range(9):
        await template.send("direct:sync", n)
    samples = scrape(metrics)
    assert value(samples, "eip_exchanges_total", route="sync") == 10
    assert value(samples, "eip_exchanges_failed_total", route="sync") == 0
    assert value(samples, "eip_exchanges_inflight", route="sync") == 0
    found = check_histogram(samples, "sync", 10)
    assert found[-2][1] == 10  # nothing a header set takes 10 s
    assert 0 < value(samples, "eip_exchange_duration_seconds_sum", route="sync") < 1


async def test_async_route_timed_when_awaitable_finishes(eip_context: Context) -> None:
    metrics = await instrumented(eip_context)
    template = eip_context.template()
    for n in range(5):
        await template.request("direct:async", n)
    samples = scrape(metrics)
    assert value(samples, "eip_exchanges_total", route="async") == 5
    found = check_histogram(samples, "async", 5)
    assert dict(found)[0.001] == 0  # each slept 2 ms: the time spans the await
    assert value(samples, "eip_exchange_duration_seconds_sum", route="async") >= 5 * 0.002
    assert value(samples, "eip_exchanges_inflight", route="async") == 0


async def test_inflight_gauge_while_suspended(eip_context: Context) -> None:
    release = asyncio.Event()

    async def wait(exchange: Exchange) -> None:
        await release.wait()

    class Blocking(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:block").route_id("block").process(wait)

    metrics = await instrumented(eip_context, Blocking())
    pending = [
        asyncio.create_task(eip_context.template().request("direct:block", n)) for n in range(3)
    ]
    await asyncio.sleep(0.01)
    samples = scrape(metrics)
    assert value(samples, "eip_exchanges_inflight", route="block") == 3
    assert value(samples, "eip_exchange_duration_seconds_count", route="block") == 0
    release.set()
    await asyncio.gather(*pending)
    samples = scrape(metrics)
    assert value(samples, "eip_exchanges_inflight", route="block") == 0
    check_histogram(samples, "block", 3)


@pytest.mark.parametrize("route_id", ["fail", "async-fail"])
async def test_failed_exchanges_counted_and_timed(eip_context: Context, route_id: str) -> None:
    metrics = await instrumented(eip_context)
    template = eip_context.template()
    for n in range(4):
        exchange = await template.send(f"direct:{route_id}", n)
        assert exchange.exception is not None
    samples = scrape(metrics)
    assert value(samples, "eip_exchanges_total", route=route_id) == 4
    assert value(samples, "eip_exchanges_failed_total", route=route_id) == 4
    assert value(samples, "eip_exchanges_inflight", route=route_id) == 0
    check_histogram(samples, route_id, 4)


async def test_sync_raise_from_dispatch_is_timed_and_propagates() -> None:
    class Raising:
        id = "raw"

        @staticmethod
        def dispatch(exchange: Exchange) -> Any:
            raise RuntimeError("dispatch itself failed")

    timings = RouteTimings()
    dispatch = timed_dispatch(Raising(), timings)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="itself"):
        dispatch(Exchange("x"))
    assert timings.count == 1


async def test_route_up_and_context_ready(eip_context: Context) -> None:
    metrics = await instrumented(eip_context)
    samples = scrape(metrics)
    assert value(samples, "eip_context_ready") == 1
    assert all(value(samples, "eip_route_up", route=r) == 1 for r in eip_context.routes)
    await eip_context.stop_route("async")
    samples = scrape(metrics)
    assert value(samples, "eip_route_up", route="async") == 0
    assert value(samples, "eip_route_up", route="sync") == 1
    assert value(samples, "eip_context_ready") == 0  # an auto-started route is down
    await eip_context.start_route("async")
    metrics.instrument(eip_context.routes["async"])  # again at restart: must not double-count
    await eip_context.template().request("direct:async", 1)
    samples = scrape(metrics)
    assert value(samples, "eip_route_up", route="async") == 1
    assert value(samples, "eip_context_ready") == 1
    check_histogram(samples, "async", 1)
    await eip_context.stop()
    samples = scrape(metrics)
    assert value(samples, "eip_context_ready") == 0
    assert all(value(samples, "eip_route_up", route=r) == 0 for r in eip_context.routes)


async def test_exposed_names_and_private_registry(eip_context: Context) -> None:
    metrics = await instrumented(eip_context)
    await eip_context.template().send("direct:sync", 1)
    text = metrics.render()[0].decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert names == {
        "eip_exchanges_total",
        "eip_exchanges_failed_total",
        "eip_exchanges_inflight",
        "eip_route_up",
        "eip_exchange_duration_seconds_bucket",
        "eip_exchange_duration_seconds_sum",
        "eip_exchange_duration_seconds_count",
        "eip_context_ready",
    }
    assert "# TYPE eip_exchanges_total counter" in text
    assert "# TYPE eip_exchange_duration_seconds histogram" in text
    assert "process_cpu_seconds_total" not in text  # nothing from the global registry
    assert b"eip_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


async def test_routes_not_instrumented_have_counters_but_no_histogram(
    eip_context: Context,
) -> None:
    eip_context.add_routes(Routes())
    await eip_context.start()
    metrics = Metrics(eip_context)
    metrics.instrument(eip_context.routes["sync"])
    await eip_context.template().send("direct:async", 1)
    samples = scrape(metrics)
    assert value(samples, "eip_exchanges_total", route="async") == 1
    assert not buckets(samples, "async")
    check_histogram(samples, "sync", 0)


async def test_traced_dispatch_is_timed_and_stays_sync() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    context = Context(tracer_provider=provider)
    context.add_routes(Routes())
    async with context:
        metrics = Metrics(context)
        for route in context.routes.values():
            metrics.instrument(route)
        assert context.routes["sync"].dispatch(Exchange("x")) is None
        await context.template().request("direct:async", 1)
        samples = scrape(metrics)
    check_histogram(samples, "sync", 1)
    check_histogram(samples, "async", 1)
    assert {span.name for span in exporter.get_finished_spans()} >= {"sync", "async"}


# -- sampling under load ------------------------------------------------------------------------
def test_sampling_grows_only_under_sustained_load_and_shrinks_when_it_ends() -> None:
    timings = RouteTimings()
    now = 100.0
    timings.adapt(now)  # the first timed exchange: no gap yet
    for _ in range(RouteTimings.SUSTAINED - 1):  # a burst: still every exchange timed
        now += RouteTimings.FAST_GAP / 2
        timings.adapt(now)
    assert timings.mask == 0
    now += RouteTimings.FAST_GAP / 2
    timings.adapt(now)
    assert timings.mask == 1  # sustained: one in two
    for _ in range(10 * RouteTimings.SUSTAINED):
        now += RouteTimings.FAST_GAP / 2
        timings.adapt(now)
    assert timings.mask == RouteTimings.MAX_SAMPLE - 1  # and no sparser than the maximum
    timings.observe(0.0001)
    assert timings.count == RouteTimings.MAX_SAMPLE  # a timed one stands for the skipped
    assert timings.sum == pytest.approx(0.0001 * RouteTimings.MAX_SAMPLE)
    for expected in (7, 3, 1, 0, 0):  # the load ends: each slow gap halves it
        now += RouteTimings.SLOW_GAP * 2
        timings.adapt(now)
        assert timings.mask == expected


async def test_a_busy_route_is_sampled_and_its_histogram_keeps_the_scale(
    eip_context: Context,
) -> None:
    metrics = await instrumented(eip_context)
    route = eip_context.routes["sync"]
    timings = metrics.timings("sync")
    assert timings is not None
    dispatch = route.dispatch
    sent = 0
    while timings.mask < RouteTimings.MAX_SAMPLE - 1 and sent < 200_000:
        for _ in range(1000):
            assert dispatch(Exchange("x")) is None
        sent += 1000
    assert timings.mask == RouteTimings.MAX_SAMPLE - 1, f"still {timings.mask} after {sent}"
    assert route.exchanges_total == sent
    # Every (mask + 1)-th exchange, counted mask + 1 times: within a sample or so per step.
    assert abs(timings.count - sent) <= 2 * RouteTimings.MAX_SAMPLE * 4
    samples = scrape(metrics)
    assert value(samples, "eip_exchanges_total", route="sync") == sent
    assert value(samples, "eip_exchange_duration_seconds_count", route="sync") == timings.count
    # Quiet again: a slow gap per timed exchange brings back timing every one.
    for _ in range(8):
        await asyncio.sleep(RouteTimings.SLOW_GAP * 2)
        for _ in range(timings.mask + 1):
            assert dispatch(Exchange("x")) is None
    assert timings.mask == 0
    before = timings.count
    for _ in range(5):
        assert dispatch(Exchange("x")) is None
    assert timings.count == before + 5
