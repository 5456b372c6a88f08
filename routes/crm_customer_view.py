"""Customer view: one record per customer, merged from the CRM (JSON) and the ERP (XML).

Two systems describe the same customer, each from its side, each on its own schedule:

- the CRM drops ``<data>/inbox/crm-customer-json/*.json``, one customer each (name, e-mail,
  segment, account manager, ...);
- the ERP drops ``<data>/inbox/erp-customer-xml/*.xml``, one ``<customer id="...">`` each
  (account number, credit limit, payment terms, blocked flag, ...).

Each inbox has a route that reads its file (``json(CrmCustomer)`` / ``xml(as_dict=True)``),
maps it to its side of the view (:class:`CrmProfile` / :class:`ErpAccount`), sets the ``source``
header (``crm`` or ``erp``), the ``customer_id`` header and ``eip.message.id``, and calls
``direct:customer-view``. That route aggregates by customer id (:func:`merge_sides` puts each
side into a :class:`ViewParts`), and when a group completes, writes
``<data>/outbox/customer-views/customer-<id>.json`` (a :class:`CustomerView`).

Decisions:

- **Complete when both sides are there, not after two messages.** ``completion_size=2`` would
  complete a group of two CRM updates (sent before the ERP's nightly file) as if it were whole;
  the completion predicate (:func:`has_both_sides`) asks for one CRM and one ERP record. A
  second record from the same side replaces the first (the latest wins).
- **A side that never comes.** After ``completion_timeout`` (one hour without news for the
  customer) the group completes with what it has; the missing side is listed in ``missing``.
  If an earlier view of the customer has that side, it is carried over (and listed in
  ``carried_over``): a CRM-only update must not erase the customer's ERP credit data.
- **A document that does not read or map is rejected, not retried.** It can never succeed as
  it is: its dead-letter envelope (``routes/_support.py``: the failure headers, the file's
  headers and its content as it came) goes to ``<data>/rejected/customer-view/<file>.json``,
  and the file moves to ``.done``. Fix it and drop it again. Any other failure (the
  repository cannot be written) fails the file, which moves to ``.error``.
- **Durable and restart-safe.** Open groups live in ``<data>/state/customer-view.db``
  (:class:`SqliteAggregationRepository`) and are *not* completed on shutdown
  (``force_completion_on_stop=False``): a restart of the server must not flush half views; the
  groups' timeouts resume after the restart. A completed group stays in the repository until
  its view is written, and is redelivered if writing fails.
- **The input id is the file name plus its modification time and size.** The aggregator
  remembers the ids of the inputs it has aggregated (7 days) to recognise a file picked up
  again after a crash. The name alone is not enough: a CRM that writes ``customer-1001.json``
  every time the customer changes would have its updates dropped as re-deliveries. A re-read
  of the same file (same name, time and size) is still recognised.
- ERP documents may carry more elements than the view needs; they are ignored
  (``unknown="ignore"``), so an ERP release adding a field does not stop the view.

``<data>`` is ``$EIP_DATA_DIR`` (default ``./data``). With ``EIP_DEMO`` not ``0``, a one-shot
timer route copies ``routes/samples/customer_view/{crm,erp}/*`` into the inboxes at start;
``erp/customer-1005.xml`` has a credit limit in German notation (``12.500,00``) and is
rejected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import msgspec

from eip import (
    Exchange,
    MappingError,
    RouteBuilder,
    UnmarshalError,
    body,
    exchange_property,
    header,
)
from eip import headers as H
from eip.dataformats import json, xml
from eip.mapping import FieldMapper, chain, drop, field, lower, scale, strip, to_bool, to_int, upper
from eip.stores import SqliteAggregationRepository
from routes._support import (
    SAMPLES,
    copy_samples,
    data_dir,
    dead_letter,
    demo_enabled,
    inbox,
    outbox,
    rejected,
    state,
)

__all__ = [
    "CrmCustomer",
    "CrmProfile",
    "CustomerView",
    "CustomerViewBuilder",
    "CustomerViewDemoSeed",
    "ErpAccount",
    "ViewParts",
    "has_both_sides",
    "merge_sides",
]

log = logging.getLogger("routes.customer_view")

SOURCE = "source"
CUSTOMER_ID = "customer_id"
VIEW = "customer_view"  # exchange property: the view being written
RAW = "customer_view.raw"  # exchange property: the file as it came (for a rejection)
CRM_INBOX = "crm-customer-json"
ERP_INBOX = "erp-customer-xml"
SIDES = ("crm", "erp")
COMPLETION_TIMEOUT = 3600.0
SAMPLE_DIR = SAMPLES / "customer_view"

CustomerId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class CrmCustomer(msgspec.Struct, frozen=True):
    """The CRM's customer document."""

    id: CustomerId
    name: str
    email: str
    segment: str
    phone: str | None = None
    country: str | None = None
    account_manager: str | None = None
    updated_at: dt.datetime | None = None


class CrmProfile(msgspec.Struct, frozen=True):
    """The CRM side of the view."""

    name: str
    email: str
    segment: str
    phone: str | None
    country_code: str | None
    account_manager: str | None
    updated_at: dt.datetime | None


class ErpAccount(msgspec.Struct, frozen=True, kw_only=True):
    """The ERP side of the view (an element the ERP leaves out is None here)."""

    account_number: str
    legal_name: str | None = None
    credit_limit_cents: int
    currency: str
    payment_terms: str | None = None
    blocked: bool
    dunning_level: int
    vat_id: str | None = None


class ViewParts(msgspec.Struct):
    """The aggregation state of one customer: the sides received so far and their input ids."""

    customer_id: str
    crm: CrmProfile | None = None
    erp: ErpAccount | None = None
    inputs: dict[str, str] = msgspec.field(default_factory=dict)


class CustomerView(msgspec.Struct):
    """What ``<data>/outbox/customer-views/customer-<id>.json`` holds."""

    customer_id: str
    crm: CrmProfile | None
    erp: ErpAccount | None
    missing: list[str]
    carried_over: list[str]
    inputs: dict[str, str]


to_crm_profile = FieldMapper(
    field("name", convert=strip),
    field("email", convert=chain(strip, lower)),
    field("segment", convert=chain(strip, lower)),
    field("phone", convert=strip),
    field("country_code", source="country", convert=chain(strip, upper)),
    field("account_manager"),
    field("updated_at"),
    drop("id"),
    target=CrmProfile,
)

to_erp_account = FieldMapper(
    field("account_number", source="accountNumber", convert=strip, required=True),
    field("legal_name", source="name", convert=strip),
    field("credit_limit_cents", source="creditLimit.#text", convert=scale(100, to=int), default=0),
    field("currency", source="creditLimit.@currency", convert=chain(strip, upper), default="EUR"),
    field("payment_terms", source="paymentTerms", convert=strip),
    field("blocked", convert=to_bool, default=False),
    field("dunning_level", source="dunningLevel", convert=to_int, default=0),
    field("vat_id", source="vatId", convert=strip),
    drop("@id"),
    unknown="ignore",
    target=ErpAccount,
)


def input_id(side: str) -> Callable[[Exchange], str]:
    """``eip.message.id`` of a dropped file: side, name, modification time and size."""

    def stable_input_id(exchange: Exchange) -> str:
        headers = exchange.headers
        return f"{side}:{headers[H.FILE_NAME]}:{headers[H.FILE_MODIFIED]!r}:{headers[H.FILE_SIZE]}"

    return stable_input_id


def merge_sides(so_far: Exchange | None, side: Exchange) -> Exchange:
    """Aggregation strategy: put the incoming side into the customer's :class:`ViewParts`."""
    if so_far is None:
        customer_id = side.headers[CUSTOMER_ID]
        so_far = Exchange(ViewParts(customer_id), {CUSTOMER_ID: customer_id})
    parts: ViewParts = so_far.body
    source = side.headers[SOURCE]
    if source == "crm":
        parts.crm = side.body
    elif source == "erp":
        parts.erp = side.body
    else:
        raise ValueError(f"unknown customer view source {source!r} (expected crm or erp)")
    parts.inputs[source] = side.headers[H.MESSAGE_ID]
    return so_far


def has_both_sides(exchange: Exchange) -> bool:
    parts: ViewParts = exchange.body
    return parts.crm is not None and parts.erp is not None


def build_view(exchange: Exchange) -> CustomerView:
    parts: ViewParts = exchange.body
    missing = [side for side in SIDES if getattr(parts, side) is None]
    return CustomerView(parts.customer_id, parts.crm, parts.erp, missing, [], dict(parts.inputs))


_view_decoder = msgspec.json.Decoder(CustomerView)


class CarryOver:
    """Fill a side missing from a view from the customer's previous view file, if any."""

    def __init__(self, views: Path) -> None:
        self.views = views

    def __repr__(self) -> str:
        return "CarryOver(previous view)"

    async def process(self, exchange: Exchange) -> None:
        view: CustomerView = exchange.body
        if not view.missing:
            return
        previous = await asyncio.to_thread(self._previous, view.customer_id)
        if previous is None:
            return
        if view.crm is None and previous.crm is not None:
            view.crm = previous.crm
            view.carried_over.append("crm")
        if view.erp is None and previous.erp is not None:
            view.erp = previous.erp
            view.carried_over.append("erp")
        for side in view.carried_over:
            if side in previous.inputs:
                view.inputs[side] = previous.inputs[side]
        view.missing = [side for side in SIDES if getattr(view, side) is None]

    def _previous(self, customer_id: str) -> CustomerView | None:
        path = self.views / f"customer-{customer_id}.json"
        try:
            return _view_decoder.decode(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("previous view %s is unreadable, not carried over: %s", path, exc)
            return None


def view_written(exchange: Exchange) -> str:
    view: CustomerView = exchange.properties[VIEW]
    text = f"customer view {view.customer_id} written"
    if view.carried_over:
        text += f" ({', '.join(view.carried_over)} carried over from the previous view)"
    if view.missing:
        text += f" (missing: {', '.join(view.missing)})"
    return text


class CustomerViewBuilder(RouteBuilder):
    def __init__(self, data: Path | None = None, timeout: float = COMPLETION_TIMEOUT) -> None:
        super().__init__()
        self.data = data if data is not None else data_dir()
        self.timeout = timeout

    def configure(self) -> None:
        views = outbox("customer-views", self.data)
        (
            self.on_exception(UnmarshalError, MappingError)
            .handled()
            .log(
                "customer view: rejected {headers[eip.file.name]}: "
                "{headers[eip.exception.message]}",
                level=30,
            )
            .set_body(exchange_property(RAW))
            .transform(dead_letter)
            .set_header(H.FILE_NAME, header(H.FILE_NAME).map("{}.json".format))
            .to(f"file:{rejected('customer-view', self.data)}")
        )
        (
            self.from_(f"file:{inbox(CRM_INBOX, self.data)}?include=*.json&poll=1")
            .route_id("crm-customer-json")
            .description("CRM customer JSON -> the CRM side of the customer view")
            .set_property(RAW, body())
            .unmarshal(json(CrmCustomer))
            .set_header(SOURCE, "crm")
            .set_header(CUSTOMER_ID, body("id"))
            .set_header(H.MESSAGE_ID, input_id("crm"))
            .map_fields(to_crm_profile)
            .to("direct:customer-view")
        )
        (
            self.from_(f"file:{inbox(ERP_INBOX, self.data)}?include=*.xml&poll=1")
            .route_id("erp-customer-xml")
            .description("ERP customer XML -> the ERP side of the customer view")
            .set_property(RAW, body())
            .unmarshal(xml(as_dict=True, root="customer"))
            .transform(body("customer"))
            .set_header(SOURCE, "erp")
            .set_header(CUSTOMER_ID, body("@id").map(str.strip))
            .set_header(H.MESSAGE_ID, input_id("erp"))
            .map_fields(to_erp_account)
            .to("direct:customer-view")
        )
        (
            self.from_("direct:customer-view")
            .route_id("customer-view")
            .description("merge the CRM and ERP sides by customer id -> customer-<id>.json")
            .aggregate(
                header(CUSTOMER_ID),
                merge_sides,
                completion_predicate=has_both_sides,
                completion_timeout=self.timeout,
                force_completion_on_stop=False,
                repository=SqliteAggregationRepository(
                    state("customer-view.db", self.data), name="customer-view"
                ),
            )
            .transform(build_view)
            .process(CarryOver(views))
            .set_header(H.FILE_NAME, body("customer_id").map("customer-{}.json".format))
            .set_property(VIEW, body())
            .marshal(json())
            .to(f"file:{views}")
            .log(view_written)
        )


def seed_demo_customers(exchange: Exchange) -> None:
    if demo_enabled():
        copy_samples(sorted((SAMPLE_DIR / "crm").glob("*.json")), inbox(CRM_INBOX))
        copy_samples(sorted((SAMPLE_DIR / "erp").glob("*.xml")), inbox(ERP_INBOX))


class CustomerViewDemoSeed(RouteBuilder):
    """Copies the sample CRM and ERP customers into the inboxes once at start (EIP_DEMO=0
    turns it off)."""

    def configure(self) -> None:
        (
            self.from_("timer:customer-view-demo-seed?repeat_count=1")
            .route_id("customer-view-demo-seed")
            .process(seed_demo_customers)
        )
