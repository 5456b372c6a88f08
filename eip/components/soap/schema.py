"""A WSDL's XML Schema as one lxml validator, plus its operations, bindings and ports.

zeep is lenient on the server side (an ``xs:int`` of "abc" becomes None), so the SOAP
server validates each request Body against the WSDL's own schema before a route sees it,
and answers a Client/Sender fault that names the element and what was wrong with it.

Loading is synchronous file I/O and compilation: call :meth:`WsdlSchema.load` off the event
loop (``anyio.to_thread.run_sync``) and keep the result; validating is fast and thread-safe.
"""

from __future__ import annotations

import os.path
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol, cast

from lxml import etree

from eip.components.soap._sources import INLINE_SCHEME, SchemaSources, collect_sources, normalise
from eip.components.soap._sources import read_file as _read_file
from eip.components.soap._xml import QName
from eip.components.soap.wsdl import (
    WSDL_NS,
    WsdlBinding,
    WsdlError,
    WsdlOperation,
    WsdlPort,
    read_wsdl_model,
)
from eip.errors import UnmarshalError

__all__ = ["SchemaValidationError", "WsdlError", "WsdlSchema"]

_ELEMENT_MESSAGE: Final = re.compile(
    r"^Element '([^']*)'(?:, attribute '([^']*)')?: (.*?)\.?$", re.S
)
_STEP: Final = re.compile(r"^([^\[]+)(?:\[(\d+)\])?$")
_Rewrite = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]
_REWRITES: Final[tuple[_Rewrite, ...]] = (
    (
        re.compile(
            r"\[facet 'enumeration'\] The value '(.*)' is not an element of the set \{(.*)\}"
        ),
        lambda m: f"'{m[1]}' is not one of {m[2].replace(chr(39), '')}",
    ),
    (
        re.compile(r"\[facet '(\w+)'\] The value '(.*)' is not accepted by the pattern '(.*)'"),
        lambda m: f"'{m[2]}' does not match the pattern '{m[3]}'",
    ),
    (
        re.compile(
            r"'(.*)' is not a valid value of the (?:local )?atomic type '(?:\{[^}]*\})?(.*)'"
        ),
        lambda m: f"'{m[1]}' is not a valid {m[2]}",
    ),
    (
        re.compile(r"Missing child element\(s\)\. Expected is (?:one of )?\( (.*) \)"),
        lambda m: f"missing child element {_strip_namespaces(m[1])}",
    ),
    (
        re.compile(r"This element is not expected\. Expected is (?:one of )?\( (.*) \)"),
        lambda m: f"unexpected element; expected {_strip_namespaces(m[1])}",
    ),
)


class SchemaValidationError(UnmarshalError):
    """A message does not match the WSDL's schema.

    ``location`` is the element's path of local names (``UpsertCustomer/customer/status``,
    ``.../address[2]/@kind`` for an attribute); ``problems`` lists every (location, reason)
    libxml2 reported, the first of which is the message.
    """

    def __init__(
        self,
        reason: str,
        *,
        location: str,
        problems: tuple[tuple[str, str], ...] = (),
        line: int | None = None,
    ) -> None:
        self.problems = problems or ((location, reason),)
        self.line = line
        super().__init__("soap", reason, location=location)


class _LogEntry(Protocol):
    message: str
    line: int
    path: str | None
    filename: str
    level_name: str


def _errors(log: object) -> list[_LogEntry]:
    entries = cast(Iterable[_LogEntry], log)
    return [e for e in entries if e.level_name in ("ERROR", "FATAL")]


def _strip_namespaces(text: str) -> str:
    return re.sub(r"\{[^}]*\}", "", text)


def _local(element: etree._Element) -> str:
    return str(element.tag).rpartition("}")[2]


def _reason(message: str) -> str:
    """libxml2's message, minus the ``Element '{ns}x':`` prefix the location replaces, with
    the common cases said plainly."""
    found = _ELEMENT_MESSAGE.match(message)
    body = found[3] if found else message
    if found and body.startswith("No matching global declaration"):
        return f"element {found[1]} is not declared in the WSDL's schemas"
    for pattern, rewrite in _REWRITES:
        if rewritten := pattern.match(body):
            return rewrite(rewritten)
    return _strip_namespaces(body)


def _step_name(node: etree._Element) -> str:
    """The local name, with a 1-based index when same-named siblings make it ambiguous."""
    parent, name = node.getparent(), _local(node)
    if parent is None:
        return name
    same = [c for c in parent.iterchildren(etree.Element) if _local(c) == name]
    return f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name


def _location(root: etree._Element, entry: _LogEntry) -> str:
    """Turn libxml2's node path (``/*/*/*[3]``, relative to the validated element) into
    local names, walking the real tree; fall back to the element named in the message."""
    message = _ELEMENT_MESSAGE.match(entry.message)
    attribute = f"/@{message[2]}" if message and message[2] else ""
    steps = (entry.path or "").split("/")[1:]
    names, node = [_local(root)], root
    try:
        for step in steps[1:]:
            found = _STEP.match(step)
            if found is None:
                raise LookupError(step)
            children = list(node.iterchildren(etree.Element))
            if found[1] != "*":
                children = [c for c in children if _qualified(c) == found[1]]
            node = children[int(found[2] or 1) - 1]
            names.append(_step_name(node))
    except (LookupError, IndexError):
        tag = message[1] if message else ""
        return _strip_namespaces(tag) + attribute
    return "/".join(names) + attribute


def _qualified(element: etree._Element) -> str:
    return f"{element.prefix}:{_local(element)}" if element.prefix else _local(element)


class _Resolver(etree.Resolver):
    """Serve the collected documents to libxml2, and nothing else: an unknown URL gets a
    non-schema stub, so the compile fails naming it instead of reading from disk or net."""

    def __init__(self, documents: dict[str, tuple[bytes, str]]) -> None:
        self._documents = documents

    def resolve(self, system_url: str, public_id: str, context: Any = None) -> Any:
        key = system_url if system_url.startswith(INLINE_SCHEME) else normalise(system_url)
        data, base = self._documents.get(key, (b"<unresolved-schema-location/>", system_url))
        resolve_string: Any = self.resolve_string  # untyped in lxml-stubs
        return resolve_string(data, context, base_url=base)


def _display(filename: str) -> str:
    path, _, fragment = filename.partition("#schema")
    return f"{path} (inline xs:schema #{fragment})" if fragment else path


def _compile(sources: SchemaSources) -> etree.XMLSchema:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    parser.resolvers.add(_Resolver(sources.documents))
    wrapper = etree.fromstring(sources.wrapper, parser, base_url=sources.wsdl)
    try:
        return etree.XMLSchema(wrapper)
    except etree.LxmlError as exc:
        entries = _errors(exc.error_log)
        if not entries:
            raise WsdlError(f"the XML Schema does not compile: {exc}", path=sources.wsdl) from exc
        first = entries[0]
        raise WsdlError(
            f"the XML Schema does not compile: {first.message}",
            path=_display(first.filename or sources.wsdl),
            line=first.line or None,
        ) from exc


class WsdlSchema:
    """The compiled schema of one WSDL (all its inline and imported schemas) and its model.

    ``operations`` maps operation names to :class:`WsdlOperation`; ``bindings`` maps binding
    local names to :class:`WsdlBinding`; ``ports`` lists the SOAP ports of its services.
    """

    def __init__(
        self,
        path: Path,
        schema: etree.XMLSchema,
        sources: SchemaSources,
        root: etree._Element,
    ) -> None:
        self.path = path
        self._schema = schema
        self._lock = threading.Lock()
        self._element_names = frozenset(sources.element_names)
        model = read_wsdl_model(root, str(path))
        self.target_namespace = model.target_namespace
        self.operations: Mapping[str, WsdlOperation] = MappingProxyType(
            {op.name: op for op in model.operations}
        )
        self.bindings: Mapping[str, WsdlBinding] = MappingProxyType(
            {b.name[1]: b for b in model.bindings}
        )
        self.ports: tuple[WsdlPort, ...] = model.ports
        by_input: dict[QName, list[WsdlOperation]] = {}
        for op in model.operations:
            by_input.setdefault(op.input, []).append(op)
        self._by_input = by_input

    @classmethod
    def load(cls, path: str | Path, *, max_size: int = 5_000_000) -> WsdlSchema:
        """Read, harden-parse and compile ``path`` and the local schemas it names.

        Raises :class:`WsdlError` naming the file and line for anything broken: unreadable,
        over ``max_size`` bytes (per file), a DTD, not a WSDL, a schema that does not
        compile, a network schemaLocation, or an rpc/encoded operation.
        """
        wsdl = normalise(os.fspath(path))
        _, root = _read_file(wsdl, max_size)
        if root.tag != f"{{{WSDL_NS}}}definitions":
            raise WsdlError(f"not a WSDL 1.1 document (root is {root.tag!r})", path=wsdl)
        sources = collect_sources(root, wsdl, max_size)
        return cls(Path(wsdl), _compile(sources), sources, root)

    def element_names(self) -> frozenset[QName]:
        """The global elements of all the schemas, as ``(namespace, local)``."""
        return self._element_names

    def operation_for(
        self, qname: QName, *, soap_action: str | None = None
    ) -> WsdlOperation | None:
        """The operation whose request element is ``qname`` (the Body's child). When several
        share it (not wrapped style), ``soap_action`` picks the one a binding maps it to."""
        candidates = self._by_input.get(qname, [])
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        for binding in self.bindings.values():
            for op in candidates:
                if soap_action and binding.soap_action(op.name) == soap_action.strip('"'):
                    return op
        return None

    def validate(self, element: etree._Element) -> None:
        """Validate ``element`` (a Body child, say) against the schema.

        Raises :class:`SchemaValidationError` naming the element path and the problem, e.g.
        ``UpsertCustomer/customer/status: 'BOGUS' is not one of ACTIVE, SUSPENDED, CLOSED``.
        """
        with self._lock:  # the error log belongs to the validator, so one caller at a time
            if self._schema.validate(element):
                return
            entries = _errors(self._schema.error_log)
        problems = tuple((_location(element, e), _reason(e.message)) for e in entries)
        if not problems:
            problems = ((_local(element), "does not match the schema"),)
        location, reason = problems[0]
        raise SchemaValidationError(
            reason,
            location=location,
            problems=problems,
            line=entries[0].line if entries else None,
        )
