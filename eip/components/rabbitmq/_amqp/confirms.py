"""Publisher-confirm bookkeeping for one channel (``publisher_confirms=True``).

The hot path is two set operations per message: :meth:`ConfirmTracker.published` adds the
sequence number to the unconfirmed set, and a Basic.Ack/Nack removes the numbers it covers
(``multiple=True`` covers every unconfirmed number up to its tag; ``_low`` is the lowest number
that may still be unconfirmed, so each number is visited once however the broker mixes single
and multiple acks). No future exists unless someone calls ``wait_confirm``.

Everything else is the slow path and only runs while it has something to do:

* ``wait_confirm`` futures (``_waiters``), resolved, failed on a nack
  (:class:`MessageNackedError`) or on a return (:class:`MessageReturnedError`);
* mandatory publishes (``_mandatory``: sequence number -> exchange, routing key, body), to tell
  which publish a Basic.Return belongs to. RabbitMQ returns unroutable messages in publish
  order and before their ack, so the first unconfirmed mandatory publish with the same exchange,
  routing key and body is the one returned. (Two identical messages to the same place are
  interchangeable, so a mix-up between them changes nothing a caller could see.)
* failed outcomes (nacked or returned), kept for a late ``wait_confirm`` (one called after the
  confirm was already processed). The last ``FAILURES_KEPT`` are kept; older than that, the
  outcome is unknown and ``wait_confirm`` raises rather than guess success.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from .errors import AmqpError, MessageNackedError, MessageReturnedError, fresh
from .message import Returned

__all__ = ["FAILURES_KEPT", "ConfirmTracker"]

FAILURES_KEPT = 10_000


class ConfirmTracker:
    __slots__ = (
        "_error",
        "_evicted_max",
        "_failed",
        "_loop",
        "_low",
        "_mandatory",
        "_returned",
        "_waiters",
        "next_seq",
        "unconfirmed",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.next_seq = 1
        self.unconfirmed: set[int] = set()
        self._low = 1
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._mandatory: OrderedDict[int, tuple[str, str, bytes]] = OrderedDict()
        self._returned: dict[int, Returned] = {}
        self._failed: OrderedDict[int, AmqpError] = OrderedDict()
        self._evicted_max = 0
        self._error: AmqpError | None = None

    def published(self, exchange: str, routing_key: str, body: bytes, mandatory: bool) -> int:
        seq = self.next_seq
        self.next_seq = seq + 1
        self.unconfirmed.add(seq)
        if mandatory:
            self._mandatory[seq] = (exchange, routing_key, body)
        return seq

    def settle(self, tag: int, multiple: bool, ack: bool) -> None:
        """Record a Basic.Ack (``ack``) or Basic.Nack from the broker."""
        unconfirmed = self.unconfirmed
        settled: list[int] | tuple[int, ...]
        if multiple:
            low = self._low
            if tag < low:
                return
            settled = [s for s in range(low, tag + 1) if s in unconfirmed]
            unconfirmed.difference_update(settled)
            self._low = min(tag + 1, self.next_seq)
        else:
            if tag not in unconfirmed:
                return
            unconfirmed.discard(tag)
            settled = (tag,)
            low = self._low
            if tag == low:
                end = self.next_seq
                while low < end and low not in unconfirmed:
                    low += 1
                self._low = low
        if self._waiters or self._mandatory or self._returned or not ack:
            self._settle_slow(settled, ack)

    def _settle_slow(self, settled: list[int] | tuple[int, ...], ack: bool) -> None:
        mandatory, returned, waiters = self._mandatory, self._returned, self._waiters
        for seq in settled:
            if mandatory:
                mandatory.pop(seq, None)
            error: AmqpError | None = None
            if not ack:
                error = MessageNackedError(seq)
            elif returned and (ret := returned.pop(seq, None)) is not None:
                error = MessageReturnedError(seq, ret)
            if error is not None:
                self._failed[seq] = error
                if len(self._failed) > FAILURES_KEPT:
                    evicted, _ = self._failed.popitem(last=False)
                    self._evicted_max = max(self._evicted_max, evicted)
            for fut in waiters.pop(seq, ()):
                if not fut.done():
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(fresh(error))

    @property
    def settled_below(self) -> int:
        """Every publish numbered below this one has been acked or nacked by the broker."""
        return self._low

    @property
    def any_failed(self) -> bool:
        """Whether any publish failed (nacked, returned) that :meth:`failure` still knows."""
        return bool(self._failed)

    def failure(self, seq: int) -> AmqpError | None:
        """Why a settled publish failed (a nack, a return), as ``wait`` would raise it (also
        when its outcome is no longer known: see ``FAILURES_KEPT``); None when it was acked."""
        failed = self._failed
        if not failed:
            return None
        error = failed.get(seq)
        if error is None and seq <= self._evicted_max:
            return AmqpError(f"the outcome of publish {seq} is no longer known")
        return error

    def returned(self, message: Returned) -> None:
        """Attribute a Basic.Return to its publish (sets ``message.publish_seq``)."""
        seq = next(
            (
                s
                for s, (exchange, routing_key, body) in self._mandatory.items()
                if exchange == message.exchange
                and routing_key == message.routing_key
                and body == message.body
            ),
            0,
        )
        if not seq:
            return
        del self._mandatory[seq]
        self._returned[seq] = message
        message.publish_seq = seq

    async def wait(self, seq: int) -> None:
        if not 0 < seq < self.next_seq:
            raise ValueError(f"no publish with sequence number {seq} on this channel")
        if seq in self.unconfirmed:
            if self._error is not None:
                raise fresh(self._error)
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiters.setdefault(seq, []).append(fut)
            try:
                await fut
            finally:
                if not fut.done() or fut.cancelled():
                    waiting = self._waiters.get(seq)
                    if waiting is not None and fut in waiting:
                        waiting.remove(fut)
                        if not waiting:
                            del self._waiters[seq]
            return
        error = self._failed.get(seq)
        if error is not None:
            raise fresh(error)
        if seq <= self._evicted_max:
            raise AmqpError(f"the outcome of publish {seq} is no longer known")

    def expire(self, before: int, error: AmqpError) -> int:
        """Fail the waiters of unconfirmed publishes numbered below ``before``; the publishes
        stay unconfirmed (a late confirm settles them with nobody waiting)."""
        expired = 0
        for seq in [s for s in self._waiters if s < before]:
            for fut in self._waiters.pop(seq):
                if not fut.done():
                    fut.set_exception(fresh(error))
                    expired += 1
        return expired

    def terminate(self, error: AmqpError) -> None:
        """The channel closed: every waiter fails; unconfirmed publishes stay in doubt."""
        self._error = error
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.set_exception(fresh(error))
        self._mandatory.clear()
        self._returned.clear()
