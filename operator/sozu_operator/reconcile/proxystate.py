"""An immutable snapshot of what a Sōzu proxy serves, keyed by each object's Sōzu identity.

Both sides of a diff use it: the desired state built from resources and the live state read
from Sōzu (or from a saved state file).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from sozu_operator.proxy import requests as rq
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
from sozu_operator.proxy.state import ConfigState

BackendKey = tuple[str, str, SocketAddress]  # (cluster_id, backend_id, address)
CertificateKey = tuple[SocketAddress, str]  # (HTTPS listener address, fingerprint)
ListenerKey = tuple[ListenerType, SocketAddress]


K = TypeVar("K")
V = TypeVar("V")


def _frozen(items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> Mapping[K, V]:
    return MappingProxyType(dict(items))


@dataclass(frozen=True)
class ProxyState:
    clusters: Mapping[str, Cluster] = field(default_factory=_frozen)
    backends: Mapping[BackendKey, Backend] = field(default_factory=_frozen)
    http_frontends: Mapping[str, HttpFrontend] = field(default_factory=_frozen)
    https_frontends: Mapping[str, HttpFrontend] = field(default_factory=_frozen)
    tcp_frontends: frozenset[TcpFrontend] = frozenset()
    certificates: Mapping[CertificateKey, CertificateAndKey] = field(default_factory=_frozen)
    listeners: Mapping[ListenerKey, HttpListener | HttpsListener | TcpListener] = field(
        default_factory=_frozen
    )

    @classmethod
    def build(
        cls,
        *,
        clusters: Iterable[Cluster] = (),
        backends: Iterable[Backend] = (),
        http_frontends: Iterable[HttpFrontend] = (),
        https_frontends: Iterable[HttpFrontend] = (),
        tcp_frontends: Iterable[TcpFrontend] = (),
        certificates: Iterable[tuple[SocketAddress, str, CertificateAndKey]] = (),
        listeners: Iterable[HttpListener | HttpsListener | TcpListener] = (),
    ) -> ProxyState:
        return cls(
            clusters=_frozen((c.cluster_id, c) for c in clusters),
            backends=_frozen((b.identity, b) for b in backends),
            http_frontends=_frozen((f.key, f) for f in http_frontends),
            https_frontends=_frozen((f.key, f) for f in https_frontends),
            tcp_frontends=frozenset(tcp_frontends),
            certificates=_frozen(((a, fp), c) for a, fp, c in certificates),
            listeners=_frozen(((li.kind, li.address), li) for li in listeners),
        )

    @classmethod
    def of_tables(
        cls,
        *,
        clusters: dict[str, Cluster],
        backends: dict[BackendKey, Backend],
        http_frontends: dict[str, HttpFrontend],
        https_frontends: dict[str, HttpFrontend],
        tcp_frontends: Iterable[TcpFrontend],
        certificates: dict[CertificateKey, CertificateAndKey],
        listeners: Mapping[ListenerKey, HttpListener | HttpsListener | TcpListener] | None = None,
    ) -> ProxyState:
        """A snapshot over tables the caller hands over (and no longer changes)."""
        return cls(
            clusters=MappingProxyType(clusters),
            backends=MappingProxyType(backends),
            http_frontends=MappingProxyType(http_frontends),
            https_frontends=MappingProxyType(https_frontends),
            tcp_frontends=frozenset(tcp_frontends),
            certificates=MappingProxyType(certificates),
            listeners=_frozen() if listeners is None else listeners,
        )

    @classmethod
    def from_config_state(cls, state: ConfigState) -> ProxyState:
        return cls.build(
            clusters=state.clusters.values(),
            backends=state.iter_backends(),
            http_frontends=state.http_frontends.values(),
            https_frontends=state.https_frontends.values(),
            tcp_frontends=state.iter_tcp_frontends(),
            certificates=(
                (address, fp, certificate)
                for address, entry in state.certificates.items()
                for fp, certificate in entry.items()
            ),
            listeners=[
                *state.http_listeners.values(),
                *state.https_listeners.values(),
                *state.tcp_listeners.values(),
            ],
        )

    def to_config_state(self, *, sozu_version: int = 2) -> ConfigState:
        """A ConfigState holding exactly this snapshot (for simulation and the emulator)."""
        requests: list[rq.Mutation] = []
        for listener in self.listeners.values():
            match listener:
                case HttpListener():
                    requests.append(rq.AddHttpListener(listener))
                case HttpsListener():
                    requests.append(rq.AddHttpsListener(listener))
                case TcpListener():
                    requests.append(rq.AddTcpListener(listener))
        requests += [rq.AddCluster(c) for c in self.clusters.values()]
        requests += [rq.AddBackend(b) for b in self.backends.values()]
        requests += [rq.AddHttpFrontend(f) for f in self.http_frontends.values()]
        requests += [rq.AddHttpsFrontend(f) for f in self.https_frontends.values()]
        requests += [rq.AddTcpFrontend(f) for f in self.tcp_frontends]
        state = ConfigState(sozu_version=sozu_version)
        for request in requests:
            state.dispatch(request)
        # Certificates go in directly: the snapshot already knows their fingerprints and names,
        # and Sōzu would otherwise need to parse the PEM text.
        for (address, fp), certificate in self.certificates.items():
            state.certificates.setdefault(address, {})[fp] = certificate
        state.request_counts.clear()
        return state

    @property
    def object_count(self) -> int:
        return (
            len(self.clusters)
            + len(self.backends)
            + len(self.http_frontends)
            + len(self.https_frontends)
            + len(self.tcp_frontends)
            + len(self.certificates)
        )
