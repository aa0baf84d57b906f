"""Reads what a running Sōzu serves into a `ProxyState`, over the command socket.

Sōzu has no single "dump everything" query, so the reader combines: `list_listeners`;
`query_clusters_hashes` to learn cluster ids (and to skip clusters whose hash did not move
since the last read); `query_cluster_by_id` for configurations, backends and frontends;
`list_frontends` for the routes no cluster covers (it always fails on Sōzu 1.0.0–1.0.4);
`query_certificates_from_the_state` for certificates and their names, and
`query_certificates_from_workers` for the listener address each certificate sits on, which
the state query does not say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    CertificateAndKey,
    HttpsListener,
    SocketAddress,
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
    listed_frontends: bool = False
    unchanged: bool = False  # every answer equal to the previous read's: the same state
    notes: list[str] = field(default_factory=list)


class LiveReader:
    """Reads live state, as cheaply as Sōzu allows.

    - Clusters: `query_clusters_hashes` first; a cluster is queried again only when its hash
      moved (Sōzu recomputes the hash on every change of the cluster, its backends or its
      frontends), otherwise its last answer is reused.
    - Frontends come from those cluster answers. Only routes no cluster hash covers (no cluster
      id, or the id of a cluster that does not exist) need `list_frontends`, which answers with
      every route: a full read lists them (`full=True`: the first read, after `forget`, and
      whenever the caller asks, e.g. at each periodic resync); a partial read reuses what the
      last full read found.
    - When every answer equals the previous read's, the previous `ProxyState` is returned as is
      (the same object), so callers can tell "nothing moved" by identity.
    """

    def __init__(self) -> None:
        self._clusters: dict[str, tuple[int, ClusterInformation]] = {}
        # Set once `list_frontends` could not be answered within the command buffer: it would
        # fail the same way on every later read.
        self._frontend_list_too_large = False
        self._uncovered: ListedFrontends | None = None  # None: never listed since `forget`
        self._uncovered_note: str | None = None
        self._last: tuple[object, ProxyState] | None = None
        self.last_stats = ReadStats()

    def forget(self) -> None:
        self._clusters.clear()
        self._frontend_list_too_large = False
        self._uncovered = None
        self._uncovered_note = None
        self._last = None

    async def read(self, client: SozuClient, *, full: bool = True) -> ProxyState:
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

        if full or self._uncovered is None:
            await self._list_uncovered(client, set(hashes), stats)
        if self._uncovered_note is not None:
            stats.notes.append(self._uncovered_note)
        uncovered = self._uncovered or ListedFrontends()

        certificates = await self._read_certificates(client, listeners.https, stats)
        self.last_stats = stats
        signature = (listeners, hashes, uncovered, certificates)
        if self._last is not None and self._last[0] == signature:
            stats.unchanged = True
            return self._last[1]
        state = ProxyState.build(
            clusters=[i.configuration for i in informations if i.configuration is not None],
            backends=[b for i in informations for b in i.backends],
            http_frontends=[*(f for i in informations for f in i.http_frontends),
                            *uncovered.http],
            https_frontends=[*(f for i in informations for f in i.https_frontends),
                             *uncovered.https],
            tcp_frontends=[*(f for i in informations for f in i.tcp_frontends), *uncovered.tcp],
            certificates=certificates,
            listeners=[*listeners.http, *listeners.https, *listeners.tcp],
        )
        self._last = (signature, state)
        return state

    async def _list_uncovered(
        self, client: SozuClient, clusters: set[str], stats: ReadStats
    ) -> None:
        """Lists every route and keeps those no cluster hash covers."""
        self._uncovered_note = None
        if self._frontend_list_too_large:
            listed = None
        else:
            stats.requests += 1
            try:
                listed = await client.list_frontends()
            except RequestFailed:
                listed = None
                self._uncovered_note = (
                    "this Sōzu cannot list frontends (1.0.0 to 1.0.4): frontends were read "
                    "from cluster queries, so routes without a cluster are not seen"
                )
            except (ConnectionClosed, FrameTooLarge):
                # Sōzu 2.x closes the connection when an answer exceeds its command buffer
                # (`max_command_buffer_size`, 2 MB by default: about 15k routes).
                listed = None
                self._frontend_list_too_large = True
        if self._frontend_list_too_large:
            self._uncovered_note = (
                "the list of frontends does not fit in Sōzu's command buffer (raise "
                "max_command_buffer_size to list them): frontends were read from cluster "
                "queries, so routes without a cluster are not seen"
            )
        if listed is None:
            self._uncovered = ListedFrontends()
            return
        stats.listed_frontends = True

        def outside(cluster_id: str | None) -> bool:
            return cluster_id is None or cluster_id not in clusters

        self._uncovered = ListedFrontends(
            tuple(f for f in listed.http if outside(f.cluster_id)),
            tuple(f for f in listed.https if outside(f.cluster_id)),
            tuple(f for f in listed.tcp if outside(f.cluster_id)),
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
