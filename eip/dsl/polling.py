"""``poll_pages``: fetch a REST resource page by page, each record through a sub-pipeline.

::

    (self.from_(cron("crm-sync", "0 3 * * *", timezone="Asia/Shanghai"))
         .poll_pages(
             http_client("{{crm.url}}/api/customers?updated_since={watermark}",
                         auth="bearer", secret_env="CRM_TOKEN", timeout=10),
             pipeline().idempotent_consumer(...).map_fields(to_oa).to(oa),
             records="$.items",
             pagination=body_cursor("$.next_cursor"),
             watermark=watermark("crm-customers", max_of("updated_at"), initial="1970-01-01"),
             max_pages=500, max_duration=1800, rate=5,
         )
         .log("{body}"))   # the run's PollReport

Why a step after a schedule, not a polling consumer (``from_("http-poll:...")``): the schedule
stays the ``cron:`` / ``timer:`` component's job (time zones, and whatever it learns about
misfires, overlap and leaders applies unchanged), a run can be started by anything (a cron
fire, the control API's trigger, a ``direct:`` call from another route), and the run has an
end where the route goes on: the step's result is the run's report, which the next steps log,
write or send. That is Camel's ``pollEnrich`` placement, with the paging inside.

The URL is a plain string (the whole of it goes to the server, its query included) or an
``http_client(url, ...)`` spec for the HTTP options (time-out, authentication, transport); it
may hold placeholders (``{{crm.url}}``) and, with a watermark, must hold ``{watermark}``.
See :mod:`eip.processors.paging` for a run, :mod:`eip.processors.pagination` for the styles,
:mod:`eip.processors.page_fetch` for retries and :mod:`eip.processors.watermark` for the
watermark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import msgspec

from eip.components.http.spec import HttpClientSpec, http_client
from eip.dsl.base import StepsBase
from eip.dsl.compiler import CompileContext, register_step
from eip.dsl.model import EndpointRef, StepDef, ToDef, TransformDef, endpoint_text
from eip.errors import UnmarshalError, redact_uri
from eip.message import Exchange
from eip.processors.base import Step, describe_callable
from eip.processors.page_fetch import PageFetcher
from eip.processors.pagination import Pagination, json_path
from eip.processors.paging import PagedPoll
from eip.processors.redelivery import RedeliveryPolicy
from eip.processors.watermark import Watermark

__all__ = ["DEFAULT_RETRY", "PollPagesDef", "PollingSteps"]

#: Page retries unless the step says otherwise: 4 more attempts, 1s, 2s, 4s, 8s apart.
DEFAULT_RETRY = RedeliveryPolicy(max_redeliveries=4, delay=1.0, backoff_multiplier=2.0)


@dataclass(slots=True)
class PollPagesDef(StepDef):
    endpoint: HttpClientSpec
    then: list[StepDef]
    pagination: Pagination | None = None
    records: str | Callable[[Any], Any] = "$"
    record_type: Any = None
    watermark: Watermark | None = None
    max_pages: int = 1000
    max_duration: float | None = None
    rate: float | None = None
    retry: RedeliveryPolicy = field(default_factory=lambda: DEFAULT_RETRY)
    max_retry_after: float = 300.0
    parallel: bool = False
    max_parallel: int = 10
    stop_on_exception: bool = False
    kind = "poll_pages"

    def describe(self) -> str:
        parts = [repr(redact_uri(self.endpoint.url))]  # the URL as written, no options
        if self.pagination is not None:
            parts.append(self.pagination.describe())
        if self.watermark is not None:
            parts.append(self.watermark.describe())
        return f"poll_pages({', '.join(parts)})"

    def children(self) -> list[tuple[str, list[StepDef]]]:
        return [("each record", self.then)]


class PollingSteps(StepsBase):
    def poll_pages(
        self,
        url: str | HttpClientSpec,
        then: StepsBase | EndpointRef,
        *,
        records: str | Callable[[Any], Any] = "$",
        pagination: Pagination | None = None,
        type: Any = None,
        watermark: Watermark | None = None,
        max_pages: int = 1000,
        max_duration: float | None = None,
        rate: float | None = None,
        retry: RedeliveryPolicy | None = None,
        max_retry_after: float = 300.0,
        parallel: bool = False,
        max_parallel: int = 10,
        stop_on_exception: bool = False,
    ) -> Self:
        """Fetch ``url`` page by page and run each record through ``then`` (a ``pipeline()``
        or an endpoint); the route continues with the run's :class:`PollReport`.

        ``records``: the JSON path of the list of records in a page (``"$"``: the body is the
        list) or a function of the decoded page; ``type``: convert each record to this
        (a msgspec Struct), a record that does not fit failing as bad input in its part.
        ``pagination``: :func:`page_number`, :func:`page_offset`, :func:`body_cursor` or
        :func:`link_header` (None: one page). ``watermark``: see :func:`watermark`.
        ``max_pages`` and ``max_duration`` (seconds) bound a run; ``rate`` caps requests
        per second; ``retry`` is the page retry policy (429/5xx/no answer; ``Retry-After``
        wins over its backoff, up to ``max_retry_after`` seconds).
        """
        endpoint = http_client(url) if isinstance(url, str) else url
        steps: list[StepDef] = then.steps if isinstance(then, StepsBase) else [ToDef(then)]
        if type is not None:
            steps = [TransformDef(as_type(type)), *steps]
        return self._add(
            PollPagesDef(
                endpoint,
                steps,
                pagination,
                records,
                type,
                watermark,
                max_pages,
                max_duration,
                rate,
                retry if retry is not None else DEFAULT_RETRY,
                max_retry_after,
                parallel,
                max_parallel,
                stop_on_exception,
            )
        )


def as_type(kind: Any) -> Callable[[Exchange], Any]:
    """A transform: the record (decoded JSON) converted to ``kind``; a mismatch is bad input,
    an :class:`~eip.errors.UnmarshalError` naming the field."""

    def convert(exchange: Exchange) -> Any:
        try:
            return msgspec.convert(exchange.body, kind)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `")
            raise UnmarshalError("json", message, location=where.rstrip("`") or "record") from exc

    convert.description = f"as_type({getattr(kind, '__name__', kind)})"  # type: ignore[attr-defined]
    return convert


@register_step(PollPagesDef)
def _compile_poll_pages(step: PollPagesDef, cc: CompileContext) -> Step:
    _check(step, cc)
    from eip.components.http.producer import HttpProducer  # the HTTP client, when used

    producer = cc.context.producer_for(step.endpoint, route_id=cc.route_id, step=cc.where)
    if not isinstance(producer, HttpProducer):
        raise cc.error(f"poll_pages needs an http(s):// URL, got {endpoint_text(step.endpoint)}")
    template = producer.url  # placeholders resolved, credentials taken out of the URL
    if step.watermark is not None and "{watermark}" not in template:
        raise cc.error(
            "poll_pages has a watermark but its URL has no {watermark} to put it in "
            "(e.g. ?updated_since={watermark})"
        )
    if step.watermark is None and "{watermark}" in template:
        raise cc.error("poll_pages: the URL has {watermark} but the step has no watermark=")
    records = step.records
    getter = json_path(records) if isinstance(records, str) else cc.callable_(records, "records")
    label = records if isinstance(records, str) else describe_callable(records)
    if step.watermark is not None:
        cc.add_service(step.watermark.store)
    cc.path.append("each record")
    try:
        parts = cc.pipeline(step.then).run
    finally:
        cc.path.pop()
    fetcher = PageFetcher(
        producer.process,
        cc.context.clock,
        retry=step.retry,
        rate=step.rate,
        max_retry_after=step.max_retry_after,
        records=getter,
        records_label=label,
    )
    return PagedPoll(
        route_id=cc.route_id,
        url=template,
        shown=redact_uri(step.endpoint.url),
        fetcher=fetcher,
        pagination=step.pagination or _ONE_PAGE,
        watermark=step.watermark,
        parts=parts,
        clock=cc.context.clock,
        max_pages=step.max_pages,
        max_duration=step.max_duration,
        parallel=step.parallel,
        max_parallel=step.max_parallel,
        stop_on_exception=step.stop_on_exception,
    )


def _check(step: PollPagesDef, cc: CompileContext) -> None:
    if not step.then:
        raise cc.error("poll_pages needs steps for each record (a pipeline() or an endpoint)")
    if step.max_pages < 1:
        raise cc.error(f"max_pages must be >= 1, got {step.max_pages}")
    if step.max_duration is not None and step.max_duration <= 0:
        raise cc.error(f"max_duration must be > 0 seconds, got {step.max_duration}")
    if step.rate is not None and step.rate <= 0:
        raise cc.error(f"rate must be > 0 requests per second, got {step.rate}")
    if step.max_retry_after < 0:
        raise cc.error(f"max_retry_after must be >= 0 seconds, got {step.max_retry_after}")
    if step.max_parallel < 1:
        raise cc.error(f"max_parallel must be >= 1, got {step.max_parallel}")
    if step.watermark is not None and not isinstance(step.watermark, Watermark):
        raise cc.error("watermark= takes a watermark(...), got " + repr(step.watermark))


class _OnePage:
    """No pagination: the URL is one page."""

    def first(self, url: str) -> str:
        return url

    def next(self, page: Any) -> str | None:
        return None

    def describe(self) -> str:
        return "one page"


_ONE_PAGE = _OnePage()
