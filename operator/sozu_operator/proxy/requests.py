"""One frozen dataclass per command-socket verb.

Class names are Sōzu's own CamelCase verb names, the same text Sōzu uses as keys in its
`count_requests` answer, so `verb_name(request)` is also the metrics label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias, TypeGuard

from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    ListenerType,
    SocketAddress,
    TcpFrontend,
    TcpListener,
)

# --- queries -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListWorkers:
    pass


@dataclass(frozen=True, slots=True)
class ListListeners:
    pass


@dataclass(frozen=True, slots=True)
class ListFrontends:
    """No kind flag set means every kind; `domain` is a substring filter on HTTP(S) hostnames."""

    http: bool = False
    https: bool = False
    tcp: bool = False
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class QueryClusterById:
    cluster_id: str


@dataclass(frozen=True, slots=True)
class QueryClustersByDomain:
    hostname: str
    path: str | None = None


@dataclass(frozen=True, slots=True)
class QueryClustersHashes:
    pass


@dataclass(frozen=True, slots=True)
class QueryCertificatesFromTheState:
    domain: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class QueryCertificatesFromWorkers:
    domain: str | None = None
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class CountRequests:
    pass


@dataclass(frozen=True, slots=True)
class SaveState:
    path: str


@dataclass(frozen=True, slots=True)
class LoadState:
    path: str


# --- mutations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddCluster:
    cluster: Cluster


@dataclass(frozen=True, slots=True)
class RemoveCluster:
    cluster_id: str


@dataclass(frozen=True, slots=True)
class AddHttpFrontend:
    frontend: HttpFrontend


@dataclass(frozen=True, slots=True)
class RemoveHttpFrontend:
    frontend: HttpFrontend


@dataclass(frozen=True, slots=True)
class AddHttpsFrontend:
    frontend: HttpFrontend


@dataclass(frozen=True, slots=True)
class RemoveHttpsFrontend:
    frontend: HttpFrontend


@dataclass(frozen=True, slots=True)
class AddTcpFrontend:
    frontend: TcpFrontend


@dataclass(frozen=True, slots=True)
class RemoveTcpFrontend:
    frontend: TcpFrontend


@dataclass(frozen=True, slots=True)
class AddBackend:
    backend: Backend


@dataclass(frozen=True, slots=True)
class RemoveBackend:
    cluster_id: str
    backend_id: str
    address: SocketAddress


@dataclass(frozen=True, slots=True)
class AddCertificate:
    address: SocketAddress
    certificate: CertificateAndKey
    expired_at: int | None = None


@dataclass(frozen=True, slots=True)
class ReplaceCertificate:
    address: SocketAddress
    new_certificate: CertificateAndKey
    old_fingerprint: str
    new_expired_at: int | None = None


@dataclass(frozen=True, slots=True)
class RemoveCertificate:
    address: SocketAddress
    fingerprint: str


@dataclass(frozen=True, slots=True)
class AddHttpListener:
    listener: HttpListener


@dataclass(frozen=True, slots=True)
class AddHttpsListener:
    listener: HttpsListener


@dataclass(frozen=True, slots=True)
class AddTcpListener:
    listener: TcpListener


@dataclass(frozen=True, slots=True)
class RemoveListener:
    address: SocketAddress
    proxy: ListenerType


@dataclass(frozen=True, slots=True)
class ActivateListener:
    address: SocketAddress
    proxy: ListenerType
    from_scm: bool = False


@dataclass(frozen=True, slots=True)
class DeactivateListener:
    address: SocketAddress
    proxy: ListenerType
    to_scm: bool = False


Query: TypeAlias = (
    ListWorkers
    | ListListeners
    | ListFrontends
    | Status
    | QueryClusterById
    | QueryClustersByDomain
    | QueryClustersHashes
    | QueryCertificatesFromTheState
    | QueryCertificatesFromWorkers
    | CountRequests
    | SaveState
    | LoadState
)

Mutation: TypeAlias = (
    AddCluster
    | RemoveCluster
    | AddHttpFrontend
    | RemoveHttpFrontend
    | AddHttpsFrontend
    | RemoveHttpsFrontend
    | AddTcpFrontend
    | RemoveTcpFrontend
    | AddBackend
    | RemoveBackend
    | AddCertificate
    | ReplaceCertificate
    | RemoveCertificate
    | AddHttpListener
    | AddHttpsListener
    | AddTcpListener
    | RemoveListener
    | ActivateListener
    | DeactivateListener
)

Request: TypeAlias = Query | Mutation

MUTATIONS: tuple[type[Mutation], ...] = (
    AddCluster,
    RemoveCluster,
    AddHttpFrontend,
    RemoveHttpFrontend,
    AddHttpsFrontend,
    RemoveHttpsFrontend,
    AddTcpFrontend,
    RemoveTcpFrontend,
    AddBackend,
    RemoveBackend,
    AddCertificate,
    ReplaceCertificate,
    RemoveCertificate,
    AddHttpListener,
    AddHttpsListener,
    AddTcpListener,
    RemoveListener,
    ActivateListener,
    DeactivateListener,
)


def verb_name(request: Request) -> str:
    """Sōzu's CamelCase name for the verb, as `count_requests` reports it."""
    return type(request).__name__


def is_mutation(request: Request) -> TypeGuard[Mutation]:
    return isinstance(request, MUTATIONS)
