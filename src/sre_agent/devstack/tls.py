"""A throwaway certificate authority for TLS listeners of the devstack broker.

:func:`make_pki` writes, with ``cryptography`` (nothing is downloaded), a CA and
two certificates it signs: the broker's (for ``localhost`` and ``127.0.0.1``)
and a client's (for mutual TLS). The files are PEM, the format both Kafka
(``ssl.keystore.type=PEM``) and Python's :mod:`ssl` read:

=================  ====================================================
``ca.pem``         the CA certificate (clients' ``kafka.ssl_cafile``)
``broker.pem``     the broker's PKCS#8 key followed by its certificate
``client.crt``     the client certificate (``kafka.ssl_certfile``)
``client.key``     its key (``kafka.ssl_keyfile``)
=================  ====================================================
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    """Paths of the files :func:`make_pki` wrote."""

    ca: Path
    broker: Path
    client_cert: Path
    client_key: Path


def _key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def make_pki(folder: Path, ca_name: str = "sre-agent devstack CA", days: int = 2) -> Pki:
    """Write a CA, a broker certificate and a client certificate into ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = _key()
    ca = (x509.CertificateBuilder().subject_name(name(ca_name)).issuer_name(name(ca_name))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: list[x509.ObjectIdentifier], san: list[x509.GeneralName]):  # type: ignore[no-untyped-def]
        key = _key()
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                            critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    def pem_key(key) -> bytes:  # type: ignore[no-untyped-def]
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def pem_cert(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    # the broker's certificate serves clients and authenticates it to itself (inter-broker)
    bkey, bcert = leaf("localhost", [ExtendedKeyUsageOID.SERVER_AUTH,
                                     ExtendedKeyUsageOID.CLIENT_AUTH],
                       [x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    ckey, ccert = leaf("sre-agent", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    pki = Pki(ca=folder / "ca.pem", broker=folder / "broker.pem",
              client_cert=folder / "client.crt", client_key=folder / "client.key")
    pki.ca.write_bytes(pem_cert(ca))
    pki.broker.write_bytes(pem_key(bkey) + pem_cert(bcert))
    pki.client_cert.write_bytes(pem_cert(ccert))
    pki.client_key.write_bytes(pem_key(ckey))
    for p in (pki.broker, pki.client_key):
        p.chmod(0o600)
    return pki
