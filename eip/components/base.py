"""What every component is made of: an endpoint spec, a producer and a consumer.

An endpoint is written either as a URI string (``"seda:orders?size=500"``) or as a typed spec
(``seda("orders", size=500)``). Both resolve to the same frozen msgspec Struct, so options are
validated once, at route start, with one set of rules: an unknown or mistyped option raises a
:class:`~eip.errors.RouteDefinitionError` that names the option and lists the valid ones.
"""

from __future__ import annotations

import abc
import functools
import logging
import re
import types
import typing
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import msgspec

from eip.endpoint import EndpointSpec, spec_to_uri
from eip.errors import RouteDefinitionError, redact_uri
from eip.logs import exchange_fields
from eip.message import Exchange

if TYPE_CHECKING:
    from eip.clock import Clock
    from eip.runtime.route import Route
    from eip.tracing import Tracing

__all__ = [
    "Component",
    "ComponentHost",
    "Consumer",
    "EndpointSpec",
    "Producer",
    "parse_uri",
    "process_exchange",
    "spec_to_uri",
]

StepResult = Awaitable[Any] | object | None


class Producer(abc.ABC):
    """Sends exchanges to an endpoint. ``process`` returns None when it finished synchronously,
    or an awaitable; this lets in-memory sends stay plain calls on the hot path."""

    uri: str = ""

    @abc.abstractmethod
    def process(self, exchange: Exchange) -> Any: ...

    def inline_send(self) -> tuple[list[str], tuple[Any, ...]] | None:
        """The send as source lines for the fused pipeline, or None (``process`` is called).

        The lines use ``ex`` for the exchange and ``{0}``, ``{1}``, ... for the values, and
        leave the send's result in ``r``, as a call of ``process`` would; they must do exactly
        what ``process`` does (see :class:`eip.processors.base.Inline`)."""
        return None

    async def start(self) -> None:
        """Connect or prepare; called once before the first message."""

    async def stop(self) -> None:
        """Release resources; called once at shutdown, after consumers have drained."""


class Consumer(abc.ABC):
    """Feeds exchanges from an endpoint into a route.

    ``start`` returns only when the consumer is ready to take messages. ``stop`` stops taking
    new ones; in-flight exchanges are drained by the context. Internal consumers that other
    routes feed (``direct:``, ``seda:``) set ``stops_after_drain``: the context stops them only
    once every route is idle and every ``backlog`` is empty, so in-flight exchanges of upstream
    routes still find them.
    """

    stops_after_drain: ClassVar[bool] = False
    #: True when ``suspend``/``resume`` pause intake in place (a timer stops firing); else
    #: suspending stops the consumer and resuming starts it again (:mod:`eip.runtime.operations`).
    pauses_in_place: ClassVar[bool] = False

    def __init__(self, route: Route) -> None:
        self.route = route

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def suspend(self) -> None:
        """Take no new messages until ``resume``; in-flight ones finish. By default: stop."""
        await self.stop()

    async def resume(self) -> None:
        """Take messages again after ``suspend``. By default: start."""
        await self.start()

    async def abort(self) -> None:
        """Cancel whatever is still running after the shutdown timeout ran out."""

    async def release(self) -> None:
        """The route is removed (a reload dropped or replaced it), after ``stop``: give back
        what a stopped consumer keeps (an HTTP path that answers 503 while stopped)."""

    @property
    def backlog(self) -> int:
        """Messages this consumer holds in memory but has not dispatched yet."""
        return 0

    @property
    def ready(self) -> bool:
        """Whether the consumer is connected and taking messages (for readiness checks)."""
        return True

    @property
    def problem(self) -> str | None:
        """Why the consumer is not ready (None when it is), for readiness answers and logs."""
        return None if self.ready else "consumer not connected"


class ComponentHost(Protocol):
    """What a component needs from the context that runs it. The context is one, structurally:
    components never import it, which keeps them below the runtime."""

    @property
    def clock(self) -> Clock:
        """What timers, polling and waits sleep on (a manual clock in tests)."""
        ...

    @property
    def tracing(self) -> Tracing:
        """The context's tracing, decided when the context starts: read it at ``start``."""
        ...

    @property
    def shutdown_timeout(self) -> float:
        """Seconds a consumer may take to finish what it holds when it stops."""
        ...

    def component(self, scheme: str) -> Component:
        """Another component of the same context (SOAP serves on HTTP's shared server)."""
        ...


class Component(abc.ABC):
    """A transport: turns endpoint specs into producers and consumers, and owns shared state
    (queues, connections) for its endpoints within one context."""

    scheme: ClassVar[str]
    spec_type: ClassVar[type[EndpointSpec]]

    def __init__(self, context: ComponentHost) -> None:
        self.context = context

    def parse(self, uri: str) -> EndpointSpec:
        """Parse a URI into this component's spec; override for schemes with several forms."""
        return parse_uri(uri, self.spec_type)

    def problems(self) -> dict[str, str]:
        """Shared state that keeps this component's endpoints from working now (a broker
        connection that is down or blocked, say): name -> reason, for readiness checks."""
        return {}

    def validate(self, spec: Any) -> None:
        """Check semantic rules beyond types; raise ValueError naming the option."""

    def exclusive_consumer_key(self, spec: Any) -> str | None:
        """A key that at most one route may consume from (``direct:name``), or None."""
        return None

    def acknowledges_source(self, spec: Any) -> bool:
        """Whether a consumer of ``spec`` settles its source when an exchange completes (acks a
        broker message, moves a file, answers an in-only call): a memory-only hop that
        completes the exchange early would then let a crash lose what the hop holds."""
        return False

    @abc.abstractmethod
    def create_producer(self, spec: Any) -> Producer: ...

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        raise RouteDefinitionError(f"'{self.scheme}:' endpoints cannot be consumed from")

    async def start(self) -> None:
        """Called once, before the first producer or consumer of this component starts."""

    async def stop(self) -> None:
        """Called once at shutdown, after every producer and consumer stopped."""


S = TypeVar("S", bound=EndpointSpec)

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_AT_PATH = re.compile(r"^(.*?)(?: - at `\$\.?([^`]*)`)?$", re.DOTALL)


def parse_uri(
    uri: str, spec_type: type[EndpointSpec], *, path_value: str | None = None
) -> EndpointSpec:
    """Parse ``scheme:path?opt=value&...`` into ``spec_type``, with errors that name the option.

    ``path_value`` replaces the path (as it is, not unquoted): a component whose endpoint is a
    whole URL (``http://host/x``) passes it."""
    _, _, rest = uri.partition(":")
    path, _, query = rest.partition("?")
    if path.startswith("//"):
        path = path[2:]
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key in options:
            raise RouteDefinitionError(f"option '{key}' is given twice in {redact_uri(uri)}")
        options[key] = value
    if spec_type.path_field in options:
        raise RouteDefinitionError(
            f"'{spec_type.path_field}' is the endpoint path and cannot also be an option"
        )
    if path_value is not None:
        options[spec_type.path_field] = path_value
    elif path:
        options[spec_type.path_field] = urllib.parse.unquote(path)
    for name in _list_fields(spec_type):
        listed = options.get(name)
        if isinstance(listed, str):  # lists are comma-separated in URIs: binding_keys=a.*,b.#
            options[name] = [item for item in listed.split(",") if item]
    dict_fields = _dict_fields(spec_type)
    if dict_fields:
        _collect_dict_options(options, dict_fields)
    return build_spec(spec_type, options, redact_uri(uri))


def _collect_dict_options(options: dict[str, Any], fields: tuple[str, ...]) -> None:
    """``queue_arguments.x-max-priority=10`` -> ``queue_arguments={"x-max-priority": 10}``.

    URI values are strings; a mapping's values are typed here (integers, ``true``/``false``),
    because what reads them (AMQP arguments, say) cares about the type."""
    for key in [k for k in options if "." in k]:
        name, _, item = key.partition(".")
        if name in fields and item:
            options.setdefault(name, {})[item] = _scalar(options.pop(key))


def _scalar(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


@functools.cache
def _dict_fields(spec_type: type[EndpointSpec]) -> tuple[str, ...]:
    return tuple(
        f.name
        for f in msgspec.structs.fields(spec_type)
        if getattr(f.type, "__origin__", None) is dict
    )


@functools.cache
def _list_fields(spec_type: type[EndpointSpec]) -> tuple[str, ...]:
    return tuple(
        f.name
        for f in msgspec.structs.fields(spec_type)
        if getattr(f.type, "__origin__", None) in (list, tuple)
    )


def build_spec(spec_type: type[S], options: dict[str, Any], where: str) -> S:
    """Convert raw option values (strings from a URI, or Python values) into the spec; a
    mistake is a RouteDefinitionError that names the option and lists the valid ones.

    A property placeholder (``size="{{seda.size}}"``) in an option that is not a string is
    kept as written and converted when the route starts (:mod:`eip.runtime.properties`), so
    the spec shows the placeholder until then, and never the value."""
    valid = [f for f in spec_type.__struct_fields__ if f != spec_type.path_field]
    deferred = _deferred_options(spec_type, options)
    if deferred:
        options = {k: v for k, v in options.items() if k not in deferred}
    try:
        spec = msgspec.convert(options, spec_type, strict=False)
        return msgspec.structs.replace(spec, **deferred) if deferred else spec
    except msgspec.ValidationError as exc:
        text = str(exc)
        unknown = _UNKNOWN_FIELD.search(text)
        if unknown:
            raise RouteDefinitionError(
                f"unknown option '{unknown.group(1)}' for endpoint {where}",
                option=unknown.group(1),
                valid=valid,
            ) from None
        match = _AT_PATH.match(text)
        reason = match.group(1) if match else text
        option = match.group(2) if match and match.group(2) else None
        reason = reason.replace("`", "")
        reason = reason[:1].lower() + reason[1:]
        if option is None and "missing required field" in reason:
            option = reason.rsplit(" ", 1)[-1].strip("'")
        if option is not None:
            value = options.get(option)
            got = f" (got {value!r})" if value is not None else ""
            raise RouteDefinitionError(
                f"option '{option}' of endpoint {where}: {reason}{got}",
                option=option,
                valid=valid,
            ) from None
        raise RouteDefinitionError(f"endpoint {where}: {reason}", valid=valid) from None


def _deferred_options(spec_type: type[EndpointSpec], options: dict[str, Any]) -> dict[str, Any]:
    """The options that hold a placeholder where the field takes no string (a number, a
    flag, a choice), with a default to stand in until start."""
    if not any(isinstance(v, str) and "{{" in v for v in options.values()):
        return {}
    takes_text = _text_fields(spec_type)
    return {
        name: value
        for name, value in options.items()
        if isinstance(value, str)
        and "{{" in value
        and name in _optional_fields(spec_type)
        and name not in takes_text
    }


@functools.cache
def _text_fields(spec_type: type[EndpointSpec]) -> frozenset[str]:
    """Fields a string converts into as it is: ``str``, ``str | None``, ``Any``."""
    names = set()
    for f in msgspec.structs.fields(spec_type):
        kinds = typing.get_args(f.type) if _is_union(f.type) else (f.type,)
        if any(kind is str or kind is Any for kind in kinds):
            names.add(f.name)
    return frozenset(names)


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


@functools.cache
def _optional_fields(spec_type: type[EndpointSpec]) -> frozenset[str]:
    return frozenset(
        f.name
        for f in msgspec.structs.fields(spec_type)
        if f.default is not msgspec.NODEFAULT or f.default_factory is not msgspec.NODEFAULT
    )


class SupportsProcess(Protocol):
    def process(self, exchange: Exchange) -> Any: ...


_failures = logging.getLogger("eip.route.failures")


async def process_exchange(
    route: Route,
    exchange: Exchange,
    *,
    expected: Callable[[BaseException], bool] | None = None,
) -> bool:
    """Dispatch an exchange into a route and complete its unit of work; True on success.

    This is what every consumer calls: it is where a failure that the route's error handling
    did not handle is logged, and where on-completion callbacks (acks, key releases) run.
    ``expected`` tells a failure that is the route's intended answer (a SOAP consumer's
    declared WSDL fault): it is logged at INFO, as the business outcome it is.
    """
    route.inflight += 1  # held until completion callbacks ran, so shutdown waits for them
    try:
        try:
            result = route.dispatch(exchange)
            if result is not None:
                await result
        except Exception as exc:
            exchange.exception = exc
            if expected is not None and expected(exc):
                _failures.info(
                    "route %s answered exchange %s with %s",
                    route.id,
                    exchange.id,
                    exc,
                    extra=exchange_fields(exchange, route.id),
                )
            else:
                _log_failure(route, exchange, exc)
        done = exchange.done()
        if done is not None:
            await done
    finally:
        route.leave()
    return exchange.exception is None


def _log_failure(route: Route, exchange: Exchange, exc: Exception) -> None:
    _failures.error(
        "route %s failed exchange %s: %s: %s",
        route.id,
        exchange.id,
        type(exc).__name__,
        exc,
        extra=exchange_fields(exchange, route.id),
    )
