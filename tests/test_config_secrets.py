"""Secrets from ``{{env:...}}`` and ``{{file:...}}`` placeholders are used, and never shown: not
in ``eip routes``, logs, spans, the failure history, the control API (a real ManagementServer on
127.0.0.1) or error texts. The endpoint is resolved against a real HTTP server (FakeErp) that
fails, so the failure texts the HTTP producer makes would carry the resolved URL."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pytest_asyncio import fixture as async_fixture

from eip import Context, RouteBuilder, RouteDefinitionError
from eip.cli import describe_routes
from eip.components.http import http_client
from eip.config import Config
from eip.runtime.properties import Properties
from eip.runtime.secrets import SECRETS, ScrubSecrets
from eip.server.management import ManagementServer
from tests.http.fake_erp import FakeErp, Reply


@dataclass
class Secrets:
    tenant: str  # in the URL's path: no redaction rule would hide it by its name
    queue: str  # in the route's from-URI
    token: str  # from a file, as the bearer token
    tenant_var: str
    queue_var: str
    token_file: Path

    def all(self) -> tuple[str, str, str]:
        return self.tenant, self.queue, self.token

    def assert_absent(self, text: str, where: str) -> None:
        for value in self.all():
            assert value not in text, f"a secret is shown in {where}: {text[:2000]}"


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Secrets:
    tag = uuid.uuid4().hex[:10]
    found = Secrets(
        tenant=f"tenant-{tag}",
        queue=f"queue-{tag}",
        token=f"token-{tag}",
        tenant_var=f"EIP_TEST_TENANT_{tag.upper()}",
        queue_var=f"EIP_TEST_QUEUE_{tag.upper()}",
        token_file=tmp_path / "erp-token",
    )
    found.token_file.write_text(f"{found.token}\n", encoding="utf-8")
    monkeypatch.setenv(found.tenant_var, found.tenant)
    monkeypatch.setenv(found.queue_var, found.queue)
    return found


def _routes(erp_url: str, secrets: Secrets) -> RouteBuilder:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(f"seda:{{{{env:{secrets.queue_var}}}}}")
                .route_id("secret-route")
                .to(
                    http_client(
                        f"{erp_url}/{{{{env:{secrets.tenant_var}}}}}/orders",
                        method="POST",
                        auth="bearer",
                        secret=f"{{{{file:{secrets.token_file}}}}}",
                    )
                )
            )

    return Routes()


@dataclass
class Running:
    context: Context
    erp: FakeErp
    api: httpx.AsyncClient
    spans: InMemorySpanExporter


@async_fixture
async def running(secrets: Secrets) -> AsyncIterator[Running]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with FakeErp() as erp:
        erp.reply("/*/orders", Reply(500, json={"error": "down"}))
        context = Context(shutdown_timeout=5, metrics=True, tracer_provider=provider)
        context.add_routes(_routes(erp.url, secrets))
        server = ManagementServer(context, "127.0.0.1", 0, token="")
        await server.start()
        await context.start()
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as api:
                yield Running(context, erp, api, exporter)
        finally:
            await context.stop()
            await server.stop()


async def _fail_one(running: Running, secrets: Secrets) -> None:
    await running.context.template().send(f"seda:{{{{env:{secrets.queue_var}}}}}", b"{}")
    for _ in range(500):
        if running.context.failures.last("secret-route") is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the exchange did not fail within 5 s")


async def test_secrets_are_used_but_absent_from_logs_history_api_and_spans(
    running: Running, secrets: Secrets, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await _fail_one(running, secrets)
    [call] = running.erp.requests  # the values were used: the path and the token
    assert call.path == f"/{secrets.tenant}/orders"
    assert call.headers["authorization"] == f"Bearer {secrets.token}"
    # eip's lines (the fake ERP's own access log shows what it received, as it may)
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name.startswith("eip")
    )
    assert "failed exchange" in logged  # the failure was logged...
    assert "HTTP 500 from POST" in logged
    secrets.assert_absent(logged, "the logs")  # ...without the secrets
    record = running.context.failures.last("secret-route")
    assert record is not None
    assert "/***/orders" in record.message
    secrets.assert_absent(repr(record), "the failure history")
    for path in ("/routes", "/routes/secret-route", "/routes/secret-route/failures"):
        answer = await running.api.get(path)
        assert answer.status_code == 200, answer.text
        secrets.assert_absent(answer.text, path)
    [route] = (await running.api.get("/routes")).json()["routes"]
    assert route["from"] == f"seda:{{{{env:{secrets.queue_var}}}}}"  # as written
    # Every span, the HTTP component's own CLIENT span included: it names the URL it called
    # in url.full through redact_uri, which hides the values of secret placeholders too.
    spans = list(running.spans.get_finished_spans())
    assert any(s.kind is SpanKind.CLIENT for s in spans)
    [route_span] = [s for s in spans if s.name == "secret-route"]
    assert [e.name for e in route_span.events] == ["exception"]
    secrets.assert_absent(
        repr([(s.name, s.attributes, [e.attributes for e in s.events]) for s in spans]), "spans"
    )


async def test_the_route_listing_and_the_producer_show_the_placeholders(
    running: Running, secrets: Secrets
) -> None:
    listing = describe_routes(running.context)  # what `eip routes` prints
    secrets.assert_absent(listing, "eip routes")
    assert f"secret-route  from seda:{{{{env:{secrets.queue_var}}}}}" in listing
    assert f"/{{{{env:{secrets.tenant_var}}}}}/orders" in listing
    uris = [p.uri for p in running.context._producers.values()]
    secrets.assert_absent(repr(uris), "producer names")


async def test_an_invalid_resolved_value_is_an_error_that_hides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = f"secret-host-{uuid.uuid4().hex[:8]}"
    variable = f"EIP_TEST_URL_{uuid.uuid4().hex[:8].upper()}"
    monkeypatch.setenv(variable, f"ftp://{host}/x")

    class Routes(RouteBuilder):
        def configure(self) -> None:
            self.from_("direct:a").route_id("a").to(http_client(f"{{{{env:{variable}}}}}"))

    context = Context()
    context.add_routes(Routes())
    with pytest.raises(RouteDefinitionError) as invalid:
        context.validate()
    text = str(invalid.value)
    assert host not in text
    assert f"route 'a', step 1: endpoint {{{{env:{variable}}}}}: " in text
    assert "is not an http(s):// URL with a host" in text


def test_config_keys_named_like_secrets_are_secrets_and_others_are_not() -> None:
    token, url = f"tok-{uuid.uuid4().hex}", f"https://erp-{uuid.uuid4().hex[:6]}.local"
    properties = Properties(Config({"erp": {"api_token": token, "url": url}}), environ={})
    assert properties.resolve("{{erp.api_token}}") == (token, True)
    assert token in SECRETS
    assert properties.resolve("{{erp.url}}") == (url, False)  # configuration, shown in errors
    assert url not in SECRETS


def test_the_log_filter_scrubs_messages_and_tracebacks() -> None:
    secret = f"filter-secret-{uuid.uuid4().hex[:8]}"
    SECRETS.add(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubSecrets())
    logger = logging.getLogger(f"eip.test.scrub.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise ValueError(f"cannot reach {secret}")
    except ValueError:
        logger.exception("calling %s failed", f"http://{secret}/x")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "calling http://***/x failed" in text
    assert "ValueError: cannot reach ***" in text
    assert secret not in text
