"""``client=aio-pika``: the RabbitMQ endpoints on aio-pika instead of eip's own client.

For shops that mandate aio-pika. The endpoints (consumer, producer, ack window, recovery) are
the same code as on the lean client; this package only implements the small client interface
they use (:mod:`..client`), so settlement, outcomes, options and readiness are the same:
ack after the exchange completes, reject (dead-letter) on failure, requeue an unknown outcome
up to ``max_redeliveries``, a source acked only once its publishes are confirmed.

Decisions:

- **connect_robust for the connection, plain channels for the endpoints.** aio-pika reconnects
  the transport; eip re-attaches each endpoint on a fresh channel of the new transport
  itself (:mod:`..recovery`), as on the lean client. aio-pika's robust *channels* are not
  used: a ``RobustChannel`` stays the same object across reconnects, so an ack for a delivery
  of the dead channel would be sent on the new one, where that tag means another delivery
  (or none: the broker closes the channel). Here a channel is bound to its transport, and a
  delivery is settled on the channel that delivered it or not at all (the broker redelivers
  it). Re-attaching ourselves also keeps the endpoint's declare options (arguments, bindings,
  ``declare=false``), its backoff and its readiness (``problem``) the same on both clients.
- **Sync hot path over async calls**: see :mod:`.channel` (a task per publish, one settler
  task per channel, a bounded publish window).
- **What differs from the lean client** (and is not an option to refuse): aiormq adds a random
  message id to a publish without one; a dead peer is noticed after aiormq's 3 x (heartbeat+1)
  seconds rather than ~2 heartbeats; a blocked broker shows in readiness without its reason;
  the connection retries every ``reconnect_delay`` (aio-pika's fixed interval; endpoints still
  re-attach with the full backoff); the speed (see ``benchmarks/README.md``).
- **What it refuses at start** (:func:`check_spec`): exchange and queue names that aio-pika's
  protocol layer (pamqp) rejects, such as non-ASCII names; the lean client takes any name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pamqp.constants import DOMAIN_REGEX

from .channel import AioPikaChannel
from .connection import AioPikaConnection, AioPikaConnector

if TYPE_CHECKING:
    from eip.components.rabbitmq.spec import RabbitMQSpec

__all__ = ["AioPikaChannel", "AioPikaConnection", "AioPikaConnector", "check_spec"]


def check_spec(spec: RabbitMQSpec) -> None:
    """Refuse what aio-pika cannot do for ``spec``, naming the option (``ValueError``)."""
    names = [("exchange", spec.exchange), ("queue", spec.queue_name)]
    names += [("exchange_bindings", source) for source, _ in spec.source_exchanges]
    for option, name in names:
        kind = "queue-name" if option == "queue" else "exchange-name"
        if name and not DOMAIN_REGEX[kind].fullmatch(name):
            raise ValueError(
                f"client=aio-pika cannot use the {option} name {name!r}: aio-pika (pamqp) "
                "takes only ASCII letters, digits, spaces and -_.:@#,/+ in names; "
                "use client=lean, which takes any name"
            )
