"""A target for the load-driver tests: 200 only to a POST whose Content-Type is
:data:`EXPECTED`, else 415, so a test sees that a driver sends the ``content_type`` it is
given (the SOAP benchmark's consumer load is ``text/xml``, not the JSON default).

Serve it with ``start_server_process("tests.http_bench_apps:content_type_app")``.
"""

from __future__ import annotations

from benchmarks._http_apps import Receive, Scope, Send, read_body

__all__ = ["EXPECTED", "content_type_app"]

EXPECTED = b"text/xml; charset=utf-8"


async def content_type_app(scope: Scope, receive: Receive, send: Send) -> None:
    """200 ``ok`` if the request's Content-Type is :data:`EXPECTED`, else 415."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    sent = dict(scope["headers"]).get(b"content-type")
    status = 200 if sent == EXPECTED else 415
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})
