"""What an endpoint is, and what a step that picks its endpoint per message needs to reach it.

An endpoint is written as a URI string (``"seda:orders?size=500"``) or as a typed spec
(``seda("orders", size=500)``), a frozen msgspec Struct derived from :class:`EndpointSpec`;
:data:`EndpointRef` is either. Components define the specs and parse URIs into them
(:mod:`eip.components.base`); this module holds only what everybody shares, so processors,
the DSL and the runtime can speak of endpoints without importing a component.

A step that resolves endpoints while messages flow (a recipient list, ``to_d``) asks an
:class:`EndpointResolver` for a started producer. The context is one (structurally: it is not
imported here), which keeps the processors below the runtime.
"""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import msgspec

from eip.message import Exchange
from eip.redaction import redact_uri

__all__ = [
    "EndpointRef",
    "EndpointResolver",
    "EndpointSpec",
    "SendTracing",
    "Sender",
    "endpoint_text",
    "spec_to_uri",
]


class EndpointSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every endpoint spec. ``scheme`` names the component; ``path_field`` says which
    field the part of the URI between ``scheme:`` and ``?`` fills."""

    scheme: ClassVar[str]
    path_field: ClassVar[str] = "name"

    @property
    def uri(self) -> str:
        return spec_to_uri(self)


def spec_to_uri(spec: EndpointSpec) -> str:
    """The canonical URI of a spec: options that differ from their defaults, sorted."""
    path_value = getattr(spec, spec.path_field, "")
    defaults = dict(
        zip(
            spec.__struct_fields__,
            (d for d in _defaults(type(spec))),
            strict=True,
        )
    )
    options: list[tuple[str, str]] = []
    for name in sorted(spec.__struct_fields__):
        if name == spec.path_field:
            continue
        value = getattr(spec, name)
        if value == defaults.get(name, _NO_DEFAULT):
            continue
        if isinstance(value, dict):
            options.extend((f"{name}.{k}", _option_text(v)) for k, v in sorted(value.items()))
            continue
        options.append((name, _option_text(value)))
    query = urllib.parse.urlencode(options, safe="/:,*{}")  # readable paths, URLs, globs
    return f"{spec.scheme}:{path_value}" + (f"?{query}" if query else "")


class _NoDefault:
    pass


_NO_DEFAULT = _NoDefault()


@functools.cache
def _defaults(spec_type: type[EndpointSpec]) -> list[Any]:
    info = msgspec.structs.fields(spec_type)
    out: list[Any] = []
    for f in info:
        if f.default is not msgspec.NODEFAULT:
            out.append(f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            out.append(f.default_factory())
        else:
            out.append(_NO_DEFAULT)
    return out


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


#: An endpoint as routes name it: a URI or a typed spec.
EndpointRef = str | EndpointSpec


def endpoint_text(ref: EndpointRef) -> str:
    """The endpoint as a log-safe URI."""
    return redact_uri(ref if isinstance(ref, str) else ref.uri)


class Sender(Protocol):
    """A producer as a step sees it: ``process`` returns None when it finished synchronously,
    or an awaitable."""

    def process(self, exchange: Exchange) -> Any: ...


class SendTracing(Protocol):
    """The part of the context's tracing that a step which sends needs."""

    @property
    def enabled(self) -> bool: ...

    def traced_send(
        self, send: Callable[[Exchange], Any], uri: str
    ) -> Callable[[Exchange], Any]: ...


class EndpointResolver(Protocol):
    """What a step that picks its endpoint per message needs from the context.

    ``producer`` resolves an endpoint and returns its producer, started (on first use);
    an invalid endpoint raises :class:`~eip.errors.RouteDefinitionError`. ``tracing`` is read
    when a producer is resolved, since the context decides on tracing when it starts.
    """

    @property
    def tracing(self) -> SendTracing: ...

    async def producer(self, ref: EndpointRef) -> Sender: ...
