"""Expression and predicate helpers: ``header()``, ``body()``, ``constant()``, ...

Every user callable in eip takes the :class:`~eip.message.Exchange`. These helpers build such
callables for the common cases and read well in routes::

    .filter(header("source") == "web")
    .choice(when(body("address.country").in_("DE", "AT")).to("direct:dach"))
    .set_header("region", body("region").map(str.upper))

Expressions are synchronous by contract: they run inline on the per-message path. Comparison
operators build predicates; combine predicates with ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from eip.message import Exchange

__all__ = [
    "Expression",
    "body",
    "constant",
    "exchange_property",
    "header",
    "path_getter",
]

_MISSING = object()


def path_getter(path: str) -> Callable[[Any], Any]:
    """Compile a dotted path (``"address.zip"``) into a getter for dicts and objects.

    A missing key or attribute yields None, so predicates over optional fields stay simple.
    """
    parts = tuple(path.split(".")) if path else ()

    def get(value: Any) -> Any:
        for part in parts:
            if value is None:
                return None
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        return value

    if len(parts) == 1:
        (only,) = parts

        def get_one(value: Any) -> Any:
            if isinstance(value, dict):
                return value.get(only)
            return getattr(value, only, None)

        return get_one
    return get


class Expression:
    """A callable ``Exchange -> value`` with operators that build predicates."""

    __slots__ = ("description", "fn")

    def __init__(self, fn: Callable[[Exchange], Any], description: str) -> None:
        self.fn = fn
        self.description = description

    def __call__(self, exchange: Exchange) -> Any:
        return self.fn(exchange)

    def __repr__(self) -> str:
        return self.description

    def _compare(self, other: Any, op: Callable[[Any, Any], Any], symbol: str) -> Expression:
        fn = self.fn
        if isinstance(other, Expression):
            other_fn = other.fn
            return Expression(
                lambda ex: op(fn(ex), other_fn(ex)), f"{self.description} {symbol} {other!r}"
            )
        return Expression(lambda ex: op(fn(ex), other), f"{self.description} {symbol} {other!r}")

    def __eq__(self, other: object) -> Expression:  # type: ignore[override]
        return self._compare(other, operator.eq, "==")

    def __ne__(self, other: object) -> Expression:  # type: ignore[override]
        return self._compare(other, operator.ne, "!=")

    def __lt__(self, other: Any) -> Expression:
        return self._compare(other, operator.lt, "<")

    def __le__(self, other: Any) -> Expression:
        return self._compare(other, operator.le, "<=")

    def __gt__(self, other: Any) -> Expression:
        return self._compare(other, operator.gt, ">")

    def __ge__(self, other: Any) -> Expression:
        return self._compare(other, operator.ge, ">=")

    __hash__ = object.__hash__

    def __and__(self, other: Callable[[Exchange], Any]) -> Expression:
        fn = self.fn
        return Expression(lambda ex: bool(fn(ex)) and bool(other(ex)), f"({self!r} and {other!r})")

    def __or__(self, other: Callable[[Exchange], Any]) -> Expression:
        fn = self.fn
        return Expression(lambda ex: bool(fn(ex)) or bool(other(ex)), f"({self!r} or {other!r})")

    def __invert__(self) -> Expression:
        fn = self.fn
        return Expression(lambda ex: not fn(ex), f"not {self!r}")

    def in_(self, *values: Any) -> Expression:
        """True when the value is one of ``values``."""
        fn = self.fn
        choices = frozenset(values) if all(_hashable(v) for v in values) else values

        def is_in(ex: Exchange) -> bool:
            try:
                return fn(ex) in choices
            except TypeError:  # an unhashable value cannot be in a set of hashables
                return False

        return Expression(is_in, f"{self.description} in {values!r}")

    def contains(self, item: Any) -> Expression:
        fn = self.fn
        return Expression(
            lambda ex: _contains(fn(ex), item), f"{self.description} contains {item!r}"
        )

    def is_none(self) -> Expression:
        fn = self.fn
        return Expression(lambda ex: fn(ex) is None, f"{self.description} is None")

    def is_not_none(self) -> Expression:
        fn = self.fn
        return Expression(lambda ex: fn(ex) is not None, f"{self.description} is not None")

    def startswith(self, prefix: str) -> Expression:
        fn = self.fn
        return Expression(
            lambda ex: _str_or_none(fn(ex), prefix, str.startswith),
            f"{self.description} startswith {prefix!r}",
        )

    def map(self, func: Callable[[Any], Any]) -> Expression:
        """Apply ``func`` to the value (skipped for None)."""
        fn = self.fn

        def mapped(ex: Exchange) -> Any:
            value = fn(ex)
            return None if value is None else func(value)

        return Expression(mapped, f"{self.description}.map({getattr(func, '__name__', func)})")


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _contains(container: Any, item: Any) -> bool:
    return container is not None and item in container


def _str_or_none(value: Any, arg: str, method: Callable[[str, str], bool]) -> bool:
    return isinstance(value, str) and method(value, arg)


def header(name: str, default: Any = None) -> Expression:
    """The value of header ``name`` (``default`` when absent)."""
    return Expression(lambda ex: ex.headers.get(name, default), f"header({name!r})")


def body(path: str | None = None) -> Expression:
    """The body, or a field of it by dotted path (dict keys or attributes)."""
    if not path:
        return Expression(lambda ex: ex.body, "body()")
    get = path_getter(path)
    return Expression(lambda ex: get(ex.body), f"body({path!r})")


def constant(value: Any) -> Expression:
    """Always ``value``."""
    return Expression(lambda _ex: value, f"constant({value!r})")


def exchange_property(name: str, default: Any = None) -> Expression:
    """The value of exchange property ``name``."""
    return Expression(lambda ex: ex.properties.get(name, default), f"exchange_property({name!r})")
