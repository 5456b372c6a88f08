"""The publishes of one aio-pika channel: sequence numbers, the in-flight window, outcomes.

aiormq confirms each publish inside its own ``basic_publish`` coroutine, which the channel
runs as one task per publish; this records what those tasks report, for ``wait_confirm``
(the lean client's :class:`~.._amqp.confirms.ConfirmTracker` plays the same part):

- a publish gets its sequence number when it is queued (:meth:`PublishWindow.started`), and
  counts against the window (``WINDOW`` publishes, ``WINDOW_BYTES``) until its task ends;
- :meth:`~PublishWindow.finished` records the outcome: confirmed, or the error (nacked,
  returned, the channel closed). The last ``FAILURES_KEPT`` failures are kept for a
  ``wait_confirm`` that comes after the outcome;
- a waiter exists only for a publish someone waits for; :meth:`~PublishWindow.expire` fails
  old ones (the confirm timeout: the publish stays unconfirmed, its outcome unknown), and
  :meth:`~PublishWindow.terminate` fails them all when the channel closes.
"""

from __future__ import annotations

import asyncio
import collections

from eip.components.rabbitmq._amqp.errors import AmqpError, fresh

__all__ = ["FAILURES_KEPT", "WINDOW", "WINDOW_BYTES", "PublishWindow"]

WINDOW = 10_000
WINDOW_BYTES = 16 << 20
FAILURES_KEPT = 10_000


class PublishWindow:
    __slots__ = (
        "_error",
        "_failed",
        "_loop",
        "_unconfirmed",
        "_waiters",
        "bytes",
        "changed",
        "confirming",
        "count",
        "next_seq",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, confirming: bool) -> None:
        self._loop = loop
        self.confirming = confirming
        self.next_seq = 1
        self.count = 0  # publishes whose task has not ended
        self.bytes = 0
        #: Set whenever a publish ends or the channel closes (``drain`` waits on it).
        self.changed = asyncio.Event()
        self._unconfirmed: set[int] = set()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._failed: collections.OrderedDict[int, AmqpError] = collections.OrderedDict()
        self._error: AmqpError | None = None

    @property
    def full(self) -> bool:
        return self.count >= WINDOW or self.bytes >= WINDOW_BYTES

    @property
    def half_empty(self) -> bool:
        return self.count <= WINDOW // 2 and self.bytes <= WINDOW_BYTES // 2

    @property
    def unconfirmed_count(self) -> int:
        return len(self._unconfirmed)

    def started(self, size: int) -> int:
        seq = self.next_seq
        self.next_seq = seq + 1
        if self.confirming:
            self._unconfirmed.add(seq)
        self.count += 1
        self.bytes += size
        return seq

    def finished(self, seq: int, size: int, error: AmqpError | None) -> None:
        self.count -= 1
        self.bytes -= size
        self.changed.set()
        if seq not in self._unconfirmed:
            return
        self._unconfirmed.discard(seq)
        if error is not None:
            self._failed[seq] = error
            if len(self._failed) > FAILURES_KEPT:
                self._failed.popitem(last=False)
        waiter = self._waiters.pop(seq, None)
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(fresh(error))

    async def wait(self, seq: int) -> None:
        if not self.confirming:
            raise AmqpError("wait_confirm needs a channel with publisher_confirms=True")
        if not 0 < seq < self.next_seq:
            raise ValueError(f"no publish with sequence number {seq} on this channel")
        if seq in self._unconfirmed:
            if self._error is not None:
                raise fresh(self._error)
            waiter = self._waiters.get(seq)
            if waiter is None:
                waiter = self._waiters[seq] = self._loop.create_future()
                waiter.add_done_callback(_retrieve)
            await asyncio.shield(waiter)  # a cancelled caller leaves the outcome to others
            return
        error = self._failed.get(seq)
        if error is not None:
            raise fresh(error)

    def expire(self, before: int, error: AmqpError) -> int:
        expired = 0
        for seq in [s for s in self._waiters if s < before]:
            waiter = self._waiters.pop(seq)
            if not waiter.done():
                waiter.set_exception(fresh(error))
                expired += 1
        return expired

    def terminate(self, error: AmqpError) -> None:
        """The channel closed: every waiter fails; the unconfirmed stay in doubt."""
        self._error = error
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            if not waiter.done():
                waiter.set_exception(fresh(error))
        self.changed.set()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Read a waiter's exception so asyncio does not log it when nobody awaits it."""
    if not future.cancelled():
        future.exception()
