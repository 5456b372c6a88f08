"""Where a route was declared, and why a RouteBuilder's ``configure()`` failed, in one line.

A route remembers the file and line of its ``from_`` call, so an error found when it is
compiled names the file as well as the route and step. A failure inside ``configure()`` itself
(a typo in a typed spec, a ``KeyError`` on a missing environment variable) happens before the
route has an id; :func:`configure_error` turns it into one :class:`RouteDefinitionError` that
names the file and line, the builder, and the route and step being declared when the failing
line is part of that route's statement (``self.from_(...).route_id("x").to(seda("o",
sise=5))``), or the route declared before it otherwise. The cause stays chained, so
``--log-level DEBUG`` shows its traceback.
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NamedTuple

from eip.errors import RouteDefinitionError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eip.dsl.builder import RouteBuilder, RouteDefinition
    from eip.dsl.model import RouteModel

__all__ = ["Declared", "caller", "configure_error", "display_path", "locate"]

_EIP_DIR = str(Path(__file__).resolve().parent.parent) + os.sep


class Declared(NamedTuple):
    """A place in a source file."""

    filename: str
    lineno: int

    def __str__(self) -> str:
        return f"{display_path(self.filename)}:{self.lineno}"


def caller() -> Declared | None:
    """The first frame up the stack that is not eip's own code: the user's ``from_`` call
    (also when the REST DSL or a helper inside eip made it)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _is_eip(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return None
    return Declared(frame.f_code.co_filename, frame.f_lineno)


def locate(exc: RouteDefinitionError, models: Iterable[RouteModel]) -> None:
    """Name the file of the route an error is about (its ``defined_at``), when the error does
    not yet: for errors found across routes, after their builders ran."""
    if exc.location is None and exc.route_id:
        model = next((m for m in models if m.route_id == exc.route_id), None)
        exc.location = model.defined_at if model is not None else None


def display_path(filename: str) -> str:
    """``filename`` relative to the working directory when it is under it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative


def configure_error(
    builder: RouteBuilder, routes: list[RouteDefinition], exc: Exception
) -> RouteDefinitionError:
    """The one-line error for an exception raised by ``builder.configure()``."""
    cls = type(builder)
    frame = _user_frame(exc, _source_of(cls))
    where = str(Declared(frame.filename, frame.lineno or 0)) if frame else _source_of(cls)
    location = f"{where}, {cls.__name__}" if where else cls.__name__
    route_id: str | None = None
    step: str | None = None
    last = routes[-1] if routes else None
    if last is not None:
        name = last.model.route_id
        if frame is not None and _same_statement(last.declared, frame.filename, frame.lineno):
            route_id = name or None
            if not name:
                location += f", route from {last.model.source_uri}"
            step = str(len(last.steps) + 1)
        else:
            location += f" (after route {repr(name) if name else 'from ' + last.model.source_uri})"
    if isinstance(exc, RouteDefinitionError):
        exc.location = exc.location or location
        exc.route_id = exc.route_id or route_id
        exc.step = exc.step or step
        return exc
    text = str(exc)
    reason = f"configure() failed: {type(exc).__name__}" + (f": {text}" if text else "")
    return RouteDefinitionError(reason, route_id=route_id, step=step, location=location)


def _is_eip(filename: str) -> bool:
    return filename.startswith(_EIP_DIR)


def _source_of(cls: type) -> str:
    try:
        source = inspect.getsourcefile(cls)
    except TypeError:
        return ""
    return display_path(source) if source else ""


def _user_frame(exc: BaseException, source: str) -> traceback.FrameSummary | None:
    """The innermost frame in the builder's own file, else the innermost outside eip."""
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if source and display_path(frame.filename) == source:
            return frame
    for frame in reversed(frames):
        if not _is_eip(frame.filename):
            return frame
    return None


def _same_statement(declared: Declared | None, filename: str, lineno: int | None) -> bool:
    """Whether ``lineno`` and the route's ``from_`` line are in one simple statement (one
    chain of builder calls)."""
    if declared is None or lineno is None or declared.filename != filename:
        return False
    spans = _statements(filename)
    return any(start <= lineno <= end and start <= declared.lineno <= end for start, end in spans)


def _statements(filename: str) -> tuple[tuple[int, int], ...]:
    """The line spans of the simple statements (no body of their own) of a source file."""
    try:
        tree = ast.parse(Path(filename).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return ()
    return tuple(
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt) and not hasattr(node, "body")
    )
