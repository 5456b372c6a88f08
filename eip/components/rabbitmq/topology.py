"""Declaring an endpoint's exchange, queue and bindings, shared by consumer and producer (and
redone by a consumer that re-attaches after its channel was closed)."""

from __future__ import annotations

from eip.components.rabbitmq.client import AmqpChannel
from eip.components.rabbitmq.spec import RabbitMQSpec

__all__ = ["declare_topology"]


async def declare_topology(channel: AmqpChannel, spec: RabbitMQSpec, *, consumer: bool) -> None:
    """Declare (or, with ``declare=false``, passively check) the exchange, queue and bindings."""
    passive = not spec.declare
    if spec.exchange:
        await channel.exchange_declare(
            spec.exchange,
            spec.exchange_type,
            durable=spec.exchange_durable,
            passive=passive,
            arguments=spec.exchange_arguments or None,
        )
        if spec.declare:
            for source, key in spec.source_exchanges:
                await channel.exchange_bind(spec.exchange, source, key)
    if not consumer:
        return
    await channel.queue_declare(
        spec.queue_name,
        durable=spec.durable,
        exclusive=spec.exclusive,
        auto_delete=spec.auto_delete,
        passive=passive,
        arguments=spec.queue_declare_arguments or None,
    )
    if spec.exchange and spec.declare:
        for key in spec.bindings:
            await channel.queue_bind(
                spec.queue_name, spec.exchange, key, spec.binding_arguments or None
            )
