"""XML data format: hardening against XXE / entity expansion, dict rules, typed conversion."""

from __future__ import annotations

import time

import msgspec
import pytest
from lxml import etree

from eip.dataformats import DataFormat, XmlFormat, xml
from eip.errors import MarshalError, RouteDefinitionError, UnmarshalError

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE customer [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
<customer><name>&xxe;</name></customer>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

ORDER = b"""<?xml version="1.0" encoding="UTF-8"?>
<order id="7" xmlns="urn:shop" xmlns:x="urn:extra">
  <!-- a comment is ignored -->
  <customer>
    <name lang="en">Ann</name>
    <address><zip>75001</zip><city>Paris</city></address>
  </customer>
  <items>
    <item><sku>A-1</sku><qty>2</qty></item>
    <item><sku>B-2</sku><qty>1</qty></item>
  </items>
  <x:note/>
</order>"""


class Address(msgspec.Struct):
    zip: int
    city: str


class Customer(msgspec.Struct):
    name: str
    address: Address


class Item(msgspec.Struct):
    sku: str
    qty: int


class Order(msgspec.Struct):
    id: int
    customer: Customer
    items: list[Item]
    note: str | None = None
    tags: list[str] = []


def unmarshal_error(fmt: XmlFormat, data: object) -> UnmarshalError:
    with pytest.raises(UnmarshalError) as info:
        fmt.unmarshal(data)
    return info.value


# -- hardening ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [xml(), xml(as_dict=True), xml(Order)])
def test_xxe_payload_is_rejected(fmt: XmlFormat) -> None:
    err = unmarshal_error(fmt, XXE)
    assert err.reason == "DTDs are not allowed"
    assert str(err) == "invalid xml input: prolog: DTDs are not allowed"


def test_billion_laughs_is_rejected_quickly() -> None:
    started = time.perf_counter()
    err = unmarshal_error(xml(as_dict=True), BILLION_LAUGHS)
    assert err.reason == "DTDs are not allowed"
    assert time.perf_counter() - started < 0.5


def test_doctype_after_comments_and_processing_instructions_is_rejected() -> None:
    data = b'<?xml version="1.0"?>\n<!-- hi --><?style x?>\n<!DOCTYPE a SYSTEM "http://evil/a.dtd"><a/>'
    assert unmarshal_error(xml(), data).reason == "DTDs are not allowed"


def test_the_prolog_scan_sees_a_doctype_right_after_a_comment() -> None:
    # Refused by the byte scan, before lxml parses anything (not only by the docinfo check).
    from eip.dataformats._prolog import has_doctype

    assert has_doctype(b"<!-- c --><!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>")
    assert has_doctype(b"<?xml version='1.0'?><!--c--><!DOCTYPE a><a/>")
    assert not has_doctype(b"<!-- c --><a>&lt;!DOCTYPE</a>")


def test_doctype_in_utf16_document_is_rejected_after_parse() -> None:
    # The prolog scan reads bytes; a UTF-16 DOCTYPE is caught by the parsed tree's docinfo.
    data = XXE.decode().replace('"1.0"', '"1.0" encoding="UTF-16"').encode("utf-16")
    assert unmarshal_error(xml(), data).reason == "DTDs are not allowed"
    assert unmarshal_error(xml(), XXE.decode()).reason == "DTDs are not allowed"


def test_doctype_text_inside_cdata_is_fine() -> None:
    root = xml().unmarshal(b"<page><![CDATA[<!DOCTYPE html><html/>]]></page>")
    assert root.text == "<!DOCTYPE html><html/>"


def test_undeclared_entity_is_a_syntax_error() -> None:
    err = unmarshal_error(xml(), b"<a>&xxe;</a>")
    assert err.reason == "Entity 'xxe' not defined"
    assert err.location == "line 1, column 9"


def test_input_over_max_bytes_is_rejected() -> None:
    fmt = xml(max_bytes=64)
    err = unmarshal_error(fmt, b"<a>" + b"x" * 100 + b"</a>")
    assert err.reason == "document is 107 bytes, over the limit of 64"
    assert unmarshal_error(fmt, "<a>" + "x" * 100 + "</a>").reason.endswith("limit of 64")
    assert fmt.unmarshal(b"<a>small</a>").text == "small"


def test_excessive_depth_is_refused_by_the_parser() -> None:
    err = unmarshal_error(xml(as_dict=True), b"<a>" * 300 + b"</a>" * 300)
    assert err.reason.startswith("Excessive depth in document: 256")


def test_bad_max_bytes_fails_at_definition() -> None:
    with pytest.raises(RouteDefinitionError, match="must be positive"):
        xml(max_bytes=0)


# -- parsing -----------------------------------------------------------------------------


def test_default_unmarshal_returns_root_element() -> None:
    fmt = xml()
    assert isinstance(fmt, DataFormat)
    assert fmt.name == "xml"
    root = fmt.unmarshal(ORDER)
    assert isinstance(root, etree._Element)
    assert root.tag == "{urn:shop}order"
    assert root.get("id") == "7"


def test_unmarshal_accepts_str_with_encoding_declaration_and_buffers() -> None:
    text = "<?xml version='1.0' encoding='ISO-8859-1'?><a>café</a>"
    assert xml(as_dict=True).unmarshal(text) == {"a": "café"}
    raw = "<a>café</a>".encode()
    assert xml(as_dict=True).unmarshal(bytearray(raw)) == {"a": "café"}
    assert xml(as_dict=True).unmarshal(memoryview(raw)) == {"a": "café"}


def test_syntax_error_gives_line_and_column() -> None:
    err = unmarshal_error(xml(), b"<order>\n  <id>1</id>\n  <name>x</nam>\n</order>")
    assert err.location == "line 3, column 16"
    assert err.reason == "Opening and ending tag mismatch: name line 3 and nam"
    assert isinstance(err.__cause__, etree.XMLSyntaxError)


def test_empty_and_wrong_type_input() -> None:
    assert unmarshal_error(xml(), b"").reason == "Document is empty"
    assert unmarshal_error(xml(), 12).reason == "expected bytes or str, got int"


def test_root_option_checks_the_root_element() -> None:
    err = unmarshal_error(xml(root="invoice"), ORDER)
    assert err.location == "/order"
    assert err.reason == "expected root element 'invoice', got 'order'"


def test_as_dict_rules() -> None:
    assert xml(as_dict=True).unmarshal(ORDER) == {
        "order": {
            "@id": "7",
            "customer": {
                "name": {"@lang": "en", "#text": "Ann"},
                "address": {"zip": "75001", "city": "Paris"},
            },
            "items": {"item": [{"sku": "A-1", "qty": "2"}, {"sku": "B-2", "qty": "1"}]},
            "note": None,
        }
    }


def test_as_dict_keeps_namespaces_when_asked() -> None:
    data = b'<a xmlns="urn:a" xmlns:b="urn:b" b:flag="1"><b:c>x</b:c></a>'
    assert xml(as_dict=True, strip_namespaces=False).unmarshal(data) == {
        "{urn:a}a": {"@{urn:b}flag": "1", "{urn:b}c": "x"}
    }
    assert xml(as_dict=True).unmarshal(data) == {"a": {"@flag": "1", "c": "x"}}


def test_as_dict_mixed_content_keeps_text() -> None:
    data = b"<p>Hello <b>big</b> world</p>"
    assert xml(as_dict=True).unmarshal(data) == {"p": {"b": "big", "#text": "Hello  world"}}


# -- typed -------------------------------------------------------------------------------


def test_typed_unmarshal_converts_strings_lists_attributes_and_wrappers() -> None:
    order = xml(Order).unmarshal(ORDER)
    assert order == Order(
        id=7,
        customer=Customer(name="Ann", address=Address(zip=75001, city="Paris")),
        items=[Item("A-1", 2), Item("B-2", 1)],
        note=None,
    )


def test_typed_single_repeated_element_becomes_a_list() -> None:
    data = b"""<order id="1"><customer><name>A</name><address><zip>1</zip><city>c</city>
      </address></customer><items><item><sku>S</sku><qty>3</qty></item></items>
      <tags>red</tags></order>"""
    order = xml(Order).unmarshal(data)
    assert order.items == [Item("S", 3)]
    assert order.tags == ["red"]


def test_typed_list_without_wrapper_element() -> None:
    class Basket(msgspec.Struct):
        item: list[Item]

    data = (
        b"<basket><item><sku>A</sku><qty>1</qty></item>"
        b"<item><sku>B</sku><qty>2</qty></item></basket>"
    )
    assert xml(Basket).unmarshal(data) == Basket([Item("A", 1), Item("B", 2)])
    one = b"<basket><item><sku>A</sku><qty>1</qty></item></basket>"
    assert xml(Basket).unmarshal(one) == Basket([Item("A", 1)])


def test_typed_conversion_error_names_element_path() -> None:
    data = ORDER.replace(b"<zip>75001</zip>", b"<zip>seventy</zip>")
    err = unmarshal_error(xml(Order), data)
    assert err.location == "/order/customer/address/zip"
    assert err.reason == "expected int, got str"
    assert str(err) == "invalid xml input: /order/customer/address/zip: expected int, got str"


def test_typed_conversion_error_inside_wrapped_list_uses_xpath_index() -> None:
    data = ORDER.replace(b"<qty>1</qty>", b"<qty>one</qty>")
    err = unmarshal_error(xml(Order), data)
    assert err.location == "/order/items/item[2]/qty"


def test_typed_conversion_error_on_attribute() -> None:
    err = unmarshal_error(xml(Order), ORDER.replace(b'id="7"', b'id="seven"'))
    assert err.location == "/order/@id"
    assert err.reason == "expected int, got str"


def test_typed_missing_element() -> None:
    err = unmarshal_error(xml(Order), ORDER.replace(b"<city>Paris</city>", b""))
    assert err.location == "/order/customer/address"
    assert err.reason == "missing required field 'city'"


def test_typed_with_non_struct_type() -> None:
    assert xml(dict[str, int]).unmarshal(b"<totals><a>1</a><b>2</b></totals>") == {"a": 1, "b": 2}
    assert xml(int).unmarshal(b"<count>42</count>") == 42


# -- writing -----------------------------------------------------------------------------


def test_marshal_element() -> None:
    root = etree.fromstring(b'<a x="1"><b>t</b></a>')
    assert xml().marshal(root) == b"<?xml version='1.0' encoding='utf-8'?>\n<a x=\"1\"><b>t</b></a>"


def test_marshal_dict_rules() -> None:
    body = {"a": {"@id": 1, "@skip": None, "#text": True, "b": [None, 1.5, {"c": "x"}], "d": False}}
    assert xml().marshal(body) == (
        b"<?xml version='1.0' encoding='utf-8'?>\n"
        b'<a id="1">true<b/><b>1.5</b><b><c>x</c></b><d>false</d></a>'
    )


def test_as_dict_round_trip() -> None:
    fmt = xml(as_dict=True)
    data = fmt.unmarshal(ORDER)
    assert fmt.unmarshal(fmt.marshal(data)) == data


def test_struct_round_trip_with_root() -> None:
    fmt = xml(Order, root="order")
    order = fmt.unmarshal(ORDER)
    written = fmt.marshal(order)
    assert written.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<order><id>7</id>")
    assert fmt.unmarshal(written) == order


def test_marshal_with_root_accepts_content_or_full_document() -> None:
    fmt = xml(root="ping")
    assert fmt.marshal({"n": 1}) == fmt.marshal({"ping": {"n": 1}})


def test_marshal_passes_bytes_through() -> None:
    data = b"<a/>"
    assert xml().marshal(data) is data


def test_marshal_element_tree_and_unsupported_values() -> None:
    tree = etree.ElementTree(etree.fromstring(b"<a/>"))
    assert xml().marshal(tree) == b"<?xml version='1.0' encoding='utf-8'?>\n<a/>"

    class Widget:
        pass

    with pytest.raises(MarshalError) as info:
        xml(root="r").marshal({"a": [1, Widget()]})
    assert info.value.reason == "cannot encode value of type 'Widget' at $.a[1]"


def test_marshal_struct_without_root_is_an_error() -> None:
    with pytest.raises(MarshalError) as info:
        xml().marshal(Item("A", 1))
    assert info.value.reason == "a body of type Item needs xml(root=...) to name the root"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"a": 1, "b": 2}, "a dict body needs exactly one key (the root element) or xml(root=...)"),
        ({"a": [1, 2]}, "'a' holds a list, but an XML document has exactly one root element"),
        ({"a": {"first name": "x"}}, "/a/first name: Invalid tag name 'first name'"),
        ({"a": {"@x": {"y": 1}}}, "/a/@x: cannot write a dict as XML text"),
        (
            {"a": {"b": [[1]]}},
            "/a/b[1]: a list must be the value of a named key (one element per item)",
        ),
        (
            {"a": {"b": "bell\x07"}},
            "/a/b: All strings must be XML compatible: Unicode or ASCII, "
            "no NULL bytes or control characters",
        ),
        ({"1a": "x"}, "/1a: Invalid tag name '1a'"),
    ],
)
def test_marshal_errors_name_the_path(body: object, reason: str) -> None:
    with pytest.raises(MarshalError) as info:
        xml().marshal(body)
    assert info.value.reason == reason
    assert info.value.format == "xml"


def test_repr() -> None:
    assert repr(xml(Order, root="order")) == "xml(Order, root='order')"
    assert repr(xml(as_dict=True)) == "xml(as_dict=True)"
