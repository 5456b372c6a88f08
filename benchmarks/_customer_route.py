"""The route of the ``pipeline`` benchmark, apart so that its variants (``_encrypt_bench``)
subclass it without importing the benchmark that runs them."""

from __future__ import annotations

from benchmarks._crm import Customer, to_erp
from eip import RouteBuilder, otherwise, when
from eip.dataformats import json
from eip.dsl.builder import RouteDefinition

__all__ = ["ROUTE_ID", "CustomerRoute"]

ROUTE_ID = "bench"


class CustomerRoute(RouteBuilder):
    """The same work as :class:`Handwritten`, as a route. Variants of it (the encrypted one)
    subclass it and add their step in :meth:`before_outputs`."""

    route_id = ROUTE_ID
    #: Exchanges the ``mock:eu`` output keeps (0: none, which costs nothing per message).
    eu_retain = 0

    def before_outputs(self, route: RouteDefinition) -> RouteDefinition:
        return route

    def configure(self) -> None:
        out = json()
        eu = f"mock:eu?retain={self.eu_retain}"
        route = (
            self.from_("direct:in")
            .route_id(self.route_id)
            .unmarshal(json(Customer))
            .filter(lambda ex: ex.body.active)
            .transform(lambda ex: to_erp(ex.body))
        )
        (
            self.before_outputs(route).choice(
                when(lambda ex: ex.body.region == "EU").marshal(out).to(eu),
                when(lambda ex: ex.body.region == "US").marshal(out).to("mock:us?retain=0"),
                otherwise().marshal(out).to("mock:apac?retain=0"),
            )
        )
