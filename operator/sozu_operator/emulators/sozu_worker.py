"""One emulated Sōzu worker: its own `ConfigState` copy plus the few live-proxy checks that
make workers answer FAILURE where main said yes.

A real worker applies every request twice: first to its own `ConfigState` (errors there are
only logged), then to its live proxy objects (listeners, routers, certificate resolvers), and
its answer reflects only the second step. That split is what produces the "main changed,
workers refused" divergence a reconciler must survive, so it is reproduced here; the live
objects are reduced to what decides success or failure and what
`query_certificates_from_workers` reports.

Worker error texts follow upstream's wording where it is stable (listener lookups, certificate
parsing); router refusals embed a Rust debug dump upstream and only their envelope is
promised here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.certificates import (
    CertificateError,
    derived_names,
    fingerprint,
    load_certificate,
)
from sozu_operator.proxy.model import (
    CertificateAndKey,
    HttpFrontend,
    ListenerType,
    PathRuleKind,
    RulePosition,
    SocketAddress,
)
from sozu_operator.proxy.responses import (
    CertificatesByAddress,
    CertificateSummary,
    CertificatesWithFingerprints,
    ClusterHashes,
    ClusterInformations,
    ListOfCertificatesByAddress,
    ResponseContent,
)
from sozu_operator.proxy.state import ConfigState, StateError

logger = logging.getLogger(__name__)

_KIND_NAMES = {ListenerType.HTTP: "HTTP", ListenerType.HTTPS: "HTTPS", ListenerType.TCP: "TCP"}


@dataclass(frozen=True, slots=True)
class WorkerAnswer:
    """What a worker sends back to main for one request."""

    ok: bool
    message: str = ""
    content: ResponseContent | None = None

    @classmethod
    def failure(cls, message: str) -> WorkerAnswer:
        return cls(ok=False, message=message)


_OK = WorkerAnswer(ok=True)

# A router rule: the structure it lives in (PRE list, POST list or the hostname TREE), then
# hostname, path rule and method. Unlike main's frontend key, the position is part of it.
_RouteKey = tuple[RulePosition, str, PathRuleKind, str, str | None]


@dataclass(frozen=True, slots=True)
class _LiveCertificate:
    names: tuple[str, ...]
    # Chooses among certificates sharing a name; `expired_at` overrides the real not-after.
    expires: int


@dataclass
class _LiveListener:
    kind: ListenerType
    active: bool = False
    routes: set[_RouteKey] = field(default_factory=set)
    certificates: dict[str, _LiveCertificate] = field(default_factory=dict)
    tcp_cluster: str | None = None


def _tree_hostname(hostname: str) -> str:
    # Workers IDNA-normalise TREE hostnames (UTS 46 lower-cases); main keeps them raw.
    try:
        return hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return hostname.lower()


def _route_key(frontend: HttpFrontend) -> _RouteKey:
    hostname = (
        _tree_hostname(frontend.hostname)
        if frontend.position is RulePosition.TREE
        else frontend.hostname
    )
    return (frontend.position, hostname, frontend.path.kind, frontend.path.value, frontend.method)


def _frontend_dump(frontend: HttpFrontend) -> str:
    # Upstream embeds a Rust debug dump here; only the envelope around it is promised.
    return (
        f"HttpFrontend {{ route: {frontend.cluster_id!r}, address: {frontend.address}, "
        f"hostname: {frontend.hostname!r}, path: {frontend.path.key_text!r}, "
        f"method: {frontend.method!r}, position: {frontend.position.name} }}"
    )


def _no_listener(address: SocketAddress) -> str:
    return f"found no listener with address {address}"


class EmulatedWorker:
    """A worker process as main sees it: an id, a pid, and answers to requests."""

    def __init__(
        self, worker_id: int, pid: int, *, sozu_version: int, initial: ConfigState
    ) -> None:
        self.id = worker_id
        self.pid = pid
        self.sozu_version = sozu_version
        self.state = ConfigState(sozu_version=sozu_version)
        self._listeners: dict[tuple[ListenerType, SocketAddress], _LiveListener] = {}
        # A new worker receives main's whole state as requests; whatever its live objects
        # refuse is only logged, exactly as for any other request.
        for request in initial.generate_requests():
            answer = self.apply(request)
            if not answer.ok:
                logger.debug(
                    "worker %d refused replayed %s: %s",
                    self.id,
                    rq.verb_name(request),
                    answer.message,
                )

    # --- mutations -------------------------------------------------------------------------

    def apply(self, request: rq.Mutation, *, live: bool = True) -> WorkerAnswer:
        """Apply to the worker's ConfigState, then (unless `live` is False, used for injected
        failures) to its live objects; the answer reflects the live step only."""
        try:
            self.state.dispatch(request)
        except StateError as error:
            logger.debug("worker %d state refused %s: %s", self.id, rq.verb_name(request), error)
        if not live:
            return _OK
        return self._apply_live(request)

    def _apply_live(self, request: rq.Mutation) -> WorkerAnswer:
        match request:
            case rq.AddCluster() | rq.RemoveCluster() | rq.AddBackend() | rq.RemoveBackend():
                # Cluster and backend tables accept anything, even without a cluster.
                return _OK
            case (
                rq.AddHttpListener(listener)
                | rq.AddHttpsListener(listener)
                | rq.AddTcpListener(listener)
            ):
                # Workers create listeners inactive whatever `active` says.
                self._listeners.setdefault(
                    (listener.kind, listener.address), _LiveListener(listener.kind)
                )
                return _OK
            case rq.RemoveListener(address, proxy):
                removed = self._listeners.pop((proxy, address), None)
                if removed is None and proxy is ListenerType.TCP:
                    return WorkerAnswer.failure(f"no TCP listener to remove at address {address}")
                return _OK
            case rq.ActivateListener(address, proxy, _):
                return self._set_active(address, proxy, active=True)
            case rq.DeactivateListener(address, proxy, _):
                return self._set_active(address, proxy, active=False)
            case rq.AddHttpFrontend(frontend):
                return self._add_route(ListenerType.HTTP, frontend)
            case rq.AddHttpsFrontend(frontend):
                return self._add_route(ListenerType.HTTPS, frontend)
            case rq.RemoveHttpFrontend(frontend):
                return self._remove_route(ListenerType.HTTP, frontend)
            case rq.RemoveHttpsFrontend(frontend):
                return self._remove_route(ListenerType.HTTPS, frontend)
            case rq.AddTcpFrontend(frontend):
                tcp = self._listeners.get((ListenerType.TCP, frontend.address))
                if tcp is None:
                    return WorkerAnswer.failure(_no_listener(frontend.address))
                # One cluster per TCP listener: a later add silently takes it over.
                tcp.tcp_cluster = frontend.cluster_id
                return _OK
            case rq.RemoveTcpFrontend(frontend):
                tcp = self._listeners.get((ListenerType.TCP, frontend.address))
                if tcp is None:
                    return WorkerAnswer.failure(_no_listener(frontend.address))
                tcp.tcp_cluster = None
                return _OK
            case rq.AddCertificate(address, certificate, expired_at):
                return self._add_certificate(address, certificate, expired_at)
            case rq.ReplaceCertificate(address, new_certificate, old_fingerprint, expired_at):
                return self._replace_certificate(
                    address, new_certificate, old_fingerprint, expired_at
                )
            case rq.RemoveCertificate(address, fp):
                https = self._listeners.get((ListenerType.HTTPS, address))
                if https is None:
                    return WorkerAnswer.failure(_no_listener(address))
                https.certificates.pop(fp.lower(), None)
                return _OK
        return WorkerAnswer.failure("unsupported message")

    def _set_active(
        self, address: SocketAddress, proxy: ListenerType, *, active: bool
    ) -> WorkerAnswer:
        listener = self._listeners.get((proxy, address))
        if listener is None:
            verb = "activate" if active else "deactivate"
            return WorkerAnswer.failure(
                f"Could not {verb} {_KIND_NAMES[proxy]} listener: {_no_listener(address)}"
            )
        listener.active = active
        return _OK

    def _add_route(self, kind: ListenerType, frontend: HttpFrontend) -> WorkerAnswer:
        listener = self._listeners.get((kind, frontend.address))
        if listener is None:
            return WorkerAnswer.failure(_no_listener(frontend.address))
        key = _route_key(frontend)
        if key in listener.routes:
            return WorkerAnswer.failure(
                "could not add frontend: could not add frontend: Could not add route "
                + _frontend_dump(frontend)
            )
        listener.routes.add(key)
        return _OK

    def _remove_route(self, kind: ListenerType, frontend: HttpFrontend) -> WorkerAnswer:
        listener = self._listeners.get((kind, frontend.address))
        if listener is None:
            return WorkerAnswer.failure(_no_listener(frontend.address))
        key = _route_key(frontend)
        if key in listener.routes:
            listener.routes.remove(key)
        elif frontend.position is not RulePosition.TREE:
            # Only the PRE/POST lists report a miss; a TREE removal that matched nothing is OK.
            return WorkerAnswer.failure(
                "could not remove frontend: could not remove frontend: Could not remove route "
                + _frontend_dump(frontend)
            )
        return _OK

    def _parse_certificate(
        self, certificate: CertificateAndKey, expired_at: int | None
    ) -> tuple[str, _LiveCertificate] | str:
        """(fingerprint, live entry), or the reason the worker cannot use it."""
        try:
            parsed = load_certificate(certificate.certificate)
            fp = fingerprint(certificate.certificate)
            names = certificate.names or derived_names(
                certificate.certificate, sozu_version=self.sozu_version
            )
        except CertificateError as error:
            return f"error parsing x509 cert from bytes: {error}"
        if not certificate.key.strip():
            return "empty key"
        try:
            # Workers parse the key but do not check that it matches the certificate.
            serialization.load_pem_private_key(certificate.key.encode(), password=None)
        except (ValueError, TypeError) as error:
            return f"invalid private key: {error}"
        not_after = parsed.not_valid_after_utc
        expires = expired_at if expired_at is not None else int(not_after.timestamp())
        return fp, _LiveCertificate(names, expires)

    def _add_certificate(
        self, address: SocketAddress, certificate: CertificateAndKey, expired_at: int | None
    ) -> WorkerAnswer:
        https = self._listeners.get((ListenerType.HTTPS, address))
        if https is None:
            return WorkerAnswer.failure(_no_listener(address))
        parsed = self._parse_certificate(certificate, expired_at)
        if isinstance(parsed, str):
            return WorkerAnswer.failure(f"could not add certificate: {parsed}")
        fp, live = parsed
        https.certificates.setdefault(fp, live)
        return _OK

    def _replace_certificate(
        self,
        address: SocketAddress,
        certificate: CertificateAndKey,
        old_fingerprint: str,
        expired_at: int | None,
    ) -> WorkerAnswer:
        https = self._listeners.get((ListenerType.HTTPS, address))
        if https is None:
            return WorkerAnswer.failure(_no_listener(address))
        old = old_fingerprint.lower()
        if self.sozu_version < 2:
            # 1.0 drops the old certificate first: a broken new one leaves neither.
            https.certificates.pop(old, None)
        parsed = self._parse_certificate(certificate, expired_at)
        if isinstance(parsed, str):
            return WorkerAnswer.failure(f"could not replace certificate: {parsed}")
        fp, live = parsed
        if fp == old:
            https.certificates.setdefault(fp, live)
            return _OK
        https.certificates[fp] = live
        https.certificates.pop(old, None)
        return _OK

    # --- queries ---------------------------------------------------------------------------

    def query(self, request: rq.Query) -> WorkerAnswer:
        """Answer a fanned-out query from this worker's own view."""
        match request:
            case rq.QueryClustersHashes():
                return WorkerAnswer(True, content=ClusterHashes(self.state.cluster_hashes()))
            case rq.QueryClusterById(cluster_id):
                information = self.state.cluster_information(cluster_id)
                found = () if information is None else (information,)
                return WorkerAnswer(True, content=ClusterInformations(found))
            case rq.QueryClustersByDomain(hostname, path):
                ids = sorted(self.state.cluster_ids_by_domain(hostname, path))
                infos = (self.state.cluster_information(cluster_id) for cluster_id in ids)
                return WorkerAnswer(
                    True, content=ClusterInformations(tuple(i for i in infos if i is not None))
                )
            case rq.QueryCertificatesFromWorkers(domain, fp) if fp is not None:
                # A fingerprint filter is answered from the worker's ConfigState, not from
                # its live resolvers.
                certificates = self.state.certificates_matching(domain=domain, fingerprint_hex=fp)
                if not certificates:
                    return WorkerAnswer.failure("Could not find certificate for this fingerprint")
                return WorkerAnswer(True, content=CertificatesWithFingerprints(certificates))
            case rq.QueryCertificatesFromWorkers(domain, _):
                return WorkerAnswer(True, content=self._resolver_summaries(domain))
            case rq.Status():
                return _OK
        return WorkerAnswer.failure("unsupported message")

    def _resolver_summaries(self, domain: str | None) -> ListOfCertificatesByAddress:
        groups = []
        for (kind, address), listener in sorted(
            self._listeners.items(), key=lambda item: item[0][1]
        ):
            if kind is not ListenerType.HTTPS:
                continue
            served = _served_names(listener.certificates)
            if domain is None:
                summaries = tuple(CertificateSummary(name, served[name]) for name in sorted(served))
            else:
                match = _lookup(served, domain)
                summaries = () if match is None else (CertificateSummary(*match),)
            groups.append(CertificatesByAddress(address, summaries))
        return ListOfCertificatesByAddress(tuple(groups))


def _served_names(certificates: dict[str, _LiveCertificate]) -> dict[str, str]:
    """name → fingerprint of the certificate a resolver serves for it: the one expiring last
    (2.1.0 behaviour; 1.0's eviction on add is not reproduced)."""
    best: dict[str, tuple[int, str]] = {}
    for fp, live in certificates.items():
        for name in live.names:
            candidate = (live.expires, fp)
            if name not in best or candidate > best[name]:
                best[name] = candidate
    return {name: fp for name, (_, fp) in best.items()}


def _lookup(served: dict[str, str], domain: str) -> tuple[str, str] | None:
    if domain in served:
        return domain, served[domain]
    _, dot, parent = domain.partition(".")
    wildcard = f"*.{parent}"
    if dot and wildcard in served:
        return wildcard, served[wildcard]
    return None
