"""Element codecs compiled once from zeep's schema model: zeep's data, without zeep's machinery.

zeep reads an element by walking its generic model per message (deques of children, QName
objects, CompoundValue construction, then ``serialize_object``) and writes one by building
CompoundValues from the data and rendering them: ~70% of the SOAP consumer's CPU. Here each
element declaration is compiled once into plain-Python readers and writers (Clark tags,
defaults, zeep's own simple-type converters bound) that mirror zeep's algorithms on zeep's
resolved model, so the data is the data zeep gives and the XML is the XML zeep writes.

Supported: complex types whose content is one ``xs:sequence`` or ``xs:all`` of elements
(any minOccurs/maxOccurs), named and anonymous, nested; what zeep resolves complexContent
extension/restriction into; attributes (defaults as zeep applies them); simple types, built-in
or restricted, converted by zeep's own ``pythonvalue``/``xmlvalue``. Not compiled (None: the
caller keeps zeep): choice, any, groups, repeated sequences, nillable elements, simpleContent,
lists and unions, SOAP-encoded arrays, a top-level element of simple type. At run time a
document zeep would treat specially (an ``xsi:type``, a comment among elements, zeep value
objects in the data) is handed to zeep whole, so even those come out as zeep has them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lxml import etree

from eip.components.soap._codec_parts import (
    _XSI_TYPE,
    _Converter,
    _dict,
    _Fallback,
    _Invalid,
    _SubElement,
    _Unsupported,
    _zeep,
)
from eip.components.soap.zeep_support import zeep_data_to_element, zeep_element_to_data
from eip.errors import MarshalError, UnmarshalError

__all__ = ["compile_reader", "compile_writer"]

log = logging.getLogger("eip.soap")


class _Field:
    """One child element of a sequence or all: how zeep matches, reads and writes it."""

    __slots__ = (
        *("complex", "convert", "default", "element", "key", "local", "many"),
        *("max", "min", "ns", "optional", "read", "schema", "tag", "write"),
    )

    def __init__(self, compiler: _Compiler, key: str, element: Any) -> None:
        z = _zeep()
        if type(element) is not z.Element:
            raise _Unsupported(f"{type(element).__name__} in a content model")
        if element.nillable:
            raise _Unsupported(f"nillable element {element.qname}")
        self.key, self.element, self.schema = key, element, compiler.schema
        self.tag, self.local = element.qname.text, element.qname.localname
        self.ns = element.qname.namespace or ""
        self.min, self.many = element.min_occurs, element.accepts_multiple
        self.max = None if element.max_occurs == "unbounded" else element.max_occurs
        self.optional = element.is_optional
        self.default = () if self.many else element.default_value
        is_complex = isinstance(element.type, z.ComplexType)
        self.complex = compiler.complex(element.type) if is_complex else None
        self.convert = None if is_complex else _Converter(element.type)
        #: ``read(child)`` and ``write(parent, value)``: functions made for this field's kind
        #: (complex, text, converted value), so each child costs one call.
        self.read: Callable[[etree._Element], Any] = self._reader()
        self.write: Callable[[etree._Element, Any], None] = (
            self._write_general if self.many or self.complex is not None else self._simple_writer()
        )

    def _reader(self) -> Callable[[etree._Element], Any]:
        """A child's value: zeep's for an ``xsi:type`` (it reads it as the type named there),
        the complex type's reading, the text, or the text converted as zeep does (a value it
        cannot convert, TypeError or ValueError, becomes None)."""
        schema, element, local, complex_ = self.schema, self.element, self.local, self.complex

        def zeep_read(child: etree._Element) -> Any:
            return zeep_element_to_data(schema, element, child, allow_none=True)

        if complex_ is not None:
            read_complex = complex_.read

            def read_nested(child: etree._Element) -> Any:
                if child.get(_XSI_TYPE) is not None:
                    return zeep_read(child)
                try:
                    return read_complex(child, True)
                except _Invalid as exc:
                    exc.path.append(local)
                    raise

            return read_nested
        assert self.convert is not None
        convert = self.convert.read
        if convert is None:

            def read_text(child: etree._Element) -> Any:
                if child.get(_XSI_TYPE) is not None:
                    return zeep_read(child)
                return child.text

            return read_text

        def read_value(child: etree._Element) -> Any:
            if child.get(_XSI_TYPE) is not None:
                return zeep_read(child)
            text = child.text
            if text is None:
                return None
            try:
                return convert(text)
            except (TypeError, ValueError):
                return None
            except Exception as exc:  # decimal.InvalidOperation escapes zeep itself
                raise _Invalid(f"cannot read {text!r}: {type(exc).__name__}", local) from exc

        return read_value

    def matches(self, tag: Any, may_skip: bool) -> bool:
        """zeep's Element.parse_xmlelements test for a child whose tag is not this one's:
        another namespace ends the element quietly, the same local name is accepted."""
        if type(tag) is not str:
            raise _Fallback  # a comment or PI: zeep fails on it in its own way
        ns, _, local = tag[1:].partition("}") if tag[0] == "{" else ("", "", tag)
        if ns and self.ns and ns != self.ns:
            return False
        if local == self.local:
            return True
        if may_skip:
            return False
        raise _Invalid(f"unexpected element {tag!r}, expected {self.tag!r}")

    def _simple_writer(self) -> Callable[[etree._Element, Any], None]:
        """:meth:`_write_general` for a single element of simple type, as one function."""
        tag, local, convert = self.tag, self.local, self.convert
        assert convert is not None
        exact, text, write_str = convert.exact, convert.text, convert.write_str

        def write_simple(parent: etree._Element, value: Any) -> None:
            if value is None:
                raise _Invalid("missing, and the element is required", local)
            node = _SubElement(parent, tag)
            if write_str and type(value) is str:  # a str is written as it is
                node.text = value
                return
            fast = exact.get(type(value))
            try:
                node.text = fast(value) if fast is not None else text(value)
            except _Invalid as exc:
                exc.path.append(local)
                raise

        return write_simple

    def _write_general(self, parent: etree._Element, value: Any) -> None:
        """zeep's Element.render: counts checked, then each item; None only where allowed."""
        if not (self.many and isinstance(value, list | tuple)):
            if value is None:
                raise _Invalid("missing, and the element is required", self.local)
            self._write_item(parent, value, self.local)
            return
        count = len(value)
        if count < self.min or (self.max is not None and count > self.max):
            bounds = f"{self.min}..{self.max if self.max is not None else 'unbounded'}"
            raise _Invalid(f"{count} items, the schema allows {bounds}", self.local)
        for index, item in enumerate(value):
            if item is None and self.complex is None:
                raise _Invalid("None in a list of values", f"{self.local}[{index}]")
        for index, item in enumerate(value):
            if item is not None:
                self._write_item(parent, item, f"{self.local}[{index}]")
            elif not self.optional:
                _SubElement(parent, self.tag)

    def _write_item(self, parent: etree._Element, value: Any, where: str) -> None:
        node = _SubElement(parent, self.tag)
        try:
            if self.complex is not None:
                self.complex.write(node, _dict(value))
            elif self.convert is not None:
                node.text = self.convert.text(value)
        except _Invalid as exc:
            exc.path.append(where)
            raise


class _Complex:
    """One complex type: its fields in order, its attributes, zeep's defaults."""

    __slots__ = ("attributes", "by_tag", "defaults", "empty", "fields", "is_all", "keys", "lists")

    def __init__(self, compiler: _Compiler, xsd_type: Any) -> None:
        compiler.types[id(xsd_type)] = (xsd_type, self)  # before the fields: types may recurse
        z, cls = _zeep(), type(xsd_type)
        self.fields: list[_Field] = []
        self.attributes: list[tuple[str, str, bool, Any, _Converter]] = []
        self.is_all = False
        if (
            cls.parse_xmlelement is not z.ComplexType.parse_xmlelement
            or cls.render is not z.ComplexType.render
            or cls.parse_kwargs is not z.ComplexType.parse_kwargs
            or xsd_type._array_type is not None
        ):
            raise _Unsupported(f"complex type {cls.__name__}")
        nested = xsd_type.elements_nested
        if len(nested) > 1:
            raise _Unsupported("several content models")
        if nested:
            model = nested[0][1]
            if type(model) is z.All and not model._consume_other:
                self.is_all = True
            elif type(model) is not z.Sequence:
                raise _Unsupported(f"{type(model).__name__} content")
            if model.max_occurs != 1:
                raise _Unsupported("a repeated sequence")
            for key, element in model.elements_nested:
                if key is None:
                    raise _Unsupported("a nested sequence")
                self.fields.append(_Field(compiler, key, element))
        for key, attribute in xsd_type.attributes:
            if type(attribute) is not z.Attribute or attribute.array_type is not None:
                raise _Unsupported(f"attribute {key}")
            name, default = attribute.qname.text, attribute.default_value
            convert = _Converter(attribute.type)
            self.attributes.append((key, name, attribute.required, default, convert))
        self.by_tag = {field.tag: field for field in self.fields}
        if self.is_all and len(self.by_tag) != len(self.fields):
            raise _Unsupported("an xs:all naming one element twice")
        self.defaults: dict[str, Any] = {f.key: [] if f.many else f.default for f in self.fields}
        self.defaults.update((key, default) for key, _, _, default, _ in self.attributes)
        self.lists = [field.key for field in self.fields if field.many]
        self.keys = frozenset(self.defaults)
        self.empty = not xsd_type.attributes and not xsd_type.elements

    def read(self, node: etree._Element, allow_none: bool) -> dict[str, Any] | None:
        """zeep's ComplexType.parse_xmlelement and serialize_object in one pass."""
        if self.empty:
            return None
        children = list(node)
        if allow_none and not children and not node.attrib:
            return None
        values = self.defaults.copy()
        for key in self.lists:
            values[key] = []
        if self.is_all:
            self._read_all(children, values)
        else:
            self._read_sequence(children, values)
        if self.attributes:
            attrib = node.attrib
            if attrib:
                for key, name, _, _, convert in self.attributes:
                    text = attrib.get(name)
                    if text is not None:
                        values[key] = convert.parse(text)
        return values

    def _read_sequence(self, children: list[etree._Element], values: dict[str, Any]) -> None:
        count, index = len(children), 0
        for field in self.fields:
            if index >= count:
                break  # zeep stops here: later elements keep their defaults
            if field.many:
                items: list[Any] = []
                limit = field.max
                while index < count and (limit is None or len(items) < limit):
                    child = children[index]
                    may_skip = field.optional or bool(items)
                    if child.tag != field.tag and not field.matches(child.tag, may_skip):
                        break
                    items.append(field.read(child))
                    index += 1
                values[field.key] = items
                continue
            child = children[index]
            if child.tag == field.tag or field.matches(child.tag, field.optional):
                values[field.key] = field.read(child)
                index += 1
            else:
                values[field.key] = None
        if index < count:
            tag = children[index].tag
            if type(tag) is not str:
                raise _Fallback
            raise _Invalid(f"unexpected element {tag!r}")

    def _read_all(self, children: list[etree._Element], values: dict[str, Any]) -> None:
        found: dict[str, list[etree._Element]] = {}
        stray = None
        for child in children:
            tag = child.tag
            if type(tag) is not str:
                raise _Fallback
            if tag in self.by_tag:
                found.setdefault(tag, []).append(child)
            elif stray is None:
                stray = tag
        for field in self.fields:
            nodes = found.get(field.tag)
            if nodes:
                if field.many:
                    values[field.key] = [field.read(n) for n in nodes[: field.max]]
                else:
                    values[field.key] = field.read(nodes[0])
        if stray is not None:
            raise _Invalid(f"unexpected element {stray!r}")

    def write(self, node: etree._Element, value: dict[str, Any]) -> None:
        """zeep's CompoundValue construction (unknown keys refused, defaults filled in) and
        ComplexType.render: attributes, then the elements in schema order."""
        keys = self.keys
        for key in value:
            if key not in keys:
                if key == "_raw_elements":
                    raise _Fallback
                raise _Invalid(f"unexpected key {key!r} (expected: {', '.join(self.defaults)})")
        for key, name, required, default, convert in self.attributes:
            item = value.get(key, default)
            if item is not None:
                node.set(name, convert.text(item))
            elif required:
                raise _Invalid("missing, and the attribute is required", f"@{key}")
        for field in self.fields:
            item = value.get(field.key, field.default)
            if item is not None or not field.optional:
                field.write(node, item)


class _Compiler:
    """Compiles each complex type once (named types are shared, recursion is allowed)."""

    def __init__(self, client: Any) -> None:
        self.schema = client.wsdl.types
        settings = self.schema.settings
        if not settings.strict or settings.xsd_ignore_sequence_order:
            raise _Unsupported("zeep's lenient parsing settings")
        self.types: dict[int, tuple[Any, _Complex]] = {}

    def complex(self, xsd_type: Any) -> _Complex:
        known = self.types.get(id(xsd_type))
        return known[1] if known is not None else _Complex(self, xsd_type)

    def root(self, element: Any) -> _Complex:
        z = _zeep()
        if type(element) is not z.Element or not isinstance(element.type, z.ComplexType):
            raise _Unsupported("a top-level element of simple type")
        return self.complex(element.type)


def _compile(client: Any, qname: str) -> tuple[Any, _Complex] | None:
    element = client.get_element(qname)  # an unknown element is zeep's LookupError, as ever
    try:
        return element, _Compiler(client).root(element)
    except _Unsupported as exc:
        log.debug("soap: %s is read and written by zeep: %s", qname, exc)
    except Exception:  # a model this compiler misjudged: zeep still does the job, say so
        log.warning("soap: %s cannot be compiled, zeep reads and writes it", qname, exc_info=True)
    return None


def compile_reader(client: Any, qname: str) -> Callable[[etree._Element], Any] | None:
    """A reader giving exactly ``to_data(element.parse(node, schema))`` for the element
    ``qname`` (Clark notation), or None when its type uses what this module does not mirror."""
    compiled = _compile(client, qname)
    if compiled is None:
        return None
    element, root = compiled
    schema, name = client.wsdl.types, element.qname.localname

    def read(node: etree._Element) -> Any:
        try:
            if node.get(_XSI_TYPE) is not None:
                raise _Fallback
            return root.read(node, allow_none=False)
        except _Fallback:
            return zeep_element_to_data(schema, element, node)
        except _Invalid as exc:
            exc.path.append(name)
            raise UnmarshalError("soap", exc.message, location=exc.where()) from None

    return read


def compile_writer(client: Any, qname: str) -> Callable[[Any], etree._Element] | None:
    """A writer giving the XML of zeep's ``element.render(holder, element(**data))`` for the
    element ``qname`` (data: a dict, a Struct or None), or None where zeep keeps the job."""
    compiled = _compile(client, qname)
    if compiled is None:
        return None
    element, root = compiled
    tag, name = element.qname.text, element.qname.localname

    def write(data: Any) -> etree._Element:
        holder = etree.Element("holder")
        node = _SubElement(holder, tag)
        try:
            root.write(node, {} if data is None else data if type(data) is dict else _dict(data))
        except _Fallback:
            return zeep_data_to_element(element, data)
        except _Invalid as exc:
            exc.path.append(name)
            raise MarshalError("soap", f"{exc.where()}: {exc.message}") from None
        return node

    return write
