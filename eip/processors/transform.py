"""Message translator steps: transform/set_body, set_header, set_property, remove_header,
process, map_fields, marshal/unmarshal and stop.

Each builder returns a plain function for sync callables and an ``async def`` only when the
user's callable is async, decided once here at compile time.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

from eip._callables import is_async_callable
from eip.dataformats import DataFormat
from eip.message import Exchange
from eip.processors.base import STOP, Step, processor_function, unwrap, with_inline
from eip.processors.inline_lambda import inline_source

__all__ = [
    "header_remover",
    "header_setter",
    "map_fields_step",
    "marshal_step",
    "process_step",
    "property_setter",
    "stop_step",
    "transform_step",
    "unmarshal_step",
    "value_function",
]


def value_function(value: Any) -> Callable[[Exchange], Any]:
    """A callable stays an expression of the exchange; anything else is a constant."""
    if callable(value):
        return unwrap(value)  # type: ignore[no-any-return]
    return lambda _exchange: value


def transform_step(expression: Any) -> Step:
    fn = value_function(expression)
    if is_async_callable(fn):

        async def transform_async(exchange: Exchange) -> None:
            exchange.body = await fn(exchange)

        return transform_async

    def transform(exchange: Exchange) -> None:
        exchange.body = fn(exchange)

    code, values = _inline_call("ex.body = {}", fn)
    return with_inline(transform, code, *values)


def header_setter(name: str, expression: Any) -> Step:
    fn = value_function(expression)
    if is_async_callable(fn):

        async def set_header_async(exchange: Exchange) -> None:
            exchange.headers[name] = await fn(exchange)

        return set_header_async

    def set_header(exchange: Exchange) -> None:
        exchange.headers[name] = fn(exchange)

    code, values = _inline_call("ex.headers[{{0}}] = {}", fn, start=1)
    return with_inline(set_header, code, name, *values)


def property_setter(name: str, expression: Any) -> Step:
    fn = value_function(expression)
    if is_async_callable(fn):

        async def set_property_async(exchange: Exchange) -> None:
            exchange.properties[name] = await fn(exchange)

        return set_property_async

    def set_property(exchange: Exchange) -> None:
        exchange.properties[name] = fn(exchange)

    code, values = _inline_call("ex.properties[{{0}}] = {}", fn, start=1)
    return with_inline(set_property, code, name, *values)


def _inline_call(template: str, fn: Any, start: int = 0) -> tuple[list[str], list[Any]]:
    """The inline code (and its values) that puts ``fn(ex)`` into ``template``: the lambda's
    own expression when it is a simple one (:mod:`eip.processors.inline_lambda`), else a call
    of value ``{start}``."""
    found = inline_source(fn, start)
    if found is not None:
        expression, values = found
        return [template.format(expression)], values
    return [template.format(f"{{{start}}}(ex)")], [fn]


def header_remover(patterns: Sequence[str]) -> Step:
    exact = [p for p in patterns if not any(c in p for c in "*?[")]
    globs = [p for p in patterns if p not in exact]

    def remove_header(exchange: Exchange) -> None:
        headers = exchange.headers
        for name in exact:
            headers.pop(name, None)
        if globs:
            for name in [h for h in headers if any(fnmatch.fnmatchcase(h, g) for g in globs)]:
                del headers[name]

    return remove_header


def process_step(processor: Any) -> Step:
    fn = processor_function(processor)
    if is_async_callable(fn):

        async def process_async(exchange: Exchange) -> None:
            await fn(exchange)

        return process_async

    def process(exchange: Exchange) -> None:
        fn(exchange)

    return with_inline(process, ["{0}(ex)"], fn)


def map_fields_step(mapper: Callable[[Any], Any]) -> Step:
    def map_fields(exchange: Exchange) -> None:
        exchange.body = mapper(exchange.body)

    return with_inline(map_fields, ["ex.body = {0}(ex.body)"], mapper)


def marshal_step(data_format: DataFormat) -> Step:
    marshal = data_format.marshal

    def marshal_body(exchange: Exchange) -> None:
        exchange.body = marshal(exchange.body)

    fast = getattr(data_format, "fast_marshal", None)
    if fast is None:
        return with_inline(marshal_body, ["ex.body = {0}(ex.body)"], marshal)
    # The format's raw encoder inline (see DataFormat); bytes pass through as marshal does,
    # and a failure goes through marshal again for its error.
    code = [
        "if ex.body.__class__ is not bytes:",
        "    try:",
        "        ex.body = {0}(ex.body)",
        "    except Exception:",
        "        ex.body = {1}(ex.body)",
    ]
    return with_inline(marshal_body, code, fast, marshal)


def unmarshal_step(data_format: DataFormat) -> Step:
    unmarshal = data_format.unmarshal

    def unmarshal_body(exchange: Exchange) -> None:
        exchange.body = unmarshal(exchange.body)

    fast = getattr(data_format, "fast_unmarshal", None)
    if fast is None:
        return with_inline(unmarshal_body, ["ex.body = {0}(ex.body)"], unmarshal)
    # The format's raw decoder inline; a failure goes through unmarshal for its error.
    code = ["try:", "    ex.body = {0}(ex.body)", "except Exception:", "    ex.body = {1}(ex.body)"]
    return with_inline(unmarshal_body, code, fast, unmarshal)


def stop_step() -> Step:
    def stop(exchange: Exchange) -> Any:
        exchange.route_stop = True
        return STOP

    return with_inline(stop, ["ex.route_stop = True", "return STOP"])
