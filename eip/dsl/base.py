"""The root of the step builders: a list of step definitions and ``_add``.

The DSL's step methods are spread over mixins by theme (core steps in
:mod:`eip.dsl.builder`, routing EIPs in :mod:`eip.dsl.routing`, stateful EIPs in
:mod:`eip.dsl.stateful`); each mixin module also registers the compile functions of its steps.
"""

from __future__ import annotations

from typing import Self

from eip.dsl.model import StepDef

__all__ = ["StepsBase"]


class StepsBase:
    def __init__(self) -> None:
        self.steps: list[StepDef] = []

    def _add(self, step: StepDef) -> Self:
        self.steps.append(step)
        return self
