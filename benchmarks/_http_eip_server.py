"""The eip side of the HTTP consumer benchmark, run as its own process:
``python -m benchmarks._http_eip_server PORT``.

One route on eip's HTTP server (uvicorn, httptools, uvloop), doing the work the raw ASGI
baseline (``benchmarks._http_apps.crm_raw_app``) does by hand::

    from_("http:/bench?methods=POST").unmarshal(json(Customer)).transform(to_erp).marshal(json())
"""

from __future__ import annotations

import sys

from benchmarks._crm import Customer, to_erp
from benchmarks._eip_server import serve_forever
from eip import RouteBuilder
from eip.dataformats import json

__all__ = ["BenchRoute", "main"]


class BenchRoute(RouteBuilder):
    def configure(self) -> None:
        (
            self.from_("http:/bench?methods=POST")
            .route_id("bench")
            .unmarshal(json(Customer))
            .transform(lambda ex: to_erp(ex.body))
            .marshal(json())
        )


def main() -> None:
    serve_forever(BenchRoute(), int(sys.argv[1]))


if __name__ == "__main__":
    main()
