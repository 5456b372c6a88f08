"""Certificates made for the TLS tests: a private CA, a server and a client certificate.

Made with ``cryptography`` at test time (EC P-256, valid for a day), so nothing secret or
expiring is kept in the repository. The server certificate names ``localhost`` and
``127.0.0.1``; the client certificate's CN is the broker user that SASL EXTERNAL logs in as.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "TestCA"]

_DAY = datetime.timedelta(days=1)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, written as PEM files (``combined`` holds both)."""

    cert_file: Path
    key_file: Path
    combined: Path


class TestCA:
    """A private certificate authority that writes what it issues under ``directory``."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "eip test CA") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / f"{_slug(name)}-ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue_server(
        self, stem: str, dns_name: str = "localhost", ip: str | None = "127.0.0.1"
    ) -> Issued:
        """A server certificate for ``dns_name`` (and ``ip``): by default localhost/127.0.0.1."""
        names: list[x509.GeneralName] = [x509.DNSName(dns_name)]
        if ip is not None:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        return self._issue(stem, dns_name, names, ExtendedKeyUsageOID.SERVER_AUTH)

    def issue_client(self, stem: str, common_name: str) -> Issued:
        """A client certificate whose CN is ``common_name``."""
        return self._issue(stem, common_name, [], ExtendedKeyUsageOID.CLIENT_AUTH)

    def _issue(
        self,
        stem: str,
        common_name: str,
        alt_names: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        issued = Issued(
            cert_file=self.directory / f"{stem}-cert.pem",
            key_file=self.directory / f"{stem}-key.pem",
            combined=self.directory / f"{stem}-combined.pem",
        )
        issued.cert_file.write_bytes(cert_pem)
        issued.key_file.write_bytes(_key_pem(key))
        issued.combined.write_bytes(cert_pem + _key_pem(key))
        return issued


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())
