"""Turn (desired, live) into an ordered plan of Sōzu requests that never drops served traffic.

Inputs are two `ProxyState` snapshots. `desired` holds only objects this installation owns,
already carrying the ownership markers (see `ownership`); `live` is everything Sōzu holds. The
plan touches only owned objects: anything unowned is never changed, and a desired object that
collides with one is reported as a `Problem` instead.

Minimality: an object whose Sōzu identity is unchanged is updated in place where Sōzu can
(clusters and backends are upserts, a rotated certificate is one `ReplaceCertificate`), so an
in-sync pair gives no request at all.

Ordering (phases run in this order; see docs/planning.md, "Ordering"):

1. certificates added, then rotated in place (`ReplaceCertificate`); a certificate whose names
   or chain change under the same fingerprint is removed and added again here (flagged gap);
2. clusters added or upserted;
3. backends added or upserted; then the "same address" groups (below);
4. frontends whose key is new;
5. frontends whose key exists with other non-key fields: remove the live one (with its own
   position, the only place workers look), add the new one right after — a flagged gap;
6. frontends no longer desired;
7. backends no longer desired;
8. certificates no longer desired;
9. clusters no longer desired.

So every route is added after what it needs and removed before what it needed goes.

Two worker behaviours shape the plan beyond that order:

- `remove_backend` drops every backend of the cluster at that address, whatever its id. When
  an owned backend goes while another one of the same cluster stays or arrives at the same
  address (a pod replaced by one reusing its IP), adding the new one first would have it
  silently dropped by the later removal while main still lists it. Those (cluster, address)
  groups are therefore done as "remove the stale ones, then (re-)add every desired one at that
  address", after all other backend upserts so that the cluster's other backends already
  serve. If the cluster has no backend at any other address, that window is a flagged gap.
- a TCP listener serves one cluster; adding a TCP frontend takes the listener over and
  removing any TCP frontend at that address unbinds it. TCP routes are therefore handled per
  address: an address whose owned frontends differ from the desired one is emptied, then the
  desired frontend is added (a flagged gap).

The mass-deletion guard (`GuardVerdict`) does not change the plan; the applier refuses a plan
whose verdict is not `allowed`.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    ListenerType,
    SocketAddress,
    TcpFrontend,
)
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.proxystate import BackendKey, CertificateKey, ProxyState

# --- public types ----------------------------------------------------------------------------


class Phase(enum.StrEnum):
    """Groups of steps, in the order the plan runs them."""

    CERTIFICATES = "certificates"
    CLUSTERS = "clusters"
    BACKENDS = "backends"
    FRONTENDS_ADD = "frontends-add"
    FRONTENDS_CHANGE = "frontends-change"
    FRONTENDS_REMOVE = "frontends-remove"
    BACKENDS_REMOVE = "backends-remove"
    CERTIFICATES_REMOVE = "certificates-remove"
    CLUSTERS_REMOVE = "clusters-remove"


class Action(enum.StrEnum):
    ADD = "add"
    UPDATE = "update"
    REPLACE = "replace"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class Step:
    """One request of the plan.

    `gap` is set when this step opens an unavoidable traffic gap and says why; `gap_routes`
    names the routes (see `route_name`) the gap may affect, which is what the simulator
    tolerates. No private key material ever appears in `summary`."""

    request: rq.Mutation
    phase: Phase
    action: Action
    summary: str
    resource: str | None = None
    gap: str | None = None
    gap_routes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Problem:
    """A desired or live object the plan leaves alone, and why.

    `kind` is one of "cluster", "backend", "http frontend", "https frontend", "tcp frontend",
    "certificate", "listener"; `key` is the object's Sōzu identity as text."""

    kind: str
    key: str
    reason: str
    resource: str | None = None


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """Mass-deletion guard thresholds.

    A plan is blocked when the installation owns at least `guard_min_objects` live objects and
    the plan deletes more than `max_removal_share` of them, unless `force` is set. The floor
    keeps small installations (where deleting 3 of 4 objects is normal) usable without force;
    half of everything is far beyond any ordinary change yet is what an empty or truncated
    desired state (wrong namespace, failed list, bad config) produces."""

    max_removal_share: float = 0.5
    guard_min_objects: int = 10
    force: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_removal_share <= 1.0:
            raise ValueError(f"max_removal_share {self.max_removal_share} is not within 0..1")
        if self.guard_min_objects < 0:
            raise ValueError(f"guard_min_objects {self.guard_min_objects} is negative")


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """`owned_live` counts owned clusters, backends, frontends and certificates in live;
    `removals` counts those the plan deletes for good (see `plan`)."""

    owned_live: int
    removals: int
    max_removal_share: float
    min_objects: int
    forced: bool
    allowed: bool
    reason: str

    @property
    def share(self) -> float:
        return self.removals / self.owned_live if self.owned_live else 0.0


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]
    problems: tuple[Problem, ...]
    guard: GuardVerdict

    @property
    def is_empty(self) -> bool:
        return not self.steps

    @property
    def gaps(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.gap is not None)

    def counts_by_verb(self) -> dict[str, int]:
        counts = Counter(rq.verb_name(step.request) for step in self.steps)
        return dict(sorted(counts.items()))


# --- helpers shared with the simulator -----------------------------------------------------


def route_name(kind: ListenerType, identity: str) -> str:
    """How plans and simulation reports name a route: `http <key>`, `https <key>` for HTTP(S)
    frontends (keyed by `HttpFrontend.key`), `tcp <address>` for TCP (a TCP listener serves
    one cluster, so its address is the route)."""
    return f"{kind.name.lower()} {identity}"


def name_covers(pattern: str, hostname: str) -> bool:
    """Whether a certificate name serves `hostname` (case-insensitive; `*.example.com`
    serves exactly one label below example.com, and a wildcard hostname only itself)."""
    pattern, hostname = pattern.lower(), hostname.lower()
    if pattern == hostname:
        return True
    if not pattern.startswith("*.") or hostname.startswith("*."):
        return False
    head, _, rest = hostname.partition(".")
    return bool(head) and rest == pattern[2:]


def certificate_covers(certificate: CertificateAndKey, hostname: str) -> bool:
    return any(name_covers(name, hostname) for name in ownership.served_names(certificate))


# --- planning --------------------------------------------------------------------------------

_FRONTEND_KINDS = (ListenerType.HTTP, ListenerType.HTTPS)

_ADD_FRONTEND: dict[ListenerType, type[rq.AddHttpFrontend] | type[rq.AddHttpsFrontend]] = {
    ListenerType.HTTP: rq.AddHttpFrontend,
    ListenerType.HTTPS: rq.AddHttpsFrontend,
}
_REMOVE_FRONTEND: dict[
    ListenerType, type[rq.RemoveHttpFrontend] | type[rq.RemoveHttpsFrontend]
] = {
    ListenerType.HTTP: rq.RemoveHttpFrontend,
    ListenerType.HTTPS: rq.RemoveHttpsFrontend,
}

_GAP_FRONTEND = (
    "Sōzu keys a route by address, hostname, path and method only; its cluster, position, "
    "tags and policy cannot change in place, so the route is removed and added again"
)
_GAP_TCP = (
    "a TCP listener serves one cluster and removing any TCP frontend unbinds it, so the "
    "address is emptied before its new frontend is added"
)
_GAP_BACKEND = (
    "workers' remove_backend drops every backend of the cluster at that address, and the "
    "cluster has no backend at another address to serve meanwhile"
)
_GAP_CERTIFICATE = (
    "the certificate keeps its fingerprint but its names or chain changed; Sōzu ignores a "
    "second add of the same fingerprint, so it is removed and added again"
)


def plan(
    desired: ProxyState,
    live: ProxyState,
    *,
    owner: str,
    options: PlanOptions = PlanOptions(),  # frozen, so one shared default is safe
    owned_live: Callable[[], int] | None = None,
) -> Plan:
    """The ordered requests that turn the owned part of `live` into `desired`.

    Everything owned in live and not desired is removed; nothing unowned ever is. Objects
    with a problem (not marked as owned, no listener of the right type at their address,
    identity already held by an unowned object) are skipped, and the live object at their
    identity, if owned, is left as it is: a problem never causes a deletion.

    Same inputs give the same plan: every collection is walked in sorted order.

    `owned_live` counts the owned objects for the guard when `live` is only part of what
    Sōzu serves (see `reconcile/incremental.py`); by default they are counted in `live`."""
    ownership.check_owner(owner)
    planner = _Planner(owner, desired, live)
    planner.run()
    owned = owned_live() if owned_live is not None else owned_live_count(owner, live)
    return Plan(
        steps=tuple(step for phase in Phase for step in planner.steps[phase]),
        problems=tuple(planner.problems),
        guard=_verdict(owned, planner.removals, options),
    )


def owned_live_count(owner: str, live: ProxyState) -> int:
    """The owned clusters, backends, frontends and certificates `live` holds."""
    return (
        sum(ownership.owns_cluster(owner, cid) for cid in live.clusters)
        + sum(ownership.owns_cluster(owner, b.cluster_id) for b in live.backends.values())
        + sum(ownership.owns_frontend(owner, f) for f in live.http_frontends.values())
        + sum(ownership.owns_frontend(owner, f) for f in live.https_frontends.values())
        + sum(ownership.owns_frontend(owner, f) for f in live.tcp_frontends)
        + sum(ownership.owns_certificate(owner, c) for c in live.certificates.values())
    )


def _verdict(owned: int, removals: int, options: PlanOptions) -> GuardVerdict:
    share = removals / owned if owned else 0.0
    described = (
        f"the plan deletes {removals} of {owned} owned objects ({share:.0%}); "
        f"limit {options.max_removal_share:.0%}"
    )
    if owned < options.guard_min_objects:
        allowed, reason = True, (
            f"{owned} owned objects, below the guard's floor of {options.guard_min_objects}"
        )
    elif share <= options.max_removal_share:
        allowed, reason = True, described
    elif options.force:
        allowed, reason = True, described + "; exceeded but forced"
    else:
        allowed, reason = False, described + "; blocked, re-run with force to apply"
    return GuardVerdict(
        owned_live=owned,
        removals=removals,
        max_removal_share=options.max_removal_share,
        min_objects=options.guard_min_objects,
        forced=options.force,
        allowed=allowed,
        reason=reason,
    )


class _Planner:
    """Mutable scratchpad for one `plan` call; nothing of it escapes."""

    def __init__(self, owner: str, desired: ProxyState, live: ProxyState) -> None:
        self.owner = owner
        self.desired = desired
        self.live = live
        self.steps: dict[Phase, list[Step]] = {phase: [] for phase in Phase}
        self.problems: list[Problem] = []
        self.removals = 0

    def run(self) -> None:
        for kind, address in sorted(self.desired.listeners, key=_listener_sort):
            self._problem(
                "listener", f"{kind.name.lower()} {address}",
                "listeners come from Sōzu's own configuration and are never planned",
            )
        self._certificates()
        self._clusters()
        self._backends()
        for kind in _FRONTEND_KINDS:
            self._http_frontends(kind)
        self._tcp_frontends()

    # --- bookkeeping -----------------------------------------------------------------------

    def _add(
        self,
        phase: Phase,
        action: Action,
        request: rq.Mutation,
        summary: str,
        resource: str | None = None,
        gap: str | None = None,
        gap_routes: Iterable[str] = (),
    ) -> None:
        step = Step(request, phase, action, summary, resource, gap, tuple(sorted(gap_routes)))
        self.steps[phase].append(step)

    def _problem(self, kind: str, key: str, reason: str, resource: str | None = None) -> None:
        self.problems.append(Problem(kind, key, reason, resource))

    def _has_listener(self, kind: ListenerType, address: SocketAddress) -> bool:
        return (kind, address) in self.live.listeners

    @functools.cached_property
    def _routes_by_cluster(self) -> dict[str, set[str]]:
        """Route names pointing at each cluster in live or desired: what a backend gap hits.
        Built on first use: only a plan with a backend gap needs it."""
        index: dict[str, set[str]] = defaultdict(set)
        for state in (self.live, self.desired):
            for kind, table in _frontend_tables(state):
                for key, frontend in table.items():
                    if frontend.cluster_id is not None:
                        index[frontend.cluster_id].add(route_name(kind, key))
            for tcp in state.tcp_frontends:
                index[tcp.cluster_id].add(route_name(ListenerType.TCP, str(tcp.address)))
        return index

    def _https_routes_served_by(
        self, address: SocketAddress, certificate: CertificateAndKey
    ) -> set[str]:
        routes = set()
        for state in (self.live, self.desired):
            for key, frontend in state.https_frontends.items():
                if frontend.address == address and certificate_covers(
                    certificate, frontend.hostname
                ):
                    routes.add(route_name(ListenerType.HTTPS, key))
        return routes

    # --- certificates ----------------------------------------------------------------------

    def _certificates(self) -> None:
        owner = self.owner
        wanted: dict[CertificateKey, CertificateAndKey] = {}
        protected: set[CertificateKey] = set()
        for key in sorted(self.desired.certificates, key=_certificate_sort):
            address, fp = key
            certificate = self.desired.certificates[key]
            text = f"{address} {fp}"
            live_certificate = self.live.certificates.get(key)
            if not ownership.owns_certificate(owner, certificate):
                protected.add(key)
                self._problem(
                    "certificate", text, f"desired certificate lacks the {owner!r} marker name"
                )
            elif not self._has_listener(ListenerType.HTTPS, address):
                protected.add(key)
                self._problem("certificate", text, f"no HTTPS listener at {address} in Sōzu")
            elif live_certificate is not None and not ownership.owns_certificate(
                owner, live_certificate
            ):
                self._problem(
                    "certificate", text,
                    "the same certificate is already at this address and not ours (static "
                    "config or another owner); Sōzu would ignore our add, so it is left alone",
                )
            else:
                wanted[key] = certificate

        owned_live = {
            key: certificate
            for key, certificate in self.live.certificates.items()
            if ownership.owns_certificate(owner, certificate)
        }
        stale = sorted(
            (key for key in owned_live if key not in wanted and key not in protected),
            key=_certificate_sort,
        )
        replaced: set[CertificateKey] = set()
        replacements: list[tuple[CertificateKey, CertificateKey]] = []
        for key in sorted(wanted, key=_certificate_sort):
            old = owned_live.get(key)
            certificate = wanted[key]
            if old is None:
                predecessor = _predecessor(key, certificate, stale, owned_live, replaced)
                if predecessor is None:
                    self._add(
                        Phase.CERTIFICATES, Action.ADD, rq.AddCertificate(key[0], certificate),
                        f"+ {_certificate_text(key, certificate)}",
                    )
                else:
                    replaced.add(predecessor)
                    replacements.append((predecessor, key))
            elif not _same_certificate_content(old, certificate):
                # Same fingerprint: an add is a no-op in Sōzu and a replace with equal
                # fingerprints is a no-op in 2.x workers, so only remove + add reaches them.
                self._add(
                    Phase.CERTIFICATES, Action.REMOVE, rq.RemoveCertificate(key[0], key[1]),
                    f"- {_certificate_text(key, old)} (re-added next with new names/chain)",
                    gap=_GAP_CERTIFICATE,
                    gap_routes=self._https_routes_served_by(key[0], old),
                )
                self._add(
                    Phase.CERTIFICATES, Action.ADD, rq.AddCertificate(key[0], certificate),
                    f"+ {_certificate_text(key, certificate)}",
                )
        # Plain adds first: a rotation never needs them, but they never hurt either.
        for old_key, new_key in replacements:
            certificate = wanted[new_key]
            self._add(
                Phase.CERTIFICATES, Action.REPLACE,
                rq.ReplaceCertificate(new_key[0], certificate, old_fingerprint=old_key[1]),
                f"~ certificate {new_key[0]} {_short(old_key[1])} → {_short(new_key[1])} "
                f"({_names_text(certificate)})",
            )
        for key in stale:
            if key in replaced:
                continue
            self.removals += 1
            self._add(
                Phase.CERTIFICATES_REMOVE, Action.REMOVE, rq.RemoveCertificate(key[0], key[1]),
                f"- {_certificate_text(key, owned_live[key])}",
            )

    # --- clusters --------------------------------------------------------------------------

    def _clusters(self) -> None:
        for cluster_id in sorted(self.desired.clusters):
            cluster = self.desired.clusters[cluster_id]
            if not ownership.owns_cluster(self.owner, cluster_id):
                self._problem(
                    "cluster", cluster_id, f"desired cluster id lacks the {self.owner!r} prefix",
                )
                continue
            old = self.live.clusters.get(cluster_id)
            if old is None:
                self._add(
                    Phase.CLUSTERS, Action.ADD, rq.AddCluster(cluster),
                    f"+ cluster {cluster_id}", cluster_id,
                )
            elif old != cluster:
                self._add(
                    Phase.CLUSTERS, Action.UPDATE, rq.AddCluster(cluster),
                    f"~ cluster {cluster_id} {_changes(old, cluster)}", cluster_id,
                )
        for cluster_id in sorted(self.live.clusters):
            if ownership.owns_cluster(self.owner, cluster_id) and (
                cluster_id not in self.desired.clusters
            ):
                self.removals += 1
                self._add(
                    Phase.CLUSTERS_REMOVE, Action.REMOVE, rq.RemoveCluster(cluster_id),
                    f"- cluster {cluster_id}", cluster_id,
                )

    # --- backends --------------------------------------------------------------------------

    def _backends(self) -> None:
        owner = self.owner
        wanted: dict[BackendKey, Backend] = {}
        unowned: list[BackendKey] = []
        # Unsorted: the groups below are sorted; only the problems need this order.
        for key, backend in self.desired.backends.items():
            if ownership.owns_cluster(owner, backend.cluster_id):
                wanted[key] = backend
            else:
                unowned.append(key)
        for key in sorted(unowned, key=_backend_sort):
            backend = self.desired.backends[key]
            self._problem(
                "backend", _backend_text(backend),
                f"its cluster id lacks the {owner!r} prefix", backend.cluster_id,
            )
        owned_live = {
            key: backend
            for key, backend in self.live.backends.items()
            if ownership.owns_cluster(owner, backend.cluster_id)
        }

        groups: dict[tuple[str, SocketAddress], tuple[list[Backend], list[Backend]]] = (
            defaultdict(lambda: ([], []))
        )
        for backend in wanted.values():
            groups[(backend.cluster_id, backend.address)][0].append(backend)
        for backend in owned_live.values():
            groups[(backend.cluster_id, backend.address)][1].append(backend)
        # Addresses each cluster has a backend at, live or desired: a same-address group is
        # gap-free when its cluster keeps serving from any other address meanwhile.
        addresses: dict[str, set[SocketAddress]] = defaultdict(set)
        for cluster_id, address in groups:
            addresses[cluster_id].add(address)

        net_removed: Counter[str] = Counter()
        readdressed: list[tuple[list[Backend], list[Backend]]] = []
        # Most groups are one backend, unchanged: they send nothing and remove nothing.
        changing = [
            group
            for group, (desired_here, live_here) in groups.items()
            if not (len(desired_here) == len(live_here) == 1 and desired_here[0] == live_here[0])
        ]
        for cluster_id, address in sorted(changing, key=lambda g: (g[0], g[1].sort_key)):
            desired_here, live_here = groups[(cluster_id, address)]
            desired_ids = {b.identity for b in desired_here}
            live_by_id = {b.identity: b for b in live_here}
            stale = sorted((b for b in live_here if b.identity not in desired_ids), key=_b_sort)
            net_removed[cluster_id] += len(stale) - len(desired_ids - live_by_id.keys())
            if stale and desired_here:
                readdressed.append((sorted(desired_here, key=_b_sort), stale))
                continue
            for backend in sorted(desired_here, key=_b_sort):
                old = live_by_id.get(backend.identity)
                if old is None:
                    self._add(
                        Phase.BACKENDS, Action.ADD, rq.AddBackend(backend),
                        f"+ backend {_backend_text(backend)}", cluster_id,
                    )
                elif old != backend:
                    self._add(
                        Phase.BACKENDS, Action.UPDATE, rq.AddBackend(backend),
                        f"~ backend {_backend_text(backend)} {_changes(old, backend)}",
                        cluster_id,
                    )
            for backend in stale:
                self._add(
                    Phase.BACKENDS_REMOVE, Action.REMOVE, _remove_backend(backend),
                    f"- backend {_backend_text(backend)}", cluster_id,
                )

        # After every other upsert, so the cluster's other backends already serve.
        for desired_here, stale in readdressed:
            cluster_id, address = stale[0].cluster_id, stale[0].address
            alone = addresses[cluster_id] == {address}
            for index, backend in enumerate(stale):
                opens_gap = alone and index == 0
                self._add(
                    Phase.BACKENDS, Action.REMOVE, _remove_backend(backend),
                    f"- backend {_backend_text(backend)} (workers drop every backend of "
                    f"{cluster_id} at {address}; desired ones re-added next)",
                    cluster_id,
                    gap=_GAP_BACKEND if opens_gap else None,
                    gap_routes=self._routes_by_cluster.get(cluster_id, ()) if opens_gap else (),
                )
            for backend in desired_here:
                old = self.live.backends.get(backend.identity)
                if old is None:
                    action, text = Action.ADD, f"+ backend {_backend_text(backend)}"
                elif old != backend:
                    action = Action.UPDATE
                    text = f"~ backend {_backend_text(backend)} {_changes(old, backend)}"
                else:
                    action = Action.ADD
                    text = f"+ backend {_backend_text(backend)} (again: dropped by workers above)"
                self._add(Phase.BACKENDS, action, rq.AddBackend(backend), text, cluster_id)

        # Backends replaced by others in the same cluster are churn (pods come and go);
        # only a cluster's net loss counts as deletion for the guard.
        self.removals += sum(max(0, count) for count in net_removed.values())

    # --- HTTP and HTTPS frontends ----------------------------------------------------------

    def _http_frontends(self, kind: ListenerType) -> None:
        owner = self.owner
        noun = f"{kind.name.lower()} frontend"
        desired_table = _table(self.desired, kind)
        live_table = _table(self.live, kind)
        owned_live = {
            key: front for key, front in live_table.items() if ownership.owns_frontend(owner, front)
        }
        # Workers compare hostnames after normalising them (IDNA, lowercase), so keys that
        # differ only in case are distinct in main but the same route in workers.
        live_by_folded = {folded_key(key, front): front for key, front in live_table.items()}

        wanted: dict[str, HttpFrontend] = {}
        protected: set[str] = set()
        wanted_folded: set[str] = set()
        for key in sorted(desired_table):
            front = desired_table[key]
            resource = _resource(front)
            folded = folded_key(key, front)
            holder = live_by_folded.get(folded)
            if not ownership.owns_frontend(owner, front):
                protected.add(key)
                self._problem(
                    noun, key, f"desired frontend lacks the {owner!r} owner tag", resource
                )
            elif not self._has_listener(kind, front.address):
                protected.add(key)
                self._problem(
                    noun, key, f"no {kind.name} listener at {front.address} in Sōzu", resource
                )
            elif holder is not None and not ownership.owns_frontend(owner, holder):
                self._problem(
                    noun, key,
                    ("the route" if holder.key == key else f"the route {holder.key!r}")
                    + f" is already served by a frontend that is not ours "
                    f"({_owner_text(holder)}); left alone",
                    resource,
                )
            elif folded in wanted_folded:
                self._problem(
                    noun, key, "another desired frontend differs from it only by hostname case",
                    resource,
                )
            else:
                wanted[key] = front
                wanted_folded.add(folded)

        handled: set[str] = set()
        for key in sorted(wanted):
            front = wanted[key]
            old = owned_live.get(key)
            old_key = key
            if old is None:
                # A live owned route differing only by case must go first (see above).
                twin = live_by_folded.get(folded_key(key, front))
                if twin is not None and twin.key not in wanted:
                    old, old_key = twin, twin.key
            if old is None:
                self._add(
                    Phase.FRONTENDS_ADD, Action.ADD, _ADD_FRONTEND[kind](front),
                    f"+ {noun} {key} → {_target(front)}", _resource(front),
                )
                continue
            handled.add(old_key)
            if old == front:
                continue
            self._add(
                Phase.FRONTENDS_CHANGE, Action.REMOVE, _REMOVE_FRONTEND[kind](old),
                f"- {noun} {old.key} (re-added next: {_changes(old, front)})",
                _resource(old), gap=_GAP_FRONTEND,
                gap_routes={route_name(kind, old.key), route_name(kind, key)},
            )
            self._add(
                Phase.FRONTENDS_CHANGE, Action.ADD, _ADD_FRONTEND[kind](front),
                f"+ {noun} {key} → {_target(front)}", _resource(front),
            )
        for key in sorted(owned_live):
            if key in handled or key in wanted or key in protected:
                continue
            self.removals += 1
            old = owned_live[key]
            self._add(
                Phase.FRONTENDS_REMOVE, Action.REMOVE, _REMOVE_FRONTEND[kind](old),
                f"- {noun} {key}", _resource(old),
            )

    # --- TCP frontends ---------------------------------------------------------------------

    def _tcp_frontends(self) -> None:
        owner = self.owner
        wanted: dict[SocketAddress, TcpFrontend] = {}
        protected: set[SocketAddress] = set()
        owned_live: dict[SocketAddress, list[TcpFrontend]] = defaultdict(list)
        foreign: dict[SocketAddress, TcpFrontend] = {}
        for front in sorted(self.live.tcp_frontends, key=_tcp_sort):
            if ownership.owns_frontend(owner, front):
                owned_live[front.address].append(front)
            else:
                foreign.setdefault(front.address, front)

        for front in sorted(self.desired.tcp_frontends, key=_tcp_sort):
            address, resource = front.address, _resource(front)
            text = f"{address} → {front.cluster_id}"
            if not ownership.owns_frontend(owner, front):
                protected.add(address)
                self._problem(
                    "tcp frontend", text, f"desired frontend lacks the {owner!r} owner tag",
                    resource,
                )
            elif not self._has_listener(ListenerType.TCP, address):
                protected.add(address)
                self._problem(
                    "tcp frontend", text, f"no TCP listener at {address} in Sōzu", resource
                )
            elif address in foreign:
                protected.add(address)
                self._problem(
                    "tcp frontend", text,
                    f"the TCP listener at {address} already serves a frontend that is not ours "
                    f"({_owner_text(foreign[address])}); left alone",
                    resource,
                )
            elif address in wanted:
                self._problem(
                    "tcp frontend", text,
                    f"a TCP listener serves one cluster and {wanted[address].cluster_id} is "
                    "already desired there",
                    resource,
                )
            else:
                wanted[address] = front

        for address in sorted(set(wanted) | set(owned_live)):
            target, current = wanted.get(address), owned_live.get(address, [])
            route = route_name(ListenerType.TCP, str(address))
            if target is None and (address in protected or not current):
                continue
            if target is None and address in foreign:
                self._problem(
                    "tcp frontend", str(address),
                    "ours is no longer desired, but removing it would unbind the listener from "
                    f"a frontend that is not ours ({_owner_text(foreign[address])}); left alone",
                    _resource(current[0]),
                )
                continue
            if target is not None and current == [target]:
                continue
            if target is not None and not current:
                self._add(
                    Phase.FRONTENDS_ADD, Action.ADD, rq.AddTcpFrontend(target),
                    f"+ tcp frontend {address} → {target.cluster_id}", _resource(target),
                )
                continue
            phase = Phase.FRONTENDS_REMOVE if target is None else Phase.FRONTENDS_CHANGE
            if target is None:
                self.removals += len(current)
            # Sōzu removes by (cluster, address) whatever the tags: one request per cluster.
            by_cluster: dict[str, TcpFrontend] = {}
            for old in current:
                by_cluster.setdefault(old.cluster_id, old)
            for index, old in enumerate(by_cluster.values()):
                opens_gap = target is not None and index == 0
                self._add(
                    phase, Action.REMOVE, rq.RemoveTcpFrontend(old),
                    f"- tcp frontend {address} → {old.cluster_id}"
                    + (" (re-added next)" if target is not None else ""),
                    _resource(old),
                    gap=_GAP_TCP if opens_gap else None,
                    gap_routes=(route,) if opens_gap else (),
                )
            if target is not None:
                self._add(
                    phase, Action.ADD, rq.AddTcpFrontend(target),
                    f"+ tcp frontend {address} → {target.cluster_id}", _resource(target),
                )


# --- small pure helpers ----------------------------------------------------------------------


def _frontend_tables(
    state: ProxyState,
) -> Iterable[tuple[ListenerType, Mapping[str, HttpFrontend]]]:
    return ((kind, _table(state, kind)) for kind in _FRONTEND_KINDS)


def _table(state: ProxyState, kind: ListenerType) -> Mapping[str, HttpFrontend]:
    return state.http_frontends if kind is ListenerType.HTTP else state.https_frontends


def folded_key(key: str, front: HttpFrontend) -> str:
    """`key` (the route's `HttpFrontend.key`, as its table holds it) with the hostname
    lowercased; most hostnames already are, and formatting the address again is the costly
    part of building a key."""
    if front.hostname == front.hostname.lower():
        return key
    text = f"{front.address};{front.hostname.lower()};{front.path.key_text}"
    return text if front.method is None else f"{text};{front.method}"


def _predecessor(
    key: CertificateKey,
    certificate: CertificateAndKey,
    stale: list[CertificateKey],
    owned_live: Mapping[CertificateKey, CertificateAndKey],
    taken: set[CertificateKey],
) -> CertificateKey | None:
    """The stale owned certificate at the same address this one can replace in one request:
    every name the old one serves must stay served by the new one, so no SNI name loses its
    certificate. Same name set first, then the largest overlap, then fingerprint order."""
    new_names = ownership.served_names(certificate)
    best: tuple[tuple[int, int, str], CertificateKey] | None = None
    for old_key in stale:
        if old_key[0] != key[0] or old_key in taken:
            continue
        old_names = ownership.served_names(owned_live[old_key])
        if not old_names or not all(
            any(name_covers(pattern, name) for pattern in new_names) for name in old_names
        ):
            continue
        rank = (
            0 if set(old_names) == set(new_names) else 1,
            -len(set(old_names) & set(new_names)),
            old_key[1],
        )
        if best is None or rank < best[0]:
            best = (rank, old_key)
    return None if best is None else best[1]


def _same_certificate_content(old: CertificateAndKey, new: CertificateAndKey) -> bool:
    # The key is left out on purpose: the same certificate only works with the same key, and
    # a different PEM encoding of that key is no reason to remove a serving certificate.
    # `versions` is ignored by workers.
    return set(old.names) == set(new.names) and old.certificate_chain == new.certificate_chain


def _remove_backend(backend: Backend) -> rq.RemoveBackend:
    return rq.RemoveBackend(backend.cluster_id, backend.backend_id, backend.address)


def _resource(front: HttpFrontend | TcpFrontend) -> str | None:
    return dict(front.tags).get(ownership.RESOURCE_TAG)


def _owner_text(front: HttpFrontend | TcpFrontend) -> str:
    other = dict(front.tags).get(ownership.OWNER_TAG)
    return "no owner tag" if other is None else f"owner {other!r}"


def _target(front: HttpFrontend) -> str:
    return front.cluster_id if front.cluster_id is not None else "deny (no cluster)"


def _short(fingerprint: str) -> str:
    return fingerprint[:16]


def _names_text(certificate: CertificateAndKey) -> str:
    return ", ".join(ownership.served_names(certificate)) or "no served name"


def _certificate_text(key: CertificateKey, certificate: CertificateAndKey) -> str:
    return f"certificate {key[0]} {_short(key[1])} ({_names_text(certificate)})"


def _backend_text(backend: Backend) -> str:
    return f"{backend.cluster_id}/{backend.backend_id} {backend.address}"


# Fields whose values are long, opaque or sensitive: a summary only says they changed.
_OPAQUE_FIELDS = frozenset(
    {"answers", "answer_503", "authorized_hashes", "www_authenticate", "tags", "headers"}
)


def _changes(old: Cluster | Backend | HttpFrontend, new: Cluster | Backend | HttpFrontend) -> str:
    parts = []
    for item in fields(old):
        if not item.compare:
            continue  # derived (a cached key): its source fields are reported
        before, after = getattr(old, item.name), getattr(new, item.name)
        if before == after:
            continue
        if item.name in _OPAQUE_FIELDS or isinstance(before, tuple) or isinstance(after, tuple):
            parts.append(f"{item.name} changed")
        else:
            parts.append(f"{item.name} {_value_text(before)}→{_value_text(after)}")
    return ", ".join(parts)


def _value_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, enum.Enum):
        return value.name
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _listener_sort(key: tuple[ListenerType, SocketAddress]) -> tuple[int, tuple[int, int, int]]:
    return (int(key[0]), key[1].sort_key)


def _certificate_sort(key: CertificateKey) -> tuple[tuple[int, int, int], str]:
    return (key[0].sort_key, key[1])


def _backend_sort(key: BackendKey) -> tuple[str, str, tuple[int, int, int]]:
    return (key[0], key[1], key[2].sort_key)


def _b_sort(backend: Backend) -> tuple[str, str, tuple[int, int, int]]:
    return _backend_sort(backend.identity)


def _tcp_sort(front: TcpFrontend) -> tuple[tuple[int, int, int], str, tuple[tuple[str, str], ...]]:
    return (front.address.sort_key, front.cluster_id, front.tags)
