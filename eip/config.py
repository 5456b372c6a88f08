"""Configuration: an optional TOML file, overridden from the environment.

``eip run`` (and ``check``, ``routes``, ``graph``) reads ``--config FILE``, else ``eip.toml`` in
the working directory when there is one. Its keys are what endpoint placeholders name
(``{{erp.url}}`` is ``url`` in the ``[erp]`` table, see :mod:`eip.runtime.properties`); the
``[server]`` table holds the server's own settings (:class:`ServerSettings`).

**The environment overrides the file**, by one rule: ``EIP_<A>__<B>[__<C>...]`` sets the key
``a.b.c``. The name is lower-cased, ``__`` (two underscores) separates the levels and a single
``_`` stays part of a name: ``EIP_ERP__URL`` is ``erp.url``, ``EIP_ERP__SOAP_URL`` is
``erp.soap_url``, ``EIP_SERVER__SHUTDOWN_TIMEOUT`` is ``server.shutdown_timeout``. A variable
without ``__`` is not a key (``EIP_DEMO``, ``EIP_DATA_DIR`` and ``EIP_MANAGEMENT_TOKEN`` keep
their own meanings), except the server settings' established names, which are the same keys:
``EIP_HTTP_PORT``, ``EIP_HTTP_HOST``, ``EIP_MANAGEMENT_PORT``, ``EIP_MANAGEMENT_HOST`` and
``EIP_LOG_FORMAT`` (the ``EIP_SERVER__...`` form wins when both are set). Values from the
environment are strings; endpoint options convert them as they convert URI options.

**Precedence** of a server setting: a command-line flag, then the environment, then the file,
then the default.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from eip.errors import EipError

__all__ = [
    "DEFAULT_FILE",
    "ENV_ALIASES",
    "Config",
    "ConfigError",
    "ServerSettings",
    "env_overrides",
    "env_variable",
    "load_config",
]

#: The file read when no ``--config`` is given, if it exists in the working directory.
DEFAULT_FILE = "eip.toml"
PREFIX = "EIP_"
SEPARATOR = "__"
#: The server settings' established environment names (the same keys as ``EIP_SERVER__...``).
ENV_ALIASES = {
    "EIP_HTTP_PORT": "server.http_port",
    "EIP_HTTP_HOST": "server.http_host",
    "EIP_MANAGEMENT_PORT": "server.management_port",
    "EIP_MANAGEMENT_HOST": "server.management_host",
    "EIP_LOG_FORMAT": "server.log_format",
}


class ConfigError(EipError):
    """The config file or an ``EIP_`` variable is invalid; the message names which and where."""


class Config:
    """Nested settings (the TOML file with the environment laid over it), read by dotted key.

    ``source`` names the file (None without one); ``origins`` says, for each key the
    environment set, which variable set it, so messages can name it.
    """

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        source: str | None = None,
        origins: Mapping[str, str] | None = None,
    ) -> None:
        self.data: dict[str, Any] = _copy(data or {})
        self.source = source
        self.origins: dict[str, str] = dict(origins or {})

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Config:
        """No file, only the ``EIP_..__..`` variables (a library context's default)."""
        return _overlay(cls(), os.environ if environ is None else environ)

    def lookup(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` for a key that is set (a value or a table), else ``(False, None)``."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
        return True, node

    def get(self, key: str, default: Any = None) -> Any:
        found, value = self.lookup(key)
        return value if found else default

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key that holds a value (not a table), dotted, under ``prefix``."""
        found, node = self.lookup(prefix) if prefix else (True, self.data)
        if found and isinstance(node, dict):
            yield from _flat(node, prefix)

    def where(self, key: str) -> str:
        """Where a key's value came from: its variable, or the file."""
        variable = self.origins.get(key)
        if variable is not None:
            return f"${variable}"
        return f"{key} in {self.source}" if self.source else key

    def how_to_set(self, key: str) -> str:
        """The advice for a key that is missing: the file's table and key, or the variable."""
        section, _, name = key.rpartition(".")
        file = self.source or DEFAULT_FILE
        where = f"{name} in the [{section}] table of {file}" if section else f"{key} in {file}"
        return f"set {where}, or ${env_variable(key)}"

    def with_values(self, values: Mapping[str, Any]) -> Config:
        """A copy with dotted keys set (the effective server settings, say)."""
        data = _copy(self.data)
        for key, value in values.items():
            _set(data, key.split("."), value, key)
        return Config(data, source=self.source, origins=self.origins)


def env_variable(key: str) -> str:
    """The variable that sets ``key``: ``erp.soap_url`` -> ``EIP_ERP__SOAP_URL``."""
    return PREFIX + SEPARATOR.join(part.upper() for part in key.split("."))


def env_overrides(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """``{dotted key: (value, variable)}`` for every variable that sets a key."""
    found: dict[str, tuple[str, str]] = {}
    for variable, key in ENV_ALIASES.items():
        if variable in environ:
            found[key] = (environ[variable], variable)
    for variable, value in sorted(environ.items()):
        if not variable.startswith(PREFIX) or SEPARATOR not in variable:
            continue
        parts = variable[len(PREFIX) :].lower().split(SEPARATOR)
        if not all(parts):
            raise ConfigError(
                f"${variable}: an empty name between '__' separators (EIP_<SECTION>__<KEY> "
                "sets the key section.key)"
            )
        found[".".join(parts)] = (value, variable)  # the full form wins over an alias
    return found


def load_config(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """The config of ``path`` (an error if it does not exist), else of ``eip.toml`` in the
    working directory if there is one, with the environment laid over it."""
    environ = os.environ if environ is None else environ
    if path is None:
        default = Path(DEFAULT_FILE)
        if not default.is_file():
            return _overlay(Config(), environ)
        path = default
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {file}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    return _overlay(Config(data, source=str(file)), environ)


def _overlay(config: Config, environ: Mapping[str, str]) -> Config:
    data = _copy(config.data)
    origins = dict(config.origins)
    for key, (value, variable) in env_overrides(environ).items():
        _set(data, key.split("."), value, key, variable, config.source)
        origins[key] = variable
    return Config(data, source=config.source, origins=origins)


def _set(
    data: dict[str, Any],
    parts: list[str],
    value: Any,
    key: str,
    variable: str | None = None,
    source: str | None = None,
) -> None:
    by = f"${variable} sets {key}, but" if variable else f"{key}:"
    node = data
    for number, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            table = ".".join(parts[: number + 1])
            raise ConfigError(f"{by} {table} is a value in {source or 'the config'}, not a table")
        node = child
    if isinstance(node.get(parts[-1]), dict):
        raise ConfigError(f"{by} {key} is a table in {source or 'the config'}, not a value")
    node[parts[-1]] = value


def _copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _flat(node: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for name, value in node.items():
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(value, Mapping):
            yield from _flat(value, key)
        else:
            yield key


# -- the server's own settings ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    """The ``[server]`` table: what ``eip run`` listens on and how it logs."""

    #: The HTTP and SOAP routes' shared server (an endpoint's own ``port`` option wins).
    http_port: int = 8080
    http_host: str = "0.0.0.0"
    #: ``/health``, ``/metrics``, the control API and the console.
    management_port: int = 8081
    management_host: str = "0.0.0.0"
    #: False: serve no management endpoints (``--no-management``).
    management: bool = True
    #: Seconds shutdown drains in-flight exchanges.
    shutdown_timeout: float = 30.0
    log_level: str = "INFO"
    log_format: str = "text"

    @classmethod
    def from_config(cls, config: Config, **flags: Any) -> ServerSettings:
        """The effective settings: a flag that is not None, else the config (the environment
        over the file), else the default. An unknown key or a bad value is a ConfigError that
        names it and where it came from."""
        table = config.get("server", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{config.where('server')} is a value, not a [server] table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(table) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown server setting '{unknown[0]}' ({config.where('server.' + unknown[0])};"
                f" valid settings: {', '.join(sorted(fields))})"
            )
        values: dict[str, Any] = {}
        for name in fields:
            flag = flags.get(name)
            if flag is not None:
                values[name] = flag
            elif name in table:
                values[name] = _setting(name, table[name], config.where(f"server.{name}"))
        return cls(**values)

    def as_config(self) -> dict[str, Any]:
        """The settings as ``server.*`` keys, so ``{{server.http_port}}`` is the real port."""
        return {f"server.{f.name}": getattr(self, f.name) for f in dataclasses.fields(self)}


def _setting(name: str, value: Any, where: str) -> Any:
    """A server setting converted from TOML or environment text, and checked."""
    try:
        if name.endswith("_port"):
            port = _integer(value)
            if not 0 <= port <= 65535:
                raise ValueError(f"a port is 0..65535, got {port}")
            return port
        if name == "shutdown_timeout":
            seconds = float(value) if not isinstance(value, bool) else None
            if seconds is None or seconds < 0:
                raise ValueError(f"seconds >= 0 expected, got {value!r}")
            return seconds
        if name == "management":
            return _boolean(value)
        text = value if isinstance(value, str) else None
        if text is None:
            raise ValueError(f"a string expected, got {value!r}")
        if name == "log_level" and not isinstance(logging.getLevelName(text.upper()), int):
            raise ValueError(f"unknown log level {text!r} (DEBUG, INFO, WARNING or ERROR)")
        if name == "log_format" and text not in ("text", "json"):
            raise ValueError(f"log_format is text or json, got {text!r}")
        return text.upper() if name == "log_level" else text
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"server setting {name} ({where}): {exc}") from None


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"a whole number expected, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"a whole number expected, got {value!r}") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"true or false expected, got {value!r}")
