"""The producer template and a typed spec that holds a dict option (not hashable)."""

from __future__ import annotations

from eip import Context

from .support import Broker, depth_is, unique, until


async def test_the_template_sends_to_a_spec_with_a_dict_option(broker: Broker) -> None:
    channel, queues, _ = broker
    queue = unique("template.dict")
    queues.append(queue)
    await channel.queue_declare(queue, arguments={"x-max-priority": 5})
    context = Context()
    spec = context.spec(
        "rabbitmq", routing_key=queue, queue=queue, queue_arguments={"x-max-priority": 5}
    )
    async with context:
        template = context.template()
        await template.send(spec, b"a")
        await template.send(spec, b"b")  # the same started producer, found again
        assert len(context._ready_producers) == 1
    await until(lambda: depth_is(channel, queue, 2), what="both messages queued")
