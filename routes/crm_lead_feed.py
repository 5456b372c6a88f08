"""Marketing lead feed -> CRM leads, each lead once.

The marketing platform drops NDJSON files (one lead per line) into
``<data>/inbox/marketing-leads/``. For each file, line by line:

1. the line is decoded into a :class:`Lead` (msgspec validates types and the id's shape);
2. only leads whose ``source`` is "web promotion" go on (compared trimmed and case-folded:
   "Web Promotion " is the same campaign, and a silently dropped hot lead is the costly error);
3. the lead is mapped to a :class:`CrmLead` (e-mail lower-cased and checked, country upper-cased);
4. the idempotent consumer lets each lead id through once, ever, across files and restarts: the
   ids live in ``<data>/state/leads.db`` (SQLite, :class:`SqliteIdempotentRepository`);
5. the CRM lead is written to ``<data>/outbox/crm-leads/lead-<id>.json`` (atomically).

Decisions:

- **A bad line is rejected on its own, not the whole file.** Leads go cold within hours; one
  malformed line from the marketing platform must not hold back the good leads beside it. The
  bad line is not dropped either: it goes, with its line number, the reason and its original
  text, to ``<data>/rejected/lead-feed/rejected-<file stem>.json``, and the file still moves
  to ``.done``. Re-sending a corrected line (or the whole file) is safe: ids already accepted
  are skipped as duplicates. This is also why the split does not use ``json_lines(Lead)``: it
  decodes inside the split expression, so its first bad line aborts the whole split (and,
  because the splitter reads one part ahead to know the last, the line before it too). Here
  the split yields raw lines (:func:`raw_lines`) and each one is decoded in its own part,
  where an ``on_exception(UnmarshalError, MappingError).handled()`` clause turns a failure
  into a rejection. Raw bytes, not ``lines()``: a line that is not valid UTF-8 is then one
  rejected line with a clear reason, not an undecodable file.
- **Validate and map before the idempotent consumer.** A rejected lead must not use up its
  id (a handled error counts as success, so the claim would be confirmed): the corrected lead,
  re-sent with the same id, must pass.
- **Infrastructure failures fail the file.** If a lead cannot be written (disk full), its id
  is released, the split stops (``stop_on_exception``) and the file goes to ``.error``. Moving
  it back into the inbox re-runs it: leads already written are skipped as duplicates.
- Lead ids are kept for ever (a few bytes each); pass ``ttl=`` to the repository to expire
  them. The id must match ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}`` because it names the output file.

``<data>`` is ``$EIP_DATA_DIR`` (default ``./data``). With ``EIP_DEMO`` not ``0``, a one-shot
timer route copies ``routes/samples/lead_feed/*.ndjson`` into the inbox at start; three of
their lines are rejected (an e-mail that is no address, a number for one, a line cut short).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import msgspec

from eip import Exchange, MappingError, RouteBuilder, UnmarshalError, body, header, pipeline
from eip import headers as H
from eip.dataformats import json
from eip.mapping import FieldMapper, chain, drop, field, lower, strip, upper
from eip.stores import SqliteIdempotentRepository
from routes._support import (
    SAMPLES,
    copy_samples,
    data_dir,
    demo_enabled,
    inbox,
    outbox,
    rejected,
    state,
)

__all__ = [
    "CrmLead",
    "CrmLeadFeed",
    "FeedStats",
    "Lead",
    "LeadContact",
    "LeadFeedDemoSeed",
    "RejectedLead",
    "raw_lines",
    "to_crm_lead",
]

WEB_PROMOTION = "web promotion"
SAMPLE_DIR = SAMPLES / "lead_feed"
INBOX = "marketing-leads"

# Exchange properties of one line (a split part) and of the file.
SOURCE_FILE = "lead.source_file"
LINE = "lead.line"
RAW = "lead.raw"
OUTCOME = "lead.outcome"
REASON = "lead.reason"

LeadId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class Lead(msgspec.Struct, frozen=True):
    """One line of the marketing platform's feed (fields it adds later are ignored)."""

    id: LeadId
    source: str
    email: str
    created_at: dt.datetime
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    country: str | None = None
    campaign: str | None = None
    marketing_consent: bool = False


class LeadContact(msgspec.Struct, frozen=True):
    email: str
    first_name: str | None
    last_name: str | None


class CrmLead(msgspec.Struct, frozen=True):
    """The lead record the CRM imports (one JSON file per lead)."""

    external_id: str
    contact: LeadContact
    company: str | None
    country_code: str | None
    campaign: str | None
    marketing_consent: bool
    received_at: dt.datetime
    lead_source: str
    status: str


class RejectedLead(msgspec.Struct, frozen=True):
    """A line that could not be taken, for the dead-letter file: where, why, and as it was."""

    line: int
    reason: str
    content: str


class FeedStats(msgspec.Struct):
    """What became of the lines of one file."""

    accepted: int = 0
    duplicates: int = 0
    other_sources: int = 0
    rejected: list[RejectedLead] = msgspec.field(default_factory=list)


def email_address(value: str) -> str:
    """A plausible e-mail address (one ``@``, a dot in the domain), else ValueError."""
    local, _, domain = value.partition("@")
    if not local or "@" in domain or "." not in domain.strip("."):
        raise ValueError("not an e-mail address")
    return value


to_crm_lead = FieldMapper(
    field("external_id", source="id"),
    field("contact.email", source="email", convert=chain(strip, lower, email_address)),
    field("contact.first_name", source="first_name", convert=strip),
    field("contact.last_name", source="last_name", convert=strip),
    field("company", convert=strip),
    field("country_code", source="country", convert=chain(strip, upper)),
    field("campaign"),
    field("marketing_consent"),
    field("received_at", source="created_at"),
    field("lead_source", value="web-promotion"),
    field("status", value="new"),
    drop("source"),
    target=CrmLead,
)


def _normalized(source: str) -> str:
    return source.strip().casefold()


is_web_promotion = body("source").map(_normalized) == WEB_PROMOTION


def raw_lines(exchange: Exchange) -> Iterator[bytes]:
    """Split expression: every physical line as bytes (blank ones too, so that the split
    index + 1 is the line number), streamed from the body."""
    data = exchange.body
    yield from io.BytesIO(data.encode() if isinstance(data, str) else data)


def line_number(exchange: Exchange) -> int:
    """The line number of a split part: its split index + 1 (every line is a part)."""
    index: int = exchange.properties[H.SPLIT_INDEX]
    return index + 1


def reject_line(exchange: Exchange) -> None:
    """``on_exception`` steps: mark the line rejected, with the reason (the error's own
    message, without the route and exchange ids the engine appends for logs)."""
    error = exchange.properties.get(H.EXCEPTION_PROPERTY)
    exchange.properties[OUTCOME] = "rejected"
    exchange.properties[REASON] = str(
        error.args[0] if isinstance(error, Exception) and error.args else error
    )


def tally(so_far: Exchange | None, line: Exchange) -> Exchange:
    """Split aggregation strategy: count what became of each line into a :class:`FeedStats`."""
    result = so_far if so_far is not None else Exchange(FeedStats(), dict(line.headers))
    stats: FeedStats = result.body
    outcome = line.properties.get(OUTCOME)
    if line.properties.get(H.DUPLICATE):
        stats.duplicates += 1
    elif outcome == "accepted":
        stats.accepted += 1
    elif outcome == "other source":
        stats.other_sources += 1
    elif outcome == "rejected":
        raw: bytes = line.properties[RAW]
        content = raw.decode("utf-8", "replace").rstrip("\r\n")
        reason = line.properties[REASON]
        stats.rejected.append(RejectedLead(line.properties[LINE], reason, content))
    return result


def feed_stats(exchange: Exchange) -> FeedStats:
    """The split's result; an empty file has no lines, hence no result."""
    return exchange.body if isinstance(exchange.body, FeedStats) else FeedStats()


def summary(exchange: Exchange) -> str:
    stats: FeedStats = exchange.body
    return (
        f"lead file {exchange.properties[SOURCE_FILE]}: {stats.accepted} accepted, "
        f"{stats.duplicates} duplicate(s) skipped, {stats.other_sources} from other sources, "
        f"{len(stats.rejected)} rejected"
    )


def rejects_file_name(exchange: Exchange) -> str:
    return f"rejected-{Path(exchange.properties[SOURCE_FILE]).stem}.json"


class CrmLeadFeed(RouteBuilder):
    def __init__(self, data: Path | None = None) -> None:
        super().__init__()
        self.data = data if data is not None else data_dir()

    def configure(self) -> None:
        seen = SqliteIdempotentRepository(state("leads.db", self.data))
        # Per line (split part): a line that does not decode or map is rejected, not fatal.
        self.on_exception(UnmarshalError, MappingError).handled().process(reject_line)
        each_line = (
            pipeline()
            .set_property(LINE, line_number)
            .set_property(RAW, body())
            .filter(body().map(bytes.strip))  # a blank line is no lead
            .unmarshal(json(Lead))
            .set_property(OUTCOME, "other source")
            .filter(is_web_promotion)
            .map_fields(to_crm_lead)
            .idempotent_consumer(body("external_id"), seen)
            .set_header(H.FILE_NAME, body("external_id").map("lead-{}.json".format))
            .marshal(json())
            .to(f"file:{outbox('crm-leads', self.data)}")
            .set_property(OUTCOME, "accepted")
        )
        (
            self.from_(f"file:{inbox(INBOX, self.data)}?include=*.ndjson&poll=1")
            .route_id("crm-lead-feed")
            .description("marketing NDJSON leads -> one CRM lead file per new web-promotion lead")
            .set_property(SOURCE_FILE, header(H.FILE_NAME))
            .split(raw_lines, each_line, aggregate=tally, stop_on_exception=True)
            .transform(feed_stats)
            .log(summary)
            .filter(body("rejected").map(bool))
            .transform(body("rejected"))
            .marshal(json())
            .set_header(H.FILE_NAME, rejects_file_name)
            .to(f"file:{rejected('lead-feed', self.data)}")
        )


def seed_demo_leads(exchange: Exchange) -> None:
    if demo_enabled():
        copy_samples(sorted(SAMPLE_DIR.glob("*.ndjson")), inbox(INBOX))


class LeadFeedDemoSeed(RouteBuilder):
    """Copies the sample lead files into the inbox once at start (EIP_DEMO=0 turns it off)."""

    def configure(self) -> None:
        (
            self.from_("timer:lead-feed-demo-seed?repeat_count=1")
            .route_id("lead-feed-demo-seed")
            .process(seed_demo_leads)
        )
