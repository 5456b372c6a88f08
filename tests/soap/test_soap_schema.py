"""WsdlSchema: compiling the CRM/ERP WSDL's schemas with real lxml, validating payloads,
reading operations/bindings/ports, and failing clearly on broken or hostile WSDLs."""

from __future__ import annotations

import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest
import zeep
from lxml import etree

from eip.components.soap.envelope import SoapVersion, parse_envelope
from eip.components.soap.schema import SchemaValidationError, WsdlError, WsdlSchema
from eip.components.soap.wsdl import WsdlFault
from eip.errors import RouteDefinitionError, UnmarshalError

WSDL_DIR = Path(__file__).parent / "wsdl"
WSDL = WSDL_DIR / "crm_erp.wsdl"
CUST = "http://erp.example.com/schemas/customer"
CMN = "http://erp.example.com/schemas/common"
PAY = "http://erp.example.com/schemas/payment"
TNS = "http://erp.example.com/services/customer"
XS = "http://www.w3.org/2001/XMLSchema"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"

UPSERT = """<cust:UpsertCustomer xmlns:cust="{cust}" xmlns:cmn="{cmn}">
  <cust:customer>
    <cust:id>{id}</cust:id>
    {name}
    <cust:status>{status}</cust:status>
    <cust:customerSince>{since}</cust:customerSince>
    <cust:employees>{employees}</cust:employees>
    <cust:creditLimit>2500.00</cust:creditLimit>
    <cust:addresses>
      <cust:address><cmn:street>1 Rue de Rivoli</cmn:street><cmn:city>Paris</cmn:city>
        <cmn:country>FR</cmn:country></cust:address>
      <cust:address kind="{kind}"><cmn:street>2 Quai</cmn:street><cmn:city>Lyon</cmn:city>
        <cmn:postalCode>69001</cmn:postalCode><cmn:country>FR</cmn:country></cust:address>
    </cust:addresses>
  </cust:customer>
  <cust:correlationId>abc-123</cust:correlationId>
</cust:UpsertCustomer>"""

GOOD = {
    "id": "C000123",
    "name": "<cust:name>ACME SARL</cust:name>",
    "status": "ACTIVE",
    "since": "2019-04-30",
    "employees": "42",
    "kind": "SHIPPING",
}

CHECK_CREDIT = f"""<CheckCredit xmlns="{CUST}"><customerId>C000123</customerId>
  <amount>199.99</amount><currency>EUR</currency></CheckCredit>"""

NOTIFY_PAYMENT = f"""<c:NotifyPayment xmlns:c="{CUST}" xmlns:p="{PAY}">
  <c:customerId>C000123</c:customerId>
  <c:payment><p:paymentId>PAY-1</p:paymentId><p:paidOn>2024-02-29</p:paidOn>
    <p:amount>10.50</p:amount><p:currency>EUR</p:currency><p:method>CARD</p:method>
    <p:invoiceNumber>INV-1</p:invoiceNumber><p:invoiceNumber>INV-2</p:invoiceNumber></c:payment>
</c:NotifyPayment>"""


def upsert(**changes: str) -> etree._Element:
    values = {**GOOD, **changes}
    return etree.fromstring(UPSERT.format(cust=CUST, cmn=CMN, **values))


@pytest.fixture(scope="module")
def schema() -> WsdlSchema:
    return WsdlSchema.load(WSDL)


def copy_wsdl(tmp_path: Path, replace: tuple[str, str] | None = None) -> Path:
    """The test WSDL (and payment.xsd) in tmp_path, with one textual change."""
    shutil.copy(WSDL_DIR / "payment.xsd", tmp_path / "payment.xsd")
    text = WSDL.read_text()
    if replace is not None:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1])
    target = tmp_path / "service.wsdl"
    target.write_text(text)
    return target


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# --- compiling -------------------------------------------------------------------------


def test_an_inline_schema_does_not_compile_on_its_own() -> None:
    """The WSDL really is the hard case: its inline schemas rely on the root's prefixes."""
    root = etree.parse(str(WSDL)).getroot()
    inline = root.findall(f"{{{WSDL_NS}}}types/{{{XS}}}schema")
    assert len(inline) == 2
    imports = inline[1].findall(f"{{{XS}}}import")
    assert [i.get("schemaLocation") for i in imports] == [None, "payment.xsd"]
    standalone = etree.fromstring(etree.tostring(inline[1]))
    with pytest.raises(etree.XMLSchemaParseError):
        etree.XMLSchema(standalone)


def test_the_wsdl_compiles_to_one_validator_with_every_global_element(schema: WsdlSchema) -> None:
    assert schema.element_names() == {
        (CUST, "UpsertCustomer"),
        (CUST, "UpsertCustomerResponse"),
        (CUST, "CustomerFault"),
        (CUST, "CheckCredit"),
        (CUST, "CheckCreditResponse"),
        (CUST, "NotifyPayment"),
    }
    assert schema.target_namespace == TNS
    assert schema.path == WSDL.resolve()


@pytest.mark.parametrize(
    "payload",
    [UPSERT.format(cust=CUST, cmn=CMN, **GOOD), CHECK_CREDIT, NOTIFY_PAYMENT],
    ids=["upsert", "check-credit", "notify-payment-from-imported-xsd"],
)
def test_valid_requests_pass(schema: WsdlSchema, payload: str) -> None:
    schema.validate(etree.fromstring(payload))  # raises if invalid


def test_optional_elements_may_be_left_out(schema: WsdlSchema) -> None:
    element = etree.fromstring(
        f"<CheckCredit xmlns='{CUST}'><customerId>C000001</customerId>"
        "<amount>0</amount></CheckCredit>"
    )
    schema.validate(element)


@pytest.mark.parametrize(
    ("changes", "location", "reason"),
    [
        (
            {"status": "BOGUS"},
            "UpsertCustomer/customer/status",
            "'BOGUS' is not one of ACTIVE, SUSPENDED, CLOSED",
        ),
        ({"employees": "abc"}, "UpsertCustomer/customer/employees", "'abc' is not a valid xs:int"),
        (
            {"since": "2023-02-30"},
            "UpsertCustomer/customer/customerSince",
            "'2023-02-30' is not a valid xs:date",
        ),
        (
            {"since": "30.04.2019"},
            "UpsertCustomer/customer/customerSince",
            "'30.04.2019' is not a valid xs:date",
        ),
        (
            {"id": "X-1"},
            "UpsertCustomer/customer/id",
            "'X-1' does not match the pattern 'C[0-9]{6}'",
        ),
        (
            {"kind": "HOME"},
            "UpsertCustomer/customer/addresses/address[2]/@kind",
            "'HOME' is not one of BILLING, SHIPPING",
        ),
        (
            {"name": ""},
            "UpsertCustomer/customer/status",
            "unexpected element; expected name",
        ),
    ],
    ids=["enum", "int", "impossible-date", "date-format", "pattern", "attribute-enum", "missing"],
)
def test_invalid_payload_names_the_element_and_the_problem(
    schema: WsdlSchema, changes: dict[str, str], location: str, reason: str
) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        schema.validate(upsert(**changes))
    error = caught.value
    assert (error.location, error.reason) == (location, reason)
    assert str(error) == f"invalid soap input: {location}: {reason}"
    assert isinstance(error, UnmarshalError)
    assert error.format == "soap"
    assert error.problems[0] == (location, reason)


def test_a_missing_trailing_element_is_named(schema: WsdlSchema) -> None:
    element = etree.fromstring(
        f"<CheckCredit xmlns='{CUST}'><customerId>C000001</customerId></CheckCredit>"
    )
    with pytest.raises(SchemaValidationError) as caught:
        schema.validate(element)
    assert caught.value.location == "CheckCredit"
    assert caught.value.reason == "missing child element amount"


def test_every_problem_is_listed(schema: WsdlSchema) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        schema.validate(upsert(status="BOGUS", employees="many"))
    assert caught.value.problems == (
        ("UpsertCustomer/customer/status", "'BOGUS' is not one of ACTIVE, SUSPENDED, CLOSED"),
        ("UpsertCustomer/customer/employees", "'many' is not a valid xs:int"),
    )


def test_an_undeclared_element_is_refused(schema: WsdlSchema) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        schema.validate(etree.fromstring(f"<DeleteCustomer xmlns='{CUST}'/>"))
    assert caught.value.location == "DeleteCustomer"
    assert (
        caught.value.reason
        == f"element {{{CUST}}}DeleteCustomer is not declared in the WSDL's schemas"
    )


def test_a_body_child_is_validated_with_paths_relative_to_it(schema: WsdlSchema) -> None:
    body = UPSERT.format(cust=CUST, cmn=CMN, **{**GOOD, "employees": "4.5"})
    envelope = parse_envelope(
        f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{body}'
        "</s:Body></s:Envelope>".encode(),
        max_size=100_000,
    )
    with pytest.raises(SchemaValidationError) as caught:
        schema.validate(envelope.payload)
    assert caught.value.location == "UpsertCustomer/customer/employees"
    assert caught.value.reason == "'4.5' is not a valid xs:int"


# --- the WSDL model --------------------------------------------------------------------


def test_operations_with_their_elements_and_faults(schema: WsdlSchema) -> None:
    assert sorted(schema.operations) == ["CheckCredit", "NotifyPayment", "UpsertCustomer"]
    upsert_op = schema.operations["UpsertCustomer"]
    assert upsert_op.input == (CUST, "UpsertCustomer")
    assert upsert_op.output == (CUST, "UpsertCustomerResponse")
    assert upsert_op.faults == (WsdlFault("CustomerFault", (CUST, "CustomerFault")),)
    assert upsert_op.fault_for((CUST, "CustomerFault")) == upsert_op.fault("CustomerFault")
    assert upsert_op.fault("Other") is None
    assert not upsert_op.one_way
    credit = schema.operations["CheckCredit"]
    assert (credit.input, credit.output, credit.faults) == (
        (CUST, "CheckCredit"),
        (CUST, "CheckCreditResponse"),
        (),
    )
    notify = schema.operations["NotifyPayment"]
    assert notify.output is None
    assert notify.one_way
    assert notify.documentation == "One-way: a payment was booked."


def test_bindings_have_their_soap_version_and_actions(schema: WsdlSchema) -> None:
    assert {name: b.version for name, b in schema.bindings.items()} == {
        "CustomerSoap11Binding": SoapVersion.SOAP11,
        "CustomerSoap12Binding": SoapVersion.SOAP12,
    }
    for binding in schema.bindings.values():
        assert binding.port_type == (TNS, "CustomerPortType")
        assert binding.style == "document"
        assert binding.transport == "http://schemas.xmlsoap.org/soap/http"
        assert binding.soap_action("CheckCredit") == f"{TNS}/CheckCredit"
        assert binding.soap_action("NotifyPayment") == f"{TNS}/NotifyPayment"
        assert binding.soap_action("Missing") is None


def test_ports_with_address_and_version(schema: WsdlSchema) -> None:
    assert [(p.service, p.name, p.version, p.address) for p in schema.ports] == [
        (
            "CustomerService",
            "CustomerSoap11Port",
            SoapVersion.SOAP11,
            "http://127.0.0.1:0/services/customer",
        ),
        (
            "CustomerService",
            "CustomerSoap12Port",
            SoapVersion.SOAP12,
            "http://127.0.0.1:0/services/customer",
        ),
    ]
    assert schema.ports[1].binding is schema.bindings["CustomerSoap12Binding"]


def test_dispatch_on_the_body_child_qname(schema: WsdlSchema) -> None:
    assert schema.operation_for((CUST, "CheckCredit")) is schema.operations["CheckCredit"]
    assert schema.operation_for((CUST, "NotifyPayment")) is schema.operations["NotifyPayment"]
    assert schema.operation_for((CUST, "CheckCreditResponse")) is None
    assert schema.operation_for(("urn:other", "CheckCredit")) is None


# --- zeep agrees -----------------------------------------------------------------------


def test_zeep_loads_the_wsdl_with_three_operations_on_both_ports() -> None:
    client = zeep.Client(str(WSDL))
    service = client.wsdl.services["CustomerService"]
    assert sorted(service.ports) == ["CustomerSoap11Port", "CustomerSoap12Port"]
    for port in service.ports.values():
        assert sorted(port.binding._operations) == [
            "CheckCredit",
            "NotifyPayment",
            "UpsertCustomer",
        ]
    assert type(service.ports["CustomerSoap12Port"].binding).__name__ == "Soap12Binding"


@pytest.mark.parametrize("port", ["CustomerSoap11Port", "CustomerSoap12Port"])
def test_what_zeep_sends_passes_our_validation(schema: WsdlSchema, port: str) -> None:
    client = zeep.Client(str(WSDL))
    service = client.bind("CustomerService", port)
    message = client.create_message(
        service, "CheckCredit", customerId="C000042", amount=Decimal("120.50"), currency="EUR"
    )
    envelope = parse_envelope(etree.tostring(message), max_size=100_000)
    assert envelope.version is schema.ports[port.endswith("12Port")].version
    assert envelope.qname == (CUST, "CheckCredit")
    schema.validate(envelope.payload)


# --- broken and hostile WSDLs ----------------------------------------------------------


def test_a_broken_inline_schema_names_the_wsdl_and_line(tmp_path: Path) -> None:
    wsdl = copy_wsdl(tmp_path, ('type="cmn:CustomerStatus"', 'type="cmn:NoSuchStatus"'))
    with pytest.raises(WsdlError) as caught:
        WsdlSchema.load(wsdl)
    error = caught.value
    assert isinstance(error, RouteDefinitionError)
    assert error.path == f"{wsdl} (inline xs:schema #2)"
    assert error.line == line_of(wsdl, "cmn:NoSuchStatus")
    assert str(error).startswith(f"{wsdl} (inline xs:schema #2), line {error.line}: ")
    assert "NoSuchStatus' does not resolve to a(n) type definition" in str(error)


def test_a_broken_imported_xsd_names_that_file_and_line(tmp_path: Path) -> None:
    wsdl = copy_wsdl(tmp_path)
    xsd = tmp_path / "payment.xsd"
    xsd.write_text(xsd.read_text().replace('type="pay:PaymentMethod"', 'type="pay:Nope"'))
    with pytest.raises(WsdlError) as caught:
        WsdlSchema.load(wsdl)
    assert caught.value.path == str(xsd)
    assert caught.value.line == line_of(xsd, "pay:Nope")


def test_a_missing_imported_file_names_it_and_the_referrer(tmp_path: Path) -> None:
    wsdl = copy_wsdl(tmp_path, ('schemaLocation="payment.xsd"', 'schemaLocation="gone.xsd"'))
    with pytest.raises(WsdlError) as caught:
        WsdlSchema.load(wsdl)
    assert caught.value.path == str(tmp_path / "gone.xsd")
    assert f"referenced from {wsdl}, line {line_of(wsdl, 'gone.xsd')}" in str(caught.value)


def test_a_network_schema_location_is_refused(tmp_path: Path) -> None:
    wsdl = copy_wsdl(
        tmp_path, ('schemaLocation="payment.xsd"', 'schemaLocation="http://evil.example/p.xsd"')
    )
    with pytest.raises(WsdlError, match="only local files are followed") as caught:
        WsdlSchema.load(wsdl)
    assert caught.value.line == line_of(wsdl, "evil.example")


def test_not_well_formed_wsdl_gives_file_and_line(tmp_path: Path) -> None:
    wsdl = copy_wsdl(tmp_path, ("</wsdl:portType>", "</wsdl:portTyp>"))
    with pytest.raises(WsdlError, match="not well-formed XML") as caught:
        WsdlSchema.load(wsdl)
    assert caught.value.path == str(wsdl)
    assert caught.value.line == line_of(wsdl, "</wsdl:portTyp>")


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE wsdl:definitions SYSTEM "http://evil.example/wsdl.dtd">',
    ],
    ids=["xxe", "external-dtd"],
)
def test_a_wsdl_with_a_dtd_is_refused(tmp_path: Path, doctype: str) -> None:
    wsdl = copy_wsdl(tmp_path, ("<wsdl:definitions ", f"{doctype}\n<wsdl:definitions "))
    with pytest.raises(WsdlError, match="DOCTYPE"):
        WsdlSchema.load(wsdl)


def test_an_imported_xsd_with_a_dtd_is_refused(tmp_path: Path) -> None:
    wsdl = copy_wsdl(tmp_path)
    xsd = tmp_path / "payment.xsd"
    xsd.write_text(
        xsd.read_text().replace("<xs:schema ", '<!DOCTYPE x [<!ENTITY a "b">]>\n<xs:schema ', 1)
    )
    with pytest.raises(WsdlError, match="DOCTYPE") as caught:
        WsdlSchema.load(wsdl)
    assert caught.value.path == str(xsd)


def test_an_oversized_wsdl_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.wsdl"
    big.write_bytes(b"<" * 2_000)  # not even XML: the size check must come first
    with pytest.raises(WsdlError, match="the limit is 1000") as caught:
        WsdlSchema.load(big, max_size=1_000)
    assert caught.value.path == str(big)


def test_the_size_limit_applies_to_imported_files(tmp_path: Path) -> None:
    wsdl = copy_wsdl(tmp_path)
    limit = wsdl.stat().st_size + 1
    (tmp_path / "payment.xsd").write_bytes(b" " * (limit + 1))
    with pytest.raises(WsdlError, match=f"the limit is {limit}") as caught:
        WsdlSchema.load(wsdl, max_size=limit)
    assert caught.value.path == str(tmp_path / "payment.xsd")


def test_a_schema_file_is_not_a_wsdl() -> None:
    with pytest.raises(WsdlError, match=r"not a WSDL 1\.1 document"):
        WsdlSchema.load(WSDL_DIR / "payment.xsd")


def test_a_missing_wsdl_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WsdlError, match="cannot read the file") as caught:
        WsdlSchema.load(tmp_path / "nope.wsdl")
    assert caught.value.path == str(tmp_path / "nope.wsdl")


def test_rpc_style_is_refused_naming_the_message(tmp_path: Path) -> None:
    wsdl = copy_wsdl(
        tmp_path,
        (
            '<wsdl:part name="parameters" element="cust:CheckCredit"/>',
            '<wsdl:part name="customerId" type="xs:string"/>',
        ),
    )
    with pytest.raises(WsdlError, match="'CheckCreditRequest' has type= parts"):
        WsdlSchema.load(wsdl)


MINI = """<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:xs="http://www.w3.org/2001/XMLSchema"
             xmlns:a="urn:a" targetNamespace="urn:svc">
  <types>
    <xs:schema targetNamespace="urn:a"><xs:simpleType name="Code">
      <xs:restriction base="xs:int"><xs:maxInclusive value="9"/></xs:restriction>
    </xs:simpleType></xs:schema>
    <xs:schema targetNamespace="urn:a" elementFormDefault="qualified">
      <xs:element name="Ping"><xs:complexType><xs:sequence>
        <xs:element name="code" type="a:Code"/></xs:sequence></xs:complexType></xs:element>
    </xs:schema>
    <xs:schema><xs:element name="Bare" type="xs:date"/></xs:schema>
  </types>
</definitions>"""


def test_inline_schemas_sharing_a_namespace_and_a_no_namespace_one(tmp_path: Path) -> None:
    wsdl = tmp_path / "mini.wsdl"
    wsdl.write_text(MINI)
    mini = WsdlSchema.load(wsdl)
    assert mini.element_names() == {("urn:a", "Ping"), ("", "Bare")}
    assert mini.operations == {}
    mini.validate(etree.fromstring("<Ping xmlns='urn:a'><code>7</code></Ping>"))
    mini.validate(etree.fromstring("<Bare>2024-01-01</Bare>"))
    with pytest.raises(SchemaValidationError) as caught:
        mini.validate(etree.fromstring("<Ping xmlns='urn:a'><code>12</code></Ping>"))
    assert caught.value.location == "Ping/code"
    assert "12" in caught.value.reason


def test_loading_is_quick_enough_to_do_at_route_start() -> None:
    started = time.perf_counter()
    WsdlSchema.load(WSDL)
    assert time.perf_counter() - started < 1.0
