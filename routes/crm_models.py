"""Record types of the CRM customer import: the CRM export row and the ERP customer."""

from __future__ import annotations

import datetime as dt

import msgspec


class ErpContact(msgspec.Struct, frozen=True):
    first_name: str
    last_name: str
    email: str


class ErpCustomer(msgspec.Struct, frozen=True):
    """The customer record the ERP inbox expects (one JSON file per import)."""

    customer_number: str
    contact: ErpContact
    country_code: str
    annual_revenue_cents: int
    tier: str
    customer_since: dt.date
    source_system: str


class RejectedRow(msgspec.Struct, frozen=True):
    """A CRM row that could not be imported, with the reason, for the dead-letter file."""

    line: int
    customer_id: str
    reason: str


class ImportBatch(msgspec.Struct):
    """One CRM export file, cleaned: what goes to the ERP and what was rejected."""

    accepted: list[ErpCustomer]
    rejected: list[RejectedRow]
    duplicates: int = 0
