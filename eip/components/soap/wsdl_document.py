"""The WSDL as a served service publishes it: ``?wsdl`` and ``?xsd=<file>``.

A WSDL on disk names a placeholder or development address and imports its schemas by relative
file name. Served, its ``soap:address`` / ``soap12:address`` locations point at the URL the
service really answers on, and every local ``schemaLocation`` (in the WSDL and in the schemas
it imports, transitively) becomes ``<url>?xsd=<file>``, so a client (zeep, SoapUI, a Java
stub generator) can load everything from the service. Only files under the WSDL's folder that
it reaches by imports are served; anything else is 404, never a path on disk.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, quote

from lxml import etree

from eip.components.soap._xml import parse_untrusted
from eip.components.soap.schema import WsdlSchema

__all__ = ["ServedWsdl"]

_XS = "http://www.w3.org/2001/XMLSchema"
_ADDRESSES = (
    "{http://schemas.xmlsoap.org/wsdl/soap/}address",
    "{http://schemas.xmlsoap.org/wsdl/soap12/}address",
)


class ServedWsdl:
    def __init__(self, wsdl: str, schema: WsdlSchema) -> None:
        self.path = Path(schema.path)
        self.folder = self.path.parent.resolve()
        self._raw = self.path.read_bytes()
        self._files = self._reachable()
        self._cache: dict[tuple[str, str], bytes] = {}

    def _reachable(self) -> dict[str, Path]:
        """The local schemas the WSDL imports, by the name they are served under."""
        found: dict[str, Path] = {}
        pending = [self.path.resolve()]
        while pending:
            current = pending.pop()
            root = parse_untrusted(current.read_bytes(), base_url=str(current))
            for location in _locations(root):
                target = (current.parent / location).resolve()
                if not target.is_relative_to(self.folder) or not target.is_file():
                    continue
                name = target.relative_to(self.folder).as_posix()
                if name not in found:
                    found[name] = target
                    pending.append(target)
        return found

    def answer(self, query: str, url: str) -> bytes | None:
        """The document ``query`` asks for (``wsdl`` or ``xsd=<file>``), or None."""
        params = parse_qs(query, keep_blank_values=True)
        if "wsdl" in params or query.lower() == "wsdl":
            return self._rendered("", url)
        names = params.get("xsd")
        if names and names[0] in self._files:
            return self._rendered(names[0], url)
        return None

    def _rendered(self, name: str, url: str) -> bytes:
        key = (name, url)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        source = self._files[name] if name else self.path.resolve()
        root = parse_untrusted(source.read_bytes(), base_url=str(source))
        for node in root.iter(*_ADDRESSES):
            node.set("location", url)
        for node in root.iter(f"{{{_XS}}}import", f"{{{_XS}}}include"):
            location = node.get("schemaLocation")
            if not location:
                continue
            target = (source.parent / location).resolve()
            if target.is_relative_to(self.folder):
                served = target.relative_to(self.folder).as_posix()
                if served in self._files:
                    node.set("schemaLocation", f"{url}?xsd={quote(served)}")
        data: bytes = etree.tostring(root, xml_declaration=True, encoding="utf-8")
        self._cache[key] = data
        return data


def _locations(root: etree._Element) -> list[str]:
    return [
        location
        for node in root.iter(f"{{{_XS}}}import", f"{{{_XS}}}include")
        if (location := node.get("schemaLocation")) and "://" not in location
    ]
