"""``inline_routes(lambda b: b.from_(...)...)``: a RouteBuilder from a function, for tests whose
routes fit on a line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eip import RouteBuilder

__all__ = ["inline_routes"]


def inline_routes(configure: Callable[[RouteBuilder], Any]) -> RouteBuilder:
    class Inline(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Inline()
