"""Deterministic benchmark workloads: `sozu.io` resources built in memory as dicts.

Shape (per cluster `i`, five routes, three backends): the proportions of the issue's
"10k clusters / 50k frontends", and one wildcard certificate per 20 clusters, i.e. one per
100 frontends. Hostnames are `c<i>.g<g>.bench.test` with `g = i // 20`, so the certificate
`*.g<g>.bench.test` serves every HTTPS route of its group.

| route             | protocol | path            |
|-------------------|----------|-----------------|
| `c<i>-http`       | HTTP     | PREFIX `/`      |
| `c<i>-http-api`   | HTTP     | PREFIX `/api/`  |
| `c<i>-https`      | HTTPS    | PREFIX `/`      |
| `c<i>-https-api`  | HTTPS    | PREFIX `/api/`  |
| `c<i>-https-hz`   | HTTPS    | EQUALS `/healthz` |

Certificates are real (Sōzu fingerprints the DER and workers parse it), generated once per run
with `tests/certs.py` and reused across sizes: a pool of `max_groups + spares` certificates.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.certs import make_certificate

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    HttpListener,
    HttpsListener,
    ListenerType,
    SocketAddress,
)
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.resources.models import Invalid, Parsed
from sozu_operator.resources.validate import parse_resource

OWNER = "bench"
SOZU_VERSION = 2
HTTP_ADDRESS = "0.0.0.0:8080"
HTTPS_ADDRESS = "0.0.0.0:8443"
ROUTES_PER_CLUSTER = 5
BACKENDS_PER_CLUSTER = 3
CLUSTERS_PER_GROUP = 20  # 20 clusters x 5 routes = 100 frontends per certificate
NAMESPACES = 50
# Fixed so that certificates stay valid and builds are reproducible within a run.
NOW = datetime.datetime.now(datetime.UTC)

Resource = dict[str, Any]

_ROUTES: tuple[tuple[str, str, str, str], ...] = (
    # (suffix, protocol, path kind, path value)
    ("http", "HTTP", "PREFIX", "/"),
    ("http-api", "HTTP", "PREFIX", "/api/"),
    ("https", "HTTPS", "PREFIX", "/"),
    ("https-api", "HTTPS", "PREFIX", "/api/"),
    ("https-hz", "HTTPS", "EQUALS", "/healthz"),
)


def clusters_for(frontends: int) -> int:
    return max(1, frontends // ROUTES_PER_CLUSTER)


def groups_for(frontends: int) -> int:
    return -(-clusters_for(frontends) // CLUSTERS_PER_GROUP)


def namespace(i: int) -> str:
    return f"team-{i % NAMESPACES:02d}"


def hostname(i: int) -> str:
    return f"c{i}.g{i // CLUSTERS_PER_GROUP}.bench.test"


def backend_address(i: int, j: int, generation: int = 0) -> str:
    """Pod addresses: cluster i, pod j; a rollout moves to the next generation (new IPs)."""
    n = i * 8 + j + generation * 1_000_003
    return f"10.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}:8080"


def listener_requests() -> list[rq.Mutation]:
    """What Sōzu's own configuration file would give: one HTTP and one HTTPS listener."""
    http = SocketAddress.parse(HTTP_ADDRESS)
    https = SocketAddress.parse(HTTPS_ADDRESS)
    return [
        rq.AddHttpListener(HttpListener(http)),
        rq.ActivateListener(http, ListenerType.HTTP),
        rq.AddHttpsListener(HttpsListener(https)),
        rq.ActivateListener(https, ListenerType.HTTPS),
    ]


def listeners_state() -> ProxyState:
    return ProxyState.build(
        listeners=[
            HttpListener(SocketAddress.parse(HTTP_ADDRESS), active=True),
            HttpsListener(SocketAddress.parse(HTTPS_ADDRESS), active=True),
        ]
    )


@dataclass
class CertificatePool:
    """Real self-signed wildcard certificates, generated lazily and kept for the run.

    `current(g)` is group g's certificate; `rotated(g, n)` its n-th replacement (n >= 1)."""

    _made: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)

    def pem(self, group: int, generation: int = 0) -> tuple[str, str]:
        key = (group, generation)
        if key not in self._made:
            self._made[key] = make_certificate([f"*.g{group}.bench.test"], days=90)
        return self._made[key]

    def warm(self, groups: int) -> None:
        for group in range(groups):
            self.pem(group)


def cluster_resource(i: int, *, generation: int = 0, pods: int = BACKENDS_PER_CLUSTER,
                     weights: Sequence[int | None] | None = None) -> Resource:
    backends: list[dict[str, Any]] = []
    for j in range(pods):
        backend: dict[str, Any] = {"address": backend_address(i, j, generation)}
        weight = weights[j] if weights is not None and j < len(weights) else None
        if weight is not None:
            backend["weight"] = weight
        backends.append(backend)
    return {
        "apiVersion": "sozu.io/v1alpha1",
        "kind": "SozuCluster",
        "metadata": {"name": f"c{i}", "namespace": namespace(i)},
        "spec": {"loadBalancing": "ROUND_ROBIN", "backends": backends},
    }


def frontend_resource(i: int, route: int, *, cluster: int | None = None,
                      path: str | None = None) -> Resource:
    suffix, protocol, kind, value = _ROUTES[route]
    return {
        "apiVersion": "sozu.io/v1alpha1",
        "kind": "SozuFrontend",
        "metadata": {"name": f"c{i}-{suffix}", "namespace": namespace(i)},
        "spec": {
            "cluster": f"c{i if cluster is None else cluster}",
            "protocol": protocol,
            "address": HTTP_ADDRESS if protocol == "HTTP" else HTTPS_ADDRESS,
            "hostname": hostname(i),
            "path": {"kind": kind, "value": value if path is None else path},
        },
    }


def certificate_resource(group: int, pool: CertificatePool, generation: int = 0) -> Resource:
    certificate, key = pool.pem(group, generation)
    return {
        "apiVersion": "sozu.io/v1alpha1",
        "kind": "SozuCertificate",
        "metadata": {"name": f"g{group}", "namespace": "certs"},
        "spec": {
            "addresses": [HTTPS_ADDRESS],
            "versions": ["TLS_V1_2", "TLS_V1_3"],
            "certificate": certificate,
            "key": key,
        },
    }


@dataclass
class Workload:
    """The resources for `frontends` routes, kept as an editable list of dicts.

    Resources are addressed by (kind, namespace, name) through `index`, so a change swaps one
    dict for an edited copy and leaves every other one untouched (as a resource update does)."""

    frontends: int
    pool: CertificatePool
    resources: list[Resource] = field(default_factory=list)
    index: dict[tuple[str, str, str], int] = field(default_factory=dict)

    @classmethod
    def build(cls, frontends: int, pool: CertificatePool) -> Workload:
        workload = cls(frontends, pool)
        clusters = clusters_for(frontends)
        items: list[Resource] = []
        for i in range(clusters):
            items.append(cluster_resource(i))
            items.extend(frontend_resource(i, r) for r in range(ROUTES_PER_CLUSTER))
        items.extend(certificate_resource(g, pool) for g in range(groups_for(frontends)))
        for item in items:
            workload._put(item)
        return workload

    @property
    def clusters(self) -> int:
        return clusters_for(self.frontends)

    @property
    def groups(self) -> int:
        return groups_for(self.frontends)

    def _key(self, item: Resource) -> tuple[str, str, str]:
        meta = item["metadata"]
        return (item["kind"], meta["namespace"], meta["name"])

    def _put(self, item: Resource) -> None:
        key = self._key(item)
        if key in self.index:
            self.resources[self.index[key]] = item
        else:
            self.index[key] = len(self.resources)
            self.resources.append(item)

    def get(self, kind: str, ns: str, name: str) -> Resource:
        return self.resources[self.index[(kind, ns, name)]]

    def replace(self, item: Resource) -> None:
        self._put(item)

    def remove(self, kind: str, ns: str, name: str) -> None:
        position = self.index.pop((kind, ns, name))
        last = self.resources.pop()
        if position < len(self.resources):
            self.resources[position] = last
            self.index[self._key(last)] = position

    def cluster(self, i: int) -> Resource:
        return self.get("SozuCluster", namespace(i), f"c{i}")

    def edit_cluster(self, i: int) -> Resource:
        """A deep copy of cluster i, put in place of the original; edit it freely."""
        edited = copy.deepcopy(self.cluster(i))
        self.replace(edited)
        return edited

    def frontend(self, i: int, route: int) -> Resource:
        return self.get("SozuFrontend", namespace(i), f"c{i}-{_ROUTES[route][0]}")

    def edit_frontend(self, i: int, route: int) -> Resource:
        edited = copy.deepcopy(self.frontend(i, route))
        self.replace(edited)
        return edited

    def counts(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for item in self.resources:
            kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
        return kinds

    def expected_objects(self) -> dict[str, int]:
        """Sōzu objects the resources program (and so, mutations of a cold start)."""
        clusters = self.clusters
        return {
            "clusters": clusters,
            "backends": clusters * BACKENDS_PER_CLUSTER,
            "frontends": clusters * ROUTES_PER_CLUSTER,
            "certificates": self.groups,
        }

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.resources)


class ParseCache:
    """Validated resources kept across reconciliations, re-validated only when their object
    changed (a new dict, as `Workload` makes for every edit): what a long-running process
    holding resources in an informer cache can do, unlike the CLI, which validates every
    resource on every run."""

    def __init__(self) -> None:
        self._parsed: dict[int, tuple[Resource, Parsed | Invalid]] = {}
        self.parsed_last = 0

    def objects(self, resources: Iterable[Resource]) -> list[object]:
        fresh: dict[int, tuple[Resource, Parsed | Invalid]] = {}
        out: list[object] = []
        parsed_now = 0
        for item in resources:
            entry = self._parsed.get(id(item))
            if entry is None or entry[0] is not item:
                entry = (item, parse_resource(item, sozu_version=SOZU_VERSION))
                parsed_now += 1
            fresh[id(item)] = entry
            # An invalid resource goes in raw, so that the builder reports it as usual.
            out.append(entry[1] if isinstance(entry[1], Parsed) else item)
        self._parsed = fresh
        self.parsed_last = parsed_now
        return out
