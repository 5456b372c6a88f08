"""The compiled element codecs against zeep itself: for the CRM/ERP WSDL's elements (and a few
more shapes), the compiled reader gives exactly zeep's data and the compiled writer zeep's XML;
bad data fails with a MarshalError naming the element; what is not compiled stays zeep's."""

from __future__ import annotations

import datetime
import random
from collections import OrderedDict
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zeep.exceptions
from lxml import etree

from eip import Context, RouteBuilder
from eip.components.soap import soap_client, soap_server
from eip.components.soap.codec import compile_reader, compile_writer
from eip.components.soap.zeep_support import (
    data_to_element,
    element_to_data,
    load_client_sync,
    zeep_data_to_element,
    zeep_element_to_data,
)
from eip.errors import MarshalError, UnmarshalError

WSDL = Path(__file__).parent / "wsdl" / "crm_erp.wsdl"
CUST = "http://erp.example.com/schemas/customer"
CMN = "http://erp.example.com/schemas/common"
PAY = "http://erp.example.com/schemas/payment"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ELEMENTS = [
    "UpsertCustomer",
    "UpsertCustomerResponse",
    "CustomerFault",
    "CheckCredit",
    "CheckCreditResponse",
    "NotifyPayment",
]


@pytest.fixture(scope="module")
def client() -> Any:
    return load_client_sync(str(WSDL), 10)


def q(name: str, ns: str = CUST) -> str:
    return f"{{{ns}}}{name}"


def typed(value: Any) -> Any:
    """Data with every type and the key order made visible: Decimal("1.50") is not 1.5."""
    if isinstance(value, dict):
        return [(key, typed(item)) for key, item in value.items()]
    if isinstance(value, list):
        return ["list", *(typed(item) for item in value)]
    return (type(value).__name__, value)


def tree(node: etree._Element) -> Any:
    """An element as tag, text, attributes and children: prefixes do not count."""
    return (node.tag, node.text, sorted(node.attrib.items()), [tree(child) for child in node])


def zeep_read(client: Any, qname: str, node: etree._Element) -> Any:
    return zeep_element_to_data(client.wsdl.types, client.get_element(qname), node)


def zeep_write(client: Any, qname: str, data: Any) -> etree._Element:
    return zeep_data_to_element(client.get_element(qname), data)


def assert_reads_as_zeep(client: Any, qname: str, xml: str | etree._Element) -> Any:
    node = etree.fromstring(xml) if isinstance(xml, str) else xml
    reader = compile_reader(client, qname)
    assert reader is not None
    expected = zeep_read(client, qname, node)
    assert typed(reader(node)) == typed(expected)
    return expected


def assert_writes_as_zeep(client: Any, qname: str, data: Any) -> etree._Element:
    writer, reader = compile_writer(client, qname), compile_reader(client, qname)
    assert writer is not None
    assert reader is not None
    written, expected = writer(data), zeep_write(client, qname, data)
    assert tree(written) == tree(expected)
    assert written.getparent() is not None  # like zeep's, it comes out of a holder
    # ...and it reads back (compiled or zeep) to what zeep reads from zeep's own XML
    assert typed(reader(written)) == typed(zeep_read(client, qname, expected))
    return written


def test_every_element_of_the_crm_wsdl_compiles(client: Any) -> None:
    for name in ELEMENTS:
        assert compile_reader(client, q(name)) is not None, name
        assert compile_writer(client, q(name)) is not None, name


# -- reading -------------------------------------------------------------------------------

ADDRESS = (
    "<c:address{kind}><m:street>1 Rue</m:street><m:city>Paris</m:city>{postal}"
    "<m:country>FR</m:country></c:address>"
)


def upsert_xml(customer: str = "", correlation: str = "") -> str:
    root = f'c:UpsertCustomer xmlns:c="{CUST}" xmlns:m="{CMN}"'
    return f"<{root}>{customer}{correlation}</c:UpsertCustomer>"


def customer_xml(*fields: str, addresses: list[str] | None = None) -> str:
    body = "".join(fields)
    if addresses is not None:
        body += f"<c:addresses>{''.join(addresses)}</c:addresses>"
    return f"<c:customer>{body}</c:customer>"


REQUIRED = (
    "<c:id>C000001</c:id>",
    "<c:name>ACME</c:name>",
    "<c:status>ACTIVE</c:status>",
    "<c:customerSince>2020-02-03</c:customerSince>",
)
ONE_ADDRESS = [ADDRESS.format(kind="", postal="")]

HAND_WRITTEN = {
    "empty root": upsert_xml(),
    "empty customer": upsert_xml("<c:customer/>"),
    "required only": upsert_xml(customer_xml(*REQUIRED, addresses=ONE_ADDRESS)),
    "every optional": upsert_xml(
        customer_xml(
            *REQUIRED,
            "<c:email>a@b.c</c:email><c:employees> 12 </c:employees>",
            "<c:creditLimit>2500.50</c:creditLimit>",
            addresses=[
                ADDRESS.format(
                    kind=' kind="SHIPPING"', postal="<m:postalCode>75001</m:postalCode>"
                ),
                ADDRESS.format(kind=' kind="BILLING"', postal=""),
                ADDRESS.format(kind="", postal="<m:postalCode/>"),
            ],
        ),
        "<c:correlationId>abc-1</c:correlationId>",
    ),
    "trailing required missing": upsert_xml(customer_xml("<c:id>C000001</c:id>")),
    "empty list holder": upsert_xml(customer_xml(*REQUIRED, addresses=[])),
    "unqualified children": upsert_xml(
        "<customer><id>C000001</id><name>n</name><status>ACTIVE</status></customer>"
    ),
    "lenient values": upsert_xml(
        customer_xml(*REQUIRED[:3], "<c:customerSince>2020-02-03Z</c:customerSince>").replace(
            "</c:customer>", "<c:employees>many</c:employees></c:customer>"
        )
    ),
    "empty texts": upsert_xml(customer_xml("<c:id/>", "<c:name></c:name>")),
    "foreign attribute only": upsert_xml('<c:customer c:x="1"/>'),
}


@pytest.mark.parametrize("xml", HAND_WRITTEN.values(), ids=HAND_WRITTEN.keys())
def test_reads_hand_written_documents_as_zeep(client: Any, xml: str) -> None:
    data = assert_reads_as_zeep(client, q("UpsertCustomer"), xml)
    assert set(data) == {"customer", "correlationId"}


def test_reads_payments_decimals_dates_and_repeated_values_as_zeep(client: Any) -> None:
    for invoices in ([], ["I1"], ["I1", "I2", "I3"]):
        numbers = "".join(f"<p:invoiceNumber>{n}</p:invoiceNumber>" for n in invoices)
        xml = (
            f'<c:NotifyPayment xmlns:c="{CUST}" xmlns:p="{PAY}">'
            "<c:customerId>C000002</c:customerId>"
            "<c:payment><p:paymentId>P-9</p:paymentId><p:paidOn>2024-02-29</p:paidOn>"
            "<p:amount> 1250.50 </p:amount><p:currency>EUR</p:currency><p:method>CARD</p:method>"
            f"{numbers}</c:payment></c:NotifyPayment>"
        )
        data = assert_reads_as_zeep(client, q("NotifyPayment"), xml)
        assert data["payment"]["invoiceNumber"] == invoices
        assert data["payment"]["amount"] == Decimal("1250.50")
        assert data["payment"]["paidOn"] == datetime.date(2024, 2, 29)


@pytest.mark.parametrize(
    ("name", "children"),
    [
        ("CheckCredit", "<c:customerId>C000001</c:customerId><c:amount>125.00</c:amount>"),
        ("CheckCreditResponse", "<c:approved> 1 </c:approved><c:limit>1E+3</c:limit>"),
        ("CheckCreditResponse", "<c:approved>false</c:approved><c:limit>0</c:limit><c:reason/>"),
        ("UpsertCustomerResponse", "<c:customerId>C1</c:customerId><c:created>true</c:created>"),
        (
            "UpsertCustomerResponse",
            "<c:customerId/><c:created>0</c:created><c:version>x</c:version>",
        ),
        ("CustomerFault", "<c:code>LOCKED</c:code><c:message>busy</c:message>"),
    ],
)
def test_reads_the_other_elements_as_zeep(client: Any, name: str, children: str) -> None:
    xml = f'<c:{name} xmlns:c="{CUST}">{children}</c:{name}>'
    assert isinstance(assert_reads_as_zeep(client, q(name), xml), dict)


def random_upsert(rng: random.Random) -> str:
    def maybe(xml: str) -> str:
        return xml if rng.random() < 0.5 else ""

    ints, decimals = ["7", " 12 ", "+3", "-1", "x"], ["100", "100.50", " 3.1 ", "1E+2", "0.00"]
    dates = ["2020-02-03", "1999-12-31", "2024-02-29Z", "2021-06-01+02:00"]
    addresses = [
        ADDRESS.format(
            kind=rng.choice(["", ' kind="SHIPPING"', ' kind="BILLING"']),
            postal=maybe(f"<m:postalCode>{rng.randrange(10000, 99999)}</m:postalCode>"),
        )
        for _ in range(rng.choice([1, 1, 2, 3]))
    ]
    customer = customer_xml(
        f"<c:id>C{rng.randrange(10**6):06d}</c:id>",
        "<c:name>ACME &amp; Sons</c:name>",
        f"<c:status>{rng.choice(['ACTIVE', 'SUSPENDED', 'CLOSED'])}</c:status>",
        f"<c:customerSince>{rng.choice(dates)}</c:customerSince>",
        maybe("<c:email>ops@acme.example</c:email>"),
        maybe(f"<c:employees>{rng.choice(ints)}</c:employees>"),
        maybe(f"<c:creditLimit>{rng.choice(decimals)}</c:creditLimit>"),
        addresses=addresses,
    )
    return upsert_xml(customer, maybe(f"<c:correlationId>r-{rng.random()}</c:correlationId>"))


def test_reads_generated_documents_as_zeep(client: Any) -> None:
    rng = random.Random(20240229)
    documents = [random_upsert(rng) for _ in range(150)]
    counts = set()
    for xml in documents:
        data = assert_reads_as_zeep(client, q("UpsertCustomer"), xml)
        counts.add(len(data["customer"]["addresses"]["address"]))
    assert counts == {1, 2, 3}


def test_an_xsi_type_child_and_comments_are_left_to_zeep(client: Any) -> None:
    reader = compile_reader(client, q("CheckCreditResponse"))
    assert reader is not None
    typed_child = etree.fromstring(
        f'<c:CheckCreditResponse xmlns:c="{CUST}" xmlns:xsi="{XSI}" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema"><c:approved>true</c:approved>'
        '<c:limit xsi:type="xs:int">17</c:limit></c:CheckCreditResponse>'
    )
    assert reader(typed_child) == zeep_read(client, q("CheckCreditResponse"), typed_child)
    assert reader(typed_child)["limit"] == 17  # read as the xs:int it says it is, as zeep does
    commented = etree.fromstring(upsert_xml("<!-- note --><c:customer/>"))
    with pytest.raises(ValueError, match="Invalid tag name") as zeeps:
        zeep_read(client, q("UpsertCustomer"), commented)
    with pytest.raises(ValueError, match="Invalid tag name") as compiled:
        element_to_data(client, q("UpsertCustomer"), commented)
    assert str(compiled.value) == str(zeeps.value)


@pytest.mark.parametrize(
    ("xml", "location", "reason"),
    [
        (
            upsert_xml(customer_xml("<c:id>C1</c:id>", addresses=[])),
            "UpsertCustomer.customer",
            f"unexpected element '{{{CUST}}}addresses', expected '{{{CUST}}}name'",
        ),
        (
            upsert_xml("<c:correlationId>x</c:correlationId><c:other/>"),
            "UpsertCustomer",
            f"unexpected element '{{{CUST}}}correlationId', expected '{{{CUST}}}customer'",
        ),
        (
            upsert_xml('<x:customer xmlns:x="urn:x"/>'),
            "UpsertCustomer",
            "unexpected element '{urn:x}customer'",
        ),
    ],
)
def test_unreadable_documents_raise_unmarshal_errors_where_zeep_raises(
    client: Any, xml: str, location: str, reason: str
) -> None:
    node = etree.fromstring(xml)
    with pytest.raises(zeep.exceptions.XMLParseError):
        zeep_read(client, q("UpsertCustomer"), node)
    with pytest.raises(UnmarshalError) as error:
        element_to_data(client, q("UpsertCustomer"), node)
    assert (error.value.location, error.value.reason) == (location, reason)


def test_a_value_zeep_cannot_even_convert_is_an_unmarshal_error(client: Any) -> None:
    node = etree.fromstring(
        f'<c:CheckCreditResponse xmlns:c="{CUST}"><c:approved>1</c:approved>'
        "<c:limit>lots</c:limit></c:CheckCreditResponse>"
    )
    with pytest.raises(ArithmeticError):  # decimal.InvalidOperation escapes zeep
        zeep_read(client, q("CheckCreditResponse"), node)
    with pytest.raises(UnmarshalError, match="cannot read 'lots'") as error:
        element_to_data(client, q("CheckCreditResponse"), node)
    assert error.value.location == "CheckCreditResponse.limit"


# -- writing -------------------------------------------------------------------------------


def address(**extra: Any) -> dict[str, Any]:
    return {"street": "1 Rue", "city": "Paris", "country": "FR", **extra}


def customer(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "C000001",
        "name": "ACME <&> Sons",
        "status": "ACTIVE",
        "customerSince": datetime.date(2020, 2, 3),
        "addresses": {"address": [address()]},
    }
    return {**base, **extra}


class Credit(msgspec.Struct):
    customerId: str
    amount: Decimal
    currency: str | None = None


WRITES = {
    "required only": ("UpsertCustomer", {"customer": customer()}),
    "every optional": (
        "UpsertCustomer",
        {
            "customer": customer(
                email="",
                employees=12,
                creditLimit=Decimal("2500.50"),
                addresses={
                    "address": [
                        address(kind="SHIPPING", postalCode="75001"),
                        address(kind=None),
                        address(postalCode=None),
                    ]
                },
            ),
            "correlationId": "abc-1",
        },
    ),
    "optional None": ("UpsertCustomer", {"customer": customer(email=None), "correlationId": None}),
    "a single address as a dict": (
        "UpsertCustomer",
        {"customer": customer(addresses={"address": address(kind="BILLING")})},
    ),
    "a tuple of addresses": (
        "UpsertCustomer",
        {"customer": customer(addresses={"address": (address(), address())})},
    ),
    "None among addresses": (
        "UpsertCustomer",
        {"customer": customer(addresses={"address": [address(), None]})},
    ),
    "an OrderedDict": ("UpsertCustomer", OrderedDict(customer=OrderedDict(customer()))),
    "a Struct": ("CheckCredit", Credit("C000001", Decimal("1E+3"))),
    "float and str values": (
        "CheckCredit",
        {"customerId": "C1", "amount": 3.25, "currency": "EUR"},
    ),
    "booleans as zeep writes them": ("CheckCreditResponse", {"approved": "false", "limit": 0}),
    "int version": (
        "UpsertCustomerResponse",
        {"customerId": "C000001", "created": True, "version": 3},
    ),
    "CDATA is zeep's": (
        "CheckCreditResponse",
        {"approved": 1, "limit": 1, "reason": etree.CDATA("<ok>")},
    ),
    "fault": ("CustomerFault", {"code": "DUPLICATE", "message": "exists", "field": "id"}),
}


@pytest.mark.parametrize(("name", "data"), WRITES.values(), ids=WRITES.keys())
def test_writes_as_zeep(client: Any, name: str, data: Any) -> None:
    written = assert_writes_as_zeep(client, q(name), data)
    assert written.tag == q(name)


PAYMENT = {
    "paymentId": "P-9",
    "paidOn": datetime.date(2024, 2, 29),
    "amount": Decimal("1250.50"),
    "currency": "EUR",
    "method": "BANK_TRANSFER",
}


def test_writes_payments_with_zero_one_and_three_invoices_as_zeep(client: Any) -> None:
    for invoices in ([], ["I1"], ["I1", "I2", "I3"], "I1"):
        payment = {**PAYMENT, "invoiceNumber": invoices}
        written = assert_writes_as_zeep(
            client, q("NotifyPayment"), {"customerId": "C000002", "payment": payment}
        )
        found = written.findall(f"{{{CUST}}}payment/{{{PAY}}}invoiceNumber")
        assert [n.text for n in found] == ([invoices] if isinstance(invoices, str) else invoices)


def test_writes_generated_data_as_zeep(client: Any) -> None:
    rng = random.Random(7)

    def maybe(key: str, value: Any) -> dict[str, Any]:
        return rng.choice([{}, {key: None}, {key: value}])

    for _ in range(150):
        addresses = [
            address(
                **maybe("kind", rng.choice(["SHIPPING", "BILLING"])), **maybe("postalCode", "1")
            )
            for _ in range(rng.choice([1, 2, 3]))
        ]
        data = {
            "customer": customer(
                customerSince=datetime.date(2000 + rng.randrange(25), 1 + rng.randrange(12), 1),
                addresses={"address": addresses},
                **maybe("email", "a@b.c"),
                **maybe("employees", rng.randrange(-5, 10**6)),
                **maybe("creditLimit", Decimal(rng.randrange(10**6)) / 100),
            ),
            **maybe("correlationId", f"r-{rng.random()}"),
        }
        assert_writes_as_zeep(client, q("UpsertCustomer"), data)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("UpsertCustomer", None, "UpsertCustomer.customer: missing, and the element is required"),
        ("UpsertCustomer", {}, "UpsertCustomer.customer: missing, and the element is required"),
        (
            "UpsertCustomer",
            {"customer": customer(name=None)},
            "UpsertCustomer.customer.name: missing, and the element is required",
        ),
        (
            "UpsertCustomer",
            {"customer": customer(addresses={"address": []})},
            "UpsertCustomer.customer.addresses.address: 0 items, the schema allows 1..unbounded",
        ),
        (
            "UpsertCustomerResponse",
            {"customerId": "C1", "created": True},
            "UpsertCustomerResponse.version: missing, and the element is required",
        ),
        (
            "NotifyPayment",
            {"customerId": "C1", "payment": {**PAYMENT, "invoiceNumber": ["I1", None]}},
            "NotifyPayment.payment.invoiceNumber[1]: None in a list of values",
        ),
        (
            "UpsertCustomer",
            {"customer": customer(customerSince=5)},
            "UpsertCustomer.customer.customerSince: cannot write 5: "
            "'int' object has no attribute 'strftime'",
        ),
    ],
)
def test_missing_or_bad_data_is_a_marshal_error_where_zeep_raises(
    client: Any, name: str, data: Any, message: str
) -> None:
    with pytest.raises((zeep.exceptions.ValidationError, AttributeError)):
        zeep_write(client, q(name), data)
    with pytest.raises(MarshalError) as error:
        data_to_element(client, q(name), data)
    assert error.value.reason == message


def test_an_unknown_key_is_a_marshal_error_naming_the_keys(client: Any) -> None:
    data = {"customer": customer(addresses={"address": [address(kind="BILLING", floor=2)]})}
    with pytest.raises(TypeError, match="unexpected keyword argument 'floor'"):
        zeep_write(client, q("UpsertCustomer"), data)
    with pytest.raises(MarshalError) as error:
        data_to_element(client, q("UpsertCustomer"), data)
    assert error.value.reason == (
        "UpsertCustomer.customer.addresses.address[0]: unexpected key 'floor' "
        "(expected: street, city, postalCode, country, kind)"
    )


def test_a_value_only_zeep_understands_is_written_by_zeep(client: Any) -> None:
    # a string for a complex element: zeep takes it as the type's first element
    data = {"customer": "C000001"}
    with pytest.raises(zeep.exceptions.ValidationError, match="Missing element name") as zeeps:
        zeep_write(client, q("UpsertCustomer"), data)
    with pytest.raises(zeep.exceptions.ValidationError) as compiled:
        data_to_element(client, q("UpsertCustomer"), data)
    assert str(compiled.value) == str(zeeps.value)


def test_the_producers_envelope_is_byte_for_byte_zeeps(client: Any) -> None:
    """The producer appends the written element to its Body where zeep rendered into it."""
    element = client.get_element(q("CheckCredit"))
    writer = compile_writer(client, q("CheckCredit"))
    assert writer is not None
    value = {"customerId": "C000001", "amount": Decimal("125.00"), "currency": "EUR"}
    envelopes = []
    for compiled in (True, False):
        ns = "http://schemas.xmlsoap.org/soap/envelope/"
        envelope = etree.Element(f"{{{ns}}}Envelope", nsmap={"soap-env": ns})
        body = etree.SubElement(envelope, f"{{{ns}}}Body")
        if compiled:
            body.append(writer(value))
        else:
            element.render(body, element(**value))
        envelopes.append(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))
    assert envelopes[0] == envelopes[1]
    assert b"<ns0:amount>125.00</ns0:amount>" in envelopes[0]


# -- other shapes, and what is not compiled ----------------------------------------------------

SHAPES = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:shapes" targetNamespace="urn:shapes">
  <wsdl:types>
    <xs:schema targetNamespace="urn:shapes" attributeFormDefault="qualified">
      <xs:complexType name="Base">
        <xs:sequence>
          <xs:element name="id" type="xs:int"/>
          <xs:element name="note" type="xs:string" minOccurs="0"/>
        </xs:sequence>
        <xs:attribute name="version" type="xs:int" default="1"/>
      </xs:complexType>
      <xs:complexType name="Derived">
        <xs:complexContent>
          <xs:extension base="t:Base">
            <xs:sequence>
              <xs:element name="extra" type="xs:decimal" minOccurs="0" maxOccurs="3"/>
            </xs:sequence>
            <xs:attribute name="flag" type="xs:boolean" use="required"/>
          </xs:extension>
        </xs:complexContent>
      </xs:complexType>
      <xs:complexType name="Node">
        <xs:sequence>
          <xs:element name="label" type="xs:token"/>
          <xs:element name="child" type="t:Node" minOccurs="0" maxOccurs="unbounded"/>
        </xs:sequence>
      </xs:complexType>
      <xs:element name="Order">
        <xs:complexType>
          <xs:all>
            <xs:element name="when" type="xs:dateTime"/>
            <xs:element name="item" type="t:Derived" minOccurs="0"/>
            <xs:element name="code" type="xs:string" default="X"/>
          </xs:all>
        </xs:complexType>
      </xs:element>
      <xs:element name="Tree" type="t:Node"/>
      <xs:element name="Pick">
        <xs:complexType>
          <xs:choice>
            <xs:element name="a" type="xs:string"/>
            <xs:element name="b" type="xs:int"/>
          </xs:choice>
        </xs:complexType>
      </xs:element>
      <xs:element name="Maybe">
        <xs:complexType>
          <xs:sequence><xs:element name="v" type="xs:string" nillable="true"/></xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="Plain" type="xs:string"/>
    </xs:schema>
  </wsdl:types>
</wsdl:definitions>
"""
T = "urn:shapes"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("wsdl") / "shapes.wsdl"
    path.write_text(SHAPES)
    return load_client_sync(str(path), 10)


@pytest.mark.parametrize(
    "xml",
    [
        "<code>Y</code><when>2024-01-02T03:04:05Z</when>"
        '<item t:flag="1"><id>4</id><extra>1.5</extra><extra>2</extra></item>',
        "<when>2024-01-02T03:04:05</when>",
        '<item t:version="7" t:flag="false"><id> 4 </id><note>n</note></item>'
        "<when>2024-01-02</when>",
    ],
)
def test_all_extension_qualified_attributes_and_unqualified_elements_as_zeep(
    shapes: Any, xml: str
) -> None:
    data = assert_reads_as_zeep(shapes, q("Order", T), f'<t:Order xmlns:t="{T}">{xml}</t:Order>')
    assert data["code"] in ("X", "Y")  # the element's default, as zeep fills it in
    written = assert_writes_as_zeep(shapes, q("Order", T), data)
    assert written.find("when") is not None  # unqualified, as the schema says


def test_recursive_types_as_zeep(shapes: Any) -> None:
    xml = (
        f'<t:Tree xmlns:t="{T}"><label>  a  b </label><child><label>b</label></child>'
        "<child><label>c</label><child><label>d</label></child></child></t:Tree>"
    )
    data = assert_reads_as_zeep(shapes, q("Tree", T), xml)
    assert data["child"][1]["child"][0] == {"label": "d", "child": []}
    assert_writes_as_zeep(shapes, q("Tree", T), data)


def test_a_required_attribute_missing_is_a_marshal_error(shapes: Any) -> None:
    data = {"when": datetime.datetime(2024, 1, 2), "item": {"id": 1}}
    with pytest.raises(zeep.exceptions.ValidationError):
        zeep_write(shapes, q("Order", T), data)
    with pytest.raises(MarshalError) as error:
        data_to_element(shapes, q("Order", T), data)
    assert error.value.reason == "Order.item.@flag: missing, and the attribute is required"


@pytest.mark.parametrize("name", ["Pick", "Maybe", "Plain"])
def test_choice_nillable_and_simple_elements_are_not_compiled(shapes: Any, name: str) -> None:
    assert compile_reader(shapes, q(name, T)) is None
    assert compile_writer(shapes, q(name, T)) is None


def test_zeep_still_reads_and_writes_what_is_not_compiled(shapes: Any) -> None:
    element = data_to_element(shapes, q("Pick", T), {"b": 42})
    assert etree.tostring(element) == b'<ns0:Pick xmlns:ns0="urn:shapes"><b>42</b></ns0:Pick>'
    assert element_to_data(shapes, q("Pick", T), element) == {"a": None, "b": 42}
    other = data_to_element(shapes, q("Pick", T), {"a": "x"})
    assert element_to_data(shapes, q("Pick", T), other) == {"a": "x", "b": None}
    nil = data_to_element(shapes, q("Maybe", T), {"v": None})
    assert nil[0].get(f"{{{XSI}}}nil") == "true"
    assert element_to_data(shapes, q("Maybe", T), nil) == {"v": None}


PICK_SERVICE = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:t="urn:pick" targetNamespace="urn:pick">
  <wsdl:types>
    <xs:schema targetNamespace="urn:pick" elementFormDefault="qualified">
      <xs:element name="Pick">
        <xs:complexType>
          <xs:choice>
            <xs:element name="byId" type="xs:int"/>
            <xs:element name="byName" type="xs:string"/>
          </xs:choice>
        </xs:complexType>
      </xs:element>
      <xs:element name="Picked">
        <xs:complexType>
          <xs:choice>
            <xs:element name="found" type="xs:string"/>
            <xs:element name="missing" type="xs:boolean"/>
          </xs:choice>
        </xs:complexType>
      </xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="PickRequest"><wsdl:part name="p" element="t:Pick"/></wsdl:message>
  <wsdl:message name="PickResponse"><wsdl:part name="p" element="t:Picked"/></wsdl:message>
  <wsdl:portType name="PickPort">
    <wsdl:operation name="Pick">
      <wsdl:input message="t:PickRequest"/><wsdl:output message="t:PickResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="PickBinding" type="t:PickPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="Pick">
      <soap:operation soapAction="urn:pick:Pick" style="document"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="PickService">
    <wsdl:port name="PickPort" binding="t:PickBinding">
      <soap:address location="http://127.0.0.1:0/pick"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


async def test_a_choice_service_runs_end_to_end_on_zeeps_path(tmp_path: Path) -> None:
    wsdl = tmp_path / "pick.wsdl"
    wsdl.write_text(PICK_SERVICE)
    pick = load_client_sync(str(wsdl), 10)
    assert compile_reader(pick, "{urn:pick}Pick") is None
    assert compile_writer(pick, "{urn:pick}Picked") is None
    seen: list[Any] = []

    class Service(RouteBuilder):
        def configure(self) -> None:
            (
                self.from_(soap_server("/pick", wsdl=str(wsdl)))
                .process(lambda ex: seen.append(ex.body))
                .set_body(
                    lambda ex: (
                        {"found": f"#{ex.body['byId']}"}
                        if ex.body["byId"] is not None
                        else {"missing": True}
                    )
                )
            )

    server = Context(shutdown_timeout=5)
    server.component("http").configure(host="127.0.0.1", port=0)  # type: ignore[attr-defined]
    server.add_routes(Service())
    await server.start()
    try:
        url = f"{server.component('http').server.base_url}/pick"  # type: ignore[attr-defined]

        class Caller(RouteBuilder):
            def configure(self) -> None:
                self.from_("direct:pick").to(
                    soap_client("pick", wsdl=str(wsdl), operation="Pick", address=url)
                )

        client = Context(shutdown_timeout=5)
        client.add_routes(Caller())
        await client.start()
        try:
            by_id = await client.template().request_exchange("direct:pick", {"byId": 7})
            by_name = await client.template().request_exchange("direct:pick", {"byName": "x"})
        finally:
            await client.stop()
    finally:
        await server.stop()
    assert by_id.exception is None, by_id.exception
    assert by_id.body == {"found": "#7", "missing": None}
    assert by_name.body == {"found": None, "missing": True}
    assert seen == [{"byId": 7, "byName": None}, {"byId": None, "byName": "x"}]
