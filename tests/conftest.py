"""Suite-wide setup: before any test runs, check that RabbitMQ, PostgreSQL and Redis answer.

If one does not, the run stops at once (a usage error: exit code 4, no test run), with one
line per missing service saying where it was looked for and how to start it
(:mod:`tests.services`), instead of failing dozens of tests with connection errors. The check
fails the run, never skips a test; it costs about a millisecond when the services are up.
"""

from __future__ import annotations

import pytest

from tests.services import missing_services, report


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return  # listing tests talks to nothing
    problems = missing_services()
    if problems:
        raise pytest.UsageError(report(problems))
