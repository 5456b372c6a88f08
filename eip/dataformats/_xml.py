"""XML data format built on lxml, hardened for untrusted input.

One parser is built per format with entity resolution, network access and DTD loading off,
and any document carrying a DOCTYPE is refused: that closes XXE and entity-expansion
("billion laughs") attacks before they start. ``as_dict`` and ``type=`` map elements to
plain data with a few fixed rules (see :class:`XmlFormat`).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi
from lxml import etree

from eip.dataformats._json import encode_failure, msgspec_reason
from eip.dataformats._prolog import has_doctype
from eip.dataformats._xml_shape import compile_shaper, xpath
from eip.errors import MarshalError, RouteDefinitionError, UnmarshalError

__all__ = ["XmlFormat"]

_LINE_COLUMN = re.compile(r", line \d+, column \d+$")
_XML_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")


def _local(tag: str) -> str:
    return tag[tag.index("}") + 1 :] if tag[:1] == "{" else tag


def _element_value(element: etree._Element, strip: bool) -> Any:
    """Element -> plain data: leaf text (None if empty) or a dict with ``@attr``, child tags
    (repeated tags become a list) and ``#text`` for any non-blank text beside them."""
    text = element.text
    pairs: list[tuple[str, str]] = element.items()  # type: ignore[assignment]  # str, not bytes
    if not len(element) and not pairs:
        return text or None
    out: dict[str, Any] = {}
    for key, value in pairs:
        out["@" + (_local(key) if strip else key)] = value
    texts = [text] if text else []
    for child in element:
        tag = child.tag
        if tag.__class__ is str:  # comments and processing instructions have no str tag
            if strip:
                tag = _local(tag)
            value = _element_value(child, strip)
            if tag not in out:
                out[tag] = value
            elif (existing := out[tag]).__class__ is list:
                existing.append(value)
            else:
                out[tag] = [existing, value]
        if child.tail:
            texts.append(child.tail)
    if texts and (joined := "".join(texts)).strip():
        out["#text"] = joined
    return out


def _text(value: Any, path: str) -> str:
    if value.__class__ is bool:
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise MarshalError("xml", f"{path}: cannot write a {type(value).__name__} as XML text")


def _fill(element: etree._Element, value: Any, path: str) -> None:
    """Inverse of :func:`_element_value`: write ``value`` into ``element``."""
    if value is None:
        return
    if not isinstance(value, dict):
        if isinstance(value, list | tuple):
            reason = f"{path}: a list must be the value of a named key (one element per item)"
            raise MarshalError("xml", reason)
        _set_text(element, _text(value, path), path)
        return
    for key, item in value.items():
        if not isinstance(key, str):
            raise MarshalError("xml", f"{path}: key {key!r} is not a string")
        if key.startswith("@"):
            if item is not None:
                _set(element, key[1:], _text(item, f"{path}/{key}"), f"{path}/{key}")
        elif key == "#text":
            if item is not None:
                _set_text(element, _text(item, f"{path}/#text"), f"{path}/#text")
        elif isinstance(item, list | tuple):
            for n, entry in enumerate(item, 1):
                _fill(_child(element, key, f"{path}/{key}"), entry, f"{path}/{key}[{n}]")
        else:
            _fill(_child(element, key, f"{path}/{key}"), item, f"{path}/{key}")


def _child(parent: etree._Element, tag: str, path: str) -> etree._Element:
    try:
        return etree.SubElement(parent, tag)
    except ValueError as exc:
        raise MarshalError("xml", f"{path}: {exc}") from exc


def _set_text(element: etree._Element, text: str, path: str) -> None:
    try:
        element.text = text
    except ValueError as exc:  # lxml refuses control characters and NUL
        raise MarshalError("xml", f"{path}: {exc}") from exc


def _set(element: etree._Element, name: str, value: str, path: str) -> None:
    try:
        element.set(name, value)
    except ValueError as exc:
        raise MarshalError("xml", f"{path}: {exc}") from exc


class XmlFormat:
    """Read and write XML safely: DTDs are refused, entities never resolved, size bounded.

    unmarshal returns the root ``lxml`` element by default; with ``as_dict=True`` a dict
    ``{root_tag: content}``; with ``type=`` the root's content converted to that type
    (``"42"`` becomes ``42``). Dict rules: attributes are ``"@name"``, text beside children or
    attributes is ``"#text"``, a text-only element is its text (None if empty), repeated tags
    become lists; namespaces are stripped to local names unless ``strip_namespaces=False``
    (then tags are ``"{uri}local"``). Mixed content keeps its text but not its order.
    """

    name = "xml"
    __slots__ = (
        "_parser",
        "_shape",
        "as_dict",
        "max_bytes",
        "root",
        "strip_namespaces",
        "type",
    )

    def __init__(
        self,
        type: Any = None,
        *,
        as_dict: bool = False,
        root: str | None = None,
        strip_namespaces: bool = True,
        max_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        if max_bytes <= 0:
            raise RouteDefinitionError(f"xml(max_bytes=...) must be positive, got {max_bytes}")
        self.type = type
        self.as_dict = as_dict
        self.root = root
        self.strip_namespaces = strip_namespaces
        self.max_bytes = max_bytes
        # Read the target type once; per message only the XML-specific fixes run.
        self._shape = compile_shaper(mi.type_info(type)) if type is not None else None
        # One hardened parser, built once and reused (lxml serialises its use across threads).
        self._parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_blank_text=True,
        )

    def __repr__(self) -> str:
        args = [getattr(self.type, "__name__", repr(self.type))] if self.type is not None else []
        if self.as_dict:
            args.append("as_dict=True")
        if self.root is not None:
            args.append(f"root={self.root!r}")
        return f"xml({', '.join(args)})"

    # -- reading -------------------------------------------------------------------------

    def parse(self, data: Any) -> etree._Element:
        """Parse ``data`` with the hardened parser and return the root element."""
        raw = self._bytes(data)
        if has_doctype(raw):
            raise UnmarshalError("xml", "DTDs are not allowed", location="prolog")
        try:
            element: etree._Element = etree.fromstring(raw, self._parser)
        except etree.XMLSyntaxError as exc:
            line, column = exc.position
            reason = _LINE_COLUMN.sub("", exc.msg)
            raise UnmarshalError("xml", reason, location=f"line {line}, column {column}") from exc
        # The prolog scan cannot read every encoding (UTF-16, EBCDIC); the tree can.
        if element.getroottree().docinfo.doctype:  # type: ignore[attr-defined]
            raise UnmarshalError("xml", "DTDs are not allowed", location="prolog")
        if self.root is not None and _local(element.tag) != self.root:
            found = _local(element.tag)
            reason = f"expected root element '{self.root}', got '{found}'"
            raise UnmarshalError("xml", reason, location=f"/{found}")
        return element

    def unmarshal(self, data: Any) -> Any:
        """Parse XML from bytes or str into an element, a dict or ``type`` (see class doc)."""
        element = self.parse(data)
        if self._shape is None and not self.as_dict:
            return element
        tag = _local(element.tag) if self.strip_namespaces else element.tag
        content = _element_value(element, self.strip_namespaces)
        if self._shape is None:
            return {tag: content}
        shaped = self._shape(content)
        try:
            return msgspec.convert(shaped, self.type, strict=False)
        except msgspec.ValidationError as exc:
            reason, path = msgspec_reason(str(exc))
            location = xpath(_local(element.tag), path, shaped)
            raise UnmarshalError("xml", reason, location=location) from exc

    def _bytes(self, data: Any) -> bytes:
        if isinstance(data, str):
            if len(data) > self.max_bytes:
                raise self._too_large(len(data), "characters")
            # lxml refuses str with an encoding declaration; the text is already decoded.
            text = _XML_DECLARATION.sub("", data, count=1) if data.startswith("<?xml") else data
            try:
                return text.encode("utf-8")
            except UnicodeEncodeError as exc:
                reason = f"text is not valid Unicode (position {exc.start}): {exc.reason}"
                raise UnmarshalError("xml", reason) from exc
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UnmarshalError("xml", f"expected bytes or str, got {type(data).__name__}")
        if len(data) > self.max_bytes:
            raise self._too_large(len(data), "bytes")
        return data if isinstance(data, bytes) else bytes(data)

    def _too_large(self, size: int, unit: str) -> UnmarshalError:
        return UnmarshalError(
            "xml", f"document is {size} {unit}, over the limit of {self.max_bytes}"
        )

    # -- writing -------------------------------------------------------------------------

    def marshal(self, body: Any) -> bytes:
        """Write an element, a one-key dict ``{root: content}``, or (with ``root=``) a dict or
        Struct as UTF-8 XML with a declaration. Bytes pass through unchanged."""
        if isinstance(body, bytes):
            return body
        if isinstance(body, etree._Element | etree._ElementTree):
            return etree.tostring(body, encoding="utf-8", xml_declaration=True)
        try:
            data = msgspec.to_builtins(body)
        except (TypeError, ValueError) as exc:
            raise MarshalError("xml", encode_failure(exc, body, msgspec.to_builtins)) from exc
        tag, content = self._root_and_content(body, data)
        try:
            element = etree.Element(tag)
        except ValueError as exc:
            raise MarshalError("xml", f"/{tag}: {exc}") from exc
        _fill(element, content, f"/{tag}")
        return etree.tostring(element, encoding="utf-8", xml_declaration=True)

    def _root_and_content(self, body: Any, data: Any) -> tuple[str, Any]:
        if self.root is not None:
            if isinstance(data, dict) and len(data) == 1 and self.root in data:
                return self.root, data[self.root]
            return self.root, data
        if isinstance(data, dict) and len(data) == 1 and not isinstance(body, msgspec.Struct):
            key, content = next(iter(data.items()))
            if isinstance(content, list | tuple):
                reason = f"'{key}' holds a list, but an XML document has exactly one root element"
                raise MarshalError("xml", reason)
            if isinstance(key, str):
                return key, content
        reason = f"a body of type {type(body).__name__} needs xml(root=...) to name the root"
        if isinstance(body, dict):
            reason = "a dict body needs exactly one key (the root element) or xml(root=...)"
        raise MarshalError("xml", reason)
