"""A pure re-implementation of the configuration state Sōzu's main process keeps.

It accepts and rejects requests exactly where Sōzu's `ConfigState` does: which objects are
upserted (clusters, backends), which are refused as duplicates (frontends, listeners), which
removals are silent (certificates) and which fail (NotFound or NoChange), and that nothing
cascades. The Sōzu emulator serves it over a socket; the planner replays plans over a copy of
it to prove that every intermediate step keeps traffic served.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.certificates import CertificateError, derived_names, fingerprint
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
from sozu_operator.proxy.responses import ClusterInformation, ListedFrontends, ListenersList


class ErrorKind(Enum):
    EXISTS = "exists"
    NOT_FOUND = "not_found"
    NO_CHANGE = "no_change"
    CERTIFICATE = "certificate"
    INVALID = "invalid"


class StateError(Exception):
    """Main refused the request; `str()` is the text Sōzu puts after its dispatch prefix."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @classmethod
    def exists(cls, object_kind: str, object_id: str) -> StateError:
        return cls(ErrorKind.EXISTS, f"{object_kind} '{object_id}' already exists")

    @classmethod
    def not_found(cls, object_kind: str, object_id: str) -> StateError:
        text = f"Did not find {object_kind} with address or id '{object_id}'"
        return cls(ErrorKind.NOT_FOUND, text)

    @classmethod
    def no_change(cls) -> StateError:
        return cls(
            ErrorKind.NO_CHANGE, "dispatching this request did not bring any change to the state"
        )


# Prefix main puts before a StateError in its FAILURE answer.
DISPATCH_FAILURE_PREFIX = "could not dispatch request on the main process state: "


def _tcp_debug(frontend: TcpFrontend) -> str:
    tags = ", ".join(f'"{k}": "{v}"' for k, v in frontend.tags)
    return (
        f'TcpFrontend {{ cluster_id: "{frontend.cluster_id}", address: {frontend.address}, '
        f"tags: {{{tags}}} }}"
    )


def _decode_hex(text: str) -> bytes:
    if len(text) % 2:
        raise ValueError("Odd number of digits")
    for position, char in enumerate(text):
        if char not in "0123456789abcdefABCDEF":
            raise ValueError(f"Invalid character {char!r} at position {position}")
    return bytes.fromhex(text)


@dataclass
class ConfigState:
    """Mutable on purpose, like Sōzu's: `dispatch` applies one request or raises StateError
    without changing anything (except where Sōzu itself changes state before failing, which
    is noted at that verb)."""

    sozu_version: int = 2
    clusters: dict[str, Cluster] = field(default_factory=dict)
    # Per-cluster lists are created on first add and never deleted, even when emptied: whether a
    # removal fails with NotFound or NoChange depends on that history, as in Sōzu.
    backends: dict[str, list[Backend]] = field(default_factory=dict)
    http_listeners: dict[SocketAddress, HttpListener] = field(default_factory=dict)
    https_listeners: dict[SocketAddress, HttpsListener] = field(default_factory=dict)
    tcp_listeners: dict[SocketAddress, TcpListener] = field(default_factory=dict)
    http_frontends: dict[str, HttpFrontend] = field(default_factory=dict)
    https_frontends: dict[str, HttpFrontend] = field(default_factory=dict)
    tcp_frontends: dict[str, list[TcpFrontend]] = field(default_factory=dict)
    certificates: dict[SocketAddress, dict[str, CertificateAndKey]] = field(default_factory=dict)
    request_counts: dict[str, int] = field(default_factory=dict)
    # Derived data for the per-cluster queries, kept valid by `dispatch` (the only writer of
    # the tables): routes grouped by cluster, rebuilt after any change, and cluster hashes,
    # dropped per cluster a request touches. Without them every `query_cluster_by_id` scanned
    # all routes and `query_clusters_hashes` did so once per cluster (minutes at 10k clusters).
    _generation: int = field(default=0, init=False, repr=False, compare=False)
    _routes_index: tuple[int, dict[str, tuple[list[HttpFrontend], list[HttpFrontend]]]] | None = (
        field(default=None, init=False, repr=False, compare=False)
    )
    _hash_cache: dict[str, int] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def copy(self) -> ConfigState:
        return copy.deepcopy(self)

    # --- mutations -------------------------------------------------------------------------

    def dispatch(self, request: rq.Mutation) -> None:
        self._generation += 1
        for cluster_id in self._clusters_touched(request):
            self._hash_cache.pop(cluster_id, None)
        verb = rq.verb_name(request)
        # Sōzu counts every request that reaches the state, accepted or not, and stores a new
        # key as 1 then increments it, so every count reads one too high.
        self.request_counts[verb] = self.request_counts.get(verb, 1) + 1
        match request:
            case rq.AddCluster(cluster):
                self.clusters[cluster.cluster_id] = cluster
            case rq.RemoveCluster(cluster_id):
                if self.clusters.pop(cluster_id, None) is None:
                    raise StateError.not_found("Cluster", cluster_id)
            case rq.AddHttpListener(listener):
                self._add_listener(self.http_listeners, listener, "HttpListener")
            case rq.AddHttpsListener(listener):
                self._add_listener(self.https_listeners, listener, "HttpsListener")
            case rq.AddTcpListener(listener):
                self._add_listener(self.tcp_listeners, listener, "TcpListener")
            case rq.RemoveListener(address, proxy):
                if self._listeners_of(proxy).pop(address, None) is None:
                    raise StateError.no_change()
            case rq.ActivateListener(address, proxy, _):
                self._set_active(address, proxy, active=True)
            case rq.DeactivateListener(address, proxy, _):
                self._set_active(address, proxy, active=False)
            case rq.AddHttpFrontend(frontend):
                self._add_frontend(self.http_frontends, frontend, "HttpFrontend")
            case rq.AddHttpsFrontend(frontend):
                self._add_frontend(self.https_frontends, frontend, "HttpsFrontend")
            case rq.RemoveHttpFrontend(frontend):
                self._remove_frontend(self.http_frontends, frontend, "HttpFrontend")
            case rq.RemoveHttpsFrontend(frontend):
                self._remove_frontend(self.https_frontends, frontend, "HttpsFrontend")
            case rq.AddTcpFrontend(frontend):
                bucket = self.tcp_frontends.setdefault(frontend.cluster_id, [])
                if frontend in bucket:
                    raise StateError.exists("TcpFrontend", _tcp_debug(frontend))
                bucket.append(frontend)
            case rq.RemoveTcpFrontend(frontend):
                tcp_bucket = self.tcp_frontends.get(frontend.cluster_id)
                if tcp_bucket is None:
                    raise StateError.not_found("TcpFrontend", _tcp_debug(frontend))
                kept = [front for front in tcp_bucket if front.address != frontend.address]
                if len(kept) == len(tcp_bucket):
                    raise StateError.no_change()
                tcp_bucket[:] = kept
            case rq.AddBackend(backend):
                bucket_ = self.backends.setdefault(backend.cluster_id, [])
                bucket_[:] = [
                    b
                    for b in bucket_
                    if (b.backend_id, b.address) != (backend.backend_id, backend.address)
                ]
                bucket_.append(backend)
                bucket_.sort(key=_backend_order)
            case rq.RemoveBackend(cluster_id, backend_id, address):
                backend_bucket = self.backends.get(cluster_id)
                if backend_bucket is None:
                    raise StateError.not_found("Backend", backend_id)
                kept_backends = [
                    b for b in backend_bucket if (b.backend_id, b.address) != (backend_id, address)
                ]
                if len(kept_backends) == len(backend_bucket):
                    raise StateError.no_change()
                backend_bucket[:] = kept_backends
            case rq.AddCertificate(address, certificate, _):
                self._add_certificate(address, certificate)
            case rq.RemoveCertificate(address, fp):
                try:
                    raw = _decode_hex(fp)
                except ValueError as error:
                    raise StateError(
                        ErrorKind.CERTIFICATE, f"Could not remove certificate: {error}"
                    ) from None
                self.certificates.get(address, {}).pop(raw.hex(), None)
            case rq.ReplaceCertificate(address, new_certificate, old_fingerprint, _):
                self._replace_certificate(address, new_certificate, old_fingerprint)
            case _:
                raise StateError(ErrorKind.INVALID, "State can not handle this request")

    def _clusters_touched(self, request: rq.Mutation) -> tuple[str, ...]:
        """Clusters whose `cluster_information` `request` may change (before it applies)."""
        match request:
            case rq.AddCluster(Cluster(cluster_id=cluster_id)) | rq.RemoveCluster(cluster_id):
                return (cluster_id,)
            case rq.AddBackend(Backend(cluster_id=cluster_id)) | rq.RemoveBackend(cluster_id):
                return (cluster_id,)
            case rq.AddTcpFrontend(frontend) | rq.RemoveTcpFrontend(frontend):
                return (frontend.cluster_id,)
            case (
                rq.AddHttpFrontend(frontend)
                | rq.AddHttpsFrontend(frontend)
                | rq.RemoveHttpFrontend(frontend)
                | rq.RemoveHttpsFrontend(frontend)
            ):
                # A removal goes by key: the route held there may point at another cluster.
                https = isinstance(request, rq.AddHttpsFrontend | rq.RemoveHttpsFrontend)
                held = (self.https_frontends if https else self.http_frontends).get(frontend.key)
                touched = {frontend.cluster_id, None if held is None else held.cluster_id}
                return tuple(cluster_id for cluster_id in touched if cluster_id is not None)
        return ()

    def _add_listener(
        self,
        table: dict[SocketAddress, HttpListener]
        | dict[SocketAddress, HttpsListener]
        | dict[SocketAddress, TcpListener],
        listener: HttpListener | HttpsListener | TcpListener,
        kind: str,
    ) -> None:
        if listener.address in table:
            raise StateError.exists(kind, str(listener.address))
        table[listener.address] = listener  # type: ignore[assignment]

    def _listeners_of(
        self, proxy: ListenerType
    ) -> (
        dict[SocketAddress, HttpListener]
        | dict[SocketAddress, HttpsListener]
        | dict[SocketAddress, TcpListener]
    ):
        if proxy is ListenerType.HTTP:
            return self.http_listeners
        if proxy is ListenerType.HTTPS:
            return self.https_listeners
        if proxy is ListenerType.TCP:
            return self.tcp_listeners
        raise StateError(ErrorKind.INVALID, f"Wrong field value: unknown enum value {int(proxy)}")

    def _set_active(self, address: SocketAddress, proxy: ListenerType, *, active: bool) -> None:
        table = self._listeners_of(proxy)
        listener = table.get(address)
        if listener is None:
            kind = {ListenerType.HTTP: "HttpListener", ListenerType.HTTPS: "HttpsListener"}
            raise StateError.not_found(kind.get(proxy, "TcpListener"), str(address))
        table[address] = replace(listener, active=active)  # type: ignore[assignment]

    def _add_frontend(
        self, table: dict[str, HttpFrontend], frontend: HttpFrontend, kind: str
    ) -> None:
        key = frontend.key
        if key in table:
            raise StateError.exists(kind, key)
        table[key] = frontend

    def _remove_frontend(
        self, table: dict[str, HttpFrontend], frontend: HttpFrontend, kind: str
    ) -> None:
        if table.pop(frontend.key, None) is None:
            raise StateError.not_found(kind, frontend.key)

    def _add_certificate(self, address: SocketAddress, certificate: CertificateAndKey) -> None:
        try:
            fp = fingerprint(certificate.certificate)
        except CertificateError as error:
            raise StateError(ErrorKind.CERTIFICATE, f"Could not add certificate: {error}") from None
        # Sōzu creates the per-address entry before it parses the names: a certificate that
        # fails there still leaves an empty entry behind.
        entry = self.certificates.setdefault(address, {})
        if not certificate.names:
            try:
                names = derived_names(certificate.certificate, sozu_version=self.sozu_version)
            except CertificateError as error:
                raise StateError(
                    ErrorKind.CERTIFICATE, f"Could not add certificate: {error}"
                ) from None
            certificate = replace(certificate, names=names)
        entry.setdefault(fp, certificate)

    def _replace_certificate(
        self, address: SocketAddress, new_certificate: CertificateAndKey, old_fingerprint: str
    ) -> None:
        try:
            old = _decode_hex(old_fingerprint).hex()
        except ValueError as error:
            raise StateError(
                ErrorKind.CERTIFICATE, f"Could not remove certificate: {error}"
            ) from None
        entry = self.certificates.get(address)
        if entry is None:
            raise StateError.not_found("Certificate", str(address))
        # The old certificate goes before the new one is parsed: a broken new certificate leaves
        # the address without either. That is Sōzu's behaviour; our planner refuses such plans.
        entry.pop(old, None)
        try:
            new = fingerprint(new_certificate.certificate)
        except CertificateError as error:
            raise StateError(
                ErrorKind.CERTIFICATE, f"Could not replace certificate: {error}"
            ) from None
        entry[new] = new_certificate

    # --- queries ---------------------------------------------------------------------------

    def list_listeners(self) -> ListenersList:
        return ListenersList(
            http=tuple(self.http_listeners[a] for a in sorted(self.http_listeners)),
            https=tuple(self.https_listeners[a] for a in sorted(self.https_listeners)),
            tcp=tuple(self.tcp_listeners[a] for a in sorted(self.tcp_listeners)),
        )

    def list_frontends(self, query: rq.ListFrontends) -> ListedFrontends:
        every_kind = not (query.http or query.https or query.tcp)

        def matching(table: dict[str, HttpFrontend]) -> tuple[HttpFrontend, ...]:
            return tuple(
                table[key]
                for key in sorted(table)
                if query.domain is None or query.domain in table[key].hostname
            )

        return ListedFrontends(
            http=matching(self.http_frontends) if query.http or every_kind else (),
            https=matching(self.https_frontends) if query.https or every_kind else (),
            tcp=tuple(self.iter_tcp_frontends())
            if (query.tcp or every_kind) and query.domain is None
            else (),
        )

    def iter_tcp_frontends(self) -> Iterator[TcpFrontend]:
        for cluster_id in sorted(self.tcp_frontends):
            yield from self.tcp_frontends[cluster_id]

    def iter_backends(self) -> Iterator[Backend]:
        for cluster_id in sorted(self.backends):
            yield from self.backends[cluster_id]

    def cluster_information(self, cluster_id: str) -> ClusterInformation | None:
        configuration = self.clusters.get(cluster_id)
        if configuration is None:
            return None
        http, https = self._routes_by_cluster().get(cluster_id, ([], []))
        return ClusterInformation(
            configuration=configuration,
            http_frontends=tuple(http),
            https_frontends=tuple(https),
            tcp_frontends=tuple(self.tcp_frontends.get(cluster_id, ())),
            backends=tuple(self.backends.get(cluster_id, ())),
        )

    def cluster_ids_by_domain(self, hostname: str, path: str | None) -> set[str]:
        found = set()
        for table in (self.http_frontends, self.https_frontends):
            for frontend in table.values():
                if frontend.hostname != hostname or frontend.cluster_id is None:
                    continue
                if path is None or frontend.path.value == path:
                    found.add(frontend.cluster_id)
        return found

    def certificates_matching(
        self, *, domain: str | None = None, fingerprint_hex: str | None = None
    ) -> dict[str, CertificateAndKey]:
        found: dict[str, CertificateAndKey] = {}
        for entry in self.certificates.values():
            for fp, certificate in entry.items():
                if domain is not None:
                    if domain not in certificate.names:
                        continue
                elif fingerprint_hex is not None and fp != fingerprint_hex:
                    continue
                found[fp] = certificate
        return dict(sorted(found.items()))

    def cluster_hashes(self) -> dict[str, int]:
        """A 64-bit digest per cluster over the same inputs Sōzu hashes (configuration,
        backends, TCP frontends, HTTP and HTTPS frontends routed to it).

        Sōzu's values come from Rust's unstable DefaultHasher and cannot be reproduced; these
        only share their meaning: equal while nothing of the cluster changed."""
        hashes = {}
        cache = self._hash_cache
        for cluster_id in sorted(self.clusters):
            value = cache.get(cluster_id)
            if value is None:
                information = self.cluster_information(cluster_id)
                digest = hashlib.blake2b(repr(information).encode(), digest_size=8).digest()
                value = cache[cluster_id] = int.from_bytes(digest, "little")
            hashes[cluster_id] = value
        return hashes

    def _routes_by_cluster(self) -> dict[str, tuple[list[HttpFrontend], list[HttpFrontend]]]:
        """cluster id → (HTTP routes, HTTPS routes) pointing at it, each in key order."""
        cached = self._routes_index
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        grouped: dict[str, tuple[list[HttpFrontend], list[HttpFrontend]]] = {}
        for slot, table in enumerate((self.http_frontends, self.https_frontends)):
            for key in sorted(table):
                front = table[key]
                if front.cluster_id is not None:
                    grouped.setdefault(front.cluster_id, ([], []))[slot].append(front)
        self._routes_index = (self._generation, grouped)
        return grouped

    def generate_requests(self) -> list[rq.Mutation]:
        """The requests that rebuild this state from nothing, in the order Sōzu writes its
        state file and replays state to a new worker."""
        requests: list[rq.Mutation] = []
        for address in sorted(self.http_listeners):
            requests.append(rq.AddHttpListener(self.http_listeners[address]))
            if self.http_listeners[address].active:
                requests.append(rq.ActivateListener(address, ListenerType.HTTP))
        for address in sorted(self.https_listeners):
            requests.append(rq.AddHttpsListener(self.https_listeners[address]))
            if self.https_listeners[address].active:
                requests.append(rq.ActivateListener(address, ListenerType.HTTPS))
        for address in sorted(self.tcp_listeners):
            requests.append(rq.AddTcpListener(self.tcp_listeners[address]))
            if self.tcp_listeners[address].active:
                requests.append(rq.ActivateListener(address, ListenerType.TCP))
        requests.extend(rq.AddCluster(self.clusters[c]) for c in sorted(self.clusters))
        requests.extend(
            rq.AddHttpFrontend(self.http_frontends[k]) for k in sorted(self.http_frontends)
        )
        for address in sorted(self.certificates):
            for fp in sorted(self.certificates[address]):
                requests.append(rq.AddCertificate(address, self.certificates[address][fp]))
        requests.extend(
            rq.AddHttpsFrontend(self.https_frontends[k]) for k in sorted(self.https_frontends)
        )
        requests.extend(rq.AddTcpFrontend(front) for front in self.iter_tcp_frontends())
        requests.extend(rq.AddBackend(backend) for backend in self.iter_backends())
        return requests

    @classmethod
    def from_requests(
        cls, requests: list[rq.Mutation], *, sozu_version: int = 2
    ) -> tuple[ConfigState, list[tuple[rq.Mutation, StateError]]]:
        """Replay requests like Sōzu's `load_state`: refused ones are skipped and returned."""
        state = cls(sozu_version=sozu_version)
        refused = []
        for request in requests:
            try:
                state.dispatch(request)
            except StateError as error:
                refused.append((request, error))
        return state, refused


def _backend_order(backend: Backend) -> tuple[str, str, SocketAddress, str, int, bool]:
    return (
        backend.cluster_id,
        backend.backend_id,
        backend.address,
        backend.sticky_id or "",
        -1 if backend.weight is None else backend.weight,
        bool(backend.backup),
    )
