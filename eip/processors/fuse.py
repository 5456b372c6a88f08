"""Fuse a pipeline into one generated function.

For a pipeline ``unmarshal -> filter -> transform -> to`` the compiler generates, once::

    def run(ex):
        try:
            ex.body = v0_0(ex.body)
            if not v1_0(ex):
                return None
            ex.body = v2_0(ex)
            r = s3(ex)
            if r is not None:
                if r is STOP:
                    return STOP if ex.route_stop else None
                return slow(ex, 3, r, None)
        except Exception as exc_:
            return slow(ex, at_[exc_.__traceback__.tb_lineno], None, exc_)
        return None

Built-in sync steps run inline (no call per step, no loop); other steps are called. The first
step that returns an awaitable, or raises, hands over to :meth:`Pipeline._slow`, which awaits,
redelivers and handles errors using the plain step callables. Which step raised is found from
the line the exception passed through (``at_`` maps the function's lines to step indexes), so
the steps store nothing while they run. The generated source is kept on the function
(``run.eip_source``) for debugging.

**Sub-pipelines inline.** A step's inline code may hold a line ``@run NAME`` where ``NAME`` is
a fused sub-pipeline (a choice branch): it is expanded in place into that pipeline's own steps,
inside a ``try`` of its own that hands over to *its* slow path, leaving in ``r`` exactly what
calling it would have returned. A sub-pipeline with a step that returns early (a filter, a
``stop()``) is called instead, and so is one nested deeper than :data:`MAX_NESTING`.

**A route's entry** (:class:`Entry`): the fused function can also be a route's ``dispatch``,
with the route's bookkeeping (and its span, and the timing) as a prologue, a STOP ending
routing there, and ``final``/``failed`` lines (end the span, observe the time) that run when it
leaves without handing over to the slow path.

Simple user lambdas come inline too, as expressions (:mod:`eip.processors.inline_lambda`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eip.processors.base import STOP, Inline, Step

__all__ = ["MAX_NESTING", "Entry", "fuse"]

#: How deep sub-pipelines are inlined (each level nests a ``try`` block; Python allows 20).
MAX_NESTING = 3

_MARKER = "@run "
_SENTINEL = "#@step "


class Entry:
    """A route's entry into its top pipeline (see :class:`eip.runtime.route.Route`).

    ``prologue`` runs first, outside the steps' error handling. When the function leaves
    without handing over to the slow path, ``final`` runs: on a return, and on an exception
    too unless there are ``failed`` lines, which then run instead (with the exception as
    ``raised_``) before it propagates. ``slow_args`` is appended to the slow path's arguments
    (``", started_"``); ``values`` are the names the lines use.
    """

    __slots__ = ("failed", "final", "prologue", "slow_args", "values")

    def __init__(
        self,
        prologue: Sequence[str],
        values: Mapping[str, Any],
        *,
        final: Sequence[str] = (),
        failed: Sequence[str] = (),
        slow_args: str = "",
    ) -> None:
        self.prologue = tuple(prologue)
        self.final = tuple(final)
        self.failed = tuple(failed)
        self.values = dict(values)
        self.slow_args = slow_args

    @property
    def guarded(self) -> bool:
        """Whether leaving runs lines of the entry's own (a ``try`` around the steps)."""
        return bool(self.final or self.failed)


def fuse(
    steps: Sequence[Step],
    slow: Callable[..., Any],
    name: str,
    *,
    entry: Entry | None = None,
) -> Callable[[Any], Any]:
    """Generate the fused function of ``steps``; ``slow(ex, index, pending, error)`` takes over
    at the first step that returns an awaitable or raises."""
    writer = _Writer({"STOP": STOP, "slow": slow})
    source = writer.function(steps, entry)
    exec(compile(source, f"<eip pipeline {name}>", "exec"), writer.namespace)
    run: Callable[[Any], Any] = writer.namespace["run"]
    run.eip_source = source  # type: ignore[attr-defined]
    # What a parent pipeline needs to inline this one (see "Sub-pipelines inline").
    run.eip_steps = tuple(steps)  # type: ignore[attr-defined]
    run.eip_slow = slow  # type: ignore[attr-defined]
    return run


class _Writer:
    """Writes one generated function; nested pipelines get their own name prefix.

    No step index is stored while the steps run: each step's code starts with a sentinel line
    that :meth:`_finish` removes, recording which source lines belong to which step, so an
    except clause finds the failing step from the traceback's line number (the traceback's
    first entry is the generated function's own frame, where the exception is caught).
    """

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self._prefixes = itertools.count(1)
        self._pipelines = [""]  # the prefix of each pipeline written (top: "")

    def function(self, steps: Sequence[Step], entry: Entry | None) -> str:
        lines = ["def run(ex):"]
        body = "    "
        guarded = entry is not None and entry.guarded
        if entry is not None:
            self.namespace.update(entry.values)
            lines += ["    " + line for line in entry.prologue]
            if guarded:
                lines += ["    handed_ = False", "    try:"]
                body = "        "
        code = self._steps(steps, "", 0, top=entry)
        lines += [body + "try:", *(body + "    " + line for line in (code or ["pass"]))]
        lines += [
            body + "except Exception as exc_:",
            *([body + "    handed_ = True"] if guarded else []),
            body + f"    return slow(ex, {_failed_at('')}, None, exc_"
            f"{entry.slow_args if entry else ''})",
            body + "return None",
        ]
        if entry is not None and entry.failed:
            lines += ["    except BaseException as raised_:", "        handed_ = True"]
            lines += ["        " + line for line in entry.failed]
            lines += ["        raise"]
        if entry is not None and entry.final:
            lines += ["    finally:", "        if not handed_:"]
            lines += ["            " + line for line in entry.final]
        return self._finish(lines)

    def _finish(self, lines: list[str]) -> str:
        """Drop the sentinel lines, and give each pipeline its line -> step index table."""
        kept: list[str] = []
        current = dict.fromkeys(self._pipelines, 0)
        tables: dict[str, list[int]] = {prefix: [0] for prefix in self._pipelines}  # line 0
        for line in lines:
            stripped = line.lstrip()
            if stripped.startswith(_SENTINEL):
                prefix, _, index = stripped[len(_SENTINEL) :].partition(" ")
                current[prefix] = int(index)
                continue
            kept.append(line)
            for prefix, table in tables.items():
                table.append(current[prefix])
        for prefix, table in tables.items():
            self.namespace[f"{prefix}at_"] = tuple(table)
        return "\n".join(kept)

    def _steps(
        self, steps: Sequence[Step], prefix: str, depth: int, *, top: Entry | None = None
    ) -> list[str]:
        """The steps' code. At the top (``prefix == ""``) a step result returns; nested, the
        rest of the steps run only while ``r`` is None, and ``r`` is what the pipeline
        returns."""
        nested = prefix != ""
        lines: list[str] = []
        pad = ""  # nested: each step with a result puts the rest in an ``else:`` block
        for index, step in enumerate(steps):
            lines.append(f"{pad}{_SENTINEL}{prefix} {index}")
            code, result = self._step(step, index, prefix, depth, entry=top is not None)
            lines.extend(pad + line for line in code)
            if not result:
                if nested and index == len(steps) - 1:
                    lines.append(f"{pad}r = None")
                continue
            handover = f"{prefix}slow(ex, {index}, r, None{top.slow_args if top else ''})"
            if not nested:
                stop = (
                    ["ex.route_stop = False", "return None"]
                    if top
                    else ["return STOP if ex.route_stop else None"]
                )
                lines += [f"{pad}if r is not None:", f"{pad}    if r is STOP:"]
                lines += [f"{pad}        {line}" for line in stop]
                if top is not None and top.guarded:
                    lines.append(f"{pad}    handed_ = True")
                lines.append(f"{pad}    return {handover}")
                continue
            lines += [
                f"{pad}if r is not None:",
                f"{pad}    if r is STOP:",
                f"{pad}        r = STOP if ex.route_stop else None",
                f"{pad}    else:",
                f"{pad}        r = {handover}",
            ]
            if index < len(steps) - 1:
                lines.append(f"{pad}else:")
                pad += "    "
        return lines

    def _step(
        self, step: Step, index: int, prefix: str, depth: int, *, entry: bool = False
    ) -> tuple[list[str], bool]:
        inline: Inline | None = getattr(step, "eip_inline", None)
        if inline is not None and entry and not _returns_only_none(inline):
            inline = None  # a route's entry returns None for STOP: call the step, check it
        if inline is None:
            self.namespace[f"{prefix}s{index}"] = step
            return [f"r = {prefix}s{index}(ex)"], True
        names = []
        for number, value in enumerate(inline.values):
            names.append(f"{prefix}v{index}_{number}")
            self.namespace[names[-1]] = value
        code: list[str] = []
        for line in (line.format(*names) for line in inline.code):
            stripped = line.lstrip()
            if not stripped.startswith(_MARKER):
                code.append(line)
                continue
            indent = line[: len(line) - len(stripped)]
            target = stripped[len(_MARKER) :].strip()
            code += [indent + sub for sub in self._sub(target, depth + 1)]
        return code, inline.result

    def _sub(self, name: str, depth: int) -> list[str]:
        """A sub-pipeline's code leaving its result in ``r``, or a call when it cannot be
        inlined."""
        run = self.namespace[name]
        steps: tuple[Step, ...] | None = getattr(run, "eip_steps", None)
        if steps is None or depth > MAX_NESTING or not all(map(_no_early_return, steps)):
            return [f"r = {name}(ex)"]
        if not steps:
            return ["r = None"]
        prefix = f"b{next(self._prefixes)}_"
        self._pipelines.append(prefix)
        self.namespace[f"{prefix}slow"] = run.eip_slow
        return [
            "try:",
            *("    " + line for line in self._steps(steps, prefix, depth)),
            f"except Exception as {prefix}exc:",
            f"    r = {prefix}slow(ex, {_failed_at(prefix)}, None, {prefix}exc)",
        ]


def _failed_at(prefix: str) -> str:
    """The expression for the index of the step that raised (see :class:`_Writer`)."""
    error = f"{prefix}exc" if prefix else "exc_"
    return f"{prefix}at_[{error}.__traceback__.tb_lineno]"


def _returns_only_none(inline: Inline) -> bool:
    """True when every ``return`` in the inline code is ``return None`` (a filter's)."""
    returns = [line.strip() for line in inline.code if line.lstrip().startswith("return")]
    return all(line == "return None" for line in returns)


def _no_early_return(step: Step) -> bool:
    """True unless the step's inline code returns from the function (filter, stop())."""
    inline: Inline | None = getattr(step, "eip_inline", None)
    return inline is None or not any(line.lstrip().startswith("return") for line in inline.code)
