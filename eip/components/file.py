"""``file:directory`` - poll a directory for files (CRM exports, ERP inboxes), or write files.

Consumer decisions:

- **Move after completion = at-least-once.** A file stays in the inbox while its exchange is
  routed; only when the unit of work completes is it moved to ``move`` (default ``.done``), or
  deleted (``delete=true``), or, on failure, moved to ``move_failed`` (default ``.error``). A
  crash mid-file leaves it in the inbox, to be picked up again at the next start: a file can be
  processed twice, never lost. Downstream steps should be idempotent.
- **One file after another**, in ``sort`` order (name or mtime): CRM exports often depend on
  their order. Names starting with ``.`` and ``*.tmp``/``*.part`` files are never taken (they
  are hidden or half-written); ``min_age`` protects against writers that do not write
  atomically. A moved file never overwrites another: on a name collision a UTC timestamp is
  added before the extension. ``include``/``exclude`` are comma-separated, case-sensitive
  globs (``*.csv,*.txt``).
- ``noop=true`` leaves files in place and remembers name, mtime and size in memory, so a file is
  processed once per process unless it changes (a failed one too: it is retried once changed).
- ``stream=true`` does not read the file: the body is its ``pathlib.Path``, for a splitter
  (:mod:`eip.splitters`) to stream a file larger than memory. ``charset`` does not apply then.
- Polling waits on the context clock. Stopping never interrupts a file: the current one is
  finished and moved (within the context's ``shutdown_timeout``), the rest wait for next time.

Producer decisions: a file is written to ``.{name}.{random}.tmp`` in the target directory,
flushed, fsynced and renamed over the final name with :func:`os.replace`, which is atomic on
one filesystem. A consumer on the other side (ours, or an ERP polling its inbox) never sees a
half-written file, and a crash leaves at most a hidden temp file. ``file_exist=append`` is the
exception: appending is not atomic.
"""

from __future__ import annotations

import asyncio
import codecs
import datetime
import fnmatch
import functools
import logging
import os
import string
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from eip.components.base import Component, Consumer, EndpointSpec, Producer, process_exchange
from eip.components.typed import make_spec, typed_spec
from eip.errors import EndpointError
from eip.headers import FILE_MODIFIED, FILE_NAME, FILE_PATH, FILE_SIZE
from eip.message import Exchange

if TYPE_CHECKING:
    from eip.runtime.route import Route

__all__ = ["FileComponent", "FileConsumer", "FileSpec", "file"]

log = logging.getLogger("eip.file")

_TEMP_SUFFIXES = (".tmp", ".part")
_NAME_FIELDS = frozenset({"id", "name", "stem", "ext", "timestamp"})


class FileSpec(EndpointSpec, frozen=True):
    scheme: ClassVar[str] = "file"
    path_field: ClassVar[str] = "directory"
    directory: str
    # consumer
    include: str = "*"
    exclude: str = ""
    move: str = ".done"
    move_failed: str = ".error"
    delete: bool = False
    noop: bool = False
    poll: float = 1.0
    initial_delay: float = 0.0
    min_age: float = 0.0
    max_per_poll: int = 100
    charset: str = ""
    stream: bool = False
    sort: str = "name"
    # producer
    file_name: str = ""
    file_exist: str = "override"
    make_dirs: bool = True
    fsync: bool = True


@typed_spec(FileSpec)
def file(directory: str, **options: Any) -> FileSpec:
    """Typed form of ``file:directory?...``; ``options`` are :class:`FileSpec` fields."""
    return make_spec(FileSpec, {"directory": directory, **options})


def _stamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y%m%dT%H%M%S%f")


def _globs(text: str) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()]


def _template_fields(template: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(template) if field}
    except ValueError as exc:
        raise ValueError(f"file_name {template!r} is not a valid template: {exc}") from None


def _subdir_ok(path: PurePath) -> bool:
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts


def _charset_ok(charset: str) -> bool:
    try:
        return not charset or bool(codecs.lookup(charset))
    except LookupError:
        return False


class FileComponent(Component):
    scheme: ClassVar[str] = "file"
    spec_type: ClassVar[type[EndpointSpec]] = FileSpec

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.inflight: set[str] = set()  # absolute paths being processed, across consumers

    def validate(self, spec: Any) -> None:
        move, failed = PurePath(spec.move), PurePath(spec.move_failed)
        rules = [
            (bool(spec.directory), "file endpoints need a directory: file:<directory>"),
            (spec.poll > 0, f"poll must be > 0, got {spec.poll}"),
            (spec.max_per_poll > 0, f"max_per_poll must be > 0, got {spec.max_per_poll}"),
            (spec.initial_delay >= 0, f"initial_delay must be >= 0, got {spec.initial_delay}"),
            (spec.min_age >= 0, f"min_age must be >= 0, got {spec.min_age}"),
            (spec.sort in ("name", "mtime"), f"sort must be name or mtime, got {spec.sort!r}"),
            (
                spec.file_exist in ("override", "fail", "append"),
                f"file_exist must be override, fail or append, got {spec.file_exist!r}",
            ),
            (_subdir_ok(move), f"move must be a relative subdirectory, got {spec.move!r}"),
            (
                _subdir_ok(failed),
                f"move_failed must be a relative subdirectory, got {spec.move_failed!r}",
            ),
            (move != failed, f"move and move_failed must differ, both are {spec.move!r}"),
            (not (spec.delete and spec.noop), "delete and noop cannot both be true"),
            (_charset_ok(spec.charset), f"charset {spec.charset!r} is not a known encoding"),
        ]
        for ok, message in rules:
            if not ok:
                raise ValueError(message)
        unknown = _template_fields(spec.file_name) - _NAME_FIELDS
        if unknown:
            raise ValueError(
                f"file_name uses unknown field(s) {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(sorted(_NAME_FIELDS))}"
            )

    def create_producer(self, spec: Any) -> Producer:
        from eip.components.file_producer import FileProducer

        return FileProducer(self, spec)

    def create_consumer(self, spec: Any, route: Route) -> Consumer:
        return FileConsumer(self, spec, route)

    def acknowledges_source(self, spec: Any) -> bool:
        """A file leaves the inbox when its exchange completes (``noop`` keeps it)."""
        return not spec.noop


class _Candidate(NamedTuple):
    name: str
    path: Path
    key: tuple[int, int]  # (mtime_ns, size): a file "changed" when either differs


def _read(path: Path) -> tuple[bytes, os.stat_result]:
    with open(path, "rb") as handle:
        return handle.read(), os.fstat(handle.fileno())


class FileConsumer(Consumer):
    def __init__(self, component: FileComponent, spec: FileSpec, route: Route) -> None:
        super().__init__(route)
        self.component = component
        self.spec = spec
        self.clock = component.context.clock
        self.directory = Path(spec.directory)
        self._include = _globs(spec.include) or ["*"]
        self._exclude = _globs(spec.exclude)
        self._seen: dict[str, tuple[int, int]] = {}  # noop, and files that could not be moved
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sleeping = False

    @property
    def ready(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        self._stopping = False
        if self._task is None or self._task.done():  # stopped mid-file (suspend), it goes on
            self._task = asyncio.create_task(self._run(), name=f"file:{self.spec.directory}")

    async def stop(self) -> None:
        """Take no new file. A file in progress counts as in flight (until it is moved), and
        the context drains it within its shutdown timeout, then calls ``abort``."""
        self._stopping = True
        task = self._task
        if task is not None and self._sleeping:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._task = None

    async def abort(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            log.warning("file:%s: cancelling the file in progress", self.spec.directory)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        if self._stopping:
            return
        self._sleeping = True
        try:
            await self.clock.sleep(seconds)
        finally:
            self._sleeping = False

    async def _run(self) -> None:
        await self._sleep(self.spec.initial_delay)
        while not self._stopping:
            try:
                await self._poll()
            except OSError as exc:  # directory gone, unmounted, no permission: say so, go on
                log.warning("file:%s cannot be listed: %s", self.spec.directory, exc)
            except Exception:
                log.exception("file:%s poll failed; trying again", self.spec.directory)
            await self._sleep(self.spec.poll)

    async def _poll(self) -> None:
        names, found = await asyncio.to_thread(self._scan, self.clock.time())
        # forget what left the directory, so noop memory stays as large as the directory
        self._seen = {name: key for name, key in self._seen.items() if name in names}
        taken = 0
        for cand in found:
            if self._stopping or taken >= self.spec.max_per_poll:
                return
            if self._seen.get(cand.name) == cand.key or str(cand.path) in self.component.inflight:
                continue
            taken += 1
            self.component.inflight.add(str(cand.path))
            try:
                await self._take(cand)
            finally:
                self.component.inflight.discard(str(cand.path))

    def _wanted(self, name: str) -> bool:
        if name.startswith(".") or name.endswith(_TEMP_SUFFIXES):
            return False
        return any(fnmatch.fnmatchcase(name, g) for g in self._include) and not any(
            fnmatch.fnmatchcase(name, g) for g in self._exclude
        )

    def _scan(self, now: float) -> tuple[set[str], list[_Candidate]]:
        """List the directory (in a worker thread): matching regular files, sorted."""
        names: set[str] = set()
        found: list[tuple[float, _Candidate]] = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if not self._wanted(name):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat()
                except OSError:
                    continue  # vanished between listing and stat
                names.add(name)
                if self.spec.min_age and now - st.st_mtime < self.spec.min_age:
                    continue
                cand = _Candidate(
                    name, Path(os.path.abspath(entry.path)), (st.st_mtime_ns, st.st_size)
                )
                found.append((st.st_mtime if self.spec.sort == "mtime" else 0.0, cand))
        found.sort(key=lambda item: (item[0], item[1].name))
        return names, [cand for _, cand in found]

    async def _take(self, cand: _Candidate) -> None:
        try:
            if self.spec.stream:
                st = await asyncio.to_thread(os.stat, cand.path)
                data = b""
            else:
                data, st = await asyncio.to_thread(_read, cand.path)
        except OSError as exc:
            log.warning("file: could not read %s, skipped: %s", cand.path, exc)
            return
        log.info("file: took %s (%d bytes)", cand.path, st.st_size)
        key = (st.st_mtime_ns, st.st_size)
        headers = {FILE_NAME: cand.name, FILE_PATH: str(cand.path), FILE_SIZE: st.st_size}
        headers[FILE_MODIFIED] = st.st_mtime
        if self.spec.stream:
            # The body is the path: a splitter streams the file instead of holding it whole.
            exchange = Exchange(cand.path, headers)
            settle = functools.partial(self._settle, cand, key)
            exchange.on_completion(on_success=settle, on_failure=settle)
            await process_exchange(self.route, exchange)
            return
        try:
            body: bytes | str = data.decode(self.spec.charset) if self.spec.charset else data
        except UnicodeDecodeError as exc:  # the exchange fails before it is routed
            exchange = Exchange(data, headers)
            message = f"{cand.path} is not valid {self.spec.charset}: {exc}"
            exchange.exception = EndpointError(message, endpoint=self.spec.uri)
            exchange.exception.__cause__ = exc
            await self._settle(cand, key, exchange)
            return
        exchange = Exchange(body, headers)
        settle = functools.partial(self._settle, cand, key)
        exchange.on_completion(on_success=settle, on_failure=settle)
        await process_exchange(self.route, exchange)

    async def _settle(self, cand: _Candidate, key: tuple[int, int], exchange: Exchange) -> None:
        """Move (or delete, or remember) a file once its exchange has completed."""
        error = exchange.exception
        reason = f" ({type(error).__name__}: {error})" if error is not None else ""
        if self.spec.noop:
            self._seen[cand.name] = key
            level = logging.WARNING if error is not None else logging.INFO
            outcome = "failed" if error is not None else "done"
            log.log(level, "file: %s %s%s; left in place (noop)", cand.path, outcome, reason)
            return
        subdir = self.spec.move if error is None else self.spec.move_failed
        delete = error is None and self.spec.delete
        try:
            target = await asyncio.to_thread(
                self._relocate, cand, subdir, delete, _stamp(self.clock.time())
            )
        except OSError as exc:
            self._seen[cand.name] = key
            text = "file: could not move %s%s: %s; it stays, skipped until it changes"
            log.error(text, cand.path, reason, exc)
            return
        where = "deleted" if target is None else f"moved to {target}"
        if error is None:
            log.info("file: %s done, %s", cand.path, where)
        else:
            log.warning("file: %s failed%s, %s", cand.path, reason, where)

    def _relocate(self, cand: _Candidate, subdir: str, delete: bool, stamp: str) -> Path | None:
        if delete:
            cand.path.unlink(missing_ok=True)
            return None
        target_dir = cand.path.parent / subdir
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / cand.name
        stem, ext = os.path.splitext(cand.name)
        attempt = 0
        while target.exists():
            attempt += 1
            suffix = stamp if attempt == 1 else f"{stamp}-{attempt}"
            target = target_dir / f"{stem}.{suffix}{ext}"
        os.rename(cand.path, target)
        return target
