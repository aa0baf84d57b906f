"""The live reader rebuilds, over a real socket, exactly the state the emulated Sōzu holds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.certs import make_certificate

from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.live import LiveReader
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    LoadBalancing,
    PathRule,
    PathRuleKind,
    SocketAddress,
    TcpFrontend,
    TcpListener,
)
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.wire import SozuClient, WireVersion

A = SocketAddress.parse


def _seed() -> list[rq.Mutation]:
    cert, key = make_certificate(["www.example.com"])
    return [
        rq.AddHttpListener(HttpListener(A("127.0.0.1:8080"))),
        rq.AddHttpsListener(HttpsListener(A("127.0.0.1:8443"))),
        rq.AddHttpsListener(HttpsListener(A("[::1]:8443"))),
        rq.AddTcpListener(TcpListener(A("127.0.0.1:5432"))),
        rq.AddCluster(Cluster("web")),
        rq.AddCluster(Cluster("db", load_balancing=LoadBalancing.LEAST_LOADED)),
        rq.AddBackend(Backend("web", "web-0", A("10.0.0.1:80"), weight=10)),
        rq.AddBackend(Backend("web", "web-1", A("[2001:db8::1]:80"), backup=True)),
        rq.AddBackend(Backend("db", "db-0", A("10.0.0.2:5432"))),
        rq.AddHttpFrontend(HttpFrontend(A("127.0.0.1:8080"), "www.example.com", cluster_id="web")),
        rq.AddHttpFrontend(
            HttpFrontend(
                A("127.0.0.1:8080"), "deny.example.com", PathRule(PathRuleKind.EQUALS, "/x")
            )
        ),
        rq.AddHttpsFrontend(HttpFrontend(A("127.0.0.1:8443"), "www.example.com", cluster_id="web")),
        rq.AddTcpFrontend(TcpFrontend("db", A("127.0.0.1:5432"), (("team", "data"),))),
        rq.AddCertificate(A("127.0.0.1:8443"), CertificateAndKey(cert, key)),
        rq.AddCertificate(A("[::1]:8443"), CertificateAndKey(cert, key)),
    ]


@pytest.mark.parametrize("version", [WireVersion.V2, WireVersion.V1])
async def test_reader_sees_exactly_the_emulated_state(tmp_path: Path, version: WireVersion) -> None:
    socket = str(tmp_path / "sozu.sock")
    async with (
        SozuEmulator(socket, version=int(version), initial_state=_seed()) as emulator,
        SozuClient(socket, version=version, timeout=5) as client,
    ):
        live = await LiveReader().read(client)
        expected = ProxyState.from_config_state(emulator.state)
    if version is WireVersion.V1:
        # Sōzu 1.0.0 cannot list frontends: routes come from cluster queries, so a deny route
        # (no cluster) is invisible there.
        routed = {k: v for k, v in expected.http_frontends.items() if v.cluster_id is not None}
        expected = dataclasses.replace(expected, http_frontends=routed)
    assert live == expected
    assert len(live.certificates) == 2


async def test_second_read_queries_only_clusters_whose_hash_moved(tmp_path: Path) -> None:
    socket = str(tmp_path / "sozu.sock")
    reader = LiveReader()
    async with (
        SozuEmulator(socket, initial_state=_seed()) as emulator,
        SozuClient(socket, timeout=5) as client,
    ):
        await reader.read(client)
        assert reader.last_stats.clusters_queried == 2
        await reader.read(client)
        assert (reader.last_stats.clusters_queried, reader.last_stats.clusters_reused) == (0, 2)
        await client.send(rq.AddBackend(Backend("web", "web-2", A("10.0.0.3:80"))))
        live = await reader.read(client)
        assert (reader.last_stats.clusters_queried, reader.last_stats.clusters_reused) == (1, 1)
        assert live == ProxyState.from_config_state(emulator.state)


async def test_frontends_come_from_clusters_when_their_list_exceeds_the_command_buffer(
    tmp_path: Path,
) -> None:
    """Sōzu 2.x closes the connection instead of sending an answer larger than its command
    buffer; past ~15k routes `list_frontends` is such an answer. The reader then takes routes
    from the cluster answers (as for Sōzu 1.0), says so, and stops asking."""
    socket = str(tmp_path / "sozu.sock")
    seed = _seed()
    many: list[rq.Mutation] = []
    for n in range(10):  # small cluster answers, one large list of frontends
        many.append(rq.AddCluster(Cluster(f"c{n}")))
        many += [
            rq.AddHttpFrontend(
                HttpFrontend(A("127.0.0.1:8080"), f"h{n}-{m}.example.com", cluster_id=f"c{n}")
            )
            for m in range(20)
        ]
    reader = LiveReader()
    async with (
        SozuEmulator(socket, initial_state=[*seed, *many], max_frame_size=6_000) as emulator,
        SozuClient(socket, timeout=5) as client,
    ):
        live = await reader.read(client)
        expected = ProxyState.from_config_state(emulator.state)
        routed = {k: v for k, v in expected.http_frontends.items() if v.cluster_id is not None}
        assert live == dataclasses.replace(expected, http_frontends=routed)
        assert any("command buffer" in note for note in reader.last_stats.notes)
        asked = emulator.verb_counts["ListFrontends"]
        await reader.read(client)
        assert emulator.verb_counts["ListFrontends"] == asked
        assert any("command buffer" in note for note in reader.last_stats.notes)


async def test_partial_reads_skip_the_frontend_list_and_keep_routes_no_cluster_covers(
    tmp_path: Path,
) -> None:
    """A partial read takes routes from the cluster answers and the routes no cluster covers
    (the deny route) from the last full read; an unchanged Sōzu gives back the same state
    object, and any change, even to an uncovered route, is seen by the next full read."""
    socket = str(tmp_path / "sozu.sock")
    reader = LiveReader()
    deny = HttpFrontend(A("127.0.0.1:8080"), "gone.example.com", PathRule(PathRuleKind.EQUALS, "/"))
    async with (
        SozuEmulator(socket, initial_state=_seed()) as emulator,
        SozuClient(socket, timeout=5) as client,
    ):
        first = await reader.read(client)
        assert reader.last_stats.listed_frontends
        assert not reader.last_stats.unchanged
        listed = emulator.verb_counts["ListFrontends"]

        again = await reader.read(client, full=False)
        assert again is first
        assert reader.last_stats.unchanged
        assert emulator.verb_counts["ListFrontends"] == listed
        assert again == ProxyState.from_config_state(emulator.state)

        await client.send(rq.AddBackend(Backend("web", "web-2", A("10.0.0.3:80"))))
        moved = await reader.read(client, full=False)
        assert moved is not first
        assert moved == ProxyState.from_config_state(emulator.state)
        assert "deny.example.com" in "".join(moved.http_frontends)  # kept from the full read
        assert emulator.verb_counts["ListFrontends"] == listed

        await client.send(rq.AddHttpFrontend(deny))
        blind = await reader.read(client, full=False)
        assert deny.key not in blind.http_frontends  # no hash covers it: only a listing shows it
        full = await reader.read(client)
        assert deny.key in full.http_frontends
        assert full == ProxyState.from_config_state(emulator.state)
        assert emulator.verb_counts["ListFrontends"] == listed + 1
