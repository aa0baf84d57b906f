"""Planning a change at the cost of the change, not of the whole state.

After a change to one resource, a pass compares tables of 10k–50k objects of which a handful
moved. The planner decides each object from that object alone, with a few exceptions: so
against a **baseline** (a desired and a live state, and the steps sent to get from one to the
other), only objects that are not the very same ones (identity, not equality: the builder and
the live reader hand back the same objects for what did not move) may plan differently, and
planning just those gives the same steps as planning everything.

The exceptions, and how they are kept exact:
- a cluster's backends are planned as a group (same-address groups, the cluster's net loss
  for the guard): any moved backend brings in every backend of its cluster, and the routes
  of that cluster (a backend gap names them);
- routes whose hostnames differ only in case are one route to Sōzu's workers: when a moved
  route has such a twin, everything is planned;
- certificates, TCP frontends and listeners are few: always all of them; a certificate whose
  content changed under the same fingerprint names the HTTPS routes it serves, so then
  everything is planned;
- the guard compares removals with every owned live object, counted on the whole live state.

`Plan.problems` of a scoped plan speaks of the scoped objects only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import HttpFrontend
from sozu_operator.reconcile.planner import (
    Plan,
    PlanOptions,
    Step,
    folded_key,
    owned_live_count,
    plan,
)
from sozu_operator.reconcile.proxystate import ProxyState

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Baseline:
    """What a pass planned from, and the requests it sent: every object those requests
    touched is planned again next time, whatever its identity."""

    desired: ProxyState
    live: ProxyState
    sent: tuple[Step, ...]

    @property
    def touched(self) -> tuple[set[str], set[str], set[str], set[str]]:
        """Cluster ids, clusters whose backends, HTTP and HTTPS route keys the steps touched."""
        clusters: set[str] = set()
        backends: set[str] = set()
        http: set[str] = set()
        https: set[str] = set()
        for step in self.sent:
            match step.request:
                case rq.AddCluster(cluster):
                    clusters.add(cluster.cluster_id)
                case rq.RemoveCluster(cluster_id):
                    clusters.add(cluster_id)
                case rq.AddBackend(backend):
                    backends.add(backend.cluster_id)
                case rq.RemoveBackend(cluster_id, _, _):
                    backends.add(cluster_id)
                case rq.AddHttpFrontend(front) | rq.RemoveHttpFrontend(front):
                    http.add(front.key)
                case rq.AddHttpsFrontend(front) | rq.RemoveHttpsFrontend(front):
                    https.add(front.key)
        return clusters, backends, http, https


@dataclass(frozen=True)
class ScopedPlan:
    plan: Plan
    scoped: bool  # False: everything was planned (no baseline, or an exception applied)
    objects: int  # desired and live objects handed to the planner


def _moved(old: Mapping[K, V], new: Mapping[K, V]) -> Iterator[K]:
    """Keys whose object is not the very same in both tables."""
    if old is new:
        return
    for key, value in new.items():
        if old.get(key) is not value:
            yield key
    yield from old.keys() - new.keys()


def _case_twins(tables: Sequence[Mapping[str, HttpFrontend]], keys: set[str]) -> bool:
    """Whether a route of `keys` shares its case-folded identity with another route."""
    if not keys:
        return False
    folded: dict[str, set[str]] = {}
    for table in tables:
        for key, front in table.items():
            if front.hostname != front.hostname.lower():
                folded.setdefault(folded_key(key, front), set()).add(key)
    if not folded:
        return False
    for table in tables:
        for key in keys:
            route = table.get(key)
            if route is not None and folded.get(folded_key(key, route), {key}) - {key}:
                return True
    return False


def _scoped(baseline: Baseline, desired: ProxyState, live: ProxyState
            ) -> tuple[ProxyState, ProxyState] | None:
    old_d, old_l = baseline.desired, baseline.live
    clusters, backend_clusters, http, https = baseline.touched
    for old, new in ((old_d, desired), (old_l, live)):
        clusters.update(_moved(old.clusters, new.clusters))
        backend_clusters.update(key[0] for key in _moved(old.backends, new.backends))
        http.update(_moved(old.http_frontends, new.http_frontends))
        https.update(_moved(old.https_frontends, new.https_frontends))
    for state in (desired, live):
        if backend_clusters:
            # The routes of a cluster whose backends are planned: a backend gap names them.
            for table, keys in ((state.http_frontends, http), (state.https_frontends, https)):
                keys.update(k for k, f in table.items() if f.cluster_id in backend_clusters)
    if _case_twins((desired.http_frontends, live.http_frontends), http) or _case_twins(
        (desired.https_frontends, live.https_frontends), https
    ):
        return None
    for key, certificate in desired.certificates.items():
        held = live.certificates.get(key)
        if held is not None and held != certificate:
            return None

    def part(state: ProxyState) -> ProxyState:
        return ProxyState(
            clusters={c: state.clusters[c] for c in clusters if c in state.clusters},
            backends={
                key: backend for key, backend in state.backends.items()
                if key[0] in backend_clusters
            } if backend_clusters else {},
            http_frontends={k: state.http_frontends[k] for k in http if k in state.http_frontends},
            https_frontends={
                k: state.https_frontends[k] for k in https if k in state.https_frontends
            },
            tcp_frontends=state.tcp_frontends,
            certificates=state.certificates,
            listeners=state.listeners,
        )

    return part(desired), part(live)


def plan_changes(
    desired: ProxyState,
    live: ProxyState,
    *,
    owner: str,
    options: PlanOptions,
    baseline: Baseline | None,
) -> ScopedPlan:
    """The plan `plan(desired, live)` gives, planning only what moved since `baseline`."""
    scoped = _scoped(baseline, desired, live) if baseline is not None else None
    if scoped is None:
        whole = plan(desired, live, owner=owner, options=options)
        return ScopedPlan(whole, False, _size(desired) + _size(live))
    part_desired, part_live = scoped
    result = plan(part_desired, part_live, owner=owner, options=options,
                  owned_live=lambda: owned_live_count(owner, live))
    return ScopedPlan(result, True, _size(part_desired) + _size(part_live))


def _size(state: ProxyState) -> int:
    return (len(state.clusters) + len(state.backends) + len(state.http_frontends)
            + len(state.https_frontends) + len(state.tcp_frontends) + len(state.certificates))
