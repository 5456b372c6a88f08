"""How ``poll_pages`` finds the next page: by number, by offset, by a cursor in the body, or
by the RFC 8288 ``Link: <...>; rel="next"`` header.

Each style is a small frozen object with two methods: ``first(url)`` makes the first page's
URL from the run's URL (the watermark already filled in), ``next(page)`` the next page's URL
from the page just fetched, or None when it was the last. They keep no state, so one object
serves every run of a route, and runs of several routes at once::

    page_number(size=100, size_param="per_page")   # ?page=1&per_page=100, ?page=2...
    page_offset(size=100)                          # ?offset=0&limit=100, ?offset=100...
    body_cursor("$.next_cursor", param="cursor")   # ?cursor=<the last page's next_cursor>
    body_cursor("$.links.next")                    # the body names the next URL itself
    link_header()                                  # Link: <https://...?page=2>; rel="next"

Page and offset styles end at an empty page, or at a page shorter than ``size``; the cursor
style where the cursor is missing, null or empty; the Link style where no ``rel="next"`` link
is given. (Offsets count the records received, not ``size``: a server that caps the page size
below what was asked for is still walked without gaps.)

Decisions:

- **Query parameters are set, not appended**: a page parameter already in the URL is replaced,
  and every other parameter (the watermark's ``updated_since=...``) is kept on every page of
  the number, offset and cursor styles. A next URL from a Link header or from the body is
  followed as it is (relative ones resolved against the page's URL): the server wrote it.
- **Prefer a cursor or Link pagination (keyset) over page and offset** for an incremental
  sync: a record updated during the run moves to the end of an ``updated_at``-sorted result,
  which shifts every record after it back by one, so the next page by offset skips one. A
  keyset cursor ("after this key") cannot skip.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "BodyCursor",
    "FetchedPage",
    "LinkHeader",
    "OffsetPages",
    "PageNumbers",
    "Pagination",
    "body_cursor",
    "json_path",
    "link_header",
    "next_links",
    "page_number",
    "page_offset",
    "set_query",
]


@dataclass(frozen=True, slots=True)
class FetchedPage:
    """One page as fetched: its number (1-based), URL, decoded body, response headers, its
    records, and how many records the run had before it."""

    number: int
    url: str
    data: Any
    headers: Mapping[str, str]
    records: list[Any]
    before: int


class Pagination(Protocol):
    """A pagination style (see the module docstring)."""

    def first(self, url: str) -> str:
        """The first page's URL, from the run's URL."""
        ...

    def next(self, page: FetchedPage) -> str | None:
        """The URL after ``page``, or None when ``page`` was the last."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PageNumbers:
    param: str = "page"
    start: int = 1
    size: int | None = None
    size_param: str | None = None

    def first(self, url: str) -> str:
        return self._url(url, self.start)

    def next(self, page: FetchedPage) -> str | None:
        if not page.records or (self.size is not None and len(page.records) < self.size):
            return None
        return self._url(page.url, self.start + page.number)

    def _url(self, url: str, number: int) -> str:
        params = {self.param: str(number)}
        if self.size_param and self.size is not None:
            params[self.size_param] = str(self.size)
        return set_query(url, params)

    def describe(self) -> str:
        return f"page_number({self.param!r})"


@dataclass(frozen=True, slots=True)
class OffsetPages:
    param: str = "offset"
    size: int | None = 100
    size_param: str | None = "limit"
    start: int = 0

    def first(self, url: str) -> str:
        return self._url(url, self.start)

    def next(self, page: FetchedPage) -> str | None:
        if not page.records or (self.size is not None and len(page.records) < self.size):
            return None
        return self._url(page.url, self.start + page.before + len(page.records))

    def _url(self, url: str, offset: int) -> str:
        params = {self.param: str(offset)}
        if self.size_param and self.size is not None:
            params[self.size_param] = str(self.size)
        return set_query(url, params)

    def describe(self) -> str:
        return f"page_offset({self.param!r})"


@dataclass(frozen=True, slots=True)
class BodyCursor:
    path: str
    param: str | None
    getter: Callable[[Any], Any]

    def first(self, url: str) -> str:
        return url

    def next(self, page: FetchedPage) -> str | None:
        cursor = self.getter(page.data)
        if cursor is None or cursor == "":
            return None
        if self.param is None:  # the body names the next URL
            return urllib.parse.urljoin(page.url, str(cursor))
        return set_query(page.url, {self.param: str(cursor)})

    def describe(self) -> str:
        return f"body_cursor({self.path!r})"


@dataclass(frozen=True, slots=True)
class LinkHeader:
    rel: str = "next"

    def first(self, url: str) -> str:
        return url

    def next(self, page: FetchedPage) -> str | None:
        target = next_links(page.headers).get(self.rel)
        return None if target is None else urllib.parse.urljoin(page.url, target)

    def describe(self) -> str:
        return "link_header()" if self.rel == "next" else f"link_header({self.rel!r})"


def page_number(
    param: str = "page", *, start: int = 1, size: int | None = None, size_param: str | None = None
) -> PageNumbers:
    """Pages by number: ``?page=1``, ``?page=2``... (with ``size_param=size`` on each, when
    given). Ends at an empty page, or one shorter than ``size``."""
    _check_size(size)
    return PageNumbers(param, start, size, size_param)


def page_offset(
    param: str = "offset", *, size: int = 100, size_param: str | None = "limit", start: int = 0
) -> OffsetPages:
    """Pages by offset: ``?offset=0&limit=100``, then the offset moved on by the records
    received. Ends at an empty page, or one shorter than ``size``."""
    _check_size(size)
    return OffsetPages(param, size, size_param, start)


def body_cursor(path: str, *, param: str | None = "cursor") -> BodyCursor:
    """The next page's cursor is in the body at the JSON path ``path`` (``$.next_cursor``,
    ``$.meta.next``) and is sent as ``?<param>=<cursor>``; with ``param=None`` the value is the
    next page's URL itself. Ends where the cursor is missing, null or empty."""
    return BodyCursor(path, param, json_path(path))


def link_header(rel: str = "next") -> LinkHeader:
    """Follow the RFC 8288 ``Link`` header's ``rel="next"`` target (GitHub, GitLab...)."""
    return LinkHeader(rel)


def _check_size(size: int | None) -> None:
    if size is not None and size < 1:
        raise ValueError(f"page size must be >= 1, got {size}")


# -- helpers ---------------------------------------------------------------------------------
def set_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` set in its query (replacing those already there, keeping the
    order and the encoding of the others)."""
    parts = urllib.parse.urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and urllib.parse.unquote_plus(pair.partition("=")[0]) not in params
    ]
    added = [
        f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}"
        for k, v in params.items()
    ]
    return urllib.parse.urlunsplit(parts._replace(query="&".join(kept + added)))


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def json_path(path: str) -> Callable[[Any], Any]:
    """A getter for a simple JSON path: ``$``, ``$.items``, ``$.data.rows``, ``$.pages[0]``,
    ``$['odd key']``. A missing key or index gives None. Raises ValueError for anything else
    (filters and wildcards are not supported)."""
    if not path.startswith("$"):
        raise ValueError(f"a JSON path starts with '$', got {path!r}")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            raise ValueError(f"unsupported JSON path {path!r} at {path[pos:]!r}")
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (name or quoted))
        pos = match.end()
    found = tuple(steps)

    def get(value: Any) -> Any:
        for step in found:
            if isinstance(step, int):
                if not isinstance(value, list) or step >= len(value):
                    return None
                value = value[step]
            elif isinstance(value, dict):
                value = value.get(step)
            else:
                return None
        return value

    get.description = path  # type: ignore[attr-defined]
    return get


_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_PARAM = re.compile(r";\s*([A-Za-z0-9!#$&+\-.^_`|~*]+)\s*=\s*(\"[^\"]*\"|[^;,\s]+)")


def next_links(headers: Mapping[str, str]) -> dict[str, str]:
    """The targets of the response's ``Link`` headers by relation type (RFC 8288): several
    headers, several links per header, and space-separated ``rel`` values (``rel="next
    last"``) are read; relation types compare case-insensitively."""
    out: dict[str, str] = {}
    for value in _header_values(headers, "link"):
        for match in _LINK.finditer(value):
            target, params = match.groups()
            for name, raw in _PARAM.findall(params):
                if name.lower() != "rel":
                    continue
                for rel in raw.strip('"').split():
                    out.setdefault(rel.lower(), target.strip())
    return out


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of a header: aiohttp's and httpx's multi-dicts, or a plain dict."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    get_list = getattr(headers, "get_list", None)
    if get_list is not None:
        return list(get_list(name))
    return [v for k, v in headers.items() if k.lower() == name]
