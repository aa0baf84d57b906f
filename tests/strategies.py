"""Hypothesis strategies for the typed proxy models, requests and responses.

Every strategy builds values in the form the codec gives back (tag maps as sorted pairs, listener
lists sorted by address with one listener per address), so `decode(encode(x)) == x` holds
exactly. `version` selects which fields may be set: with WireVersion.V1 every 2.x-only field is
left unset, as Sōzu 1.0 cannot carry it.

Free text (`texts()`) covers all of Unicode except surrogates, which protobuf strings cannot hold;
identifiers and hostnames are plainer so that planner tests read well when they fail.
"""

from __future__ import annotations

import base64
import ipaddress
import string
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

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
    ListenerType,
    LoadBalancing,
    LoadMetric,
    Pairs,
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
from sozu_operator.proxy.scalars import I32, I64, U32, U64
from sozu_operator.wire.codec import WireVersion

T = TypeVar("T")

UINT32 = st.integers(*U32)
UINT64 = st.integers(*U64)
INT32 = st.integers(*I32)
INT64 = st.integers(*I64)

# Highest EventKind number each wire version knows (2.x adds control-plane events).
_LAST_EVENT_KIND = {WireVersion.V1: 3, WireVersion.V2: 30}


def optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.none() | strategy


def only_in_v2(
    version: WireVersion, strategy: st.SearchStrategy[T], unset: T
) -> st.SearchStrategy[T]:
    """`strategy` for 2.x, the unset value for 1.0."""
    return strategy if version is WireVersion.V2 else st.just(unset)


def texts(max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


def identifiers() -> st.SearchStrategy[str]:
    return st.text(string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=12)


def hostnames() -> st.SearchStrategy[str]:
    label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
    return st.lists(label, min_size=1, max_size=3).map(".".join)


def string_pairs(max_size: int = 3) -> st.SearchStrategy[Pairs]:
    return st.dictionaries(texts(), texts(), max_size=max_size).map(pairs)


def unique_by(
    elements: st.SearchStrategy[T], key: Callable[[T], object], max_size: int = 3
) -> st.SearchStrategy[list[T]]:
    return st.lists(elements, max_size=max_size, unique_by=key)


# --- addresses -----------------------------------------------------------------------------


def ip_addresses() -> st.SearchStrategy[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return st.ip_addresses(v=4) | st.ip_addresses(v=6)


def socket_addresses() -> st.SearchStrategy[SocketAddress]:
    return st.builds(SocketAddress, ip_addresses(), st.integers(0, 0xFFFF))


# --- clusters, backends, frontends ---------------------------------------------------------


def clusters(version: WireVersion = WireVersion.V2) -> st.SearchStrategy[Cluster]:
    algorithms: Sequence[LoadBalancing] = (
        list(LoadBalancing)
        if version is WireVersion.V2
        else [a for a in LoadBalancing if a <= LoadBalancing.POWER_OF_TWO]
    )
    return st.builds(
        Cluster,
        cluster_id=identifiers(),
        sticky_session=st.booleans(),
        https_redirect=st.booleans(),
        proxy_protocol=optional(st.sampled_from(ProxyProtocol)),
        load_balancing=st.sampled_from(algorithms),
        answer_503=optional(texts()),
        load_metric=optional(st.sampled_from(LoadMetric)),
        http2=only_in_v2(version, optional(st.booleans()), None),
        answers=only_in_v2(version, string_pairs(), ()),
        https_redirect_port=only_in_v2(version, optional(UINT32), None),
        authorized_hashes=only_in_v2(version, st.lists(texts(), max_size=2).map(tuple), ()),
        www_authenticate=only_in_v2(version, optional(texts()), None),
        max_connections_per_ip=only_in_v2(version, optional(UINT64), None),
        retry_after=only_in_v2(version, optional(UINT32), None),
    )


def backends() -> st.SearchStrategy[Backend]:
    return st.builds(
        Backend,
        cluster_id=identifiers(),
        backend_id=identifiers(),
        address=socket_addresses(),
        sticky_id=optional(texts()),
        weight=optional(INT32),
        backup=optional(st.booleans()),
    )


def path_rules() -> st.SearchStrategy[PathRule]:
    return st.builds(PathRule, st.sampled_from(PathRuleKind), texts())


def headers() -> st.SearchStrategy[Header]:
    return st.builds(Header, st.sampled_from(HeaderPosition), texts(), texts())


def http_frontends(version: WireVersion = WireVersion.V2) -> st.SearchStrategy[HttpFrontend]:
    return st.builds(
        HttpFrontend,
        address=socket_addresses(),
        hostname=hostnames(),
        path=path_rules(),
        cluster_id=optional(identifiers()),
        method=optional(st.sampled_from(["GET", "POST", "PUT", "DELETE"])),
        position=st.sampled_from(RulePosition),
        tags=string_pairs(),
        redirect=only_in_v2(version, optional(st.sampled_from(RedirectPolicy)), None),
        required_auth=only_in_v2(version, optional(st.booleans()), None),
        redirect_scheme=only_in_v2(version, optional(st.sampled_from(RedirectScheme)), None),
        redirect_template=only_in_v2(version, optional(texts()), None),
        rewrite_host=only_in_v2(version, optional(texts()), None),
        rewrite_path=only_in_v2(version, optional(texts()), None),
        rewrite_port=only_in_v2(version, optional(UINT32), None),
        headers=only_in_v2(version, st.lists(headers(), max_size=2).map(tuple), ()),
    )


def tcp_frontends() -> st.SearchStrategy[TcpFrontend]:
    return st.builds(TcpFrontend, identifiers(), socket_addresses(), string_pairs())


# --- certificates --------------------------------------------------------------------------


def fake_pem(label: str) -> st.SearchStrategy[str]:
    """PEM-shaped text around random bytes: enough for the codec, not for x509 parsing
    (tests/certs.py makes real certificates)."""

    def wrap(body: bytes) -> str:
        encoded = base64.b64encode(body).decode()
        return f"-----BEGIN {label}-----\n{encoded}\n-----END {label}-----\n"

    return st.binary(min_size=1, max_size=48).map(wrap)


def fingerprints() -> st.SearchStrategy[str]:
    return st.binary(min_size=32, max_size=32).map(bytes.hex)


def certificates() -> st.SearchStrategy[CertificateAndKey]:
    return st.builds(
        CertificateAndKey,
        certificate=fake_pem("CERTIFICATE"),
        key=fake_pem("PRIVATE KEY"),
        certificate_chain=st.lists(fake_pem("CERTIFICATE"), max_size=2).map(tuple),
        versions=st.lists(st.sampled_from(TlsVersion), max_size=2).map(tuple),
        names=st.lists(hostnames(), max_size=2).map(tuple),
    )


# --- listeners -----------------------------------------------------------------------------


# Listeners build on each other as their messages do: every listener has a TCP listener's
# fields, HTTP adds two, HTTPS adds TLS settings to HTTP's.


def _tcp_listener_fields() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "address": socket_addresses(),
        "public_address": optional(socket_addresses()),
        "expect_proxy": st.booleans(),
        "front_timeout": UINT32,
        "back_timeout": UINT32,
        "connect_timeout": UINT32,
        "active": st.booleans(),
    }


def _http_listener_fields() -> dict[str, st.SearchStrategy[Any]]:
    return {**_tcp_listener_fields(), "sticky_name": texts(), "request_timeout": UINT32}


def tcp_listeners() -> st.SearchStrategy[TcpListener]:
    return st.builds(TcpListener, **_tcp_listener_fields())


def http_listeners() -> st.SearchStrategy[HttpListener]:
    return st.builds(HttpListener, **_http_listener_fields())


def https_listeners() -> st.SearchStrategy[HttpsListener]:
    return st.builds(
        HttpsListener,
        **_http_listener_fields(),
        versions=st.lists(st.sampled_from(TlsVersion), max_size=3).map(tuple),
        cipher_list=st.lists(texts(), max_size=2).map(tuple),
        cipher_suites=st.lists(texts(), max_size=2).map(tuple),
        signature_algorithms=st.lists(texts(), max_size=2).map(tuple),
        groups_list=st.lists(texts(), max_size=2).map(tuple),
        certificate=optional(fake_pem("CERTIFICATE")),
        certificate_chain=st.lists(fake_pem("CERTIFICATE"), max_size=2).map(tuple),
        key=optional(fake_pem("PRIVATE KEY")),
        send_tls13_tickets=UINT64,
    )


def listeners() -> st.SearchStrategy[HttpListener | HttpsListener | TcpListener]:
    return http_listeners() | https_listeners() | tcp_listeners()


# --- requests ------------------------------------------------------------------------------


def requests(version: WireVersion = WireVersion.V2) -> st.SearchStrategy[rq.Request]:
    """Every modelled verb, with arguments the given wire version can carry."""
    address = socket_addresses()
    kind = st.sampled_from(ListenerType)
    return st.one_of(
        st.builds(rq.ListWorkers),
        st.builds(rq.ListListeners),
        st.builds(rq.ListFrontends, st.booleans(), st.booleans(), st.booleans(), optional(texts())),
        st.builds(rq.Status),
        st.builds(rq.QueryClusterById, identifiers()),
        st.builds(rq.QueryClustersByDomain, hostnames(), optional(texts())),
        st.builds(rq.QueryClustersHashes),
        st.builds(
            rq.QueryCertificatesFromTheState, optional(hostnames()), optional(fingerprints())
        ),
        st.builds(rq.QueryCertificatesFromWorkers, optional(hostnames()), optional(fingerprints())),
        st.builds(rq.CountRequests),
        st.builds(rq.SaveState, texts()),
        st.builds(rq.LoadState, texts()),
        st.builds(rq.AddCluster, clusters(version)),
        st.builds(rq.RemoveCluster, identifiers()),
        st.builds(rq.AddHttpFrontend, http_frontends(version)),
        st.builds(rq.RemoveHttpFrontend, http_frontends(version)),
        st.builds(rq.AddHttpsFrontend, http_frontends(version)),
        st.builds(rq.RemoveHttpsFrontend, http_frontends(version)),
        st.builds(rq.AddTcpFrontend, tcp_frontends()),
        st.builds(rq.RemoveTcpFrontend, tcp_frontends()),
        st.builds(rq.AddBackend, backends()),
        st.builds(rq.RemoveBackend, identifiers(), identifiers(), address),
        st.builds(rq.AddCertificate, address, certificates(), optional(INT64)),
        st.builds(rq.ReplaceCertificate, address, certificates(), fingerprints(), optional(INT64)),
        st.builds(rq.RemoveCertificate, address, fingerprints()),
        st.builds(rq.AddHttpListener, http_listeners()),
        st.builds(rq.AddHttpsListener, https_listeners()),
        st.builds(rq.AddTcpListener, tcp_listeners()),
        st.builds(rq.RemoveListener, address, kind),
        st.builds(rq.ActivateListener, address, kind, st.booleans()),
        st.builds(rq.DeactivateListener, address, kind, st.booleans()),
    )


# --- responses -----------------------------------------------------------------------------


def worker_infos() -> st.SearchStrategy[WorkerInfos]:
    worker = st.builds(WorkerInfo, UINT32, INT32, st.sampled_from(RunState))
    return st.lists(worker, max_size=3).map(lambda workers: WorkerInfos(tuple(workers)))


def listed_frontends(version: WireVersion = WireVersion.V2) -> st.SearchStrategy[ListedFrontends]:
    return st.builds(
        ListedFrontends,
        st.lists(http_frontends(version), max_size=2).map(tuple),
        st.lists(http_frontends(version), max_size=2).map(tuple),
        st.lists(tcp_frontends(), max_size=2).map(tuple),
    )


def _sorted_unique_listeners(
    elements: st.SearchStrategy[T], address: Callable[[T], SocketAddress]
) -> st.SearchStrategy[tuple[T, ...]]:
    # Sōzu keys listeners by address, and the codec returns them sorted by address.
    return unique_by(elements, address).map(lambda found: tuple(sorted(found, key=address)))


def listeners_lists() -> st.SearchStrategy[ListenersList]:
    return st.builds(
        ListenersList,
        _sorted_unique_listeners(http_listeners(), lambda listener: listener.address),
        _sorted_unique_listeners(https_listeners(), lambda listener: listener.address),
        _sorted_unique_listeners(tcp_listeners(), lambda listener: listener.address),
    )


def cluster_informations(
    version: WireVersion = WireVersion.V2,
) -> st.SearchStrategy[ClusterInformations]:
    information = st.builds(
        ClusterInformation,
        optional(clusters(version)),
        st.lists(http_frontends(version), max_size=2).map(tuple),
        st.lists(http_frontends(version), max_size=2).map(tuple),
        st.lists(tcp_frontends(), max_size=2).map(tuple),
        st.lists(backends(), max_size=2).map(tuple),
    )
    return st.lists(information, max_size=2).map(lambda found: ClusterInformations(tuple(found)))


def events(version: WireVersion = WireVersion.V2) -> st.SearchStrategy[Event]:
    return st.builds(
        Event,
        st.integers(0, _LAST_EVENT_KIND[version]),
        optional(identifiers()),
        optional(identifiers()),
        optional(socket_addresses()),
    )


def response_contents(
    version: WireVersion = WireVersion.V2,
) -> st.SearchStrategy[ResponseContent]:
    summaries = st.lists(st.builds(CertificateSummary, hostnames(), fingerprints()), max_size=2)
    leaves: st.SearchStrategy[ResponseContent] = st.one_of(
        worker_infos(),
        listed_frontends(version),
        listeners_lists(),
        cluster_informations(version),
        st.dictionaries(identifiers(), UINT64, max_size=3).map(ClusterHashes),
        st.dictionaries(fingerprints(), certificates(), max_size=2).map(
            CertificatesWithFingerprints
        ),
        st.lists(
            st.builds(CertificatesByAddress, socket_addresses(), summaries.map(tuple)), max_size=2
        )
        .map(tuple)
        .map(ListOfCertificatesByAddress),
        st.dictionaries(identifiers(), INT32, max_size=3).map(RequestCounts),
        events(version),
    )
    worker_ids = st.just("main") | st.integers(0, 99).map(str)
    return st.recursive(
        leaves,
        lambda inner: st.dictionaries(worker_ids, inner, max_size=3).map(WorkerResponses),
        max_leaves=4,
    )


def responses(version: WireVersion = WireVersion.V2) -> st.SearchStrategy[Response]:
    return st.builds(
        Response, st.sampled_from(ResponseStatus), texts(40), optional(response_contents(version))
    )
