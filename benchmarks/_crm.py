"""The CRM customer data the benchmarks share: Structs, the CRM-to-ERP mapping and messages.

``make_messages`` builds varied, pre-encoded ~330 B customer records (a nested address, 11
fields); every 10th one is inactive. Regions are EU, US and APAC in proportions 5:3:2.
"""

from __future__ import annotations

import random

import msgspec

__all__ = ["REGIONS", "Address", "Customer", "ErpCustomer", "make_messages", "to_erp"]


class Address(msgspec.Struct):
    street: str
    city: str
    postal_code: str
    country: str


class Customer(msgspec.Struct):
    id: int
    source: str
    first_name: str
    last_name: str
    email: str
    phone: str
    active: bool
    region: str
    segment: str
    updated_at: str
    address: Address


class ErpCustomer(msgspec.Struct):
    customer_no: str
    name: str
    email: str
    phone: str
    region: str
    segment: str
    street: str
    city: str
    postal_code: str
    country: str
    origin: str


def to_erp(c: Customer) -> ErpCustomer:
    """The mapping both sides use: CRM customer to ERP customer."""
    a = c.address
    return ErpCustomer(
        customer_no=f"C{c.id:08d}",
        name=f"{c.first_name} {c.last_name}",
        email=c.email.lower(),
        phone=c.phone,
        region=c.region,
        segment=c.segment,
        street=a.street,
        city=a.city,
        postal_code=a.postal_code,
        country=a.country,
        origin=c.source,
    )


_FIRST = ("Anna", "Bruno", "Chen", "Dalia", "Emre", "Fatima", "Goran", "Hiro", "Ines", "Jonas")
_LAST = ("Martin", "Schmidt", "Rossi", "Novak", "Garcia", "Tanaka", "Okafor", "Larsen", "Silva")
_CITIES = {
    "EU": (("Lyon", "FR"), ("Hamburg", "DE"), ("Torino", "IT"), ("Gdansk", "PL")),
    "US": (("Austin", "US"), ("Denver", "US"), ("Portland", "US")),
    "APAC": (("Osaka", "JP"), ("Pune", "IN"), ("Perth", "AU"), ("Busan", "KR")),
}
REGIONS = ("EU", "US", "APAC")
_SEGMENTS = ("retail", "smb", "enterprise", "public")
_SOURCES = ("web", "shop", "partner-portal")


def make_messages(count: int, seed: int = 7) -> list[bytes]:
    """``count`` pre-encoded CRM customers (~300 B each, varied); every 10th is inactive."""
    rng = random.Random(seed)
    encode = msgspec.json.Encoder().encode
    out = []
    for i in range(count):
        region = rng.choices(REGIONS, weights=(5, 3, 2))[0]
        city, country = rng.choice(_CITIES[region])
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        customer = Customer(
            id=100_000 + i,
            source=rng.choice(_SOURCES),
            first_name=first,
            last_name=last,
            email=f"{first}.{last}{rng.randrange(1000)}@Example.com",
            phone=f"+{rng.randrange(1, 99)} {rng.randrange(10**8, 10**9)}",
            active=i % 10 != 9,
            region=region,
            segment=rng.choice(_SEGMENTS),
            updated_at=f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
            address=Address(
                street=f"{rng.randrange(1, 400)} {rng.choice(_LAST)} Street, building "
                f"{rng.choice('ABCDEFGH')}, floor {rng.randrange(1, 30)}",
                city=city,
                postal_code=f"{rng.randrange(10000, 99999)}",
                country=country,
            ),
        )
        out.append(encode(customer))
    return out
