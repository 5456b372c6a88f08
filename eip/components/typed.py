"""The typed spec functions (``seda("orders", size=5)``) fail as URIs do.

A typo in a keyword (``seda("orders", sise=5)``) or a value of the wrong type
(``seda("orders", size="lots")``) raises the same :class:`~eip.errors.RouteDefinitionError` as
``"seda:orders?sise=5"``: it names the option and lists the valid ones, instead of a bare
``TypeError`` from the call or a spec that holds a string where a number belongs. The spec is
built in ``configure()``, before the route's id is known; :meth:`eip.RouteBuilder.build`
adds the file, the route and the step.
"""

from __future__ import annotations

import functools
import inspect
import urllib.parse
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from eip.components.base import EndpointSpec, build_spec
from eip.errors import RouteDefinitionError, redact_uri

__all__ = ["make_spec", "typed_spec"]

P = ParamSpec("P")
S = TypeVar("S", bound=EndpointSpec)


def make_spec(spec_type: type[S], fields: dict[str, Any], *, where: str | None = None) -> S:
    """Build ``spec_type`` from a typed spec function's arguments, converted and checked by the
    rules a URI's options follow; ``where`` names the endpoint in errors."""
    if where is None:
        where = _where(spec_type, fields.get(spec_type.path_field), fields)
    return build_spec(spec_type, fields, where)


def typed_spec(spec_type: type[EndpointSpec]) -> Callable[[Callable[P, S]], Callable[P, S]]:
    """Decorate a typed spec function: a call that does not fit its signature (an unknown
    keyword, a missing path) raises a RouteDefinitionError, not a TypeError."""

    def decorate(fn: Callable[P, S]) -> Callable[P, S]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def checked(*args: P.args, **kwargs: P.kwargs) -> S:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise _call_error(spec_type, fn.__name__, signature, args, kwargs, exc) from None
            return fn(*args, **kwargs)

        return checked

    return decorate


def _call_error(
    spec_type: type[EndpointSpec],
    name: str,
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    exc: TypeError,
) -> RouteDefinitionError:
    parameters = list(signature.parameters.values())
    path_parameter = parameters[0].name if parameters else ""
    path = args[0] if args else kwargs.get(path_parameter)
    where = _where(spec_type, path, kwargs)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    if takes_any:
        valid = [f for f in spec_type.__struct_fields__ if f != spec_type.path_field]
    else:
        valid = [
            p.name
            for p in parameters[1:]
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
    unknown = [k for k in kwargs if k not in signature.parameters]
    if unknown and not takes_any:
        return RouteDefinitionError(
            f"unknown option '{unknown[0]}' for endpoint {where}", option=unknown[0], valid=valid
        )
    return RouteDefinitionError(f"{name}(): {exc} (endpoint {where})", valid=valid)


def _where(spec_type: type[EndpointSpec], path: object, options: dict[str, Any]) -> str:
    """The endpoint as a URI, for errors: its path, or its scalar options when it has none
    (``rabbitmq:?queue=orders``); credentials redacted."""
    text = path if isinstance(path, str) else ""
    if "://" in text:  # a URL to call names itself: https://host/api
        return redact_uri(text)
    if not text:
        scalars = [
            (k, str(v))
            for k, v in options.items()
            if k != spec_type.path_field and isinstance(v, str | int | float)
        ]
        if scalars:
            text = "?" + urllib.parse.urlencode(scalars, safe="/:,*{}")
    return redact_uri(f"{spec_type.scheme}:{text}")
