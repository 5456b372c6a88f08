"""Routing EIPs: multicast, recipient list, wire tap, enricher, throttler, circuit breaker."""

from __future__ import annotations

from eip.dsl.base import StepsBase

__all__ = ["RoutingSteps"]


class RoutingSteps(StepsBase):
    """DSL methods of the routing EIPs (mixed into every step builder)."""
