"""How an installation marks what it creates in Sōzu, so that it removes only its own objects
and keeps knowing which they are across its own restarts, with no local state file.

Every marker lives in Sōzu itself and travels with Sōzu's saved state:

- clusters: the Sōzu cluster id is `<owner>:<clusterId>`; backends belong to their cluster;
- HTTP, HTTPS and TCP frontends: the tags `sozu.io/owner=<owner>` and
  `sozu.io/resource=<namespace>/<name>`;
- certificates: one extra served name `<first 32 hex of fingerprint>.<owner>.owner.invalid`.
  `.invalid` is reserved (RFC 2606), so no client ever asks for it; it is unique per
  certificate because Sōzu 1.0 evicts certificates that share a name with a newer one.

Two installations sharing one Sōzu use different owner names and never touch each other's
objects; objects from Sōzu's own configuration file carry no marker and are never touched.
"""

from __future__ import annotations

import re

from sozu_operator.proxy.model import CertificateAndKey, HttpFrontend, Pairs, TcpFrontend

DEFAULT_OWNER = "sozu-operator"
OWNER_TAG = "sozu.io/owner"
RESOURCE_TAG = "sozu.io/resource"
RESERVED_TAGS = frozenset({OWNER_TAG, RESOURCE_TAG})
_OWNER_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
_MARKER_SUFFIX = ".owner.invalid"


def check_owner(owner: str) -> str:
    """Return `owner` if it is a valid installation name, else raise ValueError saying why."""
    if not _OWNER_NAME.fullmatch(owner):
        raise ValueError(
            f"owner {owner!r} must be 1 to 40 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return owner


def sozu_cluster_id(owner: str, cluster_id: str) -> str:
    return f"{owner}:{cluster_id}"


def owns_cluster(owner: str, sozu_id: str) -> bool:
    return sozu_id.startswith(f"{owner}:")


def frontend_tags(owner: str, resource: str, user_tags: Pairs = ()) -> Pairs:
    tags = dict(user_tags)
    tags[OWNER_TAG] = owner
    tags[RESOURCE_TAG] = resource
    return tuple(sorted(tags.items()))


def owns_frontend(owner: str, frontend: HttpFrontend | TcpFrontend) -> bool:
    return dict(frontend.tags).get(OWNER_TAG) == owner


def certificate_marker(owner: str, fingerprint: str) -> str:
    return f"{fingerprint[:32]}.{owner}{_MARKER_SUFFIX}"


def owns_certificate(owner: str, certificate: CertificateAndKey) -> bool:
    suffix = f".{owner}{_MARKER_SUFFIX}"
    return any(name.endswith(suffix) for name in certificate.names)


def served_names(certificate: CertificateAndKey) -> tuple[str, ...]:
    """The certificate's names without ownership markers: the SNI names it really serves."""
    return tuple(name for name in certificate.names if not name.endswith(_MARKER_SUFFIX))
