"""SOAP: WSDL-driven schemas, SOAP 1.1/1.2 envelopes and faults for the ``soap:`` component.

The groundwork here does not depend on the HTTP server: :mod:`.schema` compiles a WSDL's
types into one lxml validator and reads its operations, bindings and ports; :mod:`.envelope`
parses, builds and faults SOAP envelopes of both versions. zeep (the ``soap`` extra) is only
needed by the producer.
"""
