"""Real, self-signed certificates for tests.

Sōzu fingerprints the DER of a certificate and its workers parse the certificate and key, so
tests that exercise certificate handling need genuine PEM, not placeholder strings.
"""

from __future__ import annotations

import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

KeyType = Literal["ec", "rsa", "ed25519"]

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def make_key(key_type: KeyType = "ec") -> _PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}")


def key_pem(key: _PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def make_certificate(
    names: list[str] | tuple[str, ...],
    *,
    days: int = 30,
    not_before: datetime.datetime | None = None,
    key_type: KeyType = "ec",
    common_name: str | None = None,
) -> tuple[str, str]:
    """A self-signed certificate for `names` (all as SAN DNS names; the first one, or
    `common_name`, as subject CN) and its private key, both PEM.

    `not_before` defaults to one hour ago so the certificate is valid right away; `days`
    counts from `not_before`. Pass `names=[]` with a `common_name` for a CN-only certificate."""
    if not names and common_name is None:
        raise ValueError("a certificate needs at least one name or a common name")
    key = make_key(key_type)
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
        )
    # Ed25519 signs without a separate digest; the other key types need one.
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    certificate = builder.sign(key, algorithm)
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem(key)
