"""The values of secret placeholders, scrubbed from texts the engine did not make itself.

:mod:`eip.runtime.properties` adds every value that came from ``{{env:...}}``, ``{{file:...}}``
or a secret-named config key. Shown forms keep the placeholder instead of the value; these
helpers cover the texts an endpoint makes from its resolved spec (a failure naming its URL):
:class:`ScrubSecrets` on log handlers, and :func:`scrub_exception` for a producer's failures.

Values shorter than :data:`SECRET_MIN` characters are not scrubbed: hiding every "8080" would
hide more than it protects (and such a value is no secret).
"""

from __future__ import annotations

import contextlib
import logging

from eip.redaction import add_secret

__all__ = ["SECRETS", "SECRET_MIN", "ScrubSecrets", "SecretValues", "scrub", "scrub_exception"]

#: Secrets shorter than this are not scrubbed from texts.
SECRET_MIN = 4


class SecretValues:
    """The values of secret placeholders resolved in this process, to scrub from texts."""

    def __init__(self) -> None:
        self._values: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        if len(value) >= SECRET_MIN and value not in self._values:
            # Longest first, so a secret that holds another is replaced whole.
            self._values = tuple(sorted((*self._values, value), key=len, reverse=True))
            add_secret(value)  # and in every redacted URI: spans, readiness, the control API

    def __bool__(self) -> bool:
        return bool(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, "***")
        return text


#: The process's secret values (logs and errors are the process's too).
SECRETS = SecretValues()


def scrub(text: str) -> str:
    """``text`` with every secret value replaced by ``***``."""
    return SECRETS.scrub(text) if SECRETS else text


def scrub_exception(exc: BaseException) -> None:
    """Scrub secret values from an exception's message and its text attributes, in place:
    the failure then reaches logs, the failure history, headers and dead letters clean."""
    if not SECRETS:
        return
    exc.args = tuple(scrub(a) if isinstance(a, str) else a for a in exc.args)
    for name, value in list(getattr(exc, "__dict__", {}).items()):
        if isinstance(value, str) and value != (cleaned := scrub(value)):
            # ExchangeError keeps its endpoint behind a property that redacts what it is given.
            with contextlib.suppress(AttributeError):
                setattr(exc, "endpoint" if name == "_endpoint" else name, cleaned)


class ScrubSecrets(logging.Filter):
    """A handler filter that scrubs secret values from every record it passes (message,
    traceback, stack): ``eip run`` puts one on each root handler."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not SECRETS:
            return True
        message = record.getMessage()
        cleaned = SECRETS.scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = SECRETS.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = SECRETS.scrub(record.stack_info)
        return True
