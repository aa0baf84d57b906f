"""Certificate facts computed the way Sōzu computes them: fingerprints and served names.

Sōzu keys certificates by (listener address, SHA-256 of the DER of the first PEM block) and, when
a request carries no `names`, derives them from the certificate itself. Both are needed to diff
a desired certificate against live state without sending anything.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL
)


class CertificateError(ValueError):
    """A certificate or key that cannot be used; the message says which and why."""


def pem_blocks(pem: str) -> list[tuple[str, bytes]]:
    """Every PEM block of `pem` as (label, DER bytes), in order."""
    blocks = []
    for match in _PEM_BLOCK.finditer(pem):
        body = "".join(match.group(2).split())
        try:
            blocks.append((match.group(1), base64.b64decode(body, validate=True)))
        except binascii.Error as error:
            raise CertificateError(f"a {match.group(1)} PEM block is not valid base64") from error
    return blocks


def fingerprint(certificate_pem: str) -> str:
    """Sōzu's fingerprint: lowercase hex SHA-256 of the DER of the first PEM block."""
    blocks = pem_blocks(certificate_pem)
    if not blocks:
        raise CertificateError("no PEM block found in the certificate")
    return hashlib.sha256(blocks[0][1]).hexdigest()


def load_certificate(certificate_pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(certificate_pem.encode())
    except ValueError as error:
        raise CertificateError(
            f"the certificate is not a valid PEM X.509 certificate: {error}"
        ) from None


def derived_names(certificate_pem: str, *, sozu_version: int) -> tuple[str, ...]:
    """The names Sōzu serves a certificate for when the request gives none.

    Sōzu 1.0 takes every subject CN followed by every SAN DNS name (only consecutive duplicates
    dropped); 2.x takes the SAN DNS names and falls back to the CN only when there are none."""
    certificate = load_certificate(certificate_pem)
    common_names = [
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns_names = [str(name) for name in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        dns_names = []
    if sozu_version >= 2:
        return tuple(dns_names or common_names)
    names: list[str] = []
    for name in common_names + dns_names:
        if not names or names[-1] != name:
            names.append(name)
    return tuple(names)


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What a reconciler checks before it lets a certificate reach a proxy."""

    fingerprint: str
    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    key_matches: bool

    def covers(self, hostname: str) -> bool:
        return any(_name_matches(name, hostname) for name in self.names)


class NameIndex:
    """The names of several certificates, indexed so that `covers(hostname)` costs O(1)
    instead of one `_name_matches` per name: the same answer as `any(facts.covers(hostname)
    for facts in …)` over the certificates it was built from."""

    __slots__ = ("_exact", "_wildcard_parents")

    def __init__(self, names: Iterable[str]) -> None:
        exact: set[str] = set()
        parents: set[str] = set()
        for name in names:
            lowered = name.lower()
            if lowered.startswith("*."):
                parents.add(lowered[2:])
            else:
                exact.add(lowered)
        self._exact = frozenset(exact)
        self._wildcard_parents = frozenset(parents)

    def covers(self, hostname: str) -> bool:
        hostname = hostname.lower()
        if hostname in self._exact:
            return True
        head, _, rest = hostname.partition(".")
        return bool(head) and rest in self._wildcard_parents


def _name_matches(pattern: str, hostname: str) -> bool:
    pattern, hostname = pattern.lower(), hostname.lower()
    if pattern.startswith("*."):
        head, _, rest = hostname.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == hostname


def inspect(certificate_pem: str, key_pem: str, *, sozu_version: int = 2) -> CertificateFacts:
    """Parse a certificate and its key; raises CertificateError for anything unusable."""
    certificate = load_certificate(certificate_pem)
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise CertificateError(f"the private key cannot be read: {error}") from None
    if not isinstance(
        key,
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise CertificateError(f"unsupported private key type {type(key).__name__}")
    public_format = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_matches = key.public_key().public_bytes(*public_format) == (
        certificate.public_key().public_bytes(*public_format)
    )
    return CertificateFacts(
        fingerprint=fingerprint(certificate_pem),
        names=derived_names(certificate_pem, sozu_version=sozu_version),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        key_matches=key_matches,
    )
