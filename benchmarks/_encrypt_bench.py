"""The field-encryption variant of the ``pipeline`` benchmark: the same route, with
``encrypt_fields`` on two personal fields (``email``, ``phone``) of the mapped record before it
is written, as the CRM -> ERP examples do before a queue.

Both sides run the pipeline benchmark's route through ``route.dispatch``; the encrypted side's
outputs are checked as the plain one's are (per-output counts), and after each round one more
EU customer goes through the same route, untimed, with its output kept and decrypted again, so
a route that wrote garbage cannot pass for a fast one. The outputs keep nothing while timed, as
the plain side's do (a kept snapshot per EU exchange cost ~0.3 µs, charged to encryption).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from benchmarks._crm import Customer, ErpCustomer
from benchmarks._customer_route import CustomerRoute
from benchmarks._report import Measurement, Variant, result_line
from eip import Context, Exchange
from eip.dsl.builder import RouteDefinition
from eip.runtime.route import Route
from eip.security import FieldCipher

__all__ = ["ENCRYPTED", "FIELDS", "EncryptBench"]

ENCRYPTED = "eip route.dispatch, encrypt_fields(email, phone)"
FIELDS = ["email", "phone"]
ROUTE_ID = "bench-encrypted"


class EncryptedCustomerRoute(CustomerRoute):
    """The pipeline benchmark's route, with two fields encrypted before the outputs."""

    route_id = ROUTE_ID

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def before_outputs(self, route: RouteDefinition) -> RouteDefinition:
        return route.encrypt_fields(FIELDS, key=self.key)


class EncryptBench:
    """Starts the encrypted route's context; makes its variant and its RESULT line."""

    def __init__(self, context: Context, key: str) -> None:
        self.context = context
        self.route: Route = context.routes[ROUTE_ID]
        self.cipher = FieldCipher(FIELDS, key)

    @classmethod
    async def start(cls) -> EncryptBench:
        key = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
        context = Context()
        context.add_routes(EncryptedCustomerRoute(key))
        await context.start()
        return cls(context, key)

    async def stop(self) -> None:
        await self.context.stop()

    def variant(
        self,
        messages: Sequence[bytes],
        mock_counts: Callable[[Context], Any],
        minus: Callable[[Any, Any], Any],
        expected: Any,
        drive: Callable[[Route, Sequence[bytes]], Any],
        clocks: Any,
    ) -> Variant:
        decode = msgspec.json.Decoder(Customer).decode
        probe = next(raw for raw in messages if _is_eu(decode(raw)))

        async def via_encrypted() -> float:
            before = mock_counts(self.context)
            began = clocks.start()
            await drive(self.route, messages)
            seconds = float(clocks.stop(ENCRYPTED, began))
            got = minus(mock_counts(self.context), before)
            assert got == expected, f"{ENCRYPTED}: delivered {got}, expected {expected}"
            await self._check_one(drive, probe, decode(probe).email.lower())
            return seconds

        return Variant(ENCRYPTED, via_encrypted, len(messages))

    async def _check_one(
        self, drive: Callable[[Route, Sequence[bytes]], Any], raw: bytes, email: str
    ) -> None:
        """One EU customer through the route (untimed, its output kept): its encrypted fields
        are tokens and decrypt to what was sent."""
        eu = self.context.mock("eu")
        eu.retain = 1
        try:
            await drive(self.route, [raw])
            last: Exchange = eu.received[-1]
        finally:
            eu.retain = 0
            eu.received.clear()
        sealed = msgspec.json.decode(last.body, type=ErpCustomer)
        assert sealed.email.startswith("eip1.k1."), "the email was not encrypted"
        plain = self.cipher.decrypt(sealed)
        assert plain.email == email, "the email did not decrypt"

    def result_line(self, results: dict[str, Measurement], plain: str) -> str:
        return result_line(
            "encrypt-2-fields-vs-plain", results[ENCRYPTED].median, results[plain].median
        )

    def summary(self, results: dict[str, Measurement], plain: str) -> str:
        on, off = results[ENCRYPTED].median, results[plain].median
        added = 1e6 / on - 1e6 / off
        return f"encrypt_fields on two fields adds {added:.2f} µs per exchange"


def _is_eu(customer: Customer) -> bool:
    return customer.active and customer.region == "EU"
