"""Smoke test of the HTTP benchmark: both sides of both comparisons run and answer right (the
eip server replies what the raw app replies). Speed is never asserted here."""

from __future__ import annotations

import httpx

from benchmarks._crm import make_messages
from benchmarks._http_support import start_server_process
from benchmarks.http import consumer, producer, start_eip_server


def test_the_eip_server_answers_what_the_raw_app_answers() -> None:
    body = make_messages(3)[2]
    with start_server_process("benchmarks._http_apps:crm_app") as raw, start_eip_server() as eip:
        by_raw = httpx.post(f"{raw.url}/bench", content=body)
        by_eip = httpx.post(f"{eip.url}/bench", content=body)
    assert by_raw.status_code == by_eip.status_code == 200
    assert by_eip.content == by_raw.content
    assert by_eip.headers["content-type"] == "application/json"


async def test_one_short_round_of_each_comparison() -> None:
    served = await consumer(rounds=1, seconds=1)
    called = await producer(rounds=1, seconds=0.3)
    assert set(served) == {"raw ASGI app", "eip route"}
    assert all(m.rates and m.median > 0 for m in served.values())
    assert {"raw aiohttp", "eip producer"} <= set(called)
    assert all(m.rates and m.median > 0 for m in called.values())
