"""Fixtures for the RabbitMQ tests: a vhost of their own (see :mod:`.vhosts`).

Tests outside this package import them from ``tests.rabbitmq.vhosts`` instead."""

from __future__ import annotations

from .vhosts import broker_vhost, module_vhost

__all__ = ["broker_vhost", "module_vhost"]
