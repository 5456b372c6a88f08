"""Fetching one page for ``poll_pages``: paced, retried with backoff, ``Retry-After`` honoured.

The call goes through the route's HTTP producer (its pool, time-out, authentication and
tracing), one request exchange per attempt. What is retried, and how:

- **429 and 5xx** answers, 408, and failures with no answer (connection refused or reset, the
  producer's time-out): up to ``retry.max_redeliveries`` more attempts. The wait is the
  server's ``Retry-After`` when it sends one (seconds, or an HTTP-date), else the policy's
  backoff (``delay * backoff_multiplier ** (n - 1)``, capped at ``max_delay``). A
  ``Retry-After`` longer than ``max_retry_after`` fails the page at once: a server that asks
  for an hour's pause is not waited on in a nightly run.
- **Other 4xx** answers (400, 401, 404...) and a body that is not JSON, or has no list where
  ``records`` points, are not retried: the same request fails the same way.
- **The run's time bound** (``max_duration``) holds for waits too: a wait that would end past
  it fails the page now, saying so.

``rate`` (requests per second) spaces the requests of one run, retries included: each starts
at least ``1 / rate`` seconds after the one before. Every wait is on the context's clock.

A page that fails raises :class:`~eip.errors.PageFetchError` naming the page number, its URL
(credentials redacted) and the attempts made; the last failure is its ``__cause__``.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from eip import headers as H
from eip.clock import Clock
from eip.errors import (
    EndpointError,
    ExchangeTimeoutError,
    HttpOperationFailed,
    PageFetchError,
    redact_uri,
)
from eip.message import Exchange
from eip.processors.base import Step
from eip.processors.pagination import _header_values
from eip.processors.redelivery import RedeliveryPolicy, error_line

__all__ = ["PageFetcher", "retry_after"]

log = logging.getLogger("eip.poll")

#: The statuses worth another attempt: the server may answer later.
RETRYABLE_STATUS = frozenset({408, 429})

_decode = msgspec.json.Decoder().decode


class PageFetcher:
    """Fetches and decodes pages through ``send`` (an HTTP producer's ``process``)."""

    def __init__(
        self,
        send: Step,
        clock: Clock,
        *,
        retry: RedeliveryPolicy,
        rate: float | None = None,
        max_retry_after: float = 300.0,
        records: Callable[[Any], Any],
        records_label: str,
    ) -> None:
        self.send = send
        self.clock = clock
        self.retry = retry
        self.interval = 0.0 if not rate else 1.0 / rate
        self.max_retry_after = max_retry_after
        self.records = records
        self.records_label = records_label

    async def fetch(
        self, url: str, page: int, run: Pacing, trigger: Exchange
    ) -> tuple[Any, Mapping[str, str], list[Any]]:
        """``(decoded body, response headers, records)`` of page number ``page``."""
        attempt = 0
        while True:
            attempt += 1
            await self._pace(run)
            try:
                body, headers = await self._call(url, trigger)
            except Exception as exc:
                wait = self._wait_before_retry(exc, attempt, url, page, run)
                log.warning(
                    "poll page %d (%s) attempt %d of %d failed, retrying in %.1fs: %s",
                    page,
                    redact_uri(url),
                    attempt,
                    self.retry.max_redeliveries + 1,
                    wait,
                    error_line(exc),
                )
                await self.clock.sleep(wait)
                continue
            data, records = self._read(body, url, page, attempt)
            return data, headers, records

    async def _pace(self, run: Pacing) -> None:
        if self.interval:
            wait = run.last_request + self.interval - self.clock.time()
            if wait > 0:
                await self.clock.sleep(wait)
        run.last_request = self.clock.time()

    async def _call(self, url: str, trigger: Exchange) -> tuple[bytes, Mapping[str, str]]:
        request = Exchange(None, {H.HTTP_REQUEST_URL: url})
        request.route_id = trigger.route_id
        request.trace_context = trigger.trace_context
        result = self.send(request)
        if result is not None:
            await result
        status = int(request.headers.get(H.HTTP_RESPONSE_STATUS, 200))
        headers: Mapping[str, str] = request.properties.get(H.HTTP_RESPONSE_HEADERS) or {}
        body = request.body if isinstance(request.body, bytes) else b""
        if status >= 400:  # an endpoint with throw_on_failure=false
            raise HttpOperationFailed("GET", url, status, body, dict(headers))
        return body, headers

    def _wait_before_retry(
        self, error: Exception, attempt: int, url: str, page: int, run: Pacing
    ) -> float:
        """Seconds to wait before the next attempt; raises PageFetchError when there is none."""
        status = error.status_code if isinstance(error, HttpOperationFailed) else None
        retryable = (
            status in RETRYABLE_STATUS or (status is not None and status >= 500)
            if status is not None
            else isinstance(error, EndpointError | ExchangeTimeoutError)
        )
        reason = error_line(error)
        if not retryable or attempt > self.retry.limit:
            raise PageFetchError(page, url, reason, attempts=attempt, status=status) from error
        asked = (
            retry_after(error.headers, self.clock.time())
            if isinstance(error, HttpOperationFailed)
            else None
        )
        if asked is not None and asked > self.max_retry_after:
            raise PageFetchError(
                page,
                url,
                f"{reason}; the server asks to retry after {asked:g}s, more than "
                f"max_retry_after={self.max_retry_after:g}s",
                attempts=attempt,
                status=status,
            ) from error
        wait = asked if asked is not None else self.retry.delay_for(attempt)
        if run.deadline is not None and self.clock.time() + wait > run.deadline:
            raise PageFetchError(
                page,
                url,
                f"{reason}; waiting {wait:g}s to retry would pass the run's time bound "
                f"(max_duration)",
                attempts=attempt,
                status=status,
            ) from error
        return wait

    def _read(self, body: bytes, url: str, page: int, attempts: int) -> tuple[Any, list[Any]]:
        try:
            data = _decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise PageFetchError(
                page, url, f"the body is not JSON: {exc}", attempts=attempts
            ) from exc
        records = self.records(data)
        if not isinstance(records, list):
            found = "nothing" if records is None else f"a {type(records).__name__}"
            raise PageFetchError(
                page,
                url,
                f"expected a list of records at {self.records_label}, found {found}",
                attempts=attempts,
            )
        return data, records


class Pacing:
    """Per-run timing: when the last request started, and the run's deadline (clock time)."""

    __slots__ = ("deadline", "last_request")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.last_request = float("-inf")


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The seconds a ``Retry-After`` header asks for (RFC 9110: delay-seconds or an
    HTTP-date, counted from ``now``), or None when there is none or it does not parse."""
    values = _header_values(headers, "retry-after")
    if not values:
        return None
    text = values[0].strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        return None
    return max(0.0, when.timestamp() - now)
