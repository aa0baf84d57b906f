"""Parsed, typed specs of the three resource kinds, and the errors that point into them.

Every value here has passed validation: addresses are `SocketAddress`es, enums are Sōzu's enums,
defaults are applied. Nothing in this module knows about Kubernetes objects as dicts.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import NamedTuple

from sozu_operator.proxy.model import (
    Header,
    ListenerType,
    LoadBalancing,
    LoadMetric,
    Pairs,
    PathRuleKind,
    ProxyProtocol,
    RedirectPolicy,
    RedirectScheme,
    RulePosition,
    SocketAddress,
    TlsVersion,
)


class ResourceRef(NamedTuple):
    """Which resource something is about: `str()` reads "SozuFrontend default/web".

    A named tuple, not a dataclass: refs key every per-resource table of a pass, and a
    tuple's hash and comparisons run in C (a dataclass's in Python, 12k of them per pass)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def namespaced_name(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one resource.

    `path` is written the way a user finds the field in YAML, e.g. "spec.backends[1].address";
    an empty path means the resource as a whole."""

    ref: ResourceRef
    path: str
    message: str

    def __str__(self) -> str:
        if not self.path:
            return f"{self.ref}: {self.message}"
        return f"{self.ref}: {self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class ResourceMeta:
    """The metadata the builder uses: generation for status, creation time for conflicts."""

    generation: int | None = None
    uid: str | None = None
    created: datetime.datetime | None = None


# --- SozuCluster -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """A Service whose endpoints become backends; `namespace` is already defaulted to the
    SozuCluster's own."""

    name: str
    port: int | str
    namespace: str


@dataclass(frozen=True, slots=True)
class BackendSpec:
    address: SocketAddress
    id: str | None = None
    weight: int | None = None
    backup: bool | None = None
    sticky_id: str | None = None

    @property
    def backend_id(self) -> str:
        # Derived from the address, not the list index: reordering a list (or an EndpointSlice
        # changing its order) must not turn into a remove and an add of every backend.
        return self.id if self.id is not None else str(self.address)


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    cluster_id: str  # without the owner prefix; defaulted to "<namespace>/<name>"
    class_name: str | None = None
    load_balancing: LoadBalancing = LoadBalancing.ROUND_ROBIN
    load_metric: LoadMetric | None = None
    sticky_session: bool = False
    https_redirect: bool = False
    proxy_protocol: ProxyProtocol | None = None
    answer_503: str | None = None
    backends: tuple[BackendSpec, ...] = ()
    service: ServiceRef | None = None
    # Sōzu 2.x only
    http2: bool | None = None
    answers: Pairs = ()
    https_redirect_port: int | None = None
    authorized_hashes: tuple[str, ...] = ()
    www_authenticate: str | None = None
    max_connections_per_ip: int | None = None
    retry_after: int | None = None

    def v2_only_fields(self) -> tuple[str, ...]:
        """Spec field names set here that Sōzu 1.0 does not know."""
        used = {
            "loadBalancing": self.load_balancing > LoadBalancing.POWER_OF_TWO,
            "http2": self.http2 is not None,
            "answers": bool(self.answers),
            "httpsRedirectPort": self.https_redirect_port is not None,
            "authorizedHashes": bool(self.authorized_hashes),
            "wwwAuthenticate": self.www_authenticate is not None,
            "maxConnectionsPerIp": self.max_connections_per_ip is not None,
            "retryAfter": self.retry_after is not None,
        }
        return tuple(name for name, is_set in used.items() if is_set)


# --- SozuFrontend ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PathSpec:
    kind: PathRuleKind = PathRuleKind.PREFIX
    value: str = ""


@dataclass(frozen=True, slots=True)
class FrontendSpec:
    cluster: str  # a SozuCluster name in the frontend's namespace
    address: SocketAddress
    protocol: ListenerType = ListenerType.HTTP
    class_name: str | None = None
    hostname: str | None = None  # None only for TCP
    path: PathSpec | None = None  # None only for TCP
    method: str | None = None
    position: RulePosition = RulePosition.TREE
    tags: Pairs = ()
    # Sōzu 2.x only
    redirect: RedirectPolicy | None = None
    required_auth: bool | None = None
    redirect_scheme: RedirectScheme | None = None
    redirect_template: str | None = None
    rewrite_host: str | None = None
    rewrite_path: str | None = None
    rewrite_port: int | None = None
    headers: tuple[Header, ...] = ()

    def v2_only_fields(self) -> tuple[str, ...]:
        used = {
            "redirect": self.redirect is not None,
            "requiredAuth": self.required_auth is not None,
            "redirectScheme": self.redirect_scheme is not None,
            "redirectTemplate": self.redirect_template is not None,
            "rewriteHost": self.rewrite_host is not None,
            "rewritePath": self.rewrite_path is not None,
            "rewritePort": self.rewrite_port is not None,
            "headers": bool(self.headers),
        }
        return tuple(name for name, is_set in used.items() if is_set)


# --- SozuCertificate ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A kubernetes.io/tls Secret; `namespace` is always the SozuCertificate's own."""

    name: str
    namespace: str


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """Certificate (leaf first, optionally followed by its chain) and key, both PEM: what an
    inline spec or a resolved Secret provides."""

    certificate: str
    key: str = field(repr=False)
    chain: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CertificateSpec:
    addresses: tuple[SocketAddress, ...]
    class_name: str | None = None
    inline: TlsMaterial | None = None
    secret_ref: SecretRef | None = None
    names: tuple[str, ...] = ()
    versions: tuple[TlsVersion, ...] = ()


Spec = ClusterSpec | FrontendSpec | CertificateSpec


@dataclass(frozen=True, slots=True)
class Parsed:
    """A resource that passed validation."""

    ref: ResourceRef
    spec: Spec
    meta: ResourceMeta = ResourceMeta()

    @property
    def class_name(self) -> str | None:
        return self.spec.class_name


@dataclass(frozen=True, slots=True)
class Invalid:
    """A resource that did not; `errors` is never empty."""

    ref: ResourceRef
    errors: tuple[FieldError, ...]
