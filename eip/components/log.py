"""``log:name`` - logs each exchange on logger ``eip.log.<name>`` and passes it on.

The line is built only when the logger is enabled for the level. Bodies are cut at
``max_chars``; headers are shown with ``show_headers=true``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from eip.components.base import Component, EndpointSpec, Producer
from eip.components.typed import make_spec, typed_spec
from eip.message import Exchange

__all__ = ["LogComponent", "LogSpec", "log_endpoint"]

_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40}


class LogSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "log"
    name: str
    level: str = "INFO"
    show_body: bool = True
    show_headers: bool = False
    max_chars: int = 1000


@typed_spec(LogSpec)
def log_endpoint(name: str, *, level: str = "INFO", show_headers: bool = False) -> LogSpec:
    """Typed form of ``log:name``."""
    return make_spec(LogSpec, {"name": name, "level": level, "show_headers": show_headers})


class LogComponent(Component):
    scheme: ClassVar[str] = "log"
    spec_type: ClassVar[type[EndpointSpec]] = LogSpec

    def validate(self, spec: Any) -> None:
        if spec.level.upper() not in _LEVELS:
            raise ValueError(f"level must be one of {', '.join(_LEVELS)}, got {spec.level!r}")

    def create_producer(self, spec: Any) -> Producer:
        return LogProducer(spec)


class LogProducer(Producer):
    def __init__(self, spec: LogSpec) -> None:
        self.logger = logging.getLogger(f"eip.log.{spec.name}")
        self.level = _LEVELS[spec.level.upper()]
        self.spec = spec

    def process(self, exchange: Exchange) -> None:
        if not self.logger.isEnabledFor(self.level):
            return
        parts = [f"Exchange[id={exchange.id}"]
        if self.spec.show_headers:
            parts.append(f"headers={exchange.headers!r}")
        if self.spec.show_body:
            body = exchange.body
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else repr(body)
            if len(text) > self.spec.max_chars:
                text = text[: self.spec.max_chars] + f"... [{len(text)} chars]"
            parts.append(f"body={text}")
        self.logger.log(self.level, "%s]", ", ".join(parts))
