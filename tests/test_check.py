"""eip check's analysis (eip.runtime.check): what run would fail on, found without starting or
connecting anything. Each test builds real route models and asserts the findings, one line
each, with the route and the step."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eip import (
    Context,
    RouteBuilder,
    body,
    constant,
    dead_letter_channel,
    http_server,
    pipeline,
    soap_client,
)
from eip.runtime.check import Finding, check_routes


def builder(configure: Callable[[RouteBuilder], Any]) -> RouteBuilder:
    class Routes(RouteBuilder):
        def configure(self) -> None:
            configure(self)

    return Routes()


def findings(*configures: Callable[[RouteBuilder], Any]) -> list[Finding]:
    context = Context()
    context.add_routes(*(builder(c) for c in configures))
    return check_routes(context)


def lines(found: list[Finding]) -> list[str]:
    """The findings without the file and line (``tests/test_check.py:NN, ``)."""
    return [f"{f.severity}: {f.message.partition(', ')[2]}" for f in found]


NO_CONSUMER = "which no route consumes: each message sent there would fail with NoConsumerError"


def test_a_send_to_a_direct_endpoint_nothing_consumes_is_an_error() -> None:
    found = findings(lambda b: b.from_("timer:t").route_id("orders").to("direct:nowhere"))
    assert lines(found) == [
        f"error: route 'orders', step 1: sends to direct:nowhere, {NO_CONSUMER}"
    ]
    assert found[0].message.startswith("tests/test_check.py:")  # the file and line of the route
    assert found[0].route_id == "orders"


def test_a_consumed_endpoint_is_fine() -> None:
    found = findings(
        lambda b: b.from_("timer:t").route_id("a").to("direct:b", "seda:c"),
        lambda b: b.from_("direct:b").route_id("b").to("log:b"),
        lambda b: b.from_("seda:c").route_id("c").to("log:c"),
    )
    assert found == []


def test_a_seda_queue_nothing_consumes_is_an_error() -> None:
    found = findings(lambda b: b.from_("timer:t").route_id("a").to("seda:backlog?size=10"))
    assert lines(found) == [
        "error: route 'a', step 1: sends to seda:backlog, which no route consumes: messages "
        "sent there would wait in its queue and never be processed"
    ]


def test_every_kind_of_send_is_followed() -> None:
    def routes(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("direct:dlq"))
        b.on_exception(ValueError).to("direct:clause")
        (
            b.from_("timer:t")
            .route_id("a")
            .wire_tap("seda:tap")
            .enrich("direct:enricher")
            .multicast(pipeline().to("log:x"), "direct:m")
            .recipient_list(constant("direct:r1, direct:r2"))
            .to_d("direct:static")
            .split(body(), pipeline().to("direct:part"))
            .aggregate(lambda ex: 1, lambda a, b: b, completion_size=2, dead_letter="seda:late")
            .to("log:done")
        )

    found = lines(findings(routes))
    assert found == [
        "error: route 'a', step dead_letter_channel: sends to direct:dlq, " + NO_CONSUMER,
        "error: route 'a', step 1: sends to seda:tap, which no route consumes: messages sent "
        "there would wait in its queue and never be processed",
        f"error: route 'a', step 2: sends to direct:enricher, {NO_CONSUMER}",
        f"error: route 'a', step 3 > output 2 > 1: sends to direct:m, {NO_CONSUMER}",
        f"error: route 'a', step 4: sends to direct:r1, {NO_CONSUMER}",
        f"error: route 'a', step 4: sends to direct:r2, {NO_CONSUMER}",
        f"error: route 'a', step 5: sends to direct:static, {NO_CONSUMER}",
        f"error: route 'a', step 6 > each part > 1: sends to direct:part, {NO_CONSUMER}",
        "error: route 'a', step 7: sends to seda:late, which no route consumes: messages sent "
        "there would wait in its queue and never be processed",
        f"error: route 'a', step on_exception(ValueError) > 1: sends to direct:clause, "
        f"{NO_CONSUMER}",
    ]


def test_choice_branches_are_numbered_as_the_compiler_numbers_them() -> None:
    from eip import otherwise, when

    found = findings(
        lambda b: (
            b.from_("timer:t")
            .route_id("a")
            .choice(when(body() == 1).to("log:x"), otherwise().to("direct:other"))
        )
    )
    assert lines(found) == [
        f"error: route 'a', step 1 > otherwise > 1: sends to direct:other, {NO_CONSUMER}"
    ]


def test_builder_wide_error_handling_is_reported_once() -> None:
    def routes(b: RouteBuilder) -> None:
        b.error_handler(dead_letter_channel("direct:dlq"))
        b.on_exception(KeyError).to("direct:clause")
        b.from_("timer:a").route_id("a").to("log:a")
        b.from_("timer:b").route_id("b").to("log:b")

    found = lines(findings(routes))
    assert found == [
        f"error: route 'a', step dead_letter_channel: sends to direct:dlq, {NO_CONSUMER}",
        f"error: route 'a', step on_exception(KeyError) > 1: sends to direct:clause, {NO_CONSUMER}",
    ]


def test_a_consumer_nothing_feeds_is_a_warning() -> None:
    found = findings(lambda b: b.from_("direct:in").route_id("in").to("log:x"))
    assert lines(found) == [
        "warning: route 'in', step from: consumes direct:in, but no route sends to it (fine "
        "when a ProducerTemplate, an HTTP handler or a computed recipient feeds it)"
    ]


def test_a_to_d_template_may_feed_the_consumers_it_could_name() -> None:
    found = findings(
        lambda b: b.from_("timer:t").route_id("a").to_d("direct:orders-{headers[kind]}"),
        lambda b: b.from_("direct:orders-eu").route_id("eu").to("log:eu"),
        lambda b: b.from_("seda:other").route_id("other").to("log:other"),
    )
    assert [f.route_id for f in found] == ["other"]  # only the one the template cannot name
    assert found[0].severity == "warning"


def test_sending_to_a_route_that_does_not_start_is_a_warning() -> None:
    found = findings(
        lambda b: b.from_("timer:t").route_id("a").to("direct:later"),
        lambda b: b.from_("direct:later").route_id("later").auto_startup(False).to("log:x"),
    )
    assert lines(found) == [
        "warning: route 'a', step 1: sends to direct:later, whose route 'later' does not start "
        "with the others (auto_startup=False): start it before messages come"
    ]


def test_compile_errors_of_each_route_are_all_reported() -> None:
    found = findings(
        lambda b: b.from_("timer:t").route_id("a").to("seda:q?sise=1"),
        lambda b: b.from_("timer:u").route_id("b").to("kafak:x"),
    )
    assert [f.route_id for f in found] == ["a", "b"]
    assert all(f.severity == "error" for f in found)
    assert "route 'a', step 1: unknown option 'sise'" in found[0].message
    assert (
        "route 'b', step 1: unknown endpoint scheme 'kafak:' (valid schemes: " in found[1].message
    )


def test_two_consumers_of_one_direct_endpoint_is_an_error() -> None:
    found = findings(
        lambda b: b.from_("direct:x").route_id("a").to("log:a"),
        lambda b: b.from_("direct:x").route_id("b").to("log:b"),
        lambda b: b.from_("timer:t").route_id("t").to("direct:x"),
    )
    assert len(found) == 1
    assert "direct:x is consumed by routes 'a' and 'b'" in found[0].message
    assert found[0].message.startswith("tests/test_check.py:")


# -- environment variables ---------------------------------------------------------------------


@pytest.fixture
def unset() -> str:
    return f"EIP_TEST_UNSET_{uuid.uuid4().hex.upper()}"


def test_an_unset_credentials_env_of_a_served_route_is_an_error(unset: str) -> None:
    found = findings(
        lambda b: (
            b.from_(http_server("/hook", auth="api_key", credentials_env=unset))
            .route_id("hook")
            .to("log:x")
        )
    )
    assert lines(found) == [
        f"error: route 'hook', step from: credentials_env '{unset}' is not set: set the "
        f"environment variable (endpoint http:/hook?auth=api_key&credentials_env={unset})"
    ]


def test_a_set_variable_passes_and_an_empty_key_list_does_not(
    unset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hook(b: RouteBuilder) -> None:
        b.from_(http_server("/hook", auth="api_key", credentials_env=unset)).to("log:x")

    monkeypatch.setenv(unset, "k1,k2")
    assert findings(hook) == []
    monkeypatch.setenv(unset, " ")
    assert [f"credentials_env '{unset}' is empty" in f.message for f in findings(hook)] == [True]


def test_variables_the_endpoint_would_not_read_are_not_required(unset: str) -> None:
    found = findings(
        # auth="" inherits the server's authentication: credentials_env is not read
        lambda b: b.from_(http_server("/a", credentials_env=unset)).route_id("a").to("log:a"),
        # no WS-Security user name: the password is not read
        lambda b: (
            b.from_("timer:t")
            .route_id("b")
            .to(soap_client("erp", wsdl="x.wsdl", operation="Op", ws_password_env=unset))
        ),
        # no client authentication: the secret is not read
        lambda b: b.from_("timer:u").route_id("c").to(f"https://erp.local/x?secret_env={unset}"),
    )
    assert found == []


def test_a_variable_the_compiler_also_misses_is_reported_once(unset: str) -> None:
    found = findings(
        lambda b: (
            b.from_("timer:t")
            .route_id("soap")
            .to(
                soap_client(
                    "erp", wsdl="x.wsdl", operation="Op", ws_username="u", ws_password_env=unset
                )
            )
        )
    )
    assert len(found) == 1
    assert "route 'soap', step 1: endpoint soap:erp?" in found[0].message
    assert f"ws_password_env '{unset}' is not set" in found[0].message


def test_the_http_servers_own_auth_variable_is_checked(unset: str) -> None:
    from eip.components.http import AuthSpec, HttpComponent

    context = Context()
    context.add_routes(builder(lambda b: b.from_("http:/a").route_id("a").to("log:a")))
    component = context.component("http")
    assert isinstance(component, HttpComponent)
    component.configure(auth=AuthSpec(scheme="api_key", credentials_env=unset))
    assert [str(f) for f in check_routes(context)] == [
        f"error: the http server's auth credentials_env '{unset}' is not set"
    ]


# -- memory hops after an acknowledged source (eip/runtime/memory_hops.py) -------------------
def hop_warning(route: str, step: str, source: str, key: str = "seda:work") -> str:
    return (
        f"warning: route '{route}', step {step}: sends to {key} without "
        f"wait_for_completion=true: {source} is acknowledged as soon as the in-memory queue "
        f"has taken the message, so a crash loses what the queue holds; set "
        f"wait_for_completion=true, make the queue durable ({key}?durable=true&path=FILE), or "
        "send through RabbitMQ"
    )


def work_consumer(b: RouteBuilder) -> None:
    b.from_("seda:work").route_id("work").to("log:work")


@pytest.mark.parametrize(
    "source",
    ["rabbitmq:crm?queue=orders", "file:inbox", "http:/orders?pattern=in-only"],
)
def test_an_acknowledged_source_handing_to_memory_seda_is_a_warning(source: str) -> None:
    found = findings(lambda b: b.from_(source).route_id("in").to("seda:work"), work_consumer)
    assert lines(found) == [hop_warning("in", "1", f"its source {source}")]
    assert found[0].message.startswith("tests/test_check.py:")
    assert found[0].route_id == "in"


@pytest.mark.parametrize(
    "source",
    [
        "timer:t",  # nothing to acknowledge
        "file:inbox?noop=true",  # the file stays: a restart reads it again
        "http:/orders",  # in-out: seda waits for an in-out exchange
        "seda:upstream",  # memory in, memory out: nothing more to lose
    ],
)
def test_sources_that_settle_nothing_on_completion_are_not_warned(source: str) -> None:
    found = findings(lambda b: b.from_(source).route_id("in").to("seda:work"), work_consumer)
    assert [f for f in found if "wait_for_completion" in f.message] == []


@pytest.mark.parametrize(
    "target",
    [
        "seda:work?wait_for_completion=true",
        "seda:work?durable=true&path=state/seda.db",
        "direct:work",
    ],
)
def test_waiting_durable_or_direct_sends_are_not_warned(target: str) -> None:
    consumer = target.replace("wait_for_completion=true", "size=1000")
    found = findings(
        lambda b: b.from_("rabbitmq:crm?queue=orders").route_id("in").to(target),
        lambda b: b.from_(consumer).route_id("work").to("log:work"),
    )
    assert found == []


def test_nested_sends_are_followed_but_wire_taps_and_enrichers_are_not() -> None:
    def routes(b: RouteBuilder) -> None:
        from eip import otherwise, when

        b.error_handler(dead_letter_channel("seda:work"))
        (
            b.from_("rabbitmq:crm?queue=orders")
            .route_id("in")
            .wire_tap("seda:work")  # fire-and-forget by design: no warning
            .enrich("seda:work")  # in-out: seda waits
            .choice(when(body() == 1).to("seda:work"), otherwise().to("log:x"))
            .multicast(pipeline().to("log:x"), "seda:work")
            .recipient_list(constant("log:y, seda:work"))
            .split(body(), pipeline().to("seda:work"))
        )
        work_consumer(b)

    source = "its source rabbitmq:crm?queue=orders"
    assert lines(findings(routes)) == [
        hop_warning("in", "dead_letter_channel", source),
        hop_warning("in", "3 > when 1 > 1", source),
        hop_warning("in", "4 > output 2 > 1", source),
        hop_warning("in", "5", source),
        hop_warning("in", "6 > each part > 1", source),
    ]


def test_a_route_called_synchronously_by_an_acknowledging_route_is_warned_naming_it() -> None:
    found = findings(
        lambda b: b.from_("rabbitmq:crm?queue=orders").route_id("in").to("direct:relay"),
        lambda b: b.from_("direct:relay").route_id("relay").to("seda:hop?wait_for_completion=true"),
        lambda b: b.from_("seda:hop").route_id("hop").to("seda:work"),
        work_consumer,
    )
    assert lines(found) == [
        hop_warning("hop", "1", "the source of route 'in' (rabbitmq:crm?queue=orders)")
    ]


def test_a_durable_seda_consumer_handing_to_memory_seda_is_a_warning() -> None:
    durable = "seda:orders?durable=true&path=state/seda.db"
    found = findings(
        lambda b: b.from_("timer:t").route_id("feed").to(durable),
        lambda b: b.from_(durable).route_id("orders").to("seda:work"),
        work_consumer,
    )
    assert lines(found) == [hop_warning("orders", "1", f"its source {durable}")]


def test_the_start_logs_one_warning_per_memory_hop(caplog: pytest.LogCaptureFixture) -> None:
    from eip.runtime.memory_hops import warn_memory_hops

    context = Context()
    context.add_routes(
        builder(lambda b: b.from_("rabbitmq:crm?queue=orders").route_id("in").to("seda:work")),
        builder(lambda b: b.from_("file:inbox").route_id("files").to("seda:work", "log:x")),
        builder(work_consumer),
    )
    with caplog.at_level("WARNING", logger="eip.context"):
        hops = warn_memory_hops(context)
    records = [r for r in caplog.records if r.name == "eip.context"]
    assert [(h.route_id, h.step, h.endpoint) for h in hops] == [
        ("in", "1", "seda:work"),
        ("files", "1", "seda:work"),
    ]
    assert [r.levelname for r in records] == ["WARNING", "WARNING"]
    assert [r.getMessage() for r in records] == [h.message for h in hops]
    assert "route 'files', step 1: sends to seda:work without wait_for_completion" in (
        records[1].getMessage()
    )


def test_eip_check_prints_the_memory_hop_warning(tmp_path: Path) -> None:
    from tests.cli_support import run_cli

    route_file = tmp_path / "hops.py"
    route_file.write_text(
        "from eip import RouteBuilder\n\n\n"
        "class Hops(RouteBuilder):\n"
        "    def configure(self) -> None:\n"
        "        self.from_('rabbitmq:crm?queue=orders').route_id('in').to('seda:work')\n"
        "        self.from_('seda:work').route_id('work').to('log:work')\n"
    )
    done = run_cli("check", str(route_file))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok: 2 route(s) valid, 1 warning(s)"
    assert done.stderr.strip() == (
        f"eip: warning: {route_file}:6, route 'in', step 1: sends to seda:work without "
        "wait_for_completion=true: its source rabbitmq:crm?queue=orders is acknowledged as soon "
        "as the in-memory queue has taken the message, so a crash loses what the queue holds; "
        "set wait_for_completion=true, make the queue durable "
        "(seda:work?durable=true&path=FILE), or send through RabbitMQ"
    )


def test_eip_check_finds_no_memory_hop_in_the_example_routes() -> None:
    from tests.cli_support import ROOT, run_cli

    done = run_cli("check", str(ROOT / "routes"))
    assert done.returncode == 0, done.stderr
    assert "wait_for_completion" not in done.stderr
    assert done.stdout.startswith("ok: ")


async def test_context_start_logs_each_memory_hop_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = Context()
    context.add_routes(
        builder(lambda b: b.from_(f"file:{tmp_path}").route_id("files").to("seda:work")),
        builder(lambda b: b.from_("seda:work").route_id("work").to("log:work")),
    )
    with caplog.at_level("WARNING", logger="eip.context"):
        await context.start()
        await context.stop()
    hops = [r for r in caplog.records if "without wait_for_completion" in r.getMessage()]
    assert [r.levelname for r in hops] == ["WARNING"]
    assert "route 'files', step 1: sends to seda:work" in hops[0].getMessage()
