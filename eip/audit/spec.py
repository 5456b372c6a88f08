"""What a route's audit is (the DSL's ``.audit(...)``, or the config's ``[audit]`` table).

This module is light on purpose: the DSL and the compiler import it for every route, and
only routes that audit load the stores and the hook (:mod:`eip.audit.hook`).
"""

from __future__ import annotations

import fnmatch
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eip.audit.store import AuditStore
    from eip.dsl.model import RouteModel

__all__ = ["AuditDefaults", "AuditSpec", "audit_of", "set_audit_defaults"]


@dataclass(slots=True)
class AuditSpec:
    """A route's audit: every exchange of the route leaves one record in ``store``.

    ``key`` is an expression of the exchange (``header("customer_id")``) read when the route
    finishes, its value kept as text; ``fields`` names body fields (dotted paths) to keep,
    none by default; ``store`` is a store or its name (``sqlite:data/audit.db``,
    ``postgresql://...``, ``jsonl:audit.jsonl``), by default the config's, else
    ``sqlite:$EIP_DATA_DIR/audit.db``.
    """

    key: Callable[[Any], Any] | None = None
    fields: tuple[str, ...] = ()
    store: AuditStore | str | None = None
    #: Constructor options for a store named by text (``table``, ``chain``).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditDefaults:
    """Audit for all routes whose id matches ``routes`` (glob patterns, ``*`` for all), and
    the store for routes that audit without naming one."""

    routes: tuple[str, ...]
    spec: AuditSpec

    def covers(self, route_id: str) -> bool:
        return any(fnmatch.fnmatchcase(route_id, pattern) for pattern in self.routes)


_DEFAULTS: weakref.WeakKeyDictionary[Any, AuditDefaults] = weakref.WeakKeyDictionary()


def set_audit_defaults(context: Any, defaults: AuditDefaults | None) -> None:
    """Audit ``context``'s routes as ``defaults`` say (before they compile); None: stop."""
    if defaults is None:
        _DEFAULTS.pop(context, None)
    else:
        _DEFAULTS[context] = defaults


def audit_of(context: Any, model: RouteModel) -> AuditSpec | None:
    """The audit of a route: its own ``.audit(...)`` (with the defaults' store when it names
    none), else the context's defaults when they cover it, else None."""
    defaults = _DEFAULTS.get(context) if _DEFAULTS else None
    own: AuditSpec | None = getattr(model, "audit", None)
    if own is not None:
        if own.store is None and defaults is not None:
            return AuditSpec(own.key, own.fields, defaults.spec.store, dict(defaults.spec.options))
        return own
    if defaults is not None and defaults.covers(model.route_id):
        return defaults.spec
    return None


def field_paths(fields: Sequence[str] | str) -> tuple[str, ...]:
    """``["id", "status"]`` or ``"id, status"`` as a tuple of dotted paths, checked."""
    names = fields.split(",") if isinstance(fields, str) else list(fields)
    paths = tuple(name.strip() for name in names if name.strip())
    for path in paths:
        if not all(path.split(".")):
            raise ValueError(f"invalid body field path {path!r} (write 'id' or 'address.city')")
    return paths
