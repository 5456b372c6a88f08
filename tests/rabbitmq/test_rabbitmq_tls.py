"""TLS and SASL EXTERNAL against the real local RabbitMQ, with a TLS listener set up here.

The broker has no TLS listener of its own; :class:`tests.rabbitmq.tls_broker.TlsBroker` adds
two at run time (certificates made by the test's own CA), a vhost and a user of the test's
own, and EXTERNAL login, and removes all of it afterwards. The file checks of
:func:`tls_context` and the refusals made before connecting need no broker.
"""

from __future__ import annotations

import logging
import re
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eip import Context
from eip.components.rabbitmq._amqp import (
    AmqpError,
    ChannelClosedError,
    Connection,
    ConnectionClosedError,
    Properties,
    connect,
    tls_context,
)
from tests.inline import inline_routes
from tests.rabbitmq.certs import TestCA
from tests.rabbitmq.support import Rmq
from tests.rabbitmq.test_amqp_helpers import Collector, requires_broker
from tests.rabbitmq.tls_broker import TlsBroker, rabbitmqctl_eval


@pytest.fixture(scope="module")
def cert_dir() -> Iterator[Path]:
    """World-readable: the broker runs as its own user and must read the server's files."""
    directory = Path(tempfile.mkdtemp(prefix="eip-tls-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_broker(cert_dir: Path) -> Iterator[TlsBroker]:
    broker = TlsBroker(cert_dir)
    for path in cert_dir.iterdir():
        path.chmod(0o644)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def url(
    broker: TlsBroker, *, port: int | None = None, host: str = "127.0.0.1", auth: str = ""
) -> str:
    return f"amqps://{auth}{host}:{port or broker.port}/{broker.vhost}"


async def round_trip(connection: Connection, properties: Properties | None = None) -> Properties:
    """Publish one message to a fresh queue and consume it back; its properties."""
    channel = await connection.channel(publisher_confirms=True)
    queue = f"eip-tls-{uuid.uuid4().hex}"
    await channel.queue_declare(queue, durable=False, auto_delete=False)
    await channel.wait_confirm(channel.publish(b"over TLS", "", queue, properties))
    collector = Collector()
    await channel.basic_consume(queue, collector, no_ack=True)
    (delivery,) = await collector.wait_for(1, timeout=10)
    assert delivery.body == b"over TLS"
    await channel.queue_delete(queue)
    return delivery.properties


# -- tls_context: file checks (no broker) ------------------------------------------------------


@pytest.fixture(scope="module")
def spare_ca(cert_dir: Path) -> TestCA:
    return TestCA(cert_dir, "eip spare CA")


def test_tls_context_loads_a_private_ca_and_a_client_certificate(spare_ca: TestCA) -> None:
    issued = spare_ca.issue_client("ok-client", "someone")
    for cert_file, key_file in ((issued.cert_file, issued.key_file), (issued.combined, "")):
        context = tls_context(
            ca_file=str(spare_ca.ca_file), cert_file=str(cert_file), key_file=str(key_file)
        )
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        # only the private CA is trusted, not the system store
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("commonName", "eip spare CA"),),)
        ]


def test_tls_context_names_the_option_and_the_path(spare_ca: TestCA, cert_dir: Path) -> None:
    issued = spare_ca.issue_client("bad-client", "someone")
    other = spare_ca.issue_client("other-client", "someone-else")
    missing = str(cert_dir / "no-such.pem")
    cases: list[tuple[dict[str, str], str]] = [
        ({"ca_file": missing}, f"ca_file '{missing}' cannot be read"),
        ({"ca_file": str(cert_dir)}, f"ca_file '{cert_dir}' cannot be read"),
        ({"ca_file": str(issued.key_file)}, "holds no PEM certificate"),
        ({"cert_file": missing}, f"cert_file '{missing}' cannot be read"),
        ({"cert_file": str(issued.cert_file), "key_file": missing}, f"key_file '{missing}'"),
        ({"cert_file": str(issued.cert_file)}, "holds no private key: give key_file"),
        ({"cert_file": str(issued.cert_file), "key_file": str(other.key_file)}, "does not match"),
        (
            {"cert_file": str(issued.cert_file), "key_file": str(issued.cert_file)},
            "no PEM private key",
        ),
        ({"key_file": str(issued.key_file)}, "without cert_file"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            tls_context(**options)  # type: ignore[arg-type]


def test_an_encrypted_key_is_refused_rather_than_prompted_for(
    spare_ca: TestCA, cert_dir: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    issued = spare_ca.issue_client("enc-client", "someone")
    key = serialization.load_pem_private_key(issued.key_file.read_bytes(), None)
    encrypted = cert_dir / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ValueError, match="encrypted private key"):
        tls_context(cert_file=str(issued.cert_file), key_file=str(encrypted))


# -- refusals before connecting (no broker) ------------------------------------------------


async def test_external_and_tls_options_need_what_they_need(spare_ca: TestCA) -> None:
    no_cert = tls_context(ca_file=str(spare_ca.ca_file))
    with pytest.raises(ValueError, match="EXTERNAL needs TLS"):
        await connect("amqp://127.0.0.1:5672/", auth_mechanism="EXTERNAL")
    with pytest.raises(ValueError, match="EXTERNAL needs a client certificate"):
        await connect("amqps://127.0.0.1:1/", auth_mechanism="EXTERNAL")
    with pytest.raises(ValueError, match="EXTERNAL needs a client certificate"):
        await connect("amqps://127.0.0.1:1/", ssl_context=no_cert, auth_mechanism="EXTERNAL")
    with pytest.raises(ValueError, match="the URL is amqp://"):
        await connect("amqp://127.0.0.1:5672/", ssl_context=no_cert)
    with pytest.raises(ValueError, match="'PLAIN' or 'EXTERNAL'"):
        await connect("amqps://127.0.0.1:1/", auth_mechanism="AMQPLAIN")  # type: ignore[arg-type]


# -- against the broker's TLS listener -------------------------------------------------------


@requires_broker
async def test_private_ca_with_plain_login(tls_broker: TlsBroker) -> None:
    context = tls_context(ca_file=str(tls_broker.ca.ca_file))
    for host in ("127.0.0.1", "localhost"):  # the certificate names both
        connection = await connect(
            url(tls_broker, host=host, auth="guest:guest@"), ssl_context=context
        )
        try:
            ssl_object = connection._transport.get_extra_info("ssl_object")  # type: ignore[union-attr]
            assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
            assert ssl_object.server_hostname == host
            await round_trip(connection)
        finally:
            await connection.close()


@requires_broker
async def test_an_untrusted_certificate_fails_clearly(
    tls_broker: TlsBroker, spare_ca: TestCA
) -> None:
    target = url(tls_broker, auth="guest:guest@")
    for context in (tls_context(ca_file=str(spare_ca.ca_file)), None):  # wrong CA; system store
        with pytest.raises(AmqpError) as caught:
            await connect(target, ssl_context=context, connect_timeout=5)
        message = str(caught.value)
        assert f"127.0.0.1:{tls_broker.port} is not trusted" in message
        assert "ca_file" in message
        assert "verify=false" in message
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


@requires_broker
async def test_the_name_checked_is_the_urls_host(tls_broker: TlsBroker) -> None:
    context = tls_context(ca_file=str(tls_broker.ca.ca_file))
    target = url(tls_broker, port=tls_broker.wrong_name_port, auth="guest:guest@")
    with pytest.raises(AmqpError, match=r"not trusted.*mismatch.*'127\.0\.0\.1'"):
        await connect(target, ssl_context=context, connect_timeout=5)


@requires_broker
async def test_verify_false_connects_and_warns(
    tls_broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="eip.rabbitmq"):
        context = tls_context(verify=False)  # no ca_file: the private CA is not trusted
    warnings = [
        r for r in caplog.records if r.name == "eip.rabbitmq" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "the broker's certificate is not verified" in warnings[0].getMessage()
    # an untrusted CA and a certificate for another name: both accepted
    for port in (tls_broker.port, tls_broker.wrong_name_port):
        connection = await connect(
            url(tls_broker, port=port, auth="guest:guest@"), ssl_context=context
        )
        try:
            await round_trip(connection)
        finally:
            await connection.close()


@requires_broker
async def test_external_logs_in_as_the_certificates_cn(tls_broker: TlsBroker) -> None:
    context = tls_context(
        ca_file=str(tls_broker.ca.ca_file),
        cert_file=str(tls_broker.client.cert_file),
        key_file=str(tls_broker.client.key_file),
    )
    # no credentials in the URL: the user comes from the certificate
    connection = await connect(url(tls_broker), ssl_context=context, auth_mechanism="EXTERNAL")
    try:
        # RabbitMQ refuses a user_id that is not the connection's user, so this proves who we are
        properties = await round_trip(connection, Properties(user_id=tls_broker.user))
        assert properties.user_id == tls_broker.user
        channel = await connection.channel(publisher_confirms=True)
        channel.publish(b"x", "", "nowhere", Properties(user_id="guest"))
        reason = await channel.closed
        assert isinstance(reason, ChannelClosedError)
        assert reason.code == 406
        assert "user_id property set to 'guest'" in reason.text
    finally:
        await connection.close()


@requires_broker
async def test_external_with_an_unknown_user_is_refused(
    tls_broker: TlsBroker, cert_dir: Path
) -> None:
    stranger = tls_broker.ca.issue_client("stranger", f"eip-no-such-user-{uuid.uuid4().hex}")
    context = tls_context(ca_file=str(tls_broker.ca.ca_file), cert_file=str(stranger.combined))
    with pytest.raises(ConnectionClosedError) as caught:
        await connect(
            url(tls_broker), ssl_context=context, auth_mechanism="EXTERNAL", connect_timeout=5
        )
    assert caught.value.code == 403


@requires_broker
async def test_external_not_offered_names_the_plugin(tls_broker: TlsBroker) -> None:
    context = tls_context(
        ca_file=str(tls_broker.ca.ca_file), cert_file=str(tls_broker.client.combined)
    )
    previous = rabbitmqctl_eval(
        "{ok, M} = application:get_env(rabbit, auth_mechanisms), "
        "ok = application:set_env(rabbit, auth_mechanisms, M -- ['EXTERNAL']), M."
    )
    try:
        with pytest.raises(AmqpError) as caught:
            await connect(
                url(tls_broker), ssl_context=context, auth_mechanism="EXTERNAL", connect_timeout=5
            )
    finally:
        rabbitmqctl_eval(f"application:set_env(rabbit, auth_mechanisms, {previous}).")
    message = str(caught.value)
    assert "does not offer EXTERNAL authentication (it offers: PLAIN AMQPLAIN)" in message
    assert "rabbitmq_auth_mechanism_ssl" in message


# -- the component -------------------------------------------------------------------------------


@requires_broker
async def test_a_route_consumes_over_tls_with_external(tls_broker: TlsBroker, rmq: Rmq) -> None:
    queue = f"eip-tls-route-{uuid.uuid4().hex}"
    endpoint = rmq(
        f"rabbitmq:?queue={queue}&url={url(tls_broker)}&ca_file={tls_broker.ca.ca_file}"
        f"&cert_file={tls_broker.client.cert_file}&key_file={tls_broker.client.key_file}"
        "&auth_mechanism=EXTERNAL"
    )
    context = Context()
    context.add_routes(inline_routes(lambda b: b.from_(endpoint).route_id("tls-in").to("mock:tls")))
    async with context:
        publisher = await connect(
            f"amqp://guest:guest@127.0.0.1:5672/{tls_broker.vhost}", client_name="eip-tls-test"
        )
        try:
            channel = await publisher.channel(publisher_confirms=True)
            await channel.wait_confirm(channel.publish(b"via EXTERNAL", "", queue))
            mock = context.mock("tls")
            await mock.wait_for(1, timeout=10)
        finally:
            await publisher.close()
    assert [ex.body for ex in mock.received] == [b"via EXTERNAL"]
