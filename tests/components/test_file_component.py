"""file: component - polling consumer (move/delete/noop after completion) and atomic producer."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest

import eip.components.file as file_module
from eip import EndpointError, Exchange, RouteBuilder, RouteDefinitionError
from eip.clock import ManualClock
from eip.components.base import parse_uri
from eip.components.file import FileConsumer, FileSpec, file
from eip.headers import FILE_MODIFIED, FILE_NAME, FILE_PATH, FILE_SIZE
from eip.runtime.context import Context

T0 = 1_700_000_000.0  # where ManualClock starts
STAMP = "20231114T221320000000"  # T0 as the UTC suffix of a renamed file


class FileRoute(RouteBuilder):
    def __init__(self, source: Any, processor: Any = None, to: str = "mock:out") -> None:
        super().__init__()
        self.source = source
        self.processor = processor
        self.target = to

    def configure(self) -> None:
        route = self.from_(self.source).route_id("files")
        if self.processor is not None:
            route.process(self.processor)
        route.to(self.target)


def write(path: Path, data: bytes, mtime: float = T0 - 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def start(context: Context, source: Any, processor: Any = None) -> None:
    context.add_routes(FileRoute(source, processor))
    await context.start()


async def first_poll(clock: ManualClock) -> None:
    """Return once the consumer finished its first poll (it then sleeps on the clock)."""
    await clock.wait_for_sleepers(1)


async def next_poll(clock: ManualClock, seconds: float = 1.0) -> None:
    await clock.advance(seconds)
    await clock.wait_for_sleepers(1)


# -- consumer ----------------------------------------------------------------------------


async def test_reads_file_sets_headers_and_moves_to_done(
    eip_context: Context,
    manual_clock: ManualClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="eip.file")
    inbox = tmp_path / "inbox"
    source = write(inbox / "customers.csv", b"id,name\n1,Ann\n")
    out = eip_context.mock("out").expect_bodies(b"id,name\n1,Ann\n")
    await start(eip_context, f"file:{inbox}?include=*.csv")
    await first_poll(manual_clock)
    await out.assert_satisfied(timeout=5)
    headers = out.received_headers[0]
    assert headers[FILE_NAME] == "customers.csv"
    assert headers[FILE_PATH] == str(source)
    assert headers[FILE_SIZE] == 14
    assert headers[FILE_MODIFIED] == T0 - 100
    assert files_in(inbox) == [".done"]
    assert (inbox / ".done" / "customers.csv").read_bytes() == b"id,name\n1,Ann\n"
    assert f"took {source}" in caplog.text
    assert f"moved to {inbox / '.done' / 'customers.csv'}" in caplog.text


async def test_start_creates_missing_directory(eip_context: Context, tmp_path: Path) -> None:
    inbox = tmp_path / "a" / "b"
    await start(eip_context, file(str(inbox)))
    assert inbox.is_dir()
    assert eip_context.ready


async def test_charset_decodes_body_to_str(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    write(tmp_path / "in" / "a.csv", "naïve;Zoë\n".encode("latin-1"))
    out = eip_context.mock("out").expect_bodies("naïve;Zoë\n")
    await start(eip_context, f"file:{tmp_path / 'in'}?charset=latin-1")
    await first_poll(manual_clock)
    await out.assert_satisfied(timeout=5)


async def test_undecodable_file_fails_and_goes_to_error_dir(
    eip_context: Context,
    manual_clock: ManualClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = tmp_path / "in"
    write(inbox / "bad.csv", b"\xff\xfe broken")
    await start(eip_context, f"file:{inbox}?charset=utf-8")
    await first_poll(manual_clock)
    assert eip_context.mock("out").count == 0
    assert (inbox / ".error" / "bad.csv").read_bytes() == b"\xff\xfe broken"
    assert "is not valid utf-8" in caplog.text


async def test_failing_route_moves_file_to_error_dir(
    eip_context: Context,
    manual_clock: ManualClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox = tmp_path / "in"
    write(inbox / "a.csv", b"a")
    write(inbox / "b.csv", b"b")
    eip_context.mock("out").fail_times(1, lambda: ValueError("boom"))
    await start(eip_context, f"file:{inbox}")
    await first_poll(manual_clock)
    assert files_in(inbox / ".error") == ["a.csv"]
    assert files_in(inbox / ".done") == ["b.csv"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "eip.file"]
    assert len(warnings) == 1
    assert "ValueError: boom" in warnings[0].getMessage()
    assert ".error" in warnings[0].getMessage()


async def test_processor_exception_moves_file_to_error_dir(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    def explode(exchange: Exchange) -> None:
        raise RuntimeError(f"cannot import {exchange.headers[FILE_NAME]}")

    inbox = tmp_path / "in"
    write(inbox / "a.csv", b"a")
    await start(eip_context, f"file:{inbox}?move_failed=failed/crm", explode)
    await first_poll(manual_clock)
    assert files_in(inbox / "failed" / "crm") == ["a.csv"]
    assert eip_context.mock("out").count == 0


async def test_name_collision_in_done_gets_timestamp_suffix(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    write(inbox / ".done" / "a.csv", b"old")
    write(inbox / "a.csv", b"new")
    await start(eip_context, f"file:{inbox}")
    await first_poll(manual_clock)
    assert files_in(inbox / ".done") == ["a.20231114T221320000000.csv", "a.csv"]
    assert (inbox / ".done" / "a.csv").read_bytes() == b"old"
    assert (inbox / ".done" / f"a.{STAMP}.csv").read_bytes() == b"new"


async def test_include_and_exclude_globs(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    for name in ("a.csv", "b.txt", "c.json", "skip-me.csv", "D.CSV"):
        write(inbox / name, name.encode())
    out = eip_context.mock("out").expect_bodies(b"a.csv", b"b.txt")
    await start(eip_context, f"file:{inbox}?include=*.csv,*.txt&exclude=skip*")
    await first_poll(manual_clock)
    await out.assert_satisfied(timeout=5)
    assert files_in(inbox) == [".done", "D.CSV", "c.json", "skip-me.csv"]


async def test_hidden_temp_files_and_subdirectories_are_ignored(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    for name in (".hidden.csv", ".orders.csv.1a2b.tmp", "export.csv.tmp", "upload.part"):
        write(inbox / name, b"x")
    (inbox / "subdir.csv").mkdir()
    write(inbox / "subdir.csv" / "inner.csv", b"x")
    write(inbox / "real.csv", b"real")
    out = eip_context.mock("out").expect_bodies(b"real")
    await start(eip_context, f"file:{inbox}")
    await first_poll(manual_clock)
    await out.assert_satisfied(timeout=5)
    assert files_in(inbox) == [
        ".done",
        ".hidden.csv",
        ".orders.csv.1a2b.tmp",
        "export.csv.tmp",
        "subdir.csv",
        "upload.part",
    ]


async def test_min_age_waits_until_file_is_old_enough(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    write(inbox / "young.csv", b"y", mtime=T0 - 5)
    write(inbox / "old.csv", b"o", mtime=T0 - 60)
    out = eip_context.mock("out")
    await start(eip_context, f"file:{inbox}?min_age=10&poll=5")
    await first_poll(manual_clock)
    assert out.received_bodies == [b"o"]
    assert files_in(inbox) == [".done", "young.csv"]
    await next_poll(manual_clock, 5)  # now the young file is 10s old
    assert out.received_bodies == [b"o", b"y"]
    assert files_in(inbox) == [".done"]


async def test_polling_waits_on_the_clock(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    out = eip_context.mock("out")
    await start(eip_context, f"file:{inbox}?poll=10&initial_delay=3")
    write(inbox / "a.csv", b"a")
    await manual_clock.wait_for_sleepers(1)  # the initial delay
    await asyncio.sleep(0.05)
    assert out.count == 0
    await next_poll(manual_clock, 3)
    assert out.received_bodies == [b"a"]
    write(inbox / "b.csv", b"b")
    await manual_clock.advance(9.9)
    await asyncio.sleep(0.05)
    assert manual_clock.pending == 1
    assert out.count == 1
    assert files_in(inbox) == [".done", "b.csv"]
    await next_poll(manual_clock, 0.1)
    assert out.received_bodies == [b"a", b"b"]


async def test_sort_by_mtime_and_max_per_poll(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    write(inbox / "a.csv", b"a", mtime=T0 - 10)
    write(inbox / "b.csv", b"b", mtime=T0 - 20)
    write(inbox / "c.csv", b"c", mtime=T0 - 30)
    out = eip_context.mock("out")
    await start(eip_context, f"file:{inbox}?sort=mtime&max_per_poll=2")
    await first_poll(manual_clock)
    assert out.received_bodies == [b"c", b"b"]
    await next_poll(manual_clock)
    assert out.received_bodies == [b"c", b"b", b"a"]


async def test_default_order_is_by_name(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    for name, mtime in (("2024-01-02.csv", T0 - 30), ("2024-01-01.csv", T0 - 10)):
        write(inbox / name, name.encode(), mtime=mtime)
    out = eip_context.mock("out").expect_bodies(b"2024-01-01.csv", b"2024-01-02.csv")
    await start(eip_context, f"file:{inbox}")
    await first_poll(manual_clock)
    await out.assert_satisfied(timeout=5)


async def test_noop_processes_once_and_again_after_a_change(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    source = write(inbox / "rates.csv", b"v1")
    out = eip_context.mock("out")
    await start(eip_context, f"file:{inbox}?noop=true")
    await first_poll(manual_clock)
    await next_poll(manual_clock)
    assert out.received_bodies == [b"v1"]
    assert files_in(inbox) == ["rates.csv"]
    write(source, b"v2:longer", mtime=T0 - 100)  # same mtime, other size
    await next_poll(manual_clock)
    write(source, b"v3:longer", mtime=T0 - 50)  # same size, other mtime
    await next_poll(manual_clock)
    await next_poll(manual_clock)
    assert out.received_bodies == [b"v1", b"v2:longer", b"v3:longer"]
    assert files_in(inbox) == ["rates.csv"]


async def test_delete_removes_file_after_success(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    write(inbox / "a.csv", b"a")
    await start(eip_context, f"file:{inbox}?delete=true")
    await first_poll(manual_clock)
    assert eip_context.mock("out").received_bodies == [b"a"]
    assert files_in(inbox) == []


async def test_unreadable_file_is_skipped_and_retried(
    eip_context: Context,
    manual_clock: ManualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_read = file_module._read
    calls = []

    def flaky_read(path: Path) -> tuple[bytes, os.stat_result]:
        calls.append(path.name)
        if len(calls) == 1:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(file_module, "_read", flaky_read)
    inbox = tmp_path / "in"
    write(inbox / "a.csv", b"a")
    write(inbox / "b.csv", b"b")
    out = eip_context.mock("out")
    await start(eip_context, f"file:{inbox}")
    await first_poll(manual_clock)
    assert out.received_bodies == [b"b"]
    assert "could not read" in caplog.text
    await next_poll(manual_clock)
    assert out.received_bodies == [b"b", b"a"]
    assert calls == ["a.csv", "b.csv", "a.csv"]


async def test_poll_loop_survives_an_unexpected_error(
    eip_context: Context,
    manual_clock: ManualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_scan = FileConsumer._scan
    failures = [RuntimeError("listing broke")]

    def flaky_scan(self: FileConsumer, now: float) -> Any:
        if failures:
            raise failures.pop()
        return real_scan(self, now)

    monkeypatch.setattr(FileConsumer, "_scan", flaky_scan)
    inbox = tmp_path / "in"
    write(inbox / "a.csv", b"a")
    await start(eip_context, f"file:{inbox}")
    await first_poll(manual_clock)
    assert "listing broke" in caplog.text
    assert eip_context.mock("out").count == 0
    await next_poll(manual_clock)
    assert eip_context.mock("out").received_bodies == [b"a"]


async def test_stop_lets_the_current_file_finish_and_moves_it(
    eip_context: Context, tmp_path: Path
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(exchange: Exchange) -> None:
        entered.set()
        await release.wait()

    inbox = tmp_path / "in"
    write(inbox / "a.csv", b"a")
    write(inbox / "b.csv", b"b")
    await start(eip_context, f"file:{inbox}", slow)
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.create_task(eip_context.stop())
    await asyncio.sleep(0.02)
    assert not stopping.done()
    assert files_in(inbox) == ["a.csv", "b.csv"]
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert eip_context.mock("out").received_bodies == [b"a"]
    assert files_in(inbox / ".done") == ["a.csv"]
    assert files_in(inbox) == [".done", "b.csv"]


async def test_file_to_file_route(
    eip_context: Context, manual_clock: ManualClock, tmp_path: Path
) -> None:
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    write(inbox / "orders.csv", b"1;2\n")
    eip_context.add_routes(FileRoute(f"file:{inbox}", to=f"file:{outbox}?file_name={{stem}}.txt"))
    await eip_context.start()
    await first_poll(manual_clock)
    assert (outbox / "orders.txt").read_bytes() == b"1;2\n"
    assert files_in(inbox / ".done") == ["orders.csv"]


# -- producer ----------------------------------------------------------------------------


async def send(context: Context, endpoint: Any, body: Any, name: str | None = "a.txt") -> Exchange:
    await context.start()
    headers = {FILE_NAME: name} if name is not None else {}
    return await context.template().send(endpoint, body, headers)


async def test_producer_writes_atomically_via_temp_file_and_rename(
    eip_context: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out" / "deep"
    real_replace = os.replace
    renames: list[tuple[str, str]] = []

    def spy(src: Any, dst: Any) -> None:
        renames.append((Path(src).name, Path(dst).name))
        assert Path(src).read_bytes() == "héllo".encode()  # complete before the rename
        assert not Path(dst).exists()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    exchange = await send(eip_context, f"file:{out}", "héllo")
    assert exchange.exception is None
    assert (out / "a.txt").read_bytes() == "héllo".encode()
    assert exchange.headers[FILE_PATH] == str(out / "a.txt")
    assert files_in(out) == ["a.txt"]  # no temp file left
    assert len(renames) == 1
    assert re.fullmatch(r"\.a\.txt\.[0-9a-f]+\.tmp", renames[0][0])
    assert renames[0][1] == "a.txt"


async def test_producer_overrides_by_default(eip_context: Context, tmp_path: Path) -> None:
    await send(eip_context, f"file:{tmp_path}", b"first")
    exchange = await send(eip_context, f"file:{tmp_path}", b"second")
    assert exchange.exception is None
    assert (tmp_path / "a.txt").read_bytes() == b"second"


async def test_producer_file_exist_fail(eip_context: Context, tmp_path: Path) -> None:
    endpoint = file(str(tmp_path), file_exist="fail")
    assert (await send(eip_context, endpoint, b"first")).exception is None
    exchange = await send(eip_context, endpoint, b"second")
    assert isinstance(exchange.exception, EndpointError)
    assert "already exists" in str(exchange.exception)
    assert (tmp_path / "a.txt").read_bytes() == b"first"
    assert files_in(tmp_path) == ["a.txt"]


async def test_producer_file_exist_append(eip_context: Context, tmp_path: Path) -> None:
    endpoint = f"file:{tmp_path}?file_exist=append"
    await send(eip_context, endpoint, b"line1\n")
    await send(eip_context, endpoint, "line2\n")
    assert (tmp_path / "a.txt").read_bytes() == b"line1\nline2\n"


async def test_producer_rejects_a_non_bytes_body(eip_context: Context, tmp_path: Path) -> None:
    exchange = await send(eip_context, f"file:{tmp_path}", {"id": 1})
    assert isinstance(exchange.exception, EndpointError)
    assert "file producer needs a bytes or str body, got dict (marshal it first)" in str(
        exchange.exception
    )
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("name", ["../evil.txt", "sub/evil.txt", "..", "a\\..\\b.txt"])
async def test_producer_rejects_path_traversal(
    eip_context: Context, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "out"
    exchange = await send(eip_context, f"file:{out}", b"x", name=name)
    assert isinstance(exchange.exception, EndpointError)
    assert "refusing file name" in str(exchange.exception)
    assert files_in(tmp_path) == []


async def test_producer_file_name_template_and_fallback_to_exchange_id(
    eip_context: Context, tmp_path: Path
) -> None:
    stamped = file(str(tmp_path), file_name="{stem}-{timestamp}{ext}")
    await send(eip_context, stamped, b"x", name="orders.csv")
    assert files_in(tmp_path) == [f"orders-{STAMP}.csv"]
    by_id = await send(eip_context, f"file:{tmp_path / 'ids'}?file_name={{id}}.json", b"{}")
    assert files_in(tmp_path / "ids") == [f"{by_id.id}.json"]
    plain = await send(eip_context, f"file:{tmp_path / 'plain'}", b"y", name=None)
    assert files_in(tmp_path / "plain") == [plain.id]
    missing = await send(eip_context, stamped, b"z", name=None)
    assert isinstance(missing.exception, EndpointError)
    assert FILE_NAME in str(missing.exception)


async def test_producer_write_error_is_mapped_and_leaves_no_temp_file(
    eip_context: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    exchange = await send(eip_context, f"file:{tmp_path}", b"x")
    assert isinstance(exchange.exception, EndpointError)
    assert str(tmp_path / "a.txt") in str(exchange.exception)
    assert isinstance(exchange.exception.__cause__, OSError)
    assert files_in(tmp_path) == []


async def test_producer_without_make_dirs_fails_on_missing_directory(
    eip_context: Context, tmp_path: Path
) -> None:
    exchange = await send(eip_context, f"file:{tmp_path / 'nope'}?make_dirs=false", b"x")
    assert isinstance(exchange.exception, EndpointError)
    assert not (tmp_path / "nope").exists()


# -- options -----------------------------------------------------------------------------


async def test_unknown_option_fails_at_start_listing_valid_options(
    eip_context: Context, tmp_path: Path
) -> None:
    eip_context.add_routes(FileRoute(f"file:{tmp_path}?moov=.done"))
    with pytest.raises(RouteDefinitionError) as info:
        await eip_context.start()
    text = str(info.value)
    assert "unknown option 'moov'" in text
    assert "valid options:" in text
    assert "move" in (info.value.valid or [])
    assert "move_failed" in (info.value.valid or [])


@pytest.mark.parametrize(
    ("query", "option"),
    [
        ("file_exist=replace", "file_exist"),
        ("poll=0", "poll"),
        ("max_per_poll=0", "max_per_poll"),
        ("min_age=-1", "min_age"),
        ("move=.x&move_failed=.x", "move_failed"),
        ("move=/var/done", "move"),
        ("move_failed=../error", "move_failed"),
        ("sort=size", "sort"),
        ("charset=klingon", "charset"),
        ("file_name={customer}.csv", "file_name"),
        ("delete=true&noop=true", "noop"),
        ("poll=often", "poll"),
    ],
)
async def test_invalid_options_fail_at_start(
    eip_context: Context, tmp_path: Path, query: str, option: str
) -> None:
    eip_context.add_routes(FileRoute(f"file:{tmp_path}?{query}"))
    with pytest.raises(RouteDefinitionError, match=option):
        await eip_context.start()


def test_typed_spec_round_trips_through_its_uri() -> None:
    spec = file("data/inbox", include="*.csv", move=".done/crm", poll=2.5, noop=True)
    assert isinstance(spec, FileSpec)
    assert spec.uri.startswith("file:data/inbox?")
    assert parse_uri(spec.uri, FileSpec) == spec


async def test_stream_hands_over_the_path_for_splitting(eip_context, tmp_path):
    from eip.splitters import lines

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "big.txt").write_text("a\nb\nc\n")

    class R(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(f"file:{inbox}?stream=true")
                .route_id("r")
                .to("mock:whole")
                .split(lines())
                .to("mock:line")
            )

    eip_context.add_routes(R())
    await eip_context.start()
    await eip_context.mock("line").wait_for(3, timeout=5)
    whole = eip_context.mock("whole").received[0]
    assert whole.body == inbox / "big.txt"
    assert whole.headers["eip.file.size"] == 6
    assert eip_context.mock("line").received_bodies == ["a", "b", "c"]
    for _ in range(200):
        if (inbox / ".done" / "big.txt").exists():
            break
        await asyncio.sleep(0.01)
    assert (inbox / ".done" / "big.txt").exists()
