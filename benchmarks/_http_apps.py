"""Raw ASGI apps for the HTTP benchmarks: no framework, nothing but the work itself.

- :func:`echo_app` answers any POST with a small JSON reply ``{"ok":true,"id":N}``: the ERP
  stand-in that eip's HTTP producer (and the raw aiohttp baseline) call.
- :func:`crm_raw_app` builds the HTTP consumer's baseline: an app doing exactly the work of
  the eip route ``unmarshal(json(Customer)) -> transform(to_erp) -> marshal(json())``, that is
  read the whole body, decode it into :class:`~benchmarks._crm.Customer` with one reused
  ``msgspec.json.Decoder``, map it with :func:`~benchmarks._crm.to_erp` and encode the result
  with one reused ``msgspec.json.Encoder``. :data:`crm_app` is one such app, ready to be named
  as ``"benchmarks._http_apps:crm_app"``.

Both handle the ASGI lifespan protocol (so uvicorn's default ``lifespan="auto"`` stays quiet)
and drain the request body before answering. Anything but POST gets 405.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from benchmarks._crm import Customer, to_erp

__all__ = ["ASGIApp", "crm_app", "crm_raw_app", "echo_app", "read_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive, limit: int = 1 << 20) -> bytes | None:
    """The whole request body (one chunk without a copy), or None past ``limit`` bytes."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes, content_type: tuple[bytes, bytes]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [content_type, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse(scope: Scope, send: Send) -> bool:
    """Answer 405 to anything but POST; True if it did."""
    if scope["method"] == "POST":
        return False
    await _reply(send, 405, b"POST only\n", _TEXT)
    return True


_echo_ids = itertools.count(1)


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Any POST: drain the body, answer 200 ``{"ok":true,"id":<a counter>}``."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http" or await _refuse(scope, send):
        return
    if await read_body(receive) is None:
        await _reply(send, 413, b"body too large\n", _TEXT)
        return
    await _reply(send, 200, b'{"ok":true,"id":%d}' % next(_echo_ids), _JSON)


def crm_raw_app(*, max_body: int = 1 << 20) -> ASGIApp:
    """The consumer baseline: POST CRM customer JSON in, ERP customer JSON out (200).

    A body that is not a valid ``Customer`` gets 400, one over ``max_body`` bytes 413.
    """
    decode = msgspec.json.Decoder(Customer).decode
    encode = msgspec.json.Encoder().encode

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http" or await _refuse(scope, send):
            return
        body = await read_body(receive, max_body)
        if body is None:
            await _reply(send, 413, b"body too large\n", _TEXT)
            return
        try:
            customer = decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            await _reply(send, 400, f"{exc}\n".encode(), _TEXT)
            return
        await _reply(send, 200, encode(to_erp(customer)), _JSON)

    return app


crm_app: ASGIApp = crm_raw_app()
"""One :func:`crm_raw_app`, for ``start_server_process("benchmarks._http_apps:crm_app")``."""
