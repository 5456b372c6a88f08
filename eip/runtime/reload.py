"""Reload that drains: swap the routes whose files (or config values) changed, touch nothing else.

A reload (``eip run --reload`` on a file change, ``POST /reload``, ``SIGHUP``, ``eip reload``)
goes in two phases:

1. **Load and validate, changing nothing.** The route modules are imported afresh (see
   :func:`eip.routefiles.forget_modules`), the config file is read again, and every route is
   compiled in a scratch context. Any error (a syntax error, an unknown endpoint option, a
   missing placeholder, a route id used twice) ends the reload there: the old modules are
   put back, the running routes go on, readiness stays as it was, and the error is logged
   and returned.
2. **Swap what changed.** Each route is compared by its fingerprint
   (:mod:`eip.runtime.fingerprint`: what it does, placeholders by their resolved values).
   Removed and changed routes stop: their consumer takes no more messages, their in-flight
   exchanges drain and are acknowledged, then their services and the producers no other
   route uses stop. Then added and changed routes compile into the running context and
   start. Unchanged routes, and the producers and connections they share, are not touched.

What a reload can cost, and says: an exchange still in flight when the drain times out
(the shutdown timeout) is aborted unacknowledged, so its source redelivers it; the answer
counts these per route as ``aborted`` (each may arrive twice). Routes are matched by id, so
routes that should survive a reload need explicit ids (``route{n}`` numbering shifts when a
route is added above). State kept in module globals and shared by a changed and an unchanged
route splits in two (the changed route gets the new module's object): keep shared state in a
store. Messages sent to a ``direct:`` endpoint while its route is being swapped fail
(no consumer), as in Camel; the sender's error handling decides.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eip.dsl.diagnostics import locate
from eip.errors import EipError, RouteDefinitionError, redact_uri
from eip.routefiles import LoadError, forget_modules
from eip.runtime.fingerprint import route_fingerprint
from eip.runtime.secrets import scrub

if TYPE_CHECKING:
    from eip.dsl.model import RouteModel
    from eip.runtime.context import Context
    from eip.runtime.properties import Properties

__all__ = ["ReloadReport", "Reloader"]

log = logging.getLogger("eip.reload")


@dataclass(slots=True)
class ReloadReport:
    """What a reload did, as the control API answers it."""

    ok: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Per swapped route, the exchanges still in flight at the drain deadline: aborted
    #: unacknowledged, so their source redelivers them (possible duplicates).
    aborted: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def swapped(self) -> bool:
        """Whether routes were stopped or started (a failure after validation)."""
        return bool(self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "aborted": self.aborted,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        if not self.ok and not self.swapped:
            return f"reload failed, nothing changed: {self.error}"
        if not self.ok:
            return f"reload failed while swapping routes: {self.error}"
        parts = [
            f"{name} {', '.join(ids)}"
            for name, ids in (
                ("added", self.added),
                ("changed", self.changed),
                ("removed", self.removed),
            )
            if ids
        ]
        aborted = sum(self.aborted.values())
        tail = f"; {aborted} exchange(s) aborted, to be redelivered" if aborted else ""
        return f"reloaded in {self.seconds:.2f}s: {'; '.join(parts) or 'no route changed'}" + (
            f" ({len(self.unchanged)} unchanged){tail}"
        )


class Reloader:
    """Reloads ``context``'s routes from their files. ``load`` builds a scratch context
    (not started) from the route files and the config as they are now; ``roots`` are the
    files and directories the routes come from."""

    def __init__(
        self, context: Context, load: Callable[[], Context], roots: Sequence[Path]
    ) -> None:
        self.context = context
        self._load = load
        self.roots = list(roots)
        #: What ``eip run --reload`` watches: the route files, and the config file if any.
        self.watched = list(self.roots)
        self._lock = asyncio.Lock()
        self._prints = self._fingerprints(context.route_models, context.properties)

    def _fingerprints(self, models: Sequence[RouteModel], properties: Properties) -> dict[str, str]:
        def resolve(text: str) -> str:
            return str(properties.resolve_value(text, strict=False).value)

        return {m.route_id: route_fingerprint(m, resolve, self.roots) for m in models}

    async def reload(self) -> ReloadReport:
        """Reload once; concurrent calls run one after another."""
        async with self._lock:
            began = time.monotonic()
            report = await self._reload()
            report.seconds = time.monotonic() - began
        if report.ok:
            log.info("%s", report.summary())
        else:
            log.error("%s", report.summary())
        return report

    async def _reload(self) -> ReloadReport:
        scratch = self._validated()
        if isinstance(scratch, str):
            return ReloadReport(ok=False, error=scratch)
        models = scratch.route_models
        prints = self._fingerprints(models, scratch.properties)
        old = self._prints
        report = ReloadReport(ok=True)
        report.added = [i for i in prints if i not in old]
        report.removed = [i for i in old if i not in prints]
        report.changed = [i for i in prints if i in old and old[i] != prints[i]]
        report.unchanged = [i for i in prints if i in old and old[i] == prints[i]]
        if not (report.added or report.removed or report.changed):
            self.context.replace_properties(scratch.properties)
            return report
        await self._swap(report, {m.route_id: m for m in models}, scratch.properties)
        kept = {i: p for i, p in prints.items() if i in self.context.routes}
        self._prints = {**{i: old[i] for i in old if i in self.context.routes}, **kept}
        self.context.order_models(m.route_id for m in models)
        _refreeze()
        return report

    def _validated(self) -> Context | str:
        """A scratch context whose every route compiled, or the error, as one line."""
        saved = forget_modules(self.roots)
        scratch: Context | None = None
        try:
            scratch = self._load()
            scratch.validate()
        except Exception as exc:
            if isinstance(exc, RouteDefinitionError) and scratch is not None:
                locate(exc, scratch.route_models)
            forget_modules(self.roots)  # what the failed load imported goes too
            sys.modules.update(saved)
            return scrub(redact_uri(_one_line(exc)))
        return scratch

    async def _swap(
        self, report: ReloadReport, models: dict[str, RouteModel], properties: Properties
    ) -> None:
        context = self.context
        going = [context.routes[i] for i in report.removed + report.changed]
        going.sort(key=lambda r: context.start_rank(r.model), reverse=True)  # intake first
        previous = {route.id: route.model for route in going}
        for route in going:
            report.aborted[route.id] = await context.remove_route(route.id)
        context.replace_properties(properties)
        coming = [models[i] for i in models if i in report.added or i in report.changed]
        failures: list[str] = []
        for model in sorted(coming, key=context.start_rank):  # internal ones first
            try:
                await context.add_route(model)
            except Exception as exc:
                failures.append(f"route '{model.route_id}': {_one_line(exc)}")
                await self._restore(previous.get(model.route_id))
        if failures:
            report.ok = False
            report.error = scrub(redact_uri("; ".join(failures)))

    async def _restore(self, model: RouteModel | None) -> None:
        """Start the old version of a route whose new version failed to start."""
        if model is None:
            return
        try:
            await self.context.add_route(model)
        except Exception:
            log.exception("route %s: the old version did not start again either", model.route_id)
        else:
            log.warning("route %s: the old version runs again", model.route_id)


def _one_line(exc: BaseException) -> str:
    # eip's own errors name what and where; for any other fault its type is the best clue.
    text = str(exc) if isinstance(exc, EipError | LoadError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _refreeze() -> None:
    """Let the collector see what the old routes left (``eip run`` froze the heap at start),
    then freeze the new long-lived objects out of its way again."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
        gc.freeze()
