"""The processor contract every compiled step follows.

A compiled step is a plain callable ``step(exchange)`` that returns:

- ``None``: done, synchronously; routing continues with the next step;
- :data:`STOP`: routing of the enclosing pipeline ends here (a filter said no, or ``stop()``);
- an awaitable: the step has I/O to wait for; it resolves to ``None`` or :data:`STOP`.

Sync steps therefore run as plain calls, and a pipeline awaits only where a step really returns
an awaitable. Whether a user callable is ``async def`` is decided once, at compile time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from eip._callables import is_async_callable  # re-exported: its home is eip._callables
from eip.message import Exchange

__all__ = ["STOP", "Inline", "Step", "is_async_callable", "processor_function", "run_to_completion"]


class _Stop:
    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


STOP: Final = _Stop()

Step = Callable[[Exchange], Any]


def processor_function(target: Any) -> Callable[[Exchange], Any]:
    """Accept a function of the exchange or an object with a ``process`` method."""
    process = getattr(target, "process", None)
    if process is not None and callable(process):
        return process  # type: ignore[no-any-return]
    if callable(target):
        return target  # type: ignore[no-any-return]
    raise TypeError(f"expected a callable or an object with process(), got {type(target).__name__}")


def describe_callable(fn: Any) -> str:
    """A short, readable name for a user callable (for route listings and errors)."""
    if hasattr(fn, "description"):
        return str(fn.description)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return type(fn).__name__
    return str(name)


async def run_to_completion(step: Step, exchange: Exchange) -> None:
    """Run ``step`` on an exchange this code created (a split part, a completed group),
    awaiting it if it suspends; a failure is recorded on the exchange, not raised; then its
    unit of work completes. The caller reads ``exchange.exception``."""
    try:
        result = step(exchange)
        if result is not None and result is not STOP:
            await result
    except Exception as exc:
        exchange.exception = exc
    done = exchange.done()
    if done is not None:
        await done


class Inline:
    """Source lines that do a step's work inside a fused pipeline function.

    The compiler fuses each pipeline into one generated function (see
    :mod:`eip.processors.fuse`), so built-in sync steps cost no call of their own. ``code``
    uses ``ex`` for the exchange and ``{0}``, ``{1}``, ... for ``values``; with ``result`` the
    code leaves a step result in ``r`` that the pipeline then checks like any step's.
    """

    __slots__ = ("code", "result", "values")

    def __init__(self, code: list[str], values: list[Any], *, result: bool = False) -> None:
        self.code = tuple(code)
        self.values = tuple(values)
        self.result = result


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\d+)\}")


def shift_placeholders(line: str, by: int) -> str:
    """``line`` of inline code with its value placeholders ``{i}`` renumbered ``{i + by}``
    (escaped braces left alone): for a wrapper that puts its own values first."""

    def shifted(match: re.Match[str]) -> str:
        number = match.group(1)
        return match.group(0) if number is None else "{" + str(int(number) + by) + "}"

    return _PLACEHOLDER.sub(shifted, line)


def splice_inline(
    code: list[str], call: str, step: Step, first: int
) -> tuple[list[str], list[Any]]:
    """A wrapper's inline ``code`` with each line ``call`` (such as ``r = {5}(ex)``: the wrapped
    step called, its result in ``r``) replaced by the wrapped step's own inline code when it
    has some, its placeholders renumbered from ``first``; and the values to append for them.
    So wrapping an inline step (a counted or traced send of a ``mock:``) costs it no call."""
    inner: Inline | None = getattr(step, "eip_inline", None)
    if inner is None:
        return code, []
    own = [shift_placeholders(line, first) for line in inner.code]
    if not inner.result:
        own.append("r = None")
    spliced: list[str] = []
    for line in code:
        if line.strip() == call:
            indent = line[: len(line) - len(line.lstrip())]
            spliced += [indent + part for part in own]
        else:
            spliced.append(line)
    return spliced, list(inner.values)


def with_inline(step: Step, code: list[str], *values: Any, result: bool = False) -> Step:
    """Attach inline source to a step (the step itself still serves the slow path)."""
    step.eip_inline = Inline(code, list(values), result=result)  # type: ignore[attr-defined]
    return step


def unwrap(fn: Any) -> Any:
    """An Expression's plain function (one call layer less on the hot path)."""
    inner = getattr(fn, "fn", None)
    return inner if inner is not None and type(fn).__name__ == "Expression" else fn
