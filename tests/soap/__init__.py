"""Tests of the SOAP groundwork: WSDL schema compilation and validation, envelopes, faults."""
