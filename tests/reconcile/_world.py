"""Small builders for planner tests: one owner, one listener of each type, real certificates.

Certificates are real (Sōzu fingerprints the DER) but generated once per label and cached,
since key generation is the slow part of these tests.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

from tests.certs import make_certificate

from sozu_operator.proxy.certificates import fingerprint
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    PathRule,
    PathRuleKind,
    RulePosition,
    SocketAddress,
    TcpFrontend,
    TcpListener,
)
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.proxystate import ProxyState

OWNER = "me"
OTHER = "them"
HTTP = SocketAddress.parse("0.0.0.0:80")
HTTPS = SocketAddress.parse("0.0.0.0:443")
TCP = SocketAddress.parse("0.0.0.0:5000")
NO_LISTENER = SocketAddress.parse("0.0.0.0:8888")
LISTENERS = (HttpListener(HTTP), HttpsListener(HTTPS), TcpListener(TCP))


def cid(name: str, owner: str = OWNER) -> str:
    return ownership.sozu_cluster_id(owner, name)


def cluster(name: str, owner: str = OWNER, **options: Any) -> Cluster:
    return Cluster(cid(name, owner), **options)


def backend(
    name: str, backend_id: str, address: str, *, owner: str = OWNER, weight: int | None = None,
    backup: bool | None = None, sticky_id: str | None = None,
) -> Backend:
    return Backend(
        cid(name, owner), backend_id, SocketAddress.parse(address), sticky_id, weight, backup
    )


def front(
    hostname: str,
    path: str = "/",
    *,
    target: str | None = "web",
    address: SocketAddress = HTTP,
    owner: str | None = OWNER,
    resource: str = "default/web",
    position: RulePosition = RulePosition.TREE,
    kind: PathRuleKind = PathRuleKind.PREFIX,
) -> HttpFrontend:
    """An HTTP(S) frontend; `owner=None` makes it untagged (as in Sōzu's static config)."""
    tags = () if owner is None else ownership.frontend_tags(owner, resource)
    cluster_id = None if target is None else cid(target, owner or OWNER)
    return HttpFrontend(
        address, hostname, PathRule(kind, path), cluster_id, position=position, tags=tags
    )


def secure(hostname: str, path: str = "/", **kwargs: Any) -> HttpFrontend:
    return front(hostname, path, address=HTTPS, **kwargs)


def tcp(target: str, *, address: SocketAddress = TCP, owner: str | None = OWNER) -> TcpFrontend:
    tags = () if owner is None else ownership.frontend_tags(owner, "default/db")
    return TcpFrontend(cid(target, owner or OWNER), address, tags)


Cert = tuple[SocketAddress, str, CertificateAndKey]


@functools.cache
def pem_pair(label: str) -> tuple[str, str]:
    """A real certificate and key, one per label (the label only tells them apart)."""
    return make_certificate([f"{label}.pool.test"])


def certificate(
    names: Iterable[str], *, label: str = "a", owner: str | None = OWNER,
    address: SocketAddress = HTTPS,
) -> Cert:
    """A certificate serving `names` (set explicitly, as the builder does), with the owner's
    marker name unless `owner` is None."""
    pem, key = pem_pair(label)
    fp = fingerprint(pem)
    served = tuple(names)
    marker = () if owner is None else (ownership.certificate_marker(owner, fp),)
    return address, fp, CertificateAndKey(pem, key, names=served + marker)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Objects of one side; frontends at the HTTPS address go to the HTTPS map."""

    clusters: tuple[Cluster, ...] = ()
    backends: tuple[Backend, ...] = ()
    fronts: tuple[HttpFrontend, ...] = ()
    tcp_fronts: tuple[TcpFrontend, ...] = ()
    certificates: tuple[Cert, ...] = ()

    def but(
        self,
        *,
        clusters: Iterable[Cluster] | None = None,
        backends: Iterable[Backend] | None = None,
        fronts: Iterable[HttpFrontend] | None = None,
        tcp_fronts: Iterable[TcpFrontend] | None = None,
        certificates: Iterable[Cert] | None = None,
    ) -> Spec:
        """A copy with the given kinds replaced."""
        return Spec(
            self.clusters if clusters is None else tuple(clusters),
            self.backends if backends is None else tuple(backends),
            self.fronts if fronts is None else tuple(fronts),
            self.tcp_fronts if tcp_fronts is None else tuple(tcp_fronts),
            self.certificates if certificates is None else tuple(certificates),
        )

    def __add__(self, other: Spec) -> Spec:
        return Spec(
            self.clusters + other.clusters,
            self.backends + other.backends,
            self.fronts + other.fronts,
            self.tcp_fronts + other.tcp_fronts,
            self.certificates + other.certificates,
        )

    def live(self) -> ProxyState:
        """As read from Sōzu: with one listener of each type."""
        return self._state(LISTENERS)

    def desired(self) -> ProxyState:
        """As the builder makes it: no listener."""
        return self._state(())

    def _state(
        self, listeners: Iterable[HttpListener | HttpsListener | TcpListener]
    ) -> ProxyState:
        return ProxyState.build(
            clusters=self.clusters,
            backends=self.backends,
            http_frontends=[f for f in self.fronts if f.address != HTTPS],
            https_frontends=[f for f in self.fronts if f.address == HTTPS],
            tcp_frontends=self.tcp_fronts,
            certificates=self.certificates,
            listeners=listeners,
        )


def web(*, weight: int | None = None) -> Spec:
    """One cluster `web` with two backends, an HTTP route, an HTTPS route and its certificate."""
    return Spec(
        clusters=(cluster("web"),),
        backends=(
            backend("web", "web-0", "10.0.0.1:8080", weight=weight),
            backend("web", "web-1", "10.0.0.2:8080"),
        ),
        fronts=(front("example.com"), secure("example.com")),
        certificates=(certificate(["example.com"]),),
    )


EMPTY = Spec()
