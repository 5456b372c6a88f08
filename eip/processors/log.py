"""The ``log`` step: a formatted line per exchange on a named logger.

The message is formatted only when the logger is enabled for the level, so a ``log`` step at
DEBUG costs one level check in production.
"""

from __future__ import annotations

import logging
from typing import Any

from eip.message import Exchange
from eip.processors.base import Step

__all__ = ["log_step"]


def log_step(message: Any, level: int, logger_name: str) -> Step:
    logger = logging.getLogger(logger_name)
    if callable(message):
        render = message
    else:
        template = str(message)

        def render(exchange: Exchange) -> str:
            return template.format(
                body=exchange.body,
                headers=exchange.headers,
                exchange_id=exchange.id,
                route_id=exchange.route_id,
            )

    def log(exchange: Exchange) -> None:
        if logger.isEnabledFor(level):
            logger.log(level, "%s", render(exchange))

    return log
