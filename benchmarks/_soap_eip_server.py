"""The eip side of the SOAP consumer benchmark, as its own process:
``python -m benchmarks._soap_eip_server PORT``.

``soap:/services/customer`` served from ``tests/soap/wsdl/crm_erp.wsdl`` (request and reply
validated against its XSD, read and written through its types), with a ``CheckCredit`` route
doing the baseline's work (``benchmarks._soap_apps:credit_service_app``).
"""

from __future__ import annotations

import decimal
import sys
from pathlib import Path
from typing import Any

from benchmarks._eip_server import serve_forever
from eip import RouteBuilder
from eip.components.soap import soap_server

__all__ = ["WSDL", "CreditService", "main"]

WSDL = str(Path(__file__).resolve().parent.parent / "tests" / "soap" / "wsdl" / "crm_erp.wsdl")
LIMIT = decimal.Decimal("1000.00")


def check(exchange: Any) -> None:
    exchange.body = {
        "approved": exchange.body["amount"] <= LIMIT,
        "limit": LIMIT,
        "reason": "within limit",
    }


class CreditService(RouteBuilder):
    def configure(self) -> None:
        self.from_(soap_server("/services/customer", wsdl=WSDL)).route_id("credit").process(check)


def main() -> None:
    serve_forever(CreditService(), int(sys.argv[1]))


if __name__ == "__main__":
    main()
