"""Gather every XML Schema document a WSDL needs, ready for one lxml compile.

Inline ``xs:schema`` elements lean on the WSDL root: they use prefixes declared on
``wsdl:definitions`` (in QName *values*, which lxml does not carry along when copying) and
import each other by namespace alone, with no schemaLocation. So each one is rebuilt as a
standalone document with every in-scope namespace declared on it, and served under a
synthetic ``eip-wsdl:`` URL that the namespace-only imports are pointed at. Several inline
schemas sharing one namespace are served as a stub that includes them all. Files named by
``schemaLocation`` are read (local files only, size-limited, DTDs refused) before compiling,
so every failure is raised here with a file name and a line, never from inside libxml2.

Inline schemas are padded so their line numbers are the WSDL's: a compile error then points
at the right line of the WSDL.
"""

from __future__ import annotations

import copy
import os.path
from dataclasses import dataclass, field
from typing import Final, cast
from urllib.parse import unquote, urlsplit

from lxml import etree

from eip.components.soap._xml import QName, UnsafeXmlError, line_of, parse_untrusted
from eip.components.soap.wsdl import WSDL_NS, WsdlError

__all__ = ["INLINE_SCHEME", "XS_NS", "SchemaSources", "collect_sources", "normalise", "read_file"]

XS_NS: Final = "http://www.w3.org/2001/XMLSchema"
INLINE_SCHEME: Final = "eip-wsdl:"
_XS: Final = f"{{{XS_NS}}}"
_REFERENCES: Final = (f"{_XS}import", f"{_XS}include", f"{_XS}redefine", f"{_XS}override")


@dataclass
class SchemaSources:
    """What the compile needs: documents by URL (bytes and base URL), the wrapper schema
    that imports every inline namespace, and the global element names found."""

    wsdl: str
    documents: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    element_names: set[QName] = field(default_factory=set)
    wrapper: bytes = b""


def normalise(url: str) -> str:
    """A local URL or path as an absolute, normalised path: the key documents are stored by,
    whichever form (relative, ``file:`` URL, escaped) libxml2 hands the resolver."""
    if url.startswith("file:"):
        url = unquote(urlsplit(url).path)
    return os.path.normpath(os.path.abspath(url))


def read_file(
    path: str, max_size: int, *, referrer: str | None = None
) -> tuple[bytes, etree._Element]:
    """Read and parse one local file, size-limited and hardened; its bytes and root."""
    try:
        size = os.path.getsize(path)
        if size > max_size:
            raise WsdlError(f"the file is {size} bytes; the limit is {max_size}", path=path)
        with open(path, "rb") as handle:
            data = handle.read(max_size + 1)
    except OSError as exc:
        hint = f" (referenced from {referrer})" if referrer else ""
        raise WsdlError(f"cannot read the file{hint}: {exc.strerror or exc}", path=path) from exc
    if len(data) > max_size:
        raise WsdlError(f"the file is over the limit of {max_size} bytes", path=path)
    try:
        return data, parse_untrusted(data, base_url=path)
    except UnsafeXmlError as exc:
        raise WsdlError(exc.reason, path=path, line=exc.line) from exc


def _global_elements(schema: etree._Element, namespace: str) -> set[QName]:
    return {(namespace, e.get("name", "")) for e in schema.iterchildren(f"{_XS}element")}


def _local_target(location: str, base_dir: str, ref: etree._Element, where: str) -> str:
    """Resolve a schemaLocation to a local path; anything with a network scheme is refused
    (a one-letter scheme is a Windows drive, so still a file)."""
    scheme = urlsplit(location).scheme
    if scheme not in ("", "file") and len(scheme) > 1:
        raise WsdlError(
            f"schemaLocation {location!r}: only local files are followed, not the network",
            path=where,
            line=line_of(ref),
        )
    path = unquote(urlsplit(location).path) if scheme == "file" else location
    return normalise(os.path.join(base_dir, path))


class _Collector:
    def __init__(self, wsdl: str, max_size: int) -> None:
        self.sources = SchemaSources(wsdl)
        self.max_size = max_size
        self.queue: list[tuple[str, str, str, etree._Element]] = []

    def follow(
        self, schema: etree._Element, namespace: str, base_dir: str, where: str, *, inline: bool
    ) -> None:
        """Queue the local files this schema imports or includes. Locations in an inline
        copy are made absolute (it is served under a synthetic URL); a file is served as
        read, so libxml2 resolves its locations against its own path, as done here."""
        for ref in schema.iter(*_REFERENCES):
            location = ref.get("schemaLocation")
            if not location or location.startswith(INLINE_SCHEME):
                continue
            target = _local_target(location, base_dir, ref, where)
            hint = ref.get("namespace", "") if ref.tag == f"{_XS}import" else namespace
            if inline:
                ref.set("schemaLocation", target)
            self.queue.append((target, hint, where, ref))

    def inline(self, schemas: list[etree._Element]) -> None:
        """Serve every inline schema; one URL per namespace."""
        groups: dict[str, list[etree._Element]] = {}
        for schema in schemas:
            groups.setdefault(schema.get("targetNamespace", ""), []).append(schema)
        urls = {ns: f"{INLINE_SCHEME}types/{i}" for i, ns in enumerate(groups)}
        base_dir = os.path.dirname(self.sources.wsdl)
        for ns, members in groups.items():
            pieces = (
                [urls[ns]]
                if len(members) == 1
                else [f"{urls[ns]}/{k}" for k in range(len(members))]
            )
            if len(members) > 1:
                self.sources.documents[urls[ns]] = (_stub(ns, pieces), self.sources.wsdl)
            for url, schema in zip(pieces, members, strict=True):
                number = schemas.index(schema) + 1
                standalone = _standalone(schema, urls, ns)
                self.follow(standalone, ns, base_dir, self.sources.wsdl, inline=True)
                body = etree.tostring(standalone)
                padded = b"\n" * ((line_of(schema) or 1) - 1) + body
                self.sources.documents[url] = (padded, f"{self.sources.wsdl}#schema{number}")
                self.sources.element_names |= _global_elements(schema, ns)
        self.sources.wrapper = _wrapper(urls)

    def files(self) -> None:
        """Read the queued files, and the files they name, once each."""
        while self.queue:
            target, hint, referrer, ref = self.queue.pop(0)
            if target in self.sources.documents:
                continue
            where = f"{referrer}, line {line_of(ref)}"
            data, root = read_file(target, self.max_size, referrer=where)
            if root.tag != f"{_XS}schema":
                raise WsdlError(f"not an XML Schema (root is {root.tag!r})", path=target)
            namespace = root.get("targetNamespace", hint)
            self.sources.documents[target] = (data, target)
            self.sources.element_names |= _global_elements(root, namespace)
            self.follow(root, namespace, os.path.dirname(target), target, inline=False)


def _standalone(schema: etree._Element, urls: dict[str, str], own: str) -> etree._Element:
    """A copy of an inline schema that compiles on its own: every namespace in scope on the
    WSDL declared on it, and namespace-only imports of inline namespaces given their URL."""
    nsmap = cast("dict[str, str]", schema.nsmap)  # the default namespace's key is None
    attrib = {str(k): str(v) for k, v in schema.attrib.items()}
    copied = etree.Element(schema.tag, attrib=attrib, nsmap=nsmap)
    first = next(iter(schema), None)
    text = schema.text or ""
    first_line, schema_line = (line_of(first) if first is not None else None), line_of(schema)
    if first_line and schema_line:
        # the start tag's own line breaks, lost when lxml rewrites it on one line
        breaks = first_line - schema_line - text.count("\n")
        text = "\n" * max(breaks, 0) + text
    copied.text = text
    for child in schema:
        copied.append(copy.deepcopy(child))
    for ref in copied.iterchildren(f"{_XS}import"):
        namespace = ref.get("namespace", "")
        if namespace in urls and namespace != own:
            ref.set("schemaLocation", urls[namespace])
    return copied


def _stub(namespace: str, pieces: list[str]) -> bytes:
    root = etree.Element(f"{_XS}schema", nsmap={"xs": XS_NS})
    if namespace:
        root.set("targetNamespace", namespace)
    for url in pieces:
        etree.SubElement(root, f"{_XS}include", schemaLocation=url)
    return etree.tostring(root)


def _wrapper(urls: dict[str, str]) -> bytes:
    """One schema that pulls in every inline namespace, so one validator covers them all."""
    root = etree.Element(f"{_XS}schema", nsmap={"xs": XS_NS})
    for namespace, url in urls.items():
        if namespace:
            etree.SubElement(root, f"{_XS}import", namespace=namespace, schemaLocation=url)
        else:
            etree.SubElement(root, f"{_XS}include", schemaLocation=url)
    return etree.tostring(root)


def collect_sources(root: etree._Element, wsdl: str, max_size: int) -> SchemaSources:
    """Every schema document of the parsed WSDL ``root`` (read from path ``wsdl``)."""
    collector = _Collector(wsdl, max_size)
    collector.inline(root.findall(f"{{{WSDL_NS}}}types/{_XS}schema"))
    collector.files()
    return collector.sources
