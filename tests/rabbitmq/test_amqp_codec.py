"""The hand-written codec and frame parser, checked against pamqp's encoder/decoder and fed
with frames split at every possible point (no broker needed for the parsing itself)."""

from __future__ import annotations

import asyncio
import datetime
import random

import pytest
from pamqp import commands
from pamqp import frame as pframe
from pamqp import header as pheader
from pamqp.body import ContentBody

from eip.components.rabbitmq._amqp import Channel, Connection, Delivery, Properties
from eip.components.rabbitmq._amqp.codec import (
    FRAME_HEADER,
    ack_frame,
    content_frames,
    decode_properties,
    encode_properties,
    nack_frame,
    publish_prefix,
    reject_frame,
)

PROPS = Properties(
    content_type="text/plain",
    content_encoding="gzip",
    headers={"a": 1, "b": [1, "x", {"c": None}], "t": True, "s": "ü"},
    delivery_mode=2,
    priority=3,
    correlation_id="c",
    reply_to="r",
    expiration="100",
    message_id="m",
    timestamp=1_700_000_000,
    type="t",
    user_id="guest",
    app_id="app",
    cluster_id="cl",
)


def pamqp_properties(p: Properties) -> commands.Basic.Properties:
    values = p.as_dict()
    if "type" in values:
        values["message_type"] = values.pop("type")
    if "timestamp" in values:
        values["timestamp"] = datetime.datetime.fromtimestamp(values["timestamp"], datetime.UTC)
    cluster_id = values.pop("cluster_id", None)  # pamqp's validation refuses it; RabbitMQ not
    properties = commands.Basic.Properties(**values)
    properties.cluster_id = cluster_id
    return properties


def test_properties_encode_like_pamqp() -> None:
    flags, encoded = encode_properties(PROPS)
    assert int.to_bytes(flags, 2, "big") + encoded == pamqp_properties(PROPS).marshal()


def test_properties_decode_what_pamqp_encodes() -> None:
    raw = pamqp_properties(PROPS).marshal()
    flags = int.from_bytes(raw[:2], "big")
    assert decode_properties(raw, 2, len(raw), flags) == PROPS
    for name in ("content_type", "headers", "timestamp", "cluster_id"):
        single = Properties(**{name: getattr(PROPS, name)})
        raw = pamqp_properties(single).marshal()
        decoded = decode_properties(raw, 2, len(raw), int.from_bytes(raw[:2], "big"))
        assert decoded == single


def test_publish_frames_decode_with_pamqp() -> None:
    body = bytes(range(256)) * 40  # 10,240 bytes: 3 body frames of at most 4088
    data = content_frames(publish_prefix(5, "ex", "rk", True), 5, body, PROPS, 4096 - 8)
    frames = []
    while data:
        used, channel, value = pframe.unmarshal(data)
        assert channel == 5
        frames.append(value)
        data = data[used:]
    method, head, *bodies = frames
    assert isinstance(method, commands.Basic.Publish)
    assert (method.exchange, method.routing_key, method.mandatory) == ("ex", "rk", True)
    assert isinstance(head, pheader.ContentHeader)
    assert head.body_size == len(body)
    assert head.properties.message_id == "m"
    assert head.properties.headers == PROPS.headers
    assert all(isinstance(b, ContentBody) for b in bodies)
    assert [len(b.value) for b in bodies] == [4088, 4088, 2064]  # type: ignore[union-attr]
    assert b"".join(b.value for b in bodies) == body  # type: ignore[union-attr]


def test_ack_nack_reject_frames_decode_with_pamqp() -> None:
    _, _, ack = pframe.unmarshal(ack_frame(3, 2**40, True))
    assert isinstance(ack, commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (2**40, True)
    _, _, nack = pframe.unmarshal(nack_frame(3, 7, False, True))
    assert isinstance(nack, commands.Basic.Nack)
    assert (nack.delivery_tag, nack.multiple, nack.requeue) == (7, False, True)
    _, _, reject = pframe.unmarshal(reject_frame(3, 9, False))
    assert isinstance(reject, commands.Basic.Reject)
    assert (reject.delivery_tag, reject.requeue) == (9, False)


def broker_deliveries(count: int, frame_max: int) -> tuple[bytes, list[bytes]]:
    """Deliver frames as the broker would send them, encoded by pamqp."""
    rng = random.Random(7)
    out, bodies = [], []
    for i in range(count):
        body = rng.randbytes(rng.choice([0, 1, 100, frame_max - 8, frame_max, 3 * frame_max]))
        bodies.append(body)
        deliver = commands.Basic.Deliver("ctag", i + 1, i % 2 == 1, "ex", f"key.{i}")
        props = pamqp_properties(PROPS if i % 3 else Properties(message_id=str(i)))
        out.append(pframe.marshal(deliver, 1))
        out.append(pframe.marshal(pheader.ContentHeader(0, len(body), props), 1))
        for start in range(0, len(body), frame_max - 8):
            out.append(pframe.marshal(ContentBody(body[start : start + frame_max - 8]), 1))
        if i == count // 2:
            out.append(b"\x08\x00\x00\x00\x00\x00\x00\xce")  # a heartbeat in between
    return b"".join(out), bodies


@pytest.mark.parametrize("chunk", [1, 7, 8, 13, 4096, 65536, None])
async def test_parser_handles_any_split(chunk: int | None) -> None:
    loop = asyncio.get_running_loop()
    connection = Connection(loop)
    connection.frame_max = 4096
    channel = Channel(connection, 1, False)
    connection._channels[1] = channel
    batches: list[list[Delivery]] = []
    channel._consumers["ctag"] = batches.append
    data, bodies = broker_deliveries(30, 4096)
    step = chunk or len(data)
    for start in range(0, len(data), step):
        connection.data_received(data[start : start + step])
    assert connection._error is None
    assert not connection._buf
    got = [d for batch in batches for d in batch]
    assert [d.body for d in got] == bodies
    assert [d.delivery_tag for d in got] == list(range(1, 31))
    assert [d.redelivered for d in got] == [i % 2 == 1 for i in range(30)]
    assert got[1].properties == PROPS
    assert got[0].properties == Properties(message_id="0")
    assert got[4].routing_key == "key.4"
    assert got[4].exchange == "ex"
    if chunk is None:
        assert len(batches) == 1  # one read, one batch
    connection.connection_lost(None)


async def test_parser_rejects_a_body_without_header() -> None:
    connection = Connection(asyncio.get_running_loop())
    channel = Channel(connection, 1, False)
    connection._channels[1] = channel
    connection.data_received(pframe.marshal(ContentBody(b"orphan"), 1))
    reason = channel.closed.result()  # channels close at once
    assert reason is not None
    assert "unexpected content body" in str(reason)
    assert not connection.is_open
    connection.connection_lost(None)  # (no transport here: the socket would be aborted)
    assert connection.closed.result() is reason


async def test_parser_handles_interleaved_channels() -> None:
    """Frames of two channels interleaved frame by frame (allowed by AMQP), in one read."""
    connection = Connection(asyncio.get_running_loop())
    connection.frame_max = 4096
    got: dict[int, list[Delivery]] = {1: [], 2: []}
    for number in (1, 2):
        channel = Channel(connection, number, False)
        connection._channels[number] = channel
        channel._consumers["ctag"] = got[number].extend
    one, bodies_one = broker_deliveries(10, 4096)
    two, bodies_two = broker_deliveries(10, 4096)
    frames_one = split_frames(one)
    frames_two = [(t, 2, payload) for t, _, payload in split_frames(two)]
    mixed = []
    for a, b in zip(frames_one, frames_two, strict=True):
        mixed += [a, b]
    connection.data_received(b"".join(join_frame(*f) for f in mixed))
    assert connection._error is None
    assert [d.body for d in got[1]] == bodies_one
    assert [d.body for d in got[2]] == bodies_two


def split_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    frames, pos = [], 0
    while pos < len(data):
        frame_type, channel, size = FRAME_HEADER.unpack_from(data, pos)
        frames.append((frame_type, channel, data[pos + 7 : pos + 7 + size]))
        pos += 8 + size
    return frames


def join_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(frame_type, channel, len(payload)) + payload + b"\xce"


async def test_protocol_header_reply_is_reported() -> None:
    """A broker that does not speak 0-9-1 answers with its own protocol header and closes."""
    connection = Connection(asyncio.get_running_loop())
    connection.data_received(b"AMQP\x01\x01\x00\x0a")
    connection.connection_lost(None)
    reason = connection.closed.result()
    assert reason is not None
    assert "refused AMQP 0-9-1" in str(reason)
