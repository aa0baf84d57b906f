"""One test per row of the protocol notes' sections 4.1 (identity and idempotency in main) and
4.2 (per verb, main and workers), driven through the project's client over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.certs import make_certificate
from tests.emulator.support import (
    BACKEND_ADDRESS,
    HTTP_ADDRESS,
    HTTPS_ADDRESS,
    TCP_ADDRESS,
    add_listener,
    address,
    apply_all,
    exchange,
)

from sozu_operator.emulators import SozuEmulator
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.certificates import fingerprint
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    HttpListener,
    ListenerType,
    LoadBalancing,
    PathRule,
    PathRuleKind,
    RulePosition,
    SocketAddress,
    TcpFrontend,
)
from sozu_operator.proxy.responses import (
    CertificatesByAddress,
    CertificateSummary,
    CertificatesWithFingerprints,
    ClusterHashes,
    ClusterInformations,
    ListOfCertificatesByAddress,
    ResponseStatus,
    RunState,
    WorkerResponses,
)
from sozu_operator.wire import SozuClient

DISPATCH = "could not dispatch request on the main process state: "


def front(
    hostname: str = "example.com",
    *,
    path: str = "/",
    kind: PathRuleKind = PathRuleKind.PREFIX,
    cluster_id: str | None = "a",
    position: RulePosition = RulePosition.TREE,
    method: str | None = None,
    at: SocketAddress = HTTP_ADDRESS,
) -> HttpFrontend:
    return HttpFrontend(
        at,
        hostname,
        PathRule(kind, path),
        cluster_id=cluster_id,
        method=method,
        position=position,
    )


def certificate(*names: str, listed_names: tuple[str, ...] = ()) -> CertificateAndKey:
    cert_pem, key_pem = make_certificate(list(names))
    return CertificateAndKey(cert_pem, key_pem, names=listed_names)


async def worker_views(client: SozuClient, request: rq.Request) -> WorkerResponses:
    result = await exchange(client, request)
    assert result.ok, result.message
    assert isinstance(result.final.content, WorkerResponses)
    return result.final.content


# --- 4.1 identity and idempotency ---------------------------------------------------------


async def test_cluster_add_is_an_upsert_in_main_and_workers(client: SozuClient) -> None:
    replacement = Cluster("a", sticky_session=True, load_balancing=LoadBalancing.RANDOM)
    await apply_all(client, rq.AddCluster(Cluster("a")), rq.AddCluster(replacement))

    views = await worker_views(client, rq.QueryClusterById("a"))
    assert sorted(views.responses) == ["0", "1", "main"]
    for view in views.responses.values():
        assert isinstance(view, ClusterInformations)
        assert [info.configuration for info in view.clusters] == [replacement]


async def test_remove_cluster_unknown_is_not_found(client: SozuClient) -> None:
    result = await exchange(client, rq.RemoveCluster("ghost"))
    assert result.final.status is ResponseStatus.FAILURE
    assert result.message == DISPATCH + "Did not find Cluster with address or id 'ghost'"
    assert result.processing == []  # refused by main: nothing fanned out


async def test_http_frontend_key_clash_is_exists_even_if_cluster_and_position_differ(
    client: SozuClient,
) -> None:
    await apply_all(
        client, add_listener(ListenerType.HTTP, HTTP_ADDRESS), rq.AddHttpFrontend(front())
    )
    clash = front(cluster_id="b", position=RulePosition.PRE)
    result = await exchange(client, rq.AddHttpFrontend(clash))
    assert result.final.status is ResponseStatus.FAILURE
    assert result.message == (
        DISPATCH + "HttpFrontend '127.0.0.1:8080;example.com;P/' already exists"
    )
    # HTTPS frontends live in a map of their own: the same key is free there.
    await apply_all(
        client,
        add_listener(ListenerType.HTTPS, HTTP_ADDRESS),
        rq.AddHttpsFrontend(front()),
    )
    listed = await client.list_frontends()
    assert [f.cluster_id for f in listed.http] == ["a"]
    assert len(listed.https) == 1


async def test_frontend_identity_includes_path_kind_and_method(client: SozuClient) -> None:
    await apply_all(
        client,
        add_listener(ListenerType.HTTP, HTTP_ADDRESS),
        rq.AddHttpFrontend(front()),
        rq.AddHttpFrontend(front(kind=PathRuleKind.EQUALS)),
        rq.AddHttpFrontend(front(method="GET")),
    )
    keys = sorted(f.key for f in (await client.list_frontends()).http)
    assert keys == [
        "127.0.0.1:8080;example.com;=/",
        "127.0.0.1:8080;example.com;P/",
        "127.0.0.1:8080;example.com;P/;GET",
    ]


async def test_frontend_removal_ignores_cluster_id(client: SozuClient) -> None:
    await apply_all(
        client, add_listener(ListenerType.HTTP, HTTP_ADDRESS), rq.AddHttpFrontend(front())
    )
    await apply_all(client, rq.RemoveHttpFrontend(front(cluster_id="something-else")))
    assert (await client.list_frontends()).http == ()


async def test_remove_unknown_http_frontend_is_not_found(client: SozuClient) -> None:
    await apply_all(client, add_listener(ListenerType.HTTP, HTTP_ADDRESS))
    result = await exchange(client, rq.RemoveHttpFrontend(front()))
    assert result.message == (
        DISPATCH + "Did not find HttpFrontend with address or id '127.0.0.1:8080;example.com;P/'"
    )


async def test_tcp_frontend_identity_is_the_whole_triple(client: SozuClient) -> None:
    plain = TcpFrontend("a", TCP_ADDRESS)
    tagged = TcpFrontend("a", TCP_ADDRESS, tags=(("team", "x"),))
    await apply_all(
        client,
        rq.AddCluster(Cluster("a")),
        add_listener(ListenerType.TCP, TCP_ADDRESS),
        rq.AddTcpFrontend(plain),
    )
    duplicate = await exchange(client, rq.AddTcpFrontend(plain))
    assert duplicate.message.startswith(DISPATCH + "TcpFrontend ")
    assert duplicate.message.endswith("already exists")
    # Same cluster and address with other tags is a second entry, not a duplicate.
    await apply_all(client, rq.AddTcpFrontend(tagged))
    info = await client.query_cluster_by_id("a")
    assert info is not None
    assert info.tcp_frontends == (plain, tagged)


async def test_remove_tcp_frontend_not_found_vs_no_change(client: SozuClient) -> None:
    never = await exchange(client, rq.RemoveTcpFrontend(TcpFrontend("a", TCP_ADDRESS)))
    assert never.message.startswith(DISPATCH + "Did not find TcpFrontend")
    await apply_all(
        client,
        add_listener(ListenerType.TCP, TCP_ADDRESS),
        rq.AddTcpFrontend(TcpFrontend("a", TCP_ADDRESS)),
        rq.AddTcpFrontend(TcpFrontend("a", TCP_ADDRESS, tags=(("v", "2"),))),
    )
    elsewhere = await exchange(
        client, rq.RemoveTcpFrontend(TcpFrontend("a", address("127.0.0.1:1")))
    )
    assert elsewhere.message == (
        DISPATCH + "dispatching this request did not bring any change to the state"
    )
    # Removal matches (cluster, address) and ignores tags: both entries go.
    await apply_all(client, rq.RemoveTcpFrontend(TcpFrontend("a", TCP_ADDRESS, tags=(("x", "y"),))))
    assert (await client.list_frontends(tcp=True)).tcp == ()
    # The emptied list is remembered: NoChange now, not NotFound.
    again = await exchange(client, rq.RemoveTcpFrontend(TcpFrontend("a", TCP_ADDRESS)))
    assert "did not bring any change" in again.message


async def test_backend_add_is_an_upsert_of_weight_sticky_and_backup(client: SozuClient) -> None:
    first = Backend("a", "a-0", BACKEND_ADDRESS, weight=1)
    updated = Backend("a", "a-0", BACKEND_ADDRESS, sticky_id="s", weight=5, backup=True)
    elsewhere = Backend("a", "a-0", address("10.0.0.2:80"))
    await apply_all(
        client,
        rq.AddCluster(Cluster("a")),
        rq.AddBackend(first),
        rq.AddBackend(updated),
        rq.AddBackend(elsewhere),
    )
    info = await client.query_cluster_by_id("a")
    assert info is not None
    assert info.backends == (updated, elsewhere)


async def test_remove_backend_not_found_vs_no_change(client: SozuClient) -> None:
    never = await exchange(client, rq.RemoveBackend("a", "a-0", BACKEND_ADDRESS))
    assert never.message == DISPATCH + "Did not find Backend with address or id 'a-0'"
    await apply_all(client, rq.AddBackend(Backend("a", "a-0", BACKEND_ADDRESS)))
    wrong_id = await exchange(client, rq.RemoveBackend("a", "a-1", BACKEND_ADDRESS))
    assert "did not bring any change" in wrong_id.message
    await apply_all(client, rq.RemoveBackend("a", "a-0", BACKEND_ADDRESS))
    again = await exchange(client, rq.RemoveBackend("a", "a-0", BACKEND_ADDRESS))
    assert "did not bring any change" in again.message  # the empty list is kept


async def test_duplicate_certificate_add_is_a_silent_no_op(client: SozuClient) -> None:
    cert = certificate("example.com")
    await apply_all(
        client,
        add_listener(ListenerType.HTTPS, HTTPS_ADDRESS),
        rq.AddCertificate(HTTPS_ADDRESS, cert),
    )
    renamed = CertificateAndKey(cert.certificate, cert.key, names=("other.example",))
    result = await exchange(client, rq.AddCertificate(HTTPS_ADDRESS, renamed))
    assert result.ok
    stored = await client.query_certificates_from_the_state()
    assert [c.names for c in stored.values()] == [("example.com",)]


async def test_remove_certificate_is_silent_except_for_invalid_hex(client: SozuClient) -> None:
    unknown = "ab" * 32
    await apply_all(client, add_listener(ListenerType.HTTPS, HTTPS_ADDRESS))
    assert (await exchange(client, rq.RemoveCertificate(HTTPS_ADDRESS, unknown))).ok
    # An address main never heard of is fine for main too; only workers lack a listener.
    nowhere = await exchange(client, rq.RemoveCertificate(address("127.0.0.1:1"), unknown))
    assert nowhere.processing
    assert nowhere.message.startswith("0: found no listener")
    bad = await exchange(client, rq.RemoveCertificate(HTTPS_ADDRESS, "not-hex"))
    assert bad.final.status is ResponseStatus.FAILURE
    assert bad.message.startswith(DISPATCH + "Could not remove certificate")
    odd = await exchange(client, rq.RemoveCertificate(HTTPS_ADDRESS, "abc"))
    assert odd.message.startswith(DISPATCH + "Could not remove certificate")


async def test_replace_certificate_semantics(client: SozuClient) -> None:
    old, new = certificate("example.com"), certificate("example.com")
    never = await exchange(client, rq.ReplaceCertificate(HTTPS_ADDRESS, new, "00" * 32))
    assert never.message == (
        DISPATCH + "Did not find Certificate with address or id '127.0.0.1:8443'"
    )

    await apply_all(
        client,
        add_listener(ListenerType.HTTPS, HTTPS_ADDRESS),
        rq.AddCertificate(HTTPS_ADDRESS, old),
        rq.ReplaceCertificate(HTTPS_ADDRESS, new, fingerprint(old.certificate)),
    )
    stored = await client.query_certificates_from_the_state()
    # The old one is gone; the new one is stored as sent, names NOT derived.
    assert list(stored) == [fingerprint(new.certificate)]
    assert stored[fingerprint(new.certificate)].names == ()

    # An address that once had a certificate: an unknown old fingerprint is fine.
    third = certificate("example.com")
    await apply_all(client, rq.ReplaceCertificate(HTTPS_ADDRESS, third, "11" * 32))
    assert len(await client.query_certificates_from_the_state()) == 2


async def test_listener_duplicate_is_exists_and_removal_of_absent_is_no_change(
    client: SozuClient,
) -> None:
    await apply_all(client, add_listener(ListenerType.HTTP, HTTP_ADDRESS))
    duplicate = await exchange(client, add_listener(ListenerType.HTTP, HTTP_ADDRESS))
    assert duplicate.message == DISPATCH + "HttpListener '127.0.0.1:8080' already exists"
    # One map per listener type: the same address is free as TCP.
    await apply_all(client, add_listener(ListenerType.TCP, HTTP_ADDRESS))
    absent = await exchange(client, rq.RemoveListener(HTTPS_ADDRESS, ListenerType.HTTPS))
    assert absent.message == (
        DISPATCH + "dispatching this request did not bring any change to the state"
    )


async def test_listener_activation_is_idempotent_and_unknown_is_not_found(
    client: SozuClient,
) -> None:
    activate = rq.ActivateListener(HTTP_ADDRESS, ListenerType.HTTP)
    unknown = await exchange(client, activate)
    assert unknown.message == (
        DISPATCH + "Did not find HttpListener with address or id '127.0.0.1:8080'"
    )
    await apply_all(client, add_listener(ListenerType.HTTP, HTTP_ADDRESS), activate, activate)
    assert [listener.active for listener in (await client.list_listeners()).http] == [True]


# --- 4.2 per verb --------------------------------------------------------------------------


async def test_remove_cluster_leaves_frontends_and_backends(
    client: SozuClient, emulator: SozuEmulator
) -> None:
    await apply_all(
        client,
        add_listener(ListenerType.HTTP, HTTP_ADDRESS),
        rq.AddCluster(Cluster("a")),
        rq.AddHttpFrontend(front()),
        rq.AddBackend(Backend("a", "a-0", BACKEND_ADDRESS)),
        rq.RemoveCluster("a"),
    )
    assert len((await client.list_frontends()).http) == 1
    # Without a configuration the cluster is invisible to cluster queries ...
    assert await client.query_cluster_by_id("a") is None
    # ... but the orphans are still in main and in every worker.
    for state in (emulator.state, *(worker.state for worker in emulator.workers)):
        assert [b.backend_id for b in state.iter_backends()] == ["a-0"]
        assert len(state.http_frontends) == 1


async def test_frontend_without_listener_fails_in_workers_but_main_keeps_it(
    client: SozuClient, emulator: SozuEmulator
) -> None:
    result = await exchange(client, rq.AddHttpFrontend(front()))
    assert [r.message for r in result.processing] == ["Processing worker request..."]
    assert result.final.status is ResponseStatus.FAILURE
    assert result.message == (
        "0: found no listener with address 127.0.0.1:8080, "
        "1: found no listener with address 127.0.0.1:8080"
    )
    assert len((await client.list_frontends()).http) == 1
    again = await exchange(client, rq.AddHttpFrontend(front()))
    assert again.message.endswith("already exists")
    # Repair: remove (workers fail again), add the listener, add the frontend.
    removal = await exchange(client, rq.RemoveHttpFrontend(front()))
    assert removal.final.status is ResponseStatus.FAILURE
    await apply_all(
        client, add_listener(ListenerType.HTTP, HTTP_ADDRESS), rq.AddHttpFrontend(front())
    )
    assert [w.id for w in emulator.workers] == [0, 1]


async def test_pre_post_removal_matching_nothing_fails_in_workers_tree_does_not(
    client: SozuClient,
) -> None:
    await apply_all(
        client,
        add_listener(ListenerType.HTTP, HTTP_ADDRESS),
        rq.AddHttpFrontend(front("a.example", position=RulePosition.TREE)),
        rq.AddHttpFrontend(front("b.example", position=RulePosition.PRE)),
    )
    # Wrong position PRE for a TREE rule: main deletes its entry, workers find nothing in PRE.
    pre = await exchange(
        client, rq.RemoveHttpFrontend(front("a.example", position=RulePosition.PRE))
    )
    assert pre.final.status is ResponseStatus.FAILURE
    assert pre.message.startswith("0: could not remove frontend")
    # Wrong position TREE for a PRE rule: everyone says OK, the workers' rule stays behind.
    tree = await exchange(
        client, rq.RemoveHttpFrontend(front("b.example", position=RulePosition.TREE))
    )
    assert tree.ok
    assert (await client.list_frontends()).http == ()
    # Which shows when the route is added back at its old position.
    readd = await exchange(
        client, rq.AddHttpFrontend(front("b.example", position=RulePosition.PRE))
    )
    assert readd.final.status is ResponseStatus.FAILURE
    assert readd.message.startswith("0: could not add frontend")


async def test_tcp_frontend_needs_a_tcp_listener_in_workers(client: SozuClient) -> None:
    await apply_all(client, add_listener(ListenerType.HTTP, TCP_ADDRESS))
    result = await exchange(client, rq.AddTcpFrontend(TcpFrontend("a", TCP_ADDRESS)))
    assert result.message == (
        "0: found no listener with address 127.0.0.1:9000, "
        "1: found no listener with address 127.0.0.1:9000"
    )
    await apply_all(client, add_listener(ListenerType.TCP, address("127.0.0.1:9001")))
    ok = await exchange(client, rq.AddTcpFrontend(TcpFrontend("a", address("127.0.0.1:9001"))))
    assert ok.ok


async def test_backend_verbs_never_fail_in_workers(client: SozuClient) -> None:
    # No cluster, no listener: workers still accept backends.
    await apply_all(
        client,
        rq.AddBackend(Backend("nowhere", "n-0", BACKEND_ADDRESS)),
        rq.RemoveBackend("nowhere", "n-0", BACKEND_ADDRESS),
    )


async def test_certificate_needs_an_https_listener_in_workers(client: SozuClient) -> None:
    await apply_all(client, add_listener(ListenerType.HTTP, HTTPS_ADDRESS))
    result = await exchange(client, rq.AddCertificate(HTTPS_ADDRESS, certificate("example.com")))
    assert result.message == (
        "0: found no listener with address 127.0.0.1:8443, "
        "1: found no listener with address 127.0.0.1:8443"
    )
    assert len(await client.query_certificates_from_the_state()) == 1


async def test_bad_key_fails_in_workers_while_main_keeps_the_certificate(
    client: SozuClient,
) -> None:
    good = certificate("example.com")
    bad_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    broken = CertificateAndKey(good.certificate, bad_key)
    await apply_all(client, add_listener(ListenerType.HTTPS, HTTPS_ADDRESS))
    result = await exchange(client, rq.AddCertificate(HTTPS_ADDRESS, broken))
    assert result.final.status is ResponseStatus.FAILURE
    assert result.message.startswith("0: could not add certificate: invalid private key")
    assert list(await client.query_certificates_from_the_state()) == [fingerprint(good.certificate)]


async def test_unparsable_certificate_fails_in_main(client: SozuClient) -> None:
    junk = CertificateAndKey("no PEM here", "no key either")
    result = await exchange(client, rq.AddCertificate(HTTPS_ADDRESS, junk))
    assert result.message.startswith(DISPATCH + "Could not add certificate")
    assert result.processing == []


async def test_certificate_names_are_derived_per_version(tmp_path: Path) -> None:
    cert_pem, key_pem = make_certificate(["www.example.com"], common_name="example.com")
    add = rq.AddCertificate(HTTPS_ADDRESS, CertificateAndKey(cert_pem, key_pem))
    names = {}
    for version in (1, 2):
        path = tmp_path / f"v{version}.sock"
        async with (
            SozuEmulator(path, version=version) as emulator,
            SozuClient(path, version=emulator.version, timeout=2.0) as client,
        ):
            await apply_all(client, add_listener(ListenerType.HTTPS, HTTPS_ADDRESS), add)
            (stored,) = (await client.query_certificates_from_the_state()).values()
            names[version] = stored.names
    assert names == {1: ("example.com", "www.example.com"), 2: ("www.example.com",)}


async def test_add_listener_records_active_as_sent(client: SozuClient) -> None:
    await apply_all(client, rq.AddHttpListener(HttpListener(HTTP_ADDRESS, active=True)))
    assert [listener.active for listener in (await client.list_listeners()).http] == [True]


async def test_remove_listener_does_not_cascade_in_main(client: SozuClient) -> None:
    await apply_all(
        client,
        add_listener(ListenerType.HTTP, HTTP_ADDRESS),
        rq.AddHttpFrontend(front()),
        rq.RemoveListener(HTTP_ADDRESS, ListenerType.HTTP),
    )
    assert (await client.list_listeners()).http == ()
    assert len((await client.list_frontends()).http) == 1
    # Workers dropped the listener with its routes: removing the frontend now fails there.
    removal = await exchange(client, rq.RemoveHttpFrontend(front()))
    assert removal.message.startswith("0: found no listener")


async def test_list_frontends_filters(client: SozuClient) -> None:
    await apply_all(
        client,
        add_listener(ListenerType.HTTP, HTTP_ADDRESS),
        add_listener(ListenerType.HTTPS, HTTPS_ADDRESS),
        add_listener(ListenerType.TCP, TCP_ADDRESS),
        rq.AddHttpFrontend(front("api.example.com")),
        rq.AddHttpFrontend(front("other.test")),
        rq.AddHttpsFrontend(front("example.com", at=HTTPS_ADDRESS)),
        rq.AddTcpFrontend(TcpFrontend("t", TCP_ADDRESS)),
    )
    everything = await client.list_frontends()
    assert (len(everything.http), len(everything.https), len(everything.tcp)) == (2, 1, 1)
    by_domain = await client.list_frontends(domain="example")
    assert [f.hostname for f in by_domain.http] == ["api.example.com"]
    assert [f.hostname for f in by_domain.https] == ["example.com"]
    assert by_domain.tcp == ()  # a domain filter excludes TCP
    only_tcp = await client.list_frontends(tcp=True)
    assert (only_tcp.http, only_tcp.https, len(only_tcp.tcp)) == ((), (), 1)


async def test_query_cluster_by_id_from_main_and_each_worker(client: SozuClient) -> None:
    unknown = await worker_views(client, rq.QueryClusterById("a"))
    assert unknown.responses == {key: ClusterInformations(()) for key in ("0", "1", "main")}
    await apply_all(
        client,
        add_listener(ListenerType.HTTP, HTTP_ADDRESS),
        rq.AddCluster(Cluster("a")),
        rq.AddHttpFrontend(front()),
        rq.AddHttpFrontend(front("elsewhere.test", cluster_id="b")),
        rq.AddBackend(Backend("a", "a-0", BACKEND_ADDRESS)),
    )
    views = await worker_views(client, rq.QueryClusterById("a"))
    main = views.responses["main"]
    assert isinstance(main, ClusterInformations)
    (info,) = main.clusters
    assert [f.hostname for f in info.http_frontends] == ["example.com"]
    assert [b.backend_id for b in info.backends] == ["a-0"]
    assert views.responses["0"] == views.responses["1"] == main


async def test_query_clusters_by_domain_matches_hostname_and_path_exactly(
    client: SozuClient,
) -> None:
    await apply_all(
        client,
        add_listener(ListenerType.HTTP, HTTP_ADDRESS),
        rq.AddCluster(Cluster("a")),
        rq.AddCluster(Cluster("b")),
        rq.AddHttpFrontend(front("example.com", path="/api", cluster_id="a")),
        rq.AddHttpFrontend(front("www.example.com", cluster_id="b")),
    )

    async def ids(hostname: str, path: str | None = None) -> list[str]:
        clusters = await client.query_clusters_by_domain(hostname, path)
        return [c.configuration.cluster_id for c in clusters if c.configuration is not None]

    assert await ids("example.com") == ["a"]
    assert await ids("example.com", "/api") == ["a"]
    assert await ids("example.com", "/ap") == []
    assert await ids("example") == []


async def test_query_clusters_hashes_from_main_and_each_worker(client: SozuClient) -> None:
    await apply_all(client, rq.AddCluster(Cluster("a")), rq.AddCluster(Cluster("b")))
    before = await worker_views(client, rq.QueryClustersHashes())
    assert sorted(before.responses) == ["0", "1", "main"]
    assert before.responses["0"] == before.responses["1"] == before.responses["main"]
    main_before = before.responses["main"]
    assert isinstance(main_before, ClusterHashes)
    assert sorted(main_before.hashes) == ["a", "b"]

    await apply_all(client, rq.AddBackend(Backend("a", "a-0", BACKEND_ADDRESS)))
    after = await client.query_clusters_hashes()
    assert after["a"] != main_before.hashes["a"]
    assert after["b"] == main_before.hashes["b"]


async def test_query_certificates_from_the_state_filters(client: SozuClient) -> None:
    first, second = certificate("example.com"), certificate("*.example.org")
    await apply_all(
        client,
        add_listener(ListenerType.HTTPS, HTTPS_ADDRESS),
        rq.AddCertificate(HTTPS_ADDRESS, first),
        rq.AddCertificate(HTTPS_ADDRESS, second),
    )
    fp_first, fp_second = fingerprint(first.certificate), fingerprint(second.certificate)
    query = client.query_certificates_from_the_state
    assert sorted(await query()) == sorted([fp_first, fp_second])
    assert list(await query(domain="example.com")) == [fp_first]
    assert list(await query(domain="www.example.org")) == []  # exact member of names only
    assert list(await query(domain="*.example.org")) == [fp_second]
    assert list(await query(fingerprint=fp_second)) == [fp_second]
    assert list(await query(fingerprint=fp_second.upper())) == []  # string comparison
    # With both, main uses the domain.
    assert list(await query(domain="example.com", fingerprint=fp_second)) == [fp_first]


async def test_query_certificates_from_workers(client: SozuClient) -> None:
    cert = certificate("*.example.com")
    fp = fingerprint(cert.certificate)
    await apply_all(
        client,
        add_listener(ListenerType.HTTPS, HTTPS_ADDRESS),
        rq.AddCertificate(HTTPS_ADDRESS, cert),
    )
    by_domain = await worker_views(client, rq.QueryCertificatesFromWorkers(domain="a.example.com"))
    expected = ListOfCertificatesByAddress(
        (CertificatesByAddress(HTTPS_ADDRESS, (CertificateSummary("*.example.com", fp),)),)
    )
    assert by_domain.responses == {"0": expected, "1": expected}  # no "main" entry

    by_fingerprint = await worker_views(client, rq.QueryCertificatesFromWorkers(fingerprint=fp))
    for view in by_fingerprint.responses.values():
        assert isinstance(view, CertificatesWithFingerprints)
        assert list(view.certificates) == [fp]
    # Workers that do not know the fingerprint answer FAILURE and vanish from the map.
    missing = await worker_views(client, rq.QueryCertificatesFromWorkers(fingerprint="00" * 32))
    assert missing.responses == {}


async def test_count_requests_is_off_by_one_and_counts_refusals_but_not_queries(
    client: SozuClient,
) -> None:
    await apply_all(client, rq.AddCluster(Cluster("a")))
    await exchange(client, rq.RemoveCluster("ghost"))  # refused, still counted
    await client.list_listeners()
    assert await client.count_requests() == {"AddCluster": 2, "RemoveCluster": 2}
    await apply_all(client, rq.AddCluster(Cluster("b")))
    assert (await client.count_requests())["AddCluster"] == 3


async def test_status_is_processing_then_workers(client: SozuClient) -> None:
    result = await exchange(client, rq.Status())
    assert [r.message for r in result.processing] == ["Querying status of workers..."]
    assert result.message == "Successfully collected the status of workers"
    workers = await client.status()
    assert [(w.id, w.run_state) for w in workers] == [(0, RunState.RUNNING), (1, RunState.RUNNING)]


async def test_list_workers_is_a_single_answer(client: SozuClient) -> None:
    result = await exchange(client, rq.ListWorkers())
    assert result.processing == []
    assert result.message == "Successfully listed workers"
    assert [(w.id, w.pid) for w in await client.list_workers()] == [(0, 10_000), (1, 10_001)]


@pytest.fixture
async def no_worker_client(socket_path: Path) -> AsyncIterator[SozuClient]:
    async with (
        SozuEmulator(socket_path, workers=0) as emulator,
        SozuClient(emulator.socket_path, timeout=2.0) as client,
    ):
        yield client


async def test_with_no_worker_mutations_are_ok_after_main(no_worker_client: SozuClient) -> None:
    result = await exchange(no_worker_client, rq.AddHttpFrontend(front()))
    assert result.ok
    assert await no_worker_client.list_workers() == ()
