"""What eip takes from zeep: the WSDL model, and turning XML into data and data into XML.

zeep is used as a library of parts, never as the client that sends: its async constructor
blocks the loop (zeep#1409), its async path ignores ``operation_timeout`` (PR #1416) and its
deserialization is lenient (an ``xs:int`` of "abc" becomes None). So eip loads the WSDL once,
in a worker thread, with zeep's hardened settings; sends over its own HTTP path with real
time-outs; and, on the server side, validates against the XSD with lxml before zeep reads.

Reading and writing elements goes through codecs compiled once per element from zeep's model
(:mod:`.codec`: zeep's data and zeep's XML at a fraction of the CPU); the ``zeep_*`` functions
here are zeep's own path, kept for what the compiler leaves to zeep.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from eip.errors import RouteDefinitionError, redact_uri

if TYPE_CHECKING:
    from lxml import etree

__all__ = [
    "data_to_element",
    "element_reader",
    "element_to_data",
    "element_writer",
    "load_client",
    "plain",
    "to_data",
    "zeep_data_to_element",
    "zeep_element_to_data",
]


def _zeep() -> Any:
    try:
        import zeep
        import zeep.helpers
        import zeep.transports
    except ImportError as exc:  # pragma: no cover - zeep is in the soap extra
        raise RouteDefinitionError(
            "soap: endpoints need zeep: install eip with the 'soap' extra (pip install eip[soap])"
        ) from exc
    return zeep


def load_client_sync(wsdl: str, timeout: float) -> Any:
    """A zeep Client for ``wsdl`` (a file path or URL), with DTDs and entities forbidden, and
    external references too for a local WSDL; raises RouteDefinitionError naming the WSDL when
    it cannot be used."""
    zeep = _zeep()
    Transport = zeep.transports.Transport

    remote = "://" in wsdl
    settings = zeep.Settings(
        strict=True,
        xml_huge_tree=False,
        forbid_dtd=True,
        forbid_entities=True,
        # A WSDL read from a URL imports its schemas by URL (``?xsd=...``): those the
        # service publishes are trusted with it. A local WSDL may reference nothing remote.
        forbid_external=not remote,
    )
    location = wsdl
    if not remote:
        path = Path(wsdl)
        if not path.is_file():
            raise RouteDefinitionError(f"WSDL {redact_uri(wsdl)}: no such file")
        location = str(path.resolve())
    try:
        return zeep.Client(location, settings=settings, transport=Transport(timeout=timeout))
    except RouteDefinitionError:
        raise
    except Exception as exc:
        raise RouteDefinitionError(
            f"WSDL {redact_uri(wsdl)} cannot be loaded: {type(exc).__name__}: {exc}"
        ) from exc


async def load_client(wsdl: str, timeout: float) -> Any:
    """:func:`load_client_sync` in a worker thread, so a slow or remote WSDL never blocks the
    loop, bounded by ``timeout``."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(load_client_sync, wsdl, timeout), timeout)
    except TimeoutError:
        raise RouteDefinitionError(
            f"WSDL {redact_uri(wsdl)} did not load within {timeout:g}s"
        ) from None


def to_data(value: Any) -> Any:
    """zeep's result objects as plain data: dicts, lists and scalars (Decimal, date, ...)."""
    return _dicts(_zeep().helpers.serialize_object(value, dict))


def _dicts(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _dicts(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_dicts(item) for item in value]
    return value


def plain(value: Any) -> Any:
    """A route's body as data zeep can render: Structs become dicts, keeping Decimal, date
    and datetime values as they are (``to_builtins`` would turn them into strings)."""
    if isinstance(value, msgspec.Struct):
        return {name: plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


@functools.lru_cache(maxsize=1024)
def _element(client: Any, qname: str) -> Any:
    """zeep's element declaration (a schema lookup of ~12 µs, done once per element)."""
    return client.get_element(qname)


@functools.lru_cache(maxsize=1024)
def _reader(client: Any, qname: str) -> Callable[[etree._Element], Any] | None:
    """The element's compiled reader (:mod:`.codec`), or None where zeep reads it."""
    from eip.components.soap.codec import compile_reader

    return compile_reader(client, qname)


@functools.lru_cache(maxsize=1024)
def _writer(client: Any, qname: str) -> Callable[[Any], etree._Element] | None:
    """The element's compiled writer (:mod:`.codec`), or None where zeep writes it."""
    from eip.components.soap.codec import compile_writer

    return compile_writer(client, qname)


def element_reader(client: Any, qname: str) -> Callable[[etree._Element], Any]:
    """:func:`element_to_data` for one element, as one function: the compiled reader, or
    zeep's reading where the compiler leaves it to zeep."""
    reader = _reader(client, qname)
    if reader is not None:
        return reader
    schema, element = client.wsdl.types, _element(client, qname)
    return lambda node: zeep_element_to_data(schema, element, node)


def element_writer(client: Any, qname: str) -> Callable[[Any], etree._Element]:
    """:func:`data_to_element` for one element, as one function."""
    writer = _writer(client, qname)
    if writer is not None:
        return writer
    element = _element(client, qname)
    return lambda data: zeep_data_to_element(element, data)


def element_to_data(client: Any, qname: str, node: etree._Element) -> Any:
    """Read ``node`` (an element declared as ``qname``, Clark notation) into plain data."""
    reader = _reader(client, qname)
    if reader is not None:
        return reader(node)
    return zeep_element_to_data(client.wsdl.types, _element(client, qname), node)


def data_to_element(client: Any, qname: str, data: Any) -> etree._Element:
    """Write ``data`` (a dict, a Struct, or None) as the element ``qname``."""
    writer = _writer(client, qname)
    if writer is not None:
        return writer(data)
    return zeep_data_to_element(_element(client, qname), data)


def zeep_element_to_data(
    schema: Any, element: Any, node: etree._Element, *, allow_none: bool = False
) -> Any:
    """zeep's own reading, which the compiled readers mirror and fall back to."""
    return to_data(element.parse(node, schema, allow_none=allow_none))


def zeep_data_to_element(element: Any, data: Any) -> etree._Element:
    """zeep's own writing, which the compiled writers mirror and fall back to."""
    from lxml import etree

    value = plain(data)
    holder = etree.Element("holder")
    if isinstance(value, Mapping):
        element.render(holder, element(**value))
    elif value is None:
        element.render(holder, element())
    else:
        element.render(holder, value)
    return holder[0]
