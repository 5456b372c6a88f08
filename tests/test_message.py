"""Message, Exchange and the unit of work (eip/message.py)."""

from __future__ import annotations

import inspect
import logging

import pytest

from eip import Exchange, ExchangePattern, Message


class Recorder:
    """Collects callback calls as (name, exchange) in call order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Exchange]] = []

    def sync(self, name: str):
        def callback(exchange: Exchange) -> None:
            self.calls.append((name, exchange))

        callback.__name__ = f"sync_{name}"
        return callback

    def async_(self, name: str):
        async def callback(exchange: Exchange) -> None:
            self.calls.append((name, exchange))

        callback.__name__ = f"async_{name}"
        return callback

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


async def complete(exchange: Exchange) -> None:
    """Complete the unit of work: sync callbacks run inside done(), async ones are awaited."""
    done = exchange.done()
    if done is not None:
        await done


# -- Message ----------------------------------------------------------------------------


def test_message_defaults_to_no_body_and_empty_headers():
    message = Message()
    assert message.body is None
    assert message.headers == {}


def test_message_gets_its_own_headers_dict_by_default():
    first, second = Message(), Message()
    first.headers["a"] = 1
    assert second.headers == {}


def test_message_keeps_the_given_headers_dict():
    headers = {"a": 1}
    message = Message("x", headers)
    assert message.headers is headers


def test_message_copy_is_shallow_with_independent_headers():
    body = {"nested": [1]}
    original = Message(body, {"a": 1})
    twin = original.copy()
    assert twin is not original
    assert twin.body is body  # same body object (shallow)
    assert twin.headers == {"a": 1}
    assert twin.headers is not original.headers
    twin.headers["b"] = 2
    twin.headers["a"] = 99
    assert original.headers == {"a": 1}
    twin.body = "other"
    assert original.body is body


def test_message_repr_shows_body_and_headers():
    assert repr(Message("hi", {"k": "v"})) == "Message(body='hi', headers={'k': 'v'})"


def test_message_is_slotted():
    with pytest.raises(AttributeError):
        Message().extra = 1  # type: ignore[attr-defined]


# -- Exchange basics --------------------------------------------------------------------


def test_exchange_defaults():
    exchange = Exchange()
    assert exchange.body is None
    assert exchange.headers == {}
    assert exchange.pattern is ExchangePattern.IN_ONLY
    assert exchange.properties == {}
    assert exchange.exception is None
    assert exchange.failed is False
    assert exchange.route_id is None
    assert exchange.original is None


def test_exchange_body_and_headers_are_the_messages():
    exchange = Exchange("b", {"h": 1}, pattern=ExchangePattern.IN_OUT)
    assert exchange.pattern is ExchangePattern.IN_OUT
    assert exchange.body == "b"
    assert exchange.headers is exchange.message.headers
    exchange.body = "new"
    assert exchange.message.body == "new"
    exchange.headers["x"] = 2
    assert exchange.message.headers == {"h": 1, "x": 2}


def test_assigning_a_message_replaces_body_and_headers():
    message = Message("m", {"k": "v"})
    exchange = Exchange("ignored", {"ignored": True})
    exchange.message = message
    assert exchange.body == "m"
    assert exchange.headers is message.headers
    snapshot = exchange.snapshot()
    assert type(snapshot) is Message
    snapshot.headers["new"] = 1
    assert "new" not in exchange.headers


def test_exchange_failed_follows_exception():
    exchange = Exchange()
    exchange.exception = ValueError("x")
    assert exchange.failed is True
    exchange.exception = None
    assert exchange.failed is False


def test_exchange_id_is_lazy_stable_and_unique():
    exchange = Exchange()
    assert exchange._id is None  # nothing made until asked
    first = exchange.id
    assert isinstance(first, str)
    assert first
    assert exchange._id == first
    assert exchange.id == first  # stable
    ids = {Exchange().id for _ in range(1000)}
    assert len(ids) == 1000
    assert first not in ids


def test_exchange_id_carries_a_process_prefix():
    a, b = Exchange().id, Exchange().id
    prefix_a, _, number_a = a.rpartition("-")
    prefix_b, _, number_b = b.rpartition("-")
    assert prefix_a == prefix_b
    assert int(number_b) > int(number_a)


def test_exchange_repr_mentions_id_route_and_message():
    exchange = Exchange("body")
    exchange.route_id = "r1"
    text = repr(exchange)
    assert exchange.id in text
    assert "'r1'" in text
    assert "body='body'" in text


# -- copy ---------------------------------------------------------------------------------


def test_copy_has_independent_message_headers_and_properties():
    exchange = Exchange({"a": 1}, {"h": "v"}, pattern=ExchangePattern.IN_OUT)
    exchange.properties["p"] = 1
    exchange.route_id = "route-a"
    exchange.trace_context = object()
    twin = exchange.copy()

    assert twin is not exchange
    assert twin.message is not exchange.message
    assert twin.pattern is ExchangePattern.IN_OUT
    assert twin.route_id == "route-a"
    assert twin.trace_context is exchange.trace_context
    assert twin.body is exchange.body  # shallow: same body object
    assert twin.headers == {"h": "v"}
    assert twin.properties == {"p": 1}

    twin.headers["h"] = "changed"
    twin.headers["new"] = 1
    twin.properties["p"] = 2
    twin.body = "replaced"
    assert exchange.headers == {"h": "v"}
    assert exchange.properties == {"p": 1}
    assert exchange.body == {"a": 1}

    exchange.headers["late"] = True
    assert "late" not in twin.headers


def test_copy_gets_a_new_id_and_no_exception():
    exchange = Exchange("x")
    exchange.exception = RuntimeError("boom")
    twin = exchange.copy()
    assert twin.id != exchange.id
    assert twin.exception is None


async def test_copy_shares_no_unit_of_work():
    rec = Recorder()
    exchange = Exchange("x")
    exchange.on_completion(on_success=rec.sync("original"))
    twin = exchange.copy()

    assert twin.done() is None  # the copy has no callbacks
    twin.on_completion(on_success=rec.sync("copy"))
    await complete(twin)
    assert rec.names == ["copy"]
    await complete(exchange)
    assert rec.names == ["copy", "original"]


# -- unit of work ------------------------------------------------------------------------


def test_done_returns_none_without_callbacks():
    exchange = Exchange()
    assert exchange.done() is None
    exchange.exception = ValueError("failed")
    assert exchange.done() is None


async def test_done_returns_an_awaitable_when_an_async_callback_exists():
    released: list[str] = []

    async def release(ex: Exchange) -> None:
        released.append("released")

    exchange = Exchange()
    exchange.on_completion(on_success=release)
    done = exchange.done()
    assert done is not None
    assert inspect.isawaitable(done)
    assert released == []
    await done
    assert released == ["released"]


async def test_success_runs_only_success_callbacks_with_the_exchange():
    rec = Recorder()
    exchange = Exchange("x")
    exchange.on_completion(on_success=rec.sync("ok"), on_failure=rec.sync("fail"))
    await complete(exchange)
    assert rec.names == ["ok"]
    assert rec.calls[0][1] is exchange


async def test_failure_runs_only_failure_callbacks():
    rec = Recorder()
    exchange = Exchange("x")
    exchange.on_completion(on_success=rec.sync("ok"), on_failure=rec.sync("fail"))
    exchange.exception = ValueError("boom")
    await complete(exchange)
    assert rec.names == ["fail"]
    assert rec.calls[0][1] is exchange
    assert isinstance(rec.calls[0][1].exception, ValueError)


async def test_async_callbacks_are_awaited_for_success_and_failure():
    rec = Recorder()
    ok = Exchange()
    ok.on_completion(on_success=rec.async_("ok"), on_failure=rec.async_("fail"))
    await complete(ok)

    bad = Exchange()
    bad.on_completion(on_success=rec.async_("ok2"), on_failure=rec.async_("fail2"))
    bad.exception = KeyError("k")
    await complete(bad)
    assert rec.names == ["ok", "fail2"]


async def test_callbacks_run_in_reverse_registration_order_mixing_sync_and_async():
    rec = Recorder()
    exchange = Exchange()
    exchange.on_completion(on_success=rec.sync("first"))
    exchange.on_completion(on_success=rec.async_("second"))
    exchange.on_completion(on_success=rec.sync("third"))
    exchange.on_completion(on_failure=rec.sync("failure-only"))
    await complete(exchange)
    assert rec.names == ["third", "second", "first"]


async def test_failure_callbacks_also_run_in_reverse_order():
    rec = Recorder()
    exchange = Exchange()
    for name in ("a", "b", "c"):
        exchange.on_completion(on_failure=rec.async_(name))
    exchange.exception = RuntimeError("x")
    await complete(exchange)
    assert rec.names == ["c", "b", "a"]


async def test_failure_decision_is_taken_when_done_is_called():
    rec = Recorder()
    exchange = Exchange()
    exchange.on_completion(on_success=rec.sync("ok"), on_failure=rec.sync("fail"))
    exchange.exception = ValueError("x")
    await complete(exchange)
    assert rec.names == ["fail"]


async def test_failing_callback_is_logged_and_the_others_still_run(caplog):
    rec = Recorder()
    exchange = Exchange()

    def broken(_ex: Exchange) -> None:
        raise RuntimeError("callback exploded")

    async def broken_async(_ex: Exchange) -> None:
        raise ValueError("async callback exploded")

    exchange.on_completion(on_success=rec.sync("first"))
    exchange.on_completion(on_success=broken)
    exchange.on_completion(on_success=broken_async)
    exchange.on_completion(on_success=rec.sync("last"))

    with caplog.at_level(logging.ERROR, logger="eip.exchange"):
        await complete(exchange)  # must not raise

    assert rec.names == ["last", "first"]
    errors = [r for r in caplog.records if r.name == "eip.exchange"]
    assert len(errors) == 2
    assert all(r.levelno == logging.ERROR for r in errors)
    assert all(exchange.id in r.getMessage() for r in errors)
    causes = {type(r.exc_info[1]) for r in errors if r.exc_info}
    assert causes == {RuntimeError, ValueError}


async def test_failing_failure_callback_does_not_stop_the_other_failure_callbacks(caplog):
    rec = Recorder()
    exchange = Exchange()

    def broken(_ex: Exchange) -> None:
        raise RuntimeError("nope")

    exchange.on_completion(on_failure=rec.sync("release-key"))
    exchange.on_completion(on_failure=broken)
    exchange.exception = ValueError("route failed")
    with caplog.at_level(logging.ERROR, logger="eip.exchange"):
        await complete(exchange)
    assert rec.names == ["release-key"]
    assert any("nope" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_unit_of_work_runs_once_only():
    rec = Recorder()
    exchange = Exchange()
    exchange.on_completion(on_success=rec.sync("ok"), on_failure=rec.sync("fail"))
    await complete(exchange)
    second = exchange.done()
    if second is not None:
        await second
    # even a later failure does not run the failure callbacks
    exchange.exception = ValueError("late")
    third = exchange.done()
    if third is not None:
        await third
    assert rec.names == ["ok"]


async def test_callbacks_see_the_exchange_state_at_completion():
    seen: list[object] = []
    exchange = Exchange("before")
    exchange.on_completion(on_success=lambda ex: seen.append(ex.body))
    exchange.body = "after"
    await complete(exchange)
    assert seen == ["after"]


# -- handover ------------------------------------------------------------------------------


async def test_handover_moves_callbacks_to_the_other_exchange():
    rec = Recorder()
    source = Exchange("src")
    target = Exchange("dst")
    source.on_completion(on_success=rec.sync("ok"), on_failure=rec.sync("fail"))

    source.handover_completions(target)

    assert source.done() is None  # nothing left on the source
    await complete(target)
    assert rec.names == ["ok"]
    assert rec.calls[0][1] is target  # callbacks run with the exchange that completes


async def test_handover_completions_follow_the_target_outcome():
    rec = Recorder()
    source = Exchange()
    target = source.copy()
    source.on_completion(on_success=rec.sync("ok"), on_failure=rec.sync("fail"))
    source.handover_completions(target)
    target.exception = RuntimeError("downstream failed")
    await complete(target)
    assert rec.names == ["fail"]


def test_handover_without_callbacks_is_a_no_op():
    source, target = Exchange(), Exchange()
    source.handover_completions(target)
    assert source.done() is None
    assert target.done() is None


async def test_handover_keeps_the_targets_own_callbacks():
    """Moving callbacks onto an exchange must not drop the ones it already has."""
    rec = Recorder()
    source, target = Exchange(), Exchange()
    target.on_completion(on_success=rec.sync("target-own"))
    source.on_completion(on_success=rec.sync("from-source"))

    source.handover_completions(target)

    await complete(target)
    assert sorted(rec.names) == ["from-source", "target-own"]


async def test_handover_after_completion_does_not_run_callbacks_again():
    rec = Recorder()
    source, target = Exchange(), Exchange()
    source.on_completion(on_success=rec.sync("ok"))
    await complete(source)
    source.handover_completions(target)
    done = target.done()
    if done is not None:
        await done
    assert rec.names == ["ok"]


async def test_sync_callbacks_complete_without_an_await():
    rec = Recorder()
    exchange = Exchange("x")
    exchange.on_completion(on_success=rec.sync("a"))
    exchange.on_completion(on_success=rec.sync("b"))
    assert exchange.done() is None  # ran right away
    assert rec.names == ["b", "a"]


async def test_an_async_callback_defers_only_the_rest():
    order: list[str] = []

    async def slow(_: Exchange) -> None:
        order.append("async")

    exchange = Exchange("x")
    exchange.on_completion(on_success=lambda _: order.append("first registered"))
    exchange.on_completion(on_success=slow)
    exchange.on_completion(on_success=lambda _: order.append("last registered"))
    pending = exchange.done()
    assert order == ["last registered"]
    assert pending is not None
    await pending
    assert order == ["last registered", "async", "first registered"]
