"""Reads what a running Sōzu serves into a `ProxyState`, over the command socket.

Sōzu has no single "dump everything" query, so the reader combines: `list_listeners`;
`query_clusters_hashes` to learn cluster ids (and to skip clusters whose hash did not move
since the last read); `query_cluster_by_id` for configurations and backends; `list_frontends`
(which always fails on Sōzu 1.0.0–1.0.4, where frontends come from the cluster answers
instead); `query_certificates_from_the_state` for certificates and their names, and
`query_certificates_from_workers` for the listener address each certificate sits on, which
the state query does not say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    HttpFrontend,
    HttpsListener,
    SocketAddress,
    TcpFrontend,
)
from sozu_operator.proxy.responses import (
    ClusterInformation,
    ListedFrontends,
    ListOfCertificatesByAddress,
    WorkerResponses,
)
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.wire.client import SozuClient
from sozu_operator.wire.errors import ConnectionClosed, FrameTooLarge, RequestFailed


@dataclass
class ReadStats:
    """What one read cost: requests sent and clusters actually queried."""

    requests: int = 0
    clusters_queried: int = 0
    clusters_reused: int = 0
    notes: list[str] = field(default_factory=list)


class LiveReader:
    """Reads live state; keeps the last answer per cluster keyed by its hash so that a re-read
    queries only clusters whose hash changed (Sōzu recomputes the hash on every change of the
    cluster, its backends or its frontends)."""

    def __init__(self) -> None:
        self._clusters: dict[str, tuple[int, ClusterInformation]] = {}
        # Set once `list_frontends` could not be answered within the command buffer: it would
        # fail the same way on every later read, so routes come from cluster answers instead.
        self._frontend_list_too_large = False
        self.last_stats = ReadStats()

    def forget(self) -> None:
        self._clusters.clear()
        self._frontend_list_too_large = False

    async def read(self, client: SozuClient) -> ProxyState:
        stats = ReadStats()
        listeners = await client.list_listeners()
        stats.requests += 1
        hashes = await client.query_clusters_hashes()
        stats.requests += 1

        informations: list[ClusterInformation] = []
        for cluster_id in sorted(hashes):
            cached = self._clusters.get(cluster_id)
            if cached is not None and cached[0] == hashes[cluster_id]:
                informations.append(cached[1])
                stats.clusters_reused += 1
                continue
            information = await client.query_cluster_by_id(cluster_id)
            stats.requests += 1
            stats.clusters_queried += 1
            if information is None:  # removed between the two queries
                continue
            self._clusters[cluster_id] = (hashes[cluster_id], information)
            informations.append(information)
        for gone in set(self._clusters) - set(hashes):
            del self._clusters[gone]

        http_frontends: Iterable[HttpFrontend]
        https_frontends: Iterable[HttpFrontend]
        tcp_frontends: Iterable[TcpFrontend]
        listed: ListedFrontends | None = None
        if not self._frontend_list_too_large:
            stats.requests += 1
            try:
                listed = await client.list_frontends()
            except RequestFailed:
                stats.notes.append(
                    "this Sōzu cannot list frontends (1.0.0 to 1.0.4): frontends were read from "
                    "cluster queries, so routes without a cluster are not seen"
                )
            except (ConnectionClosed, FrameTooLarge):
                # Sōzu 2.x closes the connection when an answer exceeds its command buffer
                # (`max_command_buffer_size`, 2 MB by default: about 15k routes).
                self._frontend_list_too_large = True
        if self._frontend_list_too_large:
            stats.notes.append(
                "the list of frontends does not fit in Sōzu's command buffer (raise "
                "max_command_buffer_size to list them): frontends were read from cluster "
                "queries, so routes without a cluster are not seen"
            )
        if listed is not None:
            http_frontends, https_frontends, tcp_frontends = listed.http, listed.https, listed.tcp
        else:
            http_frontends = [f for i in informations for f in i.http_frontends]
            https_frontends = [f for i in informations for f in i.https_frontends]
            tcp_frontends = [f for i in informations for f in i.tcp_frontends]

        certificates = await self._read_certificates(client, listeners.https, stats)
        backends: list[Backend] = [b for i in informations for b in i.backends]
        self.last_stats = stats
        return ProxyState.build(
            clusters=[i.configuration for i in informations if i.configuration is not None],
            backends=backends,
            http_frontends=http_frontends,
            https_frontends=https_frontends,
            tcp_frontends=tcp_frontends,
            certificates=certificates,
            listeners=[*listeners.http, *listeners.https, *listeners.tcp],
        )

    async def _read_certificates(
        self, client: SozuClient, https_listeners: Iterable[HttpsListener], stats: ReadStats
    ) -> list[tuple[SocketAddress, str, CertificateAndKey]]:
        by_fingerprint = await client.query_certificates_from_the_state()
        stats.requests += 1
        if not by_fingerprint:
            return []
        response = await client.send(rq.QueryCertificatesFromWorkers())
        stats.requests += 1
        addresses: dict[str, set[SocketAddress]] = {}
        if isinstance(response.content, WorkerResponses):
            for content in response.content.responses.values():
                if isinstance(content, ListOfCertificatesByAddress):
                    for entry in content.certificates:
                        for summary in entry.summaries:
                            addresses.setdefault(summary.fingerprint, set()).add(entry.address)
        listener_addresses = [listener.address for listener in https_listeners]
        found: list[tuple[SocketAddress, str, CertificateAndKey]] = []
        for fp, certificate in sorted(by_fingerprint.items()):
            where = addresses.get(fp)
            if not where and len(listener_addresses) == 1:
                where = {listener_addresses[0]}
            if not where:
                stats.notes.append(
                    f"certificate {fp[:16]}… is in Sōzu's state but no worker serves it, so its "
                    "listener address is unknown; it is left out of the live state"
                )
                continue
            found.extend((address, fp, certificate) for address in sorted(where))
        return found
