"""The ``[audit]`` table of the config: audit every route (or some) without touching them.

::

    [audit]
    routes = "*"                     # or ["crm-*", "erp-sync"]: glob patterns of route ids
    store = "sqlite:data/audit.db"   # or "postgresql://audit@db/eip", "jsonl:audit.jsonl"
    table = "eip_audit"              # SQLite and PostgreSQL
    chain = "main"                   # PostgreSQL: one per instance, or shared (see the store)
    key = "header:customer_id"       # or "body:id", "property:name"
    fields = ["id", "status"]        # body fields kept; none by default
    synchronous = "FULL"             # SQLite: fsync each batch (default NORMAL)
    fsync = true                     # JSON Lines: fsync each batch (default false)

Every key can come from the environment as usual (``EIP_AUDIT__STORE=...``). Without
``routes`` no route is audited by the config, but ``store`` (and its options) is still where
routes that call ``.audit()`` without a store write. A route's own ``.audit(...)`` wins over
the table for that route.

The command line calls :func:`configure_audit` once the context has its config, before the
routes compile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eip.audit.spec import AuditDefaults, AuditSpec, field_paths, set_audit_defaults
from eip.config import Config, ConfigError
from eip.expressions import body, exchange_property, header

__all__ = ["AuditSettings", "configure_audit"]

_KEYS = ("chain", "fields", "fsync", "key", "routes", "store", "synchronous", "table")
_KEY_KINDS: dict[str, Callable[[str], Any]] = {
    "header": header,
    "body": body,
    "property": exchange_property,
}


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """The ``[audit]`` table, checked."""

    routes: tuple[str, ...] = ()
    store: str | None = None
    key: str | None = None
    fields: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> AuditSettings | None:
        """The settings, or None when the config has no ``[audit]`` table; a ConfigError
        names a key that is unknown or wrong, and where it came from."""
        table = config.get("audit")
        if table is None:
            return None
        if not isinstance(table, dict):
            raise ConfigError(f"{config.where('audit')} is a value, not an [audit] table")
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown audit setting '{unknown[0]}' ({config.where('audit.' + unknown[0])}; "
                f"valid settings: {', '.join(_KEYS)})"
            )

        def text(name: str) -> str | None:
            value = table.get(name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"audit.{name} ({config.where('audit.' + name)}): text expected")
            return value

        try:
            routes = _patterns(table.get("routes"))
            fields = field_paths(table.get("fields", ()))
            key = text("key")
            if key is not None:
                _key_expression(key)
            options: dict[str, Any] = {n: text(n) for n in ("table", "chain") if n in table}
            if "synchronous" in table:
                options["synchronous"] = str(table["synchronous"]).upper()
            if "fsync" in table:
                options["fsync"] = _boolean(table["fsync"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[audit] in {config.source or 'the config'}: {exc}") from None
        return cls(routes, text("store"), key, fields, tuple(sorted(options.items())))

    def spec(self) -> AuditSpec:
        """What an audited route does by these settings."""
        key = None if self.key is None else _key_expression(self.key)
        return AuditSpec(key, self.fields, self.store, dict(self.options))


def configure_audit(context: Any, config: Config | AuditSettings | None) -> AuditSettings | None:
    """Audit ``context``'s routes as the config's ``[audit]`` table says (call it before the
    routes compile: before ``start``/``validate``); returns the settings, None without any."""
    settings = config if isinstance(config, AuditSettings) or config is None else None
    if isinstance(config, Config):
        settings = AuditSettings.from_config(config)
    if settings is None:
        set_audit_defaults(context, None)
        return None
    set_audit_defaults(context, AuditDefaults(settings.routes, settings.spec()))
    return settings


def _patterns(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"routes is '*', a pattern or a list of patterns, got {value!r}")
    return tuple(item.strip() for item in items if item.strip())


def _key_expression(text: str) -> Callable[[Any], Any]:
    kind, sep, name = text.partition(":")
    make = _KEY_KINDS.get(kind.strip())
    if not sep or make is None or not name.strip():
        raise ValueError(
            f"key {text!r}: write header:NAME, body:PATH or property:NAME (body:id, "
            "header:customer_id)"
        )
    expression: Callable[[Any], Any] = make(name.strip())
    return expression


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"fsync is true or false, got {value!r}")
