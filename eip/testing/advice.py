"""Advice: rewrite a route's model before the context starts, for tests (Camel's AdviceWith).

Because routes are data until they are compiled, advice is plain model surgery::

    advice(context, "crm-sync").replace_from("direct:test").mock_endpoints("http*", skip=True)

``mock_endpoints`` sends a copy to ``mock:<uri without options>`` before the real endpoint,
or instead of it with ``skip=True``. ``intercept_send`` runs a processor before matching sends.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from eip.dsl.model import (
    EndpointRef,
    ProcessDef,
    RouteModel,
    StepDef,
    ToDef,
    endpoint_text,
)
from eip.errors import LifecycleError
from eip.runtime.context import Context

__all__ = ["Advice", "advice"]


class Advice:
    def __init__(self, context: Context, route_id: str) -> None:
        if context.started:
            raise LifecycleError("advise routes before the context starts")
        models = [m for m in context.route_models if m.route_id == route_id]
        if not models:
            known = ", ".join(m.route_id for m in context.route_models) or "none"
            raise LifecycleError(f"no route '{route_id}' to advise (routes: {known})")
        self.model: RouteModel = models[0]

    def replace_from(self, source: EndpointRef) -> Advice:
        """Consume from ``source`` instead (e.g. ``direct:test`` in place of a broker queue)."""
        self.model.source = source
        return self

    def mock_endpoints(self, pattern: str = "*", *, skip: bool = False) -> Advice:
        """Send to ``mock:<endpoint>`` for every ``to`` whose URI matches the glob ``pattern``."""

        def rewrite(step: ToDef) -> list[StepDef]:
            mock = ToDef(f"mock:{_mock_name(step.endpoint)}")
            return [mock] if skip else [mock, step]

        self._rewrite(pattern, rewrite, skip_mocks=True)
        return self

    def intercept_send(self, pattern: str, processor: Any, *, skip: bool = False) -> Advice:
        """Run ``processor`` before every send matching ``pattern`` (instead of it if ``skip``)."""

        def rewrite(step: ToDef) -> list[StepDef]:
            return [ProcessDef(processor)] if skip else [ProcessDef(processor), step]

        self._rewrite(pattern, rewrite)
        return self

    def _rewrite(self, pattern: str, rewrite: Any, skip_mocks: bool = False) -> None:
        _rewrite_steps(self.model.steps, pattern, rewrite, skip_mocks)
        for clause in self.model.on_exceptions:
            _rewrite_steps(clause.steps, pattern, rewrite, skip_mocks)


def _rewrite_steps(steps: list[StepDef], pattern: str, rewrite: Any, skip_mocks: bool) -> None:
    index = 0
    while index < len(steps):
        step = steps[index]
        uri = endpoint_text(step.endpoint) if isinstance(step, ToDef) else ""
        if (
            uri
            and not (skip_mocks and uri.startswith("mock:"))
            and fnmatch.fnmatchcase(uri, pattern)
        ):
            replacement = rewrite(step)
            steps[index : index + 1] = replacement
            index += len(replacement)
            continue
        for _, children in step.children():
            _rewrite_steps(children, pattern, rewrite, skip_mocks)
        index += 1


def _mock_name(endpoint: EndpointRef) -> str:
    return endpoint_text(endpoint).split("?", 1)[0]


def advice(context: Context, route_id: str) -> Advice:
    """Start advising route ``route_id`` of ``context``."""
    return Advice(context, route_id)
