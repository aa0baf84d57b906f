"""Translation between the typed models of `sozu_operator.proxy` and the protobuf messages of
each Sōzu wire version. This is the only module that touches the generated `_pb` code.

Rules that are easy to get wrong, and why they are here:

* Every proto2 `required` field is set explicitly, even at its default. Sōzu's encoder (prost)
  always writes them, and byte-exact frames (tests, emulator) depend on doing the same.
* An optional model field left at None is absent on the wire; Sōzu treats absence differently
  from a default value in several places (e.g. a frontend without `cluster_id` denies access).
* IPv6 addresses are split into the halves of Sōzu's `Uint128` by `proxy.scalars`, which the
  state file shares (the .proto comments get the order of the halves wrong).
* Decoding is as lenient as Sōzu's: an absent required field takes its default, and a port is
  truncated to 16 bits. Only bytes that are not protobuf (or not UTF-8 where text is expected,
  which Sōzu also refuses) raise `UndecodablePayload`.
* Things the models do not describe (metrics, UDP, 2.x health checks, HSTS, HTTP/2 tuning of
  listeners) are dropped when decoding and are never sent.
* The 1.0 codec refuses, with `UnsupportedByVersion`, any model that sets a 2.x-only field,
  rather than silently sending a request that Sōzu 1.0 would apply without it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from enum import IntEnum
from typing import Any, TypeAlias, TypeVar

from google.protobuf.message import DecodeError

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    Header,
    HeaderPosition,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    Listener,
    ListenerType,
    LoadBalancing,
    LoadMetric,
    PathRule,
    PathRuleKind,
    ProxyProtocol,
    RedirectPolicy,
    RedirectScheme,
    RulePosition,
    SocketAddress,
    TcpFrontend,
    TcpListener,
    TlsVersion,
    pairs,
)
from sozu_operator.proxy.requests import Request
from sozu_operator.proxy.responses import (
    CertificatesByAddress,
    CertificateSummary,
    CertificatesWithFingerprints,
    ClusterHashes,
    ClusterInformation,
    ClusterInformations,
    Event,
    ListedFrontends,
    ListenersList,
    ListOfCertificatesByAddress,
    RequestCounts,
    Response,
    ResponseContent,
    ResponseStatus,
    RunState,
    WorkerInfo,
    WorkerInfos,
    WorkerResponses,
)
from sozu_operator.proxy.scalars import ipv6_from_halves, ipv6_halves
from sozu_operator.wire._pb.v1 import command_pb2 as _pb_v1
from sozu_operator.wire._pb.v2 import command_pb2 as _pb_v2
from sozu_operator.wire.errors import ProtocolError, UndecodablePayload, UnsupportedByVersion

# mypy does not follow the generated modules (see pyproject.toml), so their messages are Any.
_Message: TypeAlias = Any

_T = TypeVar("_T")


class WireVersion(IntEnum):
    """Which Sōzu release's .proto the bytes follow."""

    V1 = 1  # Sōzu 1.0.x
    V2 = 2  # Sōzu 2.1.x

    @property
    def sozu_release(self) -> str:
        return {WireVersion.V1: "1.0", WireVersion.V2: "2.1"}[self]


_MODULES: dict[WireVersion, Any] = {WireVersion.V1: _pb_v1, WireVersion.V2: _pb_v2}


# Model fields that only Sōzu 2.x messages have; the 1.0 codec refuses models setting them.
_CLUSTER_V2_FIELDS = (
    "http2",
    "answers",
    "https_redirect_port",
    "authorized_hashes",
    "www_authenticate",
    "max_connections_per_ip",
    "retry_after",
)
_HTTP_FRONTEND_V2_FIELDS = (
    "redirect",
    "required_auth",
    "redirect_scheme",
    "redirect_template",
    "rewrite_host",
    "rewrite_path",
    "rewrite_port",
    "headers",
)


class _NotUtf8(Exception):
    """A string field held bytes that are not UTF-8 (the protobuf runtime hands them over as
    `bytes` instead of failing); turned into UndecodablePayload at the entry points."""


def _text(value: str | bytes, field: str) -> str:
    if isinstance(value, bytes):
        raise _NotUtf8(f"{field} is not valid UTF-8")
    return value


def _texts(values: Iterable[str | bytes], field: str) -> tuple[str, ...]:
    return tuple(_text(value, field) for value in values)


def _optional(message: _Message, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def _optional_text(message: _Message, field: str) -> str | None:
    return _text(getattr(message, field), field) if message.HasField(field) else None


def _set_optional(message: _Message, field: str, value: object) -> None:
    if value is not None:
        setattr(message, field, value)


_Listener = TypeVar("_Listener", HttpListener, HttpsListener, TcpListener)


def _sorted_by_address(listeners: Iterable[_Listener]) -> tuple[_Listener, ...]:
    return tuple(sorted(listeners, key=lambda listener: listener.address))


def _string_map(entries: Mapping[str | bytes, str | bytes], field: str) -> dict[str, str]:
    return {_text(key, field): _text(value, field) for key, value in entries.items()}


class Codec:
    """Encodes and decodes command-socket payloads (frames without their length prefix) for
    one wire version. Stateless; one instance per version can be shared freely."""

    def __init__(self, version: WireVersion) -> None:
        self.version = WireVersion(version)
        self._pb = _MODULES[self.version]

    def __repr__(self) -> str:
        return f"Codec({self.version!r})"

    # --- public API ------------------------------------------------------------------------

    def encode_request(self, request: Request) -> bytes:
        message = self._pb.Request()
        self._fill_request(message, request)
        return bytes(message.SerializeToString(deterministic=True))

    def decode_request(self, payload: bytes) -> Request | None:
        """The request in `payload`, or None when it sets no verb this package models: an
        empty Request, a verb unknown to this version (Sōzu ignores both without answering),
        or a real but unmodelled verb such as `soft_stop` (see `request_member`)."""
        message = self._parse("Request", payload)
        member = message.WhichOneof("request_type")
        if member is None:
            return None
        return self._guard(payload, "Request", lambda: self._request(member, message))

    def request_member(self, payload: bytes) -> str | None:
        """Name of the `request_type` member set in `payload` (e.g. "soft_stop"), or None if
        none is set. Lets a server tell a silent empty request from an unmodelled verb."""
        member = self._parse("Request", payload).WhichOneof("request_type")
        return None if member is None else str(member)

    def encode_response(self, response: Response) -> bytes:
        message = self._pb.Response()
        message.status = int(response.status)
        message.message = response.message
        if response.content is not None:
            self._fill_content(message.content, response.content)
        return bytes(message.SerializeToString(deterministic=True))

    def decode_response(self, payload: bytes) -> Response:
        message = self._parse("Response", payload)

        def build() -> Response:
            content = self._content(message.content) if message.HasField("content") else None
            return Response(
                ResponseStatus(message.status), _text(message.message, "message"), content
            )

        return self._guard(payload, "Response", build)

    # --- plumbing --------------------------------------------------------------------------

    def _parse(self, type_name: str, payload: bytes) -> _Message:
        message = getattr(self._pb, type_name)()
        try:
            message.ParseFromString(payload)
        except DecodeError as error:
            raise UndecodablePayload(
                f"sozu.{self.version.name.lower()}.{type_name}", payload, str(error)
            ) from None
        return message

    def _guard(self, payload: bytes, type_name: str, build: Callable[[], _T]) -> _T:
        try:
            return build()
        except (_NotUtf8, UnicodeDecodeError) as error:
            # UnicodeDecodeError: the protobuf runtime decodes the string keys and values of
            # map fields lazily, while they are iterated, and fails there on bad UTF-8.
            raise UndecodablePayload(
                f"sozu.{self.version.name.lower()}.{type_name}", payload, str(error)
            ) from None

    def _only_in_v2(self, field: str) -> None:
        if self.version is WireVersion.V1:
            raise UnsupportedByVersion(field, self.version.sozu_release)

    def _refuse_v2_fields(self, model: object, fields: tuple[str, ...]) -> None:
        for field in fields:
            if getattr(model, field) not in (None, ()):  # unset = None, or () for collections
                self._only_in_v2(f"{type(model).__name__}.{field}")

    # --- addresses -------------------------------------------------------------------------

    def _fill_address(self, message: _Message, address: SocketAddress) -> None:
        if isinstance(address.ip, ipaddress.IPv4Address):
            message.ip.v4 = int(address.ip)
        else:
            message.ip.v6.high, message.ip.v6.low = ipv6_halves(address.ip)
        message.port = address.port

    @staticmethod
    def _address(message: _Message) -> SocketAddress:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address
        match message.ip.WhichOneof("inner"):
            case "v6":
                ip = ipv6_from_halves(message.ip.v6.high, message.ip.v6.low)
            case "v4":
                ip = ipaddress.IPv4Address(message.ip.v4)
            case _:  # Sōzu reads an IpAddress with no member as 0.0.0.0
                ip = ipaddress.IPv4Address(0)
        # Sōzu keeps only the low 16 bits of the uint32 port.
        return SocketAddress(ip, message.port & 0xFFFF)

    def _optional_address(self, message: _Message, field: str) -> SocketAddress | None:
        return self._address(getattr(message, field)) if message.HasField(field) else None

    # --- clusters and backends -------------------------------------------------------------

    def _fill_cluster(self, message: _Message, cluster: Cluster) -> None:
        self._refuse_v2_fields(cluster, _CLUSTER_V2_FIELDS)
        if cluster.load_balancing > LoadBalancing.POWER_OF_TWO:
            self._only_in_v2(f"Cluster.load_balancing = {cluster.load_balancing.name}")
        message.cluster_id = cluster.cluster_id
        message.sticky_session = cluster.sticky_session
        message.https_redirect = cluster.https_redirect
        _set_optional(message, "proxy_protocol", cluster.proxy_protocol)
        message.load_balancing = int(cluster.load_balancing)
        _set_optional(message, "answer_503", cluster.answer_503)
        _set_optional(message, "load_metric", cluster.load_metric)
        if self.version is WireVersion.V1:
            return
        _set_optional(message, "http2", cluster.http2)
        message.answers.update(dict(cluster.answers))
        _set_optional(message, "https_redirect_port", cluster.https_redirect_port)
        message.authorized_hashes.extend(cluster.authorized_hashes)
        _set_optional(message, "www_authenticate", cluster.www_authenticate)
        _set_optional(message, "max_connections_per_ip", cluster.max_connections_per_ip)
        _set_optional(message, "retry_after", cluster.retry_after)

    def _cluster(self, message: _Message) -> Cluster:
        proxy_protocol = _optional(message, "proxy_protocol")
        load_metric = _optional(message, "load_metric")
        cluster = Cluster(
            cluster_id=_text(message.cluster_id, "cluster_id"),
            sticky_session=message.sticky_session,
            https_redirect=message.https_redirect,
            proxy_protocol=None if proxy_protocol is None else ProxyProtocol(proxy_protocol),
            load_balancing=LoadBalancing(message.load_balancing),
            answer_503=_optional_text(message, "answer_503"),
            load_metric=None if load_metric is None else LoadMetric(load_metric),
        )
        if self.version is WireVersion.V1:
            return cluster
        return replace(
            cluster,
            http2=_optional(message, "http2"),
            answers=pairs(_string_map(message.answers, "answers")),
            https_redirect_port=_optional(message, "https_redirect_port"),
            authorized_hashes=_texts(message.authorized_hashes, "authorized_hashes"),
            www_authenticate=_optional_text(message, "www_authenticate"),
            max_connections_per_ip=_optional(message, "max_connections_per_ip"),
            retry_after=_optional(message, "retry_after"),
        )

    def _fill_backend(self, message: _Message, backend: Backend) -> None:
        message.cluster_id = backend.cluster_id
        message.backend_id = backend.backend_id
        self._fill_address(message.address, backend.address)
        _set_optional(message, "sticky_id", backend.sticky_id)
        if backend.weight is not None:
            message.load_balancing_parameters.weight = backend.weight
        _set_optional(message, "backup", backend.backup)

    def _backend(self, message: _Message) -> Backend:
        parameters = _optional(message, "load_balancing_parameters")
        return Backend(
            cluster_id=_text(message.cluster_id, "cluster_id"),
            backend_id=_text(message.backend_id, "backend_id"),
            address=self._address(message.address),
            sticky_id=_optional_text(message, "sticky_id"),
            weight=None if parameters is None else parameters.weight,
            backup=_optional(message, "backup"),
        )

    # --- frontends -------------------------------------------------------------------------

    def _fill_http_frontend(self, message: _Message, frontend: HttpFrontend) -> None:
        self._refuse_v2_fields(frontend, _HTTP_FRONTEND_V2_FIELDS)
        _set_optional(message, "cluster_id", frontend.cluster_id)
        self._fill_address(message.address, frontend.address)
        message.hostname = frontend.hostname
        message.path.kind = int(frontend.path.kind)
        message.path.value = frontend.path.value
        _set_optional(message, "method", frontend.method)
        message.position = int(frontend.position)
        message.tags.update(dict(frontend.tags))
        if self.version is WireVersion.V1:
            return
        _set_optional(message, "redirect", frontend.redirect)
        _set_optional(message, "required_auth", frontend.required_auth)
        _set_optional(message, "redirect_scheme", frontend.redirect_scheme)
        _set_optional(message, "redirect_template", frontend.redirect_template)
        _set_optional(message, "rewrite_host", frontend.rewrite_host)
        _set_optional(message, "rewrite_path", frontend.rewrite_path)
        _set_optional(message, "rewrite_port", frontend.rewrite_port)
        for header in frontend.headers:
            entry = message.headers.add()
            entry.position = int(header.position)
            entry.key = header.key
            entry.val = header.value

    def _http_frontend(self, message: _Message) -> HttpFrontend:
        frontend = HttpFrontend(
            address=self._address(message.address),
            hostname=_text(message.hostname, "hostname"),
            path=PathRule(PathRuleKind(message.path.kind), _text(message.path.value, "path")),
            cluster_id=_optional_text(message, "cluster_id"),
            method=_optional_text(message, "method"),
            position=RulePosition(message.position),
            tags=pairs(_string_map(message.tags, "tags")),
        )
        if self.version is WireVersion.V1:
            return frontend
        redirect = _optional(message, "redirect")
        redirect_scheme = _optional(message, "redirect_scheme")
        return replace(
            frontend,
            redirect=None if redirect is None else RedirectPolicy(redirect),
            required_auth=_optional(message, "required_auth"),
            redirect_scheme=None if redirect_scheme is None else RedirectScheme(redirect_scheme),
            redirect_template=_optional_text(message, "redirect_template"),
            rewrite_host=_optional_text(message, "rewrite_host"),
            rewrite_path=_optional_text(message, "rewrite_path"),
            rewrite_port=_optional(message, "rewrite_port"),
            headers=tuple(
                Header(
                    HeaderPosition(header.position),
                    _text(header.key, "headers"),
                    _text(header.val, "headers"),
                )
                for header in message.headers
            ),
        )

    def _fill_tcp_frontend(self, message: _Message, frontend: TcpFrontend) -> None:
        message.cluster_id = frontend.cluster_id
        self._fill_address(message.address, frontend.address)
        message.tags.update(dict(frontend.tags))

    def _tcp_frontend(self, message: _Message) -> TcpFrontend:
        return TcpFrontend(
            cluster_id=_text(message.cluster_id, "cluster_id"),
            address=self._address(message.address),
            tags=pairs(_string_map(message.tags, "tags")),
        )

    # --- certificates ----------------------------------------------------------------------

    @staticmethod
    def _fill_certificate(message: _Message, certificate: CertificateAndKey) -> None:
        message.certificate = certificate.certificate
        message.certificate_chain.extend(certificate.certificate_chain)
        message.key = certificate.key
        message.versions.extend(int(version) for version in certificate.versions)
        message.names.extend(certificate.names)

    @staticmethod
    def _certificate(message: _Message) -> CertificateAndKey:
        return CertificateAndKey(
            certificate=_text(message.certificate, "certificate"),
            key=_text(message.key, "key"),
            certificate_chain=_texts(message.certificate_chain, "certificate_chain"),
            versions=tuple(TlsVersion(version) for version in message.versions),
            names=_texts(message.names, "names"),
        )

    # --- listeners -------------------------------------------------------------------------

    # Each listener message has the fields of the one before: TCP's are common to all, HTTPS
    # adds TLS settings to HTTP's. Encoders and decoders build on each other the same way.

    def _fill_tcp_listener(self, message: _Message, listener: Listener) -> None:
        self._fill_address(message.address, listener.address)
        if listener.public_address is not None:
            self._fill_address(message.public_address, listener.public_address)
        message.expect_proxy = listener.expect_proxy
        message.front_timeout = listener.front_timeout
        message.back_timeout = listener.back_timeout
        message.connect_timeout = listener.connect_timeout
        message.active = listener.active

    def _fill_http_listener(
        self, message: _Message, listener: HttpListener | HttpsListener
    ) -> None:
        self._fill_tcp_listener(message, listener)
        message.sticky_name = listener.sticky_name
        message.request_timeout = listener.request_timeout

    def _fill_https_listener(self, message: _Message, listener: HttpsListener) -> None:
        self._fill_http_listener(message, listener)
        message.versions.extend(int(version) for version in listener.versions)
        message.cipher_list.extend(listener.cipher_list)
        message.cipher_suites.extend(listener.cipher_suites)
        message.signature_algorithms.extend(listener.signature_algorithms)
        message.groups_list.extend(listener.groups_list)
        _set_optional(message, "certificate", listener.certificate)
        message.certificate_chain.extend(listener.certificate_chain)
        _set_optional(message, "key", listener.key)
        message.send_tls13_tickets = listener.send_tls13_tickets

    def _tcp_listener_fields(self, message: _Message) -> dict[str, Any]:
        return {
            "address": self._address(message.address),
            "public_address": self._optional_address(message, "public_address"),
            "expect_proxy": message.expect_proxy,
            "front_timeout": message.front_timeout,
            "back_timeout": message.back_timeout,
            "connect_timeout": message.connect_timeout,
            "active": message.active,
        }

    def _http_listener_fields(self, message: _Message) -> dict[str, Any]:
        return {
            **self._tcp_listener_fields(message),
            "sticky_name": _text(message.sticky_name, "sticky_name"),
            "request_timeout": message.request_timeout,
        }

    def _tcp_listener(self, message: _Message) -> TcpListener:
        return TcpListener(**self._tcp_listener_fields(message))

    def _http_listener(self, message: _Message) -> HttpListener:
        return HttpListener(**self._http_listener_fields(message))

    def _https_listener(self, message: _Message) -> HttpsListener:
        return HttpsListener(
            **self._http_listener_fields(message),
            versions=tuple(TlsVersion(version) for version in message.versions),
            cipher_list=_texts(message.cipher_list, "cipher_list"),
            cipher_suites=_texts(message.cipher_suites, "cipher_suites"),
            signature_algorithms=_texts(message.signature_algorithms, "signature_algorithms"),
            groups_list=_texts(message.groups_list, "groups_list"),
            certificate=_optional_text(message, "certificate"),
            certificate_chain=_texts(message.certificate_chain, "certificate_chain"),
            key=_optional_text(message, "key"),
            send_tls13_tickets=message.send_tls13_tickets,
        )

    @staticmethod
    def _listener_type(value: int, verb: str) -> ListenerType:
        try:
            return ListenerType(value)
        except ValueError:
            # Only Sōzu 2.x's UDP (3) can get here; the model has no UDP listeners.
            raise ProtocolError(
                f"{verb} names listener type {value}, which the typed model does not represent"
            ) from None

    # --- requests --------------------------------------------------------------------------

    def _fill_request(self, message: _Message, request: Request) -> None:
        match request:
            case rq.SaveState(path=path):
                message.save_state = path
            case rq.LoadState(path=path):
                message.load_state = path
            case rq.ListWorkers():
                message.list_workers.SetInParent()
            case rq.ListFrontends(http=http, https=https, tcp=tcp, domain=domain):
                filters = message.list_frontends
                filters.http, filters.https, filters.tcp = http, https, tcp
                _set_optional(filters, "domain", domain)
            case rq.ListListeners():
                message.list_listeners.SetInParent()
            case rq.Status():
                message.status.SetInParent()
            case rq.QueryClusterById(cluster_id=cluster_id):
                message.query_cluster_by_id = cluster_id
            case rq.QueryClustersByDomain(hostname=hostname, path=path):
                message.query_clusters_by_domain.hostname = hostname
                _set_optional(message.query_clusters_by_domain, "path", path)
            case rq.QueryClustersHashes():
                message.query_clusters_hashes.SetInParent()
            case rq.QueryCertificatesFromTheState(domain=domain, fingerprint=fingerprint):
                filters = message.query_certificates_from_the_state
                filters.SetInParent()
                _set_optional(filters, "domain", domain)
                _set_optional(filters, "fingerprint", fingerprint)
            case rq.QueryCertificatesFromWorkers(domain=domain, fingerprint=fingerprint):
                filters = message.query_certificates_from_workers
                filters.SetInParent()
                _set_optional(filters, "domain", domain)
                _set_optional(filters, "fingerprint", fingerprint)
            case rq.CountRequests():
                message.count_requests.SetInParent()
            case rq.AddCluster(cluster=cluster):
                self._fill_cluster(message.add_cluster, cluster)
            case rq.RemoveCluster(cluster_id=cluster_id):
                message.remove_cluster = cluster_id
            case rq.AddHttpFrontend(frontend=frontend):
                self._fill_http_frontend(message.add_http_frontend, frontend)
            case rq.RemoveHttpFrontend(frontend=frontend):
                self._fill_http_frontend(message.remove_http_frontend, frontend)
            case rq.AddHttpsFrontend(frontend=frontend):
                self._fill_http_frontend(message.add_https_frontend, frontend)
            case rq.RemoveHttpsFrontend(frontend=frontend):
                self._fill_http_frontend(message.remove_https_frontend, frontend)
            case rq.AddTcpFrontend(frontend=frontend):
                self._fill_tcp_frontend(message.add_tcp_frontend, frontend)
            case rq.RemoveTcpFrontend(frontend=frontend):
                self._fill_tcp_frontend(message.remove_tcp_frontend, frontend)
            case rq.AddBackend(backend=backend):
                self._fill_backend(message.add_backend, backend)
            case rq.RemoveBackend(cluster_id=cluster_id, backend_id=backend_id, address=address):
                target = message.remove_backend
                target.cluster_id = cluster_id
                target.backend_id = backend_id
                self._fill_address(target.address, address)
            case rq.AddCertificate(address=address, certificate=certificate, expired_at=expiry):
                target = message.add_certificate
                self._fill_address(target.address, address)
                self._fill_certificate(target.certificate, certificate)
                _set_optional(target, "expired_at", expiry)
            case rq.ReplaceCertificate():
                target = message.replace_certificate
                self._fill_address(target.address, request.address)
                self._fill_certificate(target.new_certificate, request.new_certificate)
                target.old_fingerprint = request.old_fingerprint
                _set_optional(target, "new_expired_at", request.new_expired_at)
            case rq.RemoveCertificate(address=address, fingerprint=fingerprint):
                self._fill_address(message.remove_certificate.address, address)
                message.remove_certificate.fingerprint = fingerprint
            case rq.AddHttpListener(listener=listener):
                self._fill_http_listener(message.add_http_listener, listener)
            case rq.AddHttpsListener(listener=listener):
                self._fill_https_listener(message.add_https_listener, listener)
            case rq.AddTcpListener(listener=listener):
                self._fill_tcp_listener(message.add_tcp_listener, listener)
            case rq.RemoveListener(address=address, proxy=proxy):
                self._fill_address(message.remove_listener.address, address)
                message.remove_listener.proxy = int(proxy)
            case rq.ActivateListener(address=address, proxy=proxy, from_scm=from_scm):
                self._fill_address(message.activate_listener.address, address)
                message.activate_listener.proxy = int(proxy)
                message.activate_listener.from_scm = from_scm
            case rq.DeactivateListener(address=address, proxy=proxy, to_scm=to_scm):
                self._fill_address(message.deactivate_listener.address, address)
                message.deactivate_listener.proxy = int(proxy)
                message.deactivate_listener.to_scm = to_scm
            case _:
                raise TypeError(f"not a request model: {request!r}")

    def _request(self, member: str, message: _Message) -> Request | None:
        target = getattr(message, member)
        match member:
            case "save_state":
                return rq.SaveState(_text(target, member))
            case "load_state":
                return rq.LoadState(_text(target, member))
            case "list_workers":
                return rq.ListWorkers()
            case "list_frontends":
                return rq.ListFrontends(
                    target.http, target.https, target.tcp, _optional_text(target, "domain")
                )
            case "list_listeners":
                return rq.ListListeners()
            case "status":
                return rq.Status()
            case "query_cluster_by_id":
                return rq.QueryClusterById(_text(target, member))
            case "query_clusters_by_domain":
                return rq.QueryClustersByDomain(
                    _text(target.hostname, "hostname"), _optional_text(target, "path")
                )
            case "query_clusters_hashes":
                return rq.QueryClustersHashes()
            case "query_certificates_from_the_state":
                return rq.QueryCertificatesFromTheState(
                    _optional_text(target, "domain"), _optional_text(target, "fingerprint")
                )
            case "query_certificates_from_workers":
                return rq.QueryCertificatesFromWorkers(
                    _optional_text(target, "domain"), _optional_text(target, "fingerprint")
                )
            case "count_requests":
                return rq.CountRequests()
            case "add_cluster":
                return rq.AddCluster(self._cluster(target))
            case "remove_cluster":
                return rq.RemoveCluster(_text(target, member))
            case "add_http_frontend":
                return rq.AddHttpFrontend(self._http_frontend(target))
            case "remove_http_frontend":
                return rq.RemoveHttpFrontend(self._http_frontend(target))
            case "add_https_frontend":
                return rq.AddHttpsFrontend(self._http_frontend(target))
            case "remove_https_frontend":
                return rq.RemoveHttpsFrontend(self._http_frontend(target))
            case "add_tcp_frontend":
                return rq.AddTcpFrontend(self._tcp_frontend(target))
            case "remove_tcp_frontend":
                return rq.RemoveTcpFrontend(self._tcp_frontend(target))
            case "add_backend":
                return rq.AddBackend(self._backend(target))
            case "remove_backend":
                return rq.RemoveBackend(
                    _text(target.cluster_id, "cluster_id"),
                    _text(target.backend_id, "backend_id"),
                    self._address(target.address),
                )
            case "add_certificate":
                return rq.AddCertificate(
                    self._address(target.address),
                    self._certificate(target.certificate),
                    _optional(target, "expired_at"),
                )
            case "replace_certificate":
                return rq.ReplaceCertificate(
                    self._address(target.address),
                    self._certificate(target.new_certificate),
                    _text(target.old_fingerprint, "old_fingerprint"),
                    _optional(target, "new_expired_at"),
                )
            case "remove_certificate":
                return rq.RemoveCertificate(
                    self._address(target.address), _text(target.fingerprint, "fingerprint")
                )
            case "add_http_listener":
                return rq.AddHttpListener(self._http_listener(target))
            case "add_https_listener":
                return rq.AddHttpsListener(self._https_listener(target))
            case "add_tcp_listener":
                return rq.AddTcpListener(self._tcp_listener(target))
            case "remove_listener":
                return rq.RemoveListener(
                    self._address(target.address), self._listener_type(target.proxy, member)
                )
            case "activate_listener":
                return rq.ActivateListener(
                    self._address(target.address),
                    self._listener_type(target.proxy, member),
                    target.from_scm,
                )
            case "deactivate_listener":
                return rq.DeactivateListener(
                    self._address(target.address),
                    self._listener_type(target.proxy, member),
                    target.to_scm,
                )
            case _:  # a verb Sōzu has but the models do not (soft_stop, query_metrics, …)
                return None

    # --- response contents -----------------------------------------------------------------

    def _fill_content(self, message: _Message, content: ResponseContent) -> None:
        match content:
            case WorkerInfos(workers=workers):
                message.workers.SetInParent()
                for worker in workers:
                    entry = message.workers.vec.add()
                    entry.id, entry.pid, entry.run_state = worker.id, worker.pid, worker.run_state
            case ListedFrontends(http=http, https=https, tcp=tcp):
                message.frontend_list.SetInParent()
                self._fill_frontends(message.frontend_list, http, https, tcp)
            case ListenersList(http=http_listeners, https=https_listeners, tcp=tcp_listeners):
                target = message.listeners_list
                target.SetInParent()
                # Keyed like Sōzu's maps; a duplicate address keeps the last listener.
                for http_listener in http_listeners:
                    key = str(http_listener.address)
                    self._fill_http_listener(target.http_listeners[key], http_listener)
                for https_listener in https_listeners:
                    key = str(https_listener.address)
                    self._fill_https_listener(target.https_listeners[key], https_listener)
                for tcp_listener in tcp_listeners:
                    key = str(tcp_listener.address)
                    self._fill_tcp_listener(target.tcp_listeners[key], tcp_listener)
            case ClusterInformations(clusters=clusters):
                message.clusters.SetInParent()
                for information in clusters:
                    self._fill_cluster_information(message.clusters.vec.add(), information)
            case ClusterHashes(hashes=hashes):
                message.cluster_hashes.SetInParent()
                message.cluster_hashes.map.update(hashes)
            case CertificatesWithFingerprints(certificates=certificates):
                target = message.certificates_with_fingerprints
                target.SetInParent()
                for fingerprint, certificate in certificates.items():
                    self._fill_certificate(target.certs[fingerprint], certificate)
            case ListOfCertificatesByAddress(certificates=by_address):
                target = message.certificates_by_address
                target.SetInParent()
                for group in by_address:
                    entry = target.certificates.add()
                    self._fill_address(entry.address, group.address)
                    for summary in group.summaries:
                        line = entry.certificate_summaries.add()
                        line.domain, line.fingerprint = summary.domain, summary.fingerprint
            case RequestCounts(counts=counts):
                message.request_counts.SetInParent()
                message.request_counts.map.update(counts)
            case Event():
                self._fill_event(message.event, content)
            case WorkerResponses(responses=responses):
                message.worker_responses.SetInParent()
                for key, inner in responses.items():
                    self._fill_content(message.worker_responses.map[key], inner)
            case _:
                raise TypeError(f"not a response content model: {content!r}")

    def _fill_cluster_information(self, message: _Message, information: ClusterInformation) -> None:
        if information.configuration is not None:
            self._fill_cluster(message.configuration, information.configuration)
        self._fill_frontends(
            message,
            information.http_frontends,
            information.https_frontends,
            information.tcp_frontends,
        )
        for backend in information.backends:
            self._fill_backend(message.backends.add(), backend)

    def _fill_event(self, message: _Message, event: Event) -> None:
        known_kinds = message.DESCRIPTOR.fields_by_name["kind"].enum_type.values_by_number
        if event.kind not in known_kinds:
            self._only_in_v2(f"Event.kind = {event.kind}")
        message.kind = event.kind
        _set_optional(message, "cluster_id", event.cluster_id)
        _set_optional(message, "backend_id", event.backend_id)
        if event.address is not None:
            self._fill_address(message.address, event.address)

    def _content(self, message: _Message) -> ResponseContent | None:
        match message.WhichOneof("content_type"):
            case "workers":
                return WorkerInfos(
                    tuple(
                        WorkerInfo(worker.id, worker.pid, RunState(worker.run_state))
                        for worker in message.workers.vec
                    )
                )
            case "frontend_list":
                return ListedFrontends(*self._frontends(message.frontend_list))
            case "listeners_list":
                # Sōzu's maps have no meaningful order; sorting by address makes the result
                # deterministic. Each config carries its own address, so keys are not needed.
                lists = message.listeners_list
                http = map(self._http_listener, lists.http_listeners.values())
                https = map(self._https_listener, lists.https_listeners.values())
                tcp = map(self._tcp_listener, lists.tcp_listeners.values())
                return ListenersList(
                    http=_sorted_by_address(http),
                    https=_sorted_by_address(https),
                    tcp=_sorted_by_address(tcp),
                )
            case "clusters":
                return ClusterInformations(
                    tuple(self._cluster_information(item) for item in message.clusters.vec)
                )
            case "cluster_hashes":
                return ClusterHashes(
                    {
                        _text(key, "cluster_hashes"): value
                        for key, value in message.cluster_hashes.map.items()
                    }
                )
            case "certificates_with_fingerprints":
                certs = message.certificates_with_fingerprints.certs
                return CertificatesWithFingerprints(
                    {
                        _text(fingerprint, "certs"): self._certificate(certificate)
                        for fingerprint, certificate in certs.items()
                    }
                )
            case "certificates_by_address":
                return ListOfCertificatesByAddress(
                    tuple(
                        CertificatesByAddress(
                            self._address(group.address),
                            tuple(
                                CertificateSummary(
                                    _text(line.domain, "domain"),
                                    _text(line.fingerprint, "fingerprint"),
                                )
                                for line in group.certificate_summaries
                            ),
                        )
                        for group in message.certificates_by_address.certificates
                    )
                )
            case "request_counts":
                return RequestCounts(
                    {
                        _text(key, "request_counts"): value
                        for key, value in message.request_counts.map.items()
                    }
                )
            case "event":
                event = message.event
                return Event(
                    kind=event.kind,
                    cluster_id=_optional_text(event, "cluster_id"),
                    backend_id=_optional_text(event, "backend_id"),
                    address=self._optional_address(event, "address"),
                )
            case "worker_responses":
                responses: dict[str, ResponseContent] = {}
                for key, inner in message.worker_responses.map.items():
                    # Entries the model cannot express (e.g. worker metrics) are left out.
                    decoded = self._content(inner)
                    if decoded is not None:
                        responses[_text(key, "worker_responses")] = decoded
                return WorkerResponses(responses)
            case _:  # no content, or content this package does not model (metrics, …)
                return None

    def _cluster_information(self, message: _Message) -> ClusterInformation:
        http, https, tcp = self._frontends(message)
        return ClusterInformation(
            configuration=(
                self._cluster(message.configuration) if message.HasField("configuration") else None
            ),
            http_frontends=http,
            https_frontends=https,
            tcp_frontends=tcp,
            backends=tuple(self._backend(item) for item in message.backends),
        )

    # A frontend listing and a cluster's information carry the same three lists of frontends.

    def _fill_frontends(
        self,
        message: _Message,
        http: Iterable[HttpFrontend],
        https: Iterable[HttpFrontend],
        tcp: Iterable[TcpFrontend],
    ) -> None:
        for frontend in http:
            self._fill_http_frontend(message.http_frontends.add(), frontend)
        for frontend in https:
            self._fill_http_frontend(message.https_frontends.add(), frontend)
        for tcp_frontend in tcp:
            self._fill_tcp_frontend(message.tcp_frontends.add(), tcp_frontend)

    def _frontends(
        self, message: _Message
    ) -> tuple[tuple[HttpFrontend, ...], tuple[HttpFrontend, ...], tuple[TcpFrontend, ...]]:
        return (
            tuple(map(self._http_frontend, message.http_frontends)),
            tuple(map(self._http_frontend, message.https_frontends)),
            tuple(map(self._tcp_frontend, message.tcp_frontends)),
        )
