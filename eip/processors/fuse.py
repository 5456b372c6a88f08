"""Fuse a pipeline into one generated function.

For a pipeline ``unmarshal -> filter -> transform -> to`` the compiler generates, once::

    def run(ex):
        i = 0
        try:
            ex.body = v0_0(ex.body)
            i = 1
            if not v1_0(ex):
                return None
            i = 2
            ex.body = v2_0(ex)
            i = 3
            r = s3(ex)
            if r is not None:
                if r is STOP:
                    return STOP if ex.route_stop else None
                return slow(ex, 3, r, None)
        except Exception as exc:
            return slow(ex, i, None, exc)
        return None

Built-in sync steps run inline (no call per step, no loop); other steps are called. The first
step that returns an awaitable, or raises, hands over to :meth:`Pipeline._slow`, which awaits,
redelivers and handles errors using the plain step callables. The generated source is kept on
the function (``run.eip_source``) for debugging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eip.processors.base import STOP, Inline, Step

__all__ = ["fuse"]

_INDENT = "        "


def fuse(steps: Sequence[Step], slow: Callable[..., Any], name: str) -> Callable[[Any], Any]:
    namespace: dict[str, Any] = {"STOP": STOP, "slow": slow}
    lines = ["def run(ex):", "    i = 0", "    try:"]
    if not steps:
        lines.append(f"{_INDENT}pass")
    for index, step in enumerate(steps):
        if index:
            lines.append(f"{_INDENT}i = {index}")
        inline: Inline | None = getattr(step, "eip_inline", None)
        if inline is None:
            namespace[f"s{index}"] = step
            code: Sequence[str] = [f"r = s{index}(ex)"]
            result = True
        else:
            names = []
            for number, value in enumerate(inline.values):
                names.append(f"v{index}_{number}")
                namespace[names[-1]] = value
            code = [line.format(*names) for line in inline.code]
            result = inline.result
        lines.extend(_INDENT + line for line in code)
        if result:
            lines += [
                f"{_INDENT}if r is not None:",
                f"{_INDENT}    if r is STOP:",
                f"{_INDENT}        return STOP if ex.route_stop else None",
                f"{_INDENT}    return slow(ex, {index}, r, None)",
            ]
    lines += [
        "    except Exception as exc:",
        "        return slow(ex, i, None, exc)",
        "    return None",
    ]
    source = "\n".join(lines)
    exec(compile(source, f"<eip pipeline {name}>", "exec"), namespace)
    run: Callable[[Any], Any] = namespace["run"]
    run.eip_source = source  # type: ignore[attr-defined]
    return run
