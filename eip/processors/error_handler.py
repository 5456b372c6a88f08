"""Error handling: redelivery with backoff, ``on_exception`` clauses and the dead letter channel.

Decisions, following Camel:

- The failing *step* is redelivered, not the whole route. The redelivery count is kept in the
  ``eip.redelivery.count`` header and ``eip.redelivered`` is set to True.
- The ``on_exception`` clause whose exception type is the closest match (fewest steps up the
  exception's MRO) wins; its own redelivery policy replaces the route's.
- When redelivery is exhausted: a ``continued`` clause carries on at the next step; a ``handled``
  clause runs its steps and stops the route as a success; an unhandled clause runs its steps and
  the exchange fails. With no clause, a dead letter channel sends the exchange (optionally its
  original message) to its endpoint and stops the route as a success; the default handler lets
  the exchange fail.
- Failure details travel in headers: ``eip.exception.type``, ``eip.exception.message``,
  ``eip.failure.endpoint``, ``eip.failure.route`` and ``eip.redelivery.count``; the exception
  object itself is in the ``eip.exception`` property.

Only what can succeed is redelivered, and every redelivery says so:

- **Deterministic failures are not redelivered.** The policy's default rule
  (:mod:`eip.processors.retry_rules`) leaves out failures that a retry cannot cure: data format,
  mapping and validation errors, SOAP Client/Sender faults, HTTP 4xx other than 408 and 429.
  ``retry_on`` / ``no_retry_on`` change the choice (:mod:`eip.processors.redelivery`). Such a
  failure goes on at once to its clause or the dead letter channel, with one INFO line.
- **Each redelivery logs one WARNING line** on ``eip.error_handler``: the route, the failing
  step, ``attempt n of max``, the delay and the error's first line. While an exchange waits
  in backoff it is listed in ``ErrorHandling.backoffs``, which the context shows while it
  drains at shutdown.

Rules that keep error handling to one run and one direction:

- **An unknown outcome is not dead-lettered.** An :class:`~eip.errors.OutcomeUnknownError`
  (a send whose confirm never came) is redelivered by the policy like any failure, but the dead
  letter channel does not take it: the exchange fails with it, so a RabbitMQ consumer requeues
  its source message and an HTTP caller gets an error to retry. An ``on_exception`` clause
  that names it still applies.

- **A failure is handled once.** A failure that error handling already decided on where it
  happened (a split part, a multicast output, a branch, a failing step of a clause) is marked
  on the exchange (``failure_handler``) and only propagates: it is not redelivered again, and
  no clause runs for it again. A failure coming back from a ``direct:`` sub-route whose clause
  already ran for it does not run that same clause again in the caller (a builder-wide clause
  covers both routes); another builder's clause still runs.
- **A dead letter is sent one way.** The dead letter channel gets a copy of the exchange,
  in-only, with its own unit of work (completed when the send returns): a ``seda:`` or broker
  endpoint is not waited on for a reply, and whatever the dead-letter endpoint or route does to
  its message never comes back. The caller keeps its own message (with the failure headers) and
  the handled outcome. To shape a reply after a failure, use a ``handled`` clause.
- **No handling of a failure inside failure handling.** While an exchange is in the dead
  letter channel or in a clause's steps (and in any route reached from there, through copies
  too), a new failure is not given to a clause or a dead letter channel again, in whatever
  route it happens: it is logged once, with the original exchange (id, message id, route, the
  original error and the new one), and ends there. The exchange that was being handled then
  fails with the new error (caused by the original), so its source does not count it as
  delivered. Redelivery of the failing step still applies.
- **A part's failure is matched by its own type.** A failure inside a split part or a
  multicast/recipient list output fails the exchange as a :class:`~eip.errors.PartFailedError`
  that names the part, its ``__cause__`` the part's error. The part's failure went through
  error handling in the part, with its own type; where the PartFailedError is handled again (a
  caller route, through ``direct:``), clauses are chosen by the original's type first (then by
  PartFailedError's own, so ``on_exception(PartFailedError)`` works too), the redelivery rules
  classify the original, an original unknown outcome is not dead-lettered, and the failure
  headers (``eip.exception.type``/``.message``) are the original's, with the part in
  ``eip.failure.endpoint``. A clause that ran for the part's failure does not run again for it.
- **A handled failure is still a failure for the idempotent consumer.** When the dead letter
  channel or a ``handled`` clause took a failure, the exchange completes as a success (its
  source acks it), but it carries the ``eip.failure.handled`` mark (see
  :func:`failure_handled`): the idempotent consumer then releases its key instead of confirming
  it, so a redelivered or replayed copy runs again (Camel's ``FAILURE_HANDLED``). A
  ``continued`` clause is not a failure.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eip import headers as H
from eip.clock import Clock
from eip.errors import ExchangeError, OutcomeUnknownError, PartFailedError
from eip.failures import FailureHistory
from eip.logs import exchange_fields
from eip.message import Exchange, ExchangePattern
from eip.processors.base import STOP
from eip.processors.redelivery import Backoff, RedeliveryPolicy, attempts_text, error_line

__all__ = [
    "CLAUSE_RAN",
    "FAILURE_HANDLED",
    "CompiledClause",
    "ErrorHandling",
    "RedeliveryPolicy",
    "failure_handled",
]

log = logging.getLogger("eip.error_handler")

#: Property: the id of the exchange whose failure a dead letter channel or a handled clause took.
#: Holding the id (not True) keeps copies made later from inheriting the mark.
FAILURE_HANDLED = "eip.failure.handled"
#: Property: set while an exchange (or a copy of it) is in a dead letter channel or clause steps.
_HANDLING = "eip.failure.handling"
#: Property: ``(error, clause key)`` of the last clause that ran for ``error``, unhandled (a
#: failed split part or multicast output hands it to the exchange, with its failure).
CLAUSE_RAN = "eip.failure.clause"


def failure_handled(exchange: Exchange) -> bool:
    """True when a failure of this exchange was dead-lettered or handled by a clause: it
    completes as a success, but was not processed (the idempotent consumer releases its key)."""
    mark = exchange.properties.get(FAILURE_HANDLED)
    return mark is not None and mark == exchange.id


@dataclass(frozen=True, slots=True)
class CompiledClause:
    """An ``on_exception`` clause ready to run.

    ``origin`` is the clause's definition, the same object in every route a builder-wide
    clause applies to, so that a clause is known across routes (see ``_clause_ran``); without
    it, ``types`` (the definition's own tuple) stands in for it.
    """

    types: tuple[type[BaseException], ...]
    redelivery: RedeliveryPolicy | None
    handled: bool
    continued: bool
    steps: Callable[[Exchange], Any] | None
    origin: object = None

    @property
    def key(self) -> object:
        return self.types if self.origin is None else self.origin


class _Handling:
    """What an exchange in failure handling remembers of the failure being handled."""

    __slots__ = ("error", "exchange_id", "handler", "message_id", "reported", "route_id")

    def __init__(
        self, exchange: Exchange, route_id: str, error: BaseException, handler: str
    ) -> None:
        self.exchange_id = exchange.id
        self.message_id = exchange.headers.get(H.MESSAGE_ID)
        self.route_id = route_id
        self.error = error
        self.handler = handler
        self.reported = False

    def report(self, error: BaseException, where: str) -> None:
        """Log the failure inside failure handling, once."""
        if self.reported:
            return
        self.reported = True
        log.error(
            "%s failed while handling exchange %s%s of route %s (which had failed with %s: %s): "
            "%s raised %s: %s; not handled again",
            self.handler,
            self.exchange_id,
            _message_id(self.message_id),
            self.route_id,
            type(self.error).__name__,
            self.error,
            where,
            type(error).__name__,
            error,
        )


class ErrorHandling:
    """The error handling of one route, shared by all its pipelines."""

    def __init__(
        self,
        *,
        route_id: str,
        clock: Clock,
        redelivery: RedeliveryPolicy,
        clauses: Sequence[CompiledClause] = (),
        dead_letter: Callable[[Exchange], Any] | None = None,
        dead_letter_uri: str | None = None,
        use_original_message: bool = False,
    ) -> None:
        self.route_id = route_id
        self.clock = clock
        self.redelivery = redelivery
        self.clauses = tuple(clauses)
        self.dead_letter = dead_letter
        self.dead_letter_uri = dead_letter_uri
        self.use_original_message = use_original_message
        #: Where the failures error handling gives up on are kept (the context sets it).
        self.history: FailureHistory | None = None
        self._clause_cache: dict[type[BaseException], CompiledClause | None] = {}
        #: Exchanges of this route waiting for a redelivery (the context shows them while it
        #: drains at shutdown).
        self.backoffs: dict[int, Backoff] = {}
        self._backoff_keys = itertools.count()

    @property
    def needs_original_message(self) -> bool:
        return self.dead_letter is not None and self.use_original_message

    def clause_for(self, error: BaseException) -> CompiledClause | None:
        """The clause with the closest matching exception type, cached per type.

        For a :class:`~eip.errors.PartFailedError`, the type of the part's own failure is
        matched first, then PartFailedError's."""
        if isinstance(error, PartFailedError):
            clause = self._clause_for_type(type(error.original))
            return clause if clause is not None else self._clause_for_type(type(error))
        return self._clause_for_type(type(error))

    def _clause_for_type(self, kind: type[BaseException]) -> CompiledClause | None:
        try:
            return self._clause_cache[kind]
        except KeyError:
            pass
        best: CompiledClause | None = None
        best_distance = len(kind.__mro__)
        for clause in self.clauses:
            for wanted in clause.types:
                if issubclass(kind, wanted):
                    distance = kind.__mro__.index(wanted)
                    if distance < best_distance:
                        best, best_distance = clause, distance
        self._clause_cache[kind] = best
        return best

    def redelivery_for(self, exchange: Exchange, error: BaseException) -> RedeliveryPolicy | None:
        """The policy for this failure, or None when it must not be redelivered here."""
        if exchange.failure_handler is not None:
            return None  # already handled (and redelivered) where it failed
        clause = self.clause_for(error)
        policy = clause.redelivery if clause is not None and clause.redelivery else self.redelivery
        return policy if policy.max_redeliveries else None

    async def redeliver(
        self, exchange: Exchange, error: BaseException, attempt: int, failed_at: str
    ) -> bool:
        """Wait out the backoff before redelivery number ``attempt`` (1-based) of the step
        ``failed_at``; False when there is none to make (exhausted, or ``error`` is one the
        policy does not retry), and the failure goes on to :meth:`exhausted` at once.

        Each redelivery logs one WARNING line; a failure not retried because of its kind logs
        one INFO line (its clause or dead letter channel then logs what happens to it)."""
        policy = self.redelivery_for(exchange, error)
        if policy is None or attempt > policy.limit:
            return False
        refusal = policy.refusal(PartFailedError.unwrap(error))
        if refusal is not None:
            log.info(
                "route %s, step %s: not redelivering exchange %s%s (%s): %s",
                self.route_id,
                failed_at,
                exchange.id,
                _message_id(exchange.headers.get(H.MESSAGE_ID)),
                refusal,
                error_line(error),
                extra=exchange_fields(exchange, self.route_id),
            )
            return False
        delay = policy.delay_for(attempt)
        log.warning(
            "route %s, step %s: redelivery attempt %d of %s in %.2fs for exchange %s%s after %s",
            self.route_id,
            failed_at,
            attempt,
            attempts_text(policy.max_redeliveries),
            delay,
            exchange.id,
            _message_id(exchange.headers.get(H.MESSAGE_ID)),
            error_line(error),
            extra=exchange_fields(exchange, self.route_id),
        )
        key = next(self._backoff_keys)
        self.backoffs[key] = Backoff(
            exchange.id, failed_at, attempt, policy.max_redeliveries, self.clock.time() + delay
        )
        try:
            await self.clock.sleep(delay)
        finally:
            del self.backoffs[key]
        exchange.headers[H.REDELIVERED] = True
        exchange.headers[H.REDELIVERY_COUNT] = attempt
        return True

    async def exhausted(
        self, exchange: Exchange, error: BaseException, failed_at: str, attempts: int
    ) -> Any:
        """Decide what happens once redelivery gave up; returns STOP, None (continue) or raises."""
        if exchange.failure_handler is self:
            if isinstance(error, ExchangeError) and error.route_id is None:
                error.route_id = self.route_id  # a PartFailedError, raised by the EIP
            raise error  # a nested pipeline of this route already handled it
        if isinstance(error, ExchangeError):
            if error.route_id is None:
                error.route_id = self.route_id
            if error.exchange_id is None:
                error.exchange_id = exchange.id
            if error.endpoint is None:
                error.endpoint = failed_at
        handling: _Handling | None = exchange.properties.get(_HANDLING)
        if handling is not None:
            # A failure inside a dead letter channel or clause steps: the end of the line.
            handling.report(error, f"route {self.route_id} at {failed_at}")
            return self._fail(exchange, error)
        clause = self.clause_for(error)
        if exchange.failure_handler is None:
            # Not yet recorded by a sub-route (which knows the exact failing endpoint).
            self._record_failure(exchange, error, failed_at, attempts)
        if clause is not None:
            if clause.continued:
                exchange.exception = None
                exchange.failure_handler = None
                exchange.properties.pop(H.EXCEPTION_PROPERTY, None)
                return None
            if _clause_ran(exchange, error, clause):
                return self._fail(exchange, error)  # it ran in the sub-route this came from
            if clause.steps is not None:
                await self._in_clause(clause, exchange, error)
            if clause.handled:
                return self._handled(exchange)
            exchange.properties[CLAUSE_RAN] = (error, clause.key)
            return self._fail(exchange, error)
        if self.dead_letter is not None and not isinstance(
            PartFailedError.unwrap(error), OutcomeUnknownError
        ):
            await self._to_dead_letter(exchange, error)
            return self._handled(exchange)
        return self._fail(exchange, error)

    def _record_failure(
        self, exchange: Exchange, error: BaseException, failed_at: str, attempts: int
    ) -> None:
        headers = exchange.headers
        original = error
        if isinstance(error, PartFailedError):  # the headers name the original, as clauses do
            original = error.original
            headers[H.EXCEPTION_TYPE] = f"{type(original).__module__}.{type(original).__qualname__}"
            headers[H.EXCEPTION_MESSAGE] = str(original)
            failed_at = f"{failed_at} > {error.where}"
        else:
            headers[H.EXCEPTION_TYPE] = f"{type(error).__module__}.{type(error).__qualname__}"
            headers[H.EXCEPTION_MESSAGE] = str(error)
        headers[H.FAILURE_ENDPOINT] = failed_at
        headers[H.FAILURE_ROUTE] = self.route_id
        headers[H.REDELIVERY_COUNT] = attempts
        exchange.properties[H.EXCEPTION_PROPERTY] = error
        if self.history is not None:
            self.history.record(self.route_id, exchange, original, failed_at, attempts)

    async def _in_clause(
        self, clause: CompiledClause, exchange: Exchange, error: BaseException
    ) -> None:
        """Run a clause's steps on the exchange itself, marked as in failure handling."""
        assert clause.steps is not None
        names = ", ".join(kind.__name__ for kind in clause.types)
        handling = _Handling(exchange, self.route_id, error, f"on_exception({names})")
        exchange.properties[_HANDLING] = handling
        try:
            await _run(clause.steps, exchange)
        except Exception as exc:
            handling.report(exc, f"a step of the clause on route {self.route_id}")
            self._fail_with(exchange, exc, error)
        finally:
            exchange.properties.pop(_HANDLING, None)

    async def _to_dead_letter(self, exchange: Exchange, error: BaseException) -> None:
        """Send a copy, in-only; the caller's exchange keeps its own message."""
        assert self.dead_letter is not None
        letter = exchange.copy()
        letter.pattern = ExchangePattern.IN_ONLY
        properties = letter.properties
        properties.pop(CLAUSE_RAN, None)
        if self.use_original_message and exchange.original is not None:
            failure_headers = {k: v for k, v in exchange.headers.items() if k.startswith("eip.")}
            letter.message = exchange.original.copy()
            letter.headers.update(failure_headers)
        handling = _Handling(
            exchange, self.route_id, error, f"dead letter channel {self.dead_letter_uri}"
        )
        properties[_HANDLING] = handling
        log.warning(
            "exchange %s%s on route %s dead-lettered to %s: %s: %s",
            exchange.id,
            _message_id(handling.message_id),
            self.route_id,
            self.dead_letter_uri,
            type(error).__name__,
            error,
            extra=exchange_fields(exchange, self.route_id),
        )
        try:
            await _run(self.dead_letter, letter)
        except Exception as exc:
            letter.exception = exc
            handling.report(exc, f"the send to {self.dead_letter_uri}")
            await _complete(letter)
            self._fail_with(exchange, exc, error)
        await _complete(letter)

    @staticmethod
    def _handled(exchange: Exchange) -> Any:
        exchange.exception = None
        exchange.failure_handler = None
        exchange.route_stop = True
        exchange.properties[FAILURE_HANDLED] = exchange.id
        return STOP

    def _fail(self, exchange: Exchange, error: BaseException) -> Any:
        exchange.exception = error
        exchange.failure_handler = self
        raise error

    def _fail_with(self, exchange: Exchange, error: Exception, cause: BaseException) -> None:
        exchange.exception = error
        exchange.failure_handler = self
        raise error from cause


def _clause_ran(exchange: Exchange, error: BaseException, clause: CompiledClause) -> bool:
    """True when ``clause`` (the same definition) already ran, unhandled, for ``error``."""
    ran = exchange.properties.get(CLAUSE_RAN)
    if ran is None or ran[1] is not clause.key:
        return False
    return ran[0] is error or ran[0] is PartFailedError.unwrap(error)


def _message_id(message_id: Any) -> str:
    return "" if message_id is None else f" (message id {message_id})"


async def _run(step: Callable[[Exchange], Any], exchange: Exchange) -> None:
    result = step(exchange)
    if result is not None and result is not STOP:
        await result


async def _complete(exchange: Exchange) -> None:
    done = exchange.done()
    if done is not None:
        await done
