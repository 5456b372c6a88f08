"""CRM customer upserts -> the legacy ERP's SOAP CustomerService; the ERP's credit-check
callback served over SOAP.

**Upserts.** The CRM drops one JSON record per changed customer into
``<data>/inbox/crm-soap-upserts/``. Each is read as a typed ``CrmCustomer``, mapped to the
ERP's ``UpsertCustomer`` request (``routes/wsdl/crm_erp.wsdl``) and sent to
``{{erp.soap_url}}`` with a WS-Security UsernameToken (user ``{{erp.soap_user}}``, password in
``$ERP_SOAP_PASSWORD``): ``soap_url`` and ``soap_user`` in eip.toml's ``[erp]`` table, or
``$EIP_ERP__SOAP_URL`` and ``$EIP_ERP__SOAP_USER``. A SOAP fault is the ERP's answer
(``CustomerFault``: VALIDATION, DUPLICATE, LOCKED) and will not change on a retry: the ERP is
called once and the record goes to ``<data>/rejected/soap-upsert/`` with the fault's code and
detail (the ``on_exception(SoapFault)`` clause says "no redelivery" itself, as a clause
otherwise inherits the error handler's). Anything else (a time-out, the ERP down) is retried
three times with backoff, then the record is dead-lettered to
``<data>/dead-letter/soap-upsert/`` as it arrived. Both are the examples' dead-letter envelope
(``routes/_support.py``): the failure headers, the other headers, the body.

**Credit checks.** The ERP calls ``CheckCredit`` at ``/services/erp/credit-check`` (SOAP 1.1 or
1.2, the WSDL at ``?wsdl``) before it releases an order; eip answers from the CRM's credit
limits (``routes/samples/credit_limits.json``): approved when the amount fits the customer's
limit. The ERP signs in with a WS-Security UsernameToken (text or digest) of a user in
``$ERP_CALLBACK_USERS`` (``user:password`` pairs; the demo's default is
``erp-callback:demo-callback-password``): a missing or wrong token gets a
``wsse:FailedAuthentication`` fault and the route never runs. A request that does not match the
WSDL's schema gets a Client fault naming the element before the route runs.

Demo (``EIP_DEMO`` not ``0``): the ERP's SOAP service is served by eip itself at
``/demo/erp/soap/customer``, a one-shot timer drops the sample customers
(``routes/samples/soap_upsert/``) into the inbox: ``customer-1001.json`` is upserted,
``customer-1002.json`` (a closed customer) is refused with a ``CustomerFault`` LOCKED and lands
in ``rejected/soap-upsert/``. The ERP's address and user are the demo's (``[demo.erp]`` in
eip.toml), and ``$ERP_SOAP_PASSWORD`` defaults to a demo value. With ``EIP_DEMO=0``,
``{{erp.soap_url}}``, ``{{erp.soap_user}}`` and ``$ERP_SOAP_PASSWORD`` must be set, or the
route fails at start (and ``eip check``) naming the missing ones.
"""

from __future__ import annotations

import decimal
import json as stdlib_json
import os
from pathlib import Path
from typing import Any

import msgspec

from eip import (
    Exchange,
    RedeliveryPolicy,
    RouteBuilder,
    dead_letter_channel,
    otherwise,
    when,
)
from eip import headers as H
from eip.components.soap import soap_client, soap_server
from eip.dataformats import json
from eip.errors import SoapFault
from routes._support import (
    SAMPLES,
    copy_samples,
    dead_letter,
    dead_letters,
    demo_enabled,
    inbox,
    rejected,
    setting,
)

WSDL = str(Path(__file__).parent / "wsdl" / "crm_erp.wsdl")
CREDIT_LIMITS = SAMPLES / "credit_limits.json"
INBOX = "crm-soap-upserts"
EXAMPLE = "soap-upsert"  # its rejected/ and dead-letter/ folders
#: ``user:password`` pairs the ERP's credit-check calls sign in with (WS-Security).
CALLBACK_USERS = "ERP_CALLBACK_USERS"


class CrmAddress(msgspec.Struct, frozen=True):
    street: str
    city: str
    country: str
    zip: str | None = None


class CrmCustomer(msgspec.Struct, frozen=True):
    """A CRM customer record, as the CRM exports it."""

    id: int
    name: str
    status: str
    customer_since: str
    email: str | None = None
    employees: int | None = None
    addresses: list[CrmAddress] = []


def to_upsert(customer: CrmCustomer) -> dict[str, Any]:
    """The ERP's ``UpsertCustomer`` request for a CRM customer."""
    return {
        "customer": {
            "id": f"C{customer.id:06d}",
            "name": customer.name.strip(),
            "status": customer.status.upper(),
            "customerSince": customer.customer_since,
            "email": customer.email,
            "employees": customer.employees,
            "addresses": {
                "address": [
                    {
                        "street": a.street,
                        "city": a.city,
                        "postalCode": a.zip,
                        "country": a.country.upper(),
                    }
                    for a in customer.addresses
                ]
            },
        },
        "correlationId": f"crm-{customer.id}",
    }


UPSERT_ROUTE = "crm-customer-soap-upsert"


def _demo_password() -> None:
    """The demo's stand-in WS-Security password, as the variable the endpoint reads (a
    secret stays in the environment, never in eip.toml); a variable that is set is kept.
    Without the demo, an unset ``$ERP_SOAP_PASSWORD`` fails the start (and ``eip check``),
    as missing ``{{erp.soap_url}}`` and ``{{erp.soap_user}}`` do: the demo's address would
    silently talk to nothing, or to the wrong ERP."""
    if demo_enabled():
        os.environ.setdefault("ERP_SOAP_PASSWORD", "demo-soap-password")
        os.environ.setdefault(CALLBACK_USERS, "erp-callback:demo-callback-password")


def _fault_record(exchange: Any) -> dict[str, Any]:
    """The body of a rejection: the request the ERP refused, and its typed fault."""
    fault = exchange.properties[H.EXCEPTION_PROPERTY]
    return {
        "request": exchange.body,
        "fault": fault.fault,
        "reason": fault.reason,
        "detail": fault.detail,
    }


class CrmCustomerSoapUpsert(RouteBuilder):
    def configure(self) -> None:
        _demo_password()
        self.error_handler(
            dead_letter_channel(
                "direct:crm-soap-dead",
                redelivery=RedeliveryPolicy(max_redeliveries=3, delay=0.5, backoff_multiplier=2),
                use_original_message=True,
            )
        )
        (
            # A fault is the ERP's answer: reject it after one call. The default rule would
            # already skip a Client fault, but a clause inherits the error handler's
            # redelivery, so say it here for every fault (Server faults included).
            self.on_exception(SoapFault)
            .redelivery(max_redeliveries=0)
            .handled()
            .set_body(_fault_record)
            .transform(dead_letter)
            .to(f"file:{rejected(EXAMPLE)}")
            .log(
                "ERP rejected {headers[eip.file.name]}: {headers[eip.exception.message]}", level=30
            )
        )
        erp = soap_client(
            "legacy-erp",
            wsdl=WSDL,
            wsdl_port="CustomerSoap11Port",
            operation="UpsertCustomer",
            address=setting("erp.soap_url"),
            timeout=10.0,
            ws_username=setting("erp.soap_user"),
            ws_password_env="ERP_SOAP_PASSWORD",
        )
        (
            self.from_(f"file:{inbox(INBOX)}?include=*.json")
            .route_id(UPSERT_ROUTE)
            .description("CRM customer records -> ERP SOAP UpsertCustomer")
            .unmarshal(json(CrmCustomer))
            .transform(lambda ex: to_upsert(ex.body))
            .to(erp)
            .log("ERP customer {body[customerId]} upserted (version {body[version]})")
        )
        (
            self.from_("direct:crm-soap-dead")
            .route_id("crm-soap-dead")
            .transform(dead_letter)
            .to(f"file:{dead_letters(EXAMPLE)}")
            .log("ERP upsert dead-lettered: {headers[eip.exception.message]}", level=30)
        )


class ErpCreditCheck(RouteBuilder):
    """The ERP's credit-check callback, answered from the CRM's credit limits; the ERP must
    sign in with a WS-Security UsernameToken of a user in ``$ERP_CALLBACK_USERS``."""

    def configure(self) -> None:
        _demo_password()
        limits = {
            key: decimal.Decimal(value)
            for key, value in stdlib_json.loads(CREDIT_LIMITS.read_text()).items()
        }

        def check(exchange: Any) -> None:
            request = exchange.body
            limit = limits.get(request["customerId"], decimal.Decimal("0"))
            approved = request["amount"] <= limit
            exchange.body = {
                "approved": approved,
                "limit": limit,
                "reason": "within the CRM credit limit" if approved else "over the credit limit",
            }

        def not_offered(exchange: Any) -> None:
            raise SoapFault(
                f"{exchange.headers[H.SOAP_OPERATION]} is not offered at this address",
                kind="client",
            )

        (
            self.from_(
                soap_server(
                    "/services/erp/credit-check",
                    wsdl=WSDL,
                    ws_security="username_token",  # the ERP signs in with a UsernameToken
                    ws_users_env=CALLBACK_USERS,
                )
            )
            .route_id("erp-credit-check")
            .description("ERP credit-check callback (SOAP) answered from CRM credit limits")
            .choice(
                when(lambda ex: ex.headers[H.SOAP_OPERATION] == "CheckCredit").process(check),
                otherwise().process(not_offered),
            )
            .log("credit check {headers[eip.soap.version]}: approved={body[approved]}")
        )


class DemoErpSoapService(RouteBuilder):
    """The demo's legacy ERP SOAP service, served by eip (``EIP_DEMO=0`` leaves it out)."""

    abstract = not demo_enabled()

    def configure(self) -> None:
        versions: dict[str, int] = {}

        def upsert(exchange: Any) -> None:
            customer = exchange.body["customer"]
            if customer["status"] == "CLOSED":
                raise SoapFault(
                    "closed customers cannot be changed",
                    kind="client",
                    fault="CustomerFault",
                    detail={"code": "LOCKED", "message": "customer is closed", "field": "status"},
                )
            version = versions[customer["id"]] = versions.get(customer["id"], 0) + 1
            exchange.body = {
                "customerId": customer["id"],
                "created": version == 1,
                "version": version,
            }

        (
            self.from_(soap_server("/demo/erp/soap/customer", wsdl=WSDL))
            .route_id("demo-erp-soap-customer")
            .process(upsert)
        )
        (
            self.from_("timer:crm-soap-demo?repeat_count=1&delay=0.5")
            .route_id("crm-soap-demo")
            .process(seed_demo_upserts)
        )


def seed_demo_upserts(exchange: Exchange) -> None:
    """The sample customers into the inbox: one the ERP takes, one it refuses (closed)."""
    copy_samples(sorted((SAMPLES / "soap_upsert").glob("*.json")), inbox(INBOX))
