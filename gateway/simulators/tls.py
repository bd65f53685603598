"""Throwaway TLS material for the simulators: a CA made at start-up and certificates it signs.

The simulators speak real TLS so that the real client libraries verify a real chain. Nothing
here is meant to protect anything: keys are fresh P-256 keys that live as long as the process,
written to a temporary folder only because :mod:`ssl` loads certificates from files.

Typical use::

    ca = CertificateAuthority.generate()
    server = ca.issue_server_certificate()            # SANs 127.0.0.1, ::1 and localhost
    context = server_ssl_context(server, folder, alpn=("h2",), client_ca=ca)
    ca.write_pem(folder / "ca.pem")                   # what clients pass as ca_file
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVER_HOSTS = ("127.0.0.1", "::1", "localhost")
VALIDITY = timedelta(days=2)
# Certificates start a little in the past so a client whose clock lags does not reject them.
BACKDATE = timedelta(hours=1)


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def bundle_pem(self) -> bytes:
        """Certificate followed by key: the single-file form ``load_cert_chain`` accepts."""
        return self.cert_pem + self.key_pem

    def write_bundle(self, path: Path) -> Path:
        """Write :attr:`bundle_pem` to ``path`` (mode 0600) and return the path."""
        path.write_bytes(self.bundle_pem)
        path.chmod(0o600)
        return path


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate

    @classmethod
    def generate(cls, common_name: str = "pushgate simulator CA") -> CertificateAuthority:
        """A new CA with a fresh key."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write_pem(self, path: Path) -> Path:
        """Write the CA certificate (what clients trust) to ``path`` and return the path."""
        path.write_bytes(self.cert_pem)
        return path

    def issue_server_certificate(
        self, hosts: tuple[str, ...] = DEFAULT_SERVER_HOSTS
    ) -> IssuedCertificate:
        """A server certificate valid for ``hosts`` (IP addresses and DNS names)."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return self._issue(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]),
            ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName(names),
        )

    def issue_client_certificate(
        self, common_name: str, user_id: str | None = None
    ) -> IssuedCertificate:
        """A client certificate. APNs provider certificates carry the app's topic (bundle id)
        as the subject ``UID``; pass it as ``user_id``."""
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if user_id is not None:
            attributes.append(x509.NameAttribute(NameOID.USER_ID, user_id))
        return self._issue(x509.Name(attributes), ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def _issue(
        self,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        alt_names: x509.SubjectAlternativeName | None,
    ) -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if alt_names is not None:
            builder = builder.add_extension(alt_names, critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            certificate.public_bytes(serialization.Encoding.PEM), _private_key_pem(key)
        )


def server_ssl_context(
    certificate: IssuedCertificate,
    folder: Path,
    *,
    alpn: tuple[str, ...] = (),
    client_ca: CertificateAuthority | None = None,
) -> ssl.SSLContext:
    """A server context presenting ``certificate``. With ``client_ca``, clients *may* present a
    certificate signed by it (mutual TLS is optional, so token-auth clients still connect); the
    handshake fails for a client certificate from any other issuer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate.write_bundle(folder / "server.pem"))
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.cert_pem.decode("ascii"))
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
