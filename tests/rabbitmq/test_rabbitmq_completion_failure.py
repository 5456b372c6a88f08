"""A message whose completion fails (a commit after the route) is put back, not acked."""

from __future__ import annotations

from typing import Any

from eip import Context, Exchange

from .support import Broker, depth_is, routes, unique, until


async def test_a_failed_commit_puts_the_message_back_and_the_retry_completes(
    broker: Broker,
) -> None:
    channel, queues, _ = broker
    queue = unique("completion")
    queues.append(queue)
    runs: list[int] = []

    def effect(exchange: Exchange) -> None:
        runs.append(1)
        if len(runs) == 1:  # the first commit fails once the route is done

            def commit(_: Any) -> None:
                raise RuntimeError("commit failed")

            exchange.on_completion(on_success=commit)

    context = Context()
    context.add_routes(
        routes(lambda b: b.from_(f"rabbitmq:?queue={queue}").route_id("eff").process(effect))
    )
    async with context:
        channel.publish(b"one", "", queue)
        await until(lambda: len(runs) >= 2, timeout=15, what="the message came back once")
        await until(lambda: depth_is(channel, queue, 0), what="then it was acked")
    assert len(runs) == 2
