"""A lean AMQP 0-9-1 client on ``asyncio.Protocol``, for eip's RabbitMQ component.

Why not aio-pika/aiormq: they spend ~230 µs of client CPU per end-to-end message (a task and a
future per message, locks, a uuid per message id, one socket write per publish) and top out
near 4-5k msgs/s; a client with none of that reaches the broker's limit (~35k msgs/s).

Shape of the API:

* **async where the client waits for the broker**: :func:`connect`, ``Connection.channel``,
  declarations, ``basic_consume``/``basic_cancel``, ``wait_confirm``, ``drain``, ``close``;
* **sync on the hot path**: ``Channel.publish`` / ``ack`` / ``nack`` / ``reject`` append to the
  connection's write buffer, which goes out in one ``transport.write`` per loop iteration;
  consumers get ``on_deliveries(list[Delivery])`` called synchronously from
  ``data_received`` with everything parsed from one read; publisher confirms arrive through
  ``on_confirm(delivery_tag, multiple, ack)`` and unroutable mandatory publishes through
  ``on_return(Returned)``, both synchronous, in wire order.

No task, future or lock exists per message. The per-message work is a hand-written ``struct``
codec (:mod:`.codec`); pamqp handles the rare methods and field tables.

Failure model (nothing is lost silently): ``Connection.closed`` and ``Channel.closed`` are
futures that resolve (never raise) with the reason - ``None`` after a client close, else a
:class:`ConnectionClosedError` / :class:`ChannelClosedError` carrying the broker's reply code
and text, or the exception a user callback raised. Every operation on something closed raises
its error, and every pending waiter fails with it. Unacked deliveries go back to the queue;
unconfirmed publishes are simply never confirmed, which is what an at-least-once caller keys on.

Modules: :mod:`.connect` (URL, handshake, SASL PLAIN/EXTERNAL), :mod:`.tls` (the TLS context:
private CA, client certificate, ``verify``), :mod:`.connection` (protocol, frame parser, write
buffer, heartbeats, shutdown), :mod:`.channel` (publish, acks, RPCs, close), :mod:`.incoming`
(content assembly and delivery batches), :mod:`.confirms` (publisher-confirm bookkeeping),
:mod:`.methods` (declarations, consumers), :mod:`.heartbeat`, :mod:`.codec` (wire format),
:mod:`.message`, :mod:`.errors`.
"""

from .channel import Channel
from .connect import connect, parse_url
from .connection import Connection
from .errors import (
    AmqpError,
    ChannelClosedError,
    ConfirmTimeoutError,
    ConnectionClosedError,
    ConsumerCancelledError,
    MessageNackedError,
    MessageReturnedError,
)
from .incoming import DeliveriesCallback
from .message import Delivery, Properties, Returned
from .tls import tls_context

__all__ = [
    "AmqpError",
    "Channel",
    "ChannelClosedError",
    "ConfirmTimeoutError",
    "Connection",
    "ConnectionClosedError",
    "ConsumerCancelledError",
    "DeliveriesCallback",
    "Delivery",
    "MessageNackedError",
    "MessageReturnedError",
    "Properties",
    "Returned",
    "connect",
    "parse_url",
    "tls_context",
]
