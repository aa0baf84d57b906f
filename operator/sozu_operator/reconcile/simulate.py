"""Replay a plan step by step over the live state and check that served traffic never drops.

The replay uses our re-implementation of Sōzu main's `ConfigState`, so a step main would refuse
is caught with Sōzu's own error. Next to it the simulator keeps a small model of the two worker
behaviours where workers differ from main and where plans go wrong:

- `remove_backend` drops every backend of the cluster at that address, whatever its id;
- a TCP listener serves one cluster: an add binds it, any remove at that address unbinds it.

It also checks that an HTTP(S) removal names the position the live route sits in, since
workers look for it only there.

Traffic-safety invariant. A route is tracked when it is served in live and still present, by
the same key, in the final state (`route_name` gives its name). For each tracked route four
conditions are evaluated on every state:

(a) the route exists (TCP: the listener is bound to a cluster in workers);
(b) the cluster it points to exists (a deny route, with no cluster, passes);
(c) that cluster has at least one backend in workers (deny routes pass);
(d) HTTPS only: some certificate at the route's address serves its hostname (wildcards:
    `*.example.com` serves `a.example.com`).

A condition is required of a route when it holds both before the plan and in the final state:
one that was already broken in live, or that the desired state itself gives up (a route moved
to a cluster with no backend), is the outcome asked for, not a transient gap. Every required
condition must then hold after every step.

Flagged gaps. A step whose `gap` is set opens a window for each route in its `gap_routes`.
While a window is open, that route's failing conditions are tolerated (listed in the report's
`tolerated`, not in `violations`). The window closes at the first state, from that step's
own on, in which the route passes all its required conditions again; a later failure of that
route is a violation unless another flagged step opens a new window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import Backend, HttpFrontend, ListenerType, SocketAddress
from sozu_operator.proxy.state import ConfigState, StateError
from sozu_operator.reconcile.planner import Plan, certificate_covers, route_name
from sozu_operator.reconcile.proxystate import ProxyState


@dataclass(frozen=True, slots=True)
class Violation:
    """`step` is the index in `plan.steps` after which the problem was seen; `route` is None
    for a step main refuses or a main/worker divergence not tied to one route."""

    step: int
    route: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class SimulationReport:
    violations: tuple[Violation, ...]
    tolerated: tuple[Violation, ...]
    final: ProxyState

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class _Workers:
    """What workers hold where they differ from main."""

    # cluster id -> (backend id, address) -> backend
    backends: dict[str, dict[tuple[str, SocketAddress], Backend]] = field(default_factory=dict)
    # TCP listener address -> the cluster it serves
    tcp_bindings: dict[SocketAddress, str] = field(default_factory=dict)
    # backends workers dropped while main kept them -> step that dropped them
    dropped: dict[tuple[str, str, SocketAddress], int] = field(default_factory=dict)
    # TCP addresses unbound while main kept a frontend there -> step that unbound them
    unbound: dict[SocketAddress, int] = field(default_factory=dict)

    @classmethod
    def of(cls, live: ProxyState) -> _Workers:
        workers = cls()
        for backend in live.backends.values():
            workers.backends.setdefault(backend.cluster_id, {})[
                (backend.backend_id, backend.address)
            ] = backend
        # With several live TCP frontends at one address, the one workers serve is whichever
        # was added last, which a snapshot cannot tell: take the greatest, deterministically.
        for front in sorted(live.tcp_frontends, key=lambda f: (f.cluster_id, f.tags)):
            workers.tcp_bindings[front.address] = front.cluster_id
        return workers

    def apply(self, request: rq.Mutation, step: int, main: ConfigState) -> None:
        match request:
            case rq.AddBackend(backend):
                self.backends.setdefault(backend.cluster_id, {})[
                    (backend.backend_id, backend.address)
                ] = backend
                self.dropped.pop(backend.identity, None)
            case rq.RemoveBackend(cluster_id, _, address):
                bucket = self.backends.get(cluster_id, {})
                for backend_id, at in [k for k in bucket if k[1] == address]:
                    del bucket[(backend_id, at)]
                for backend in main.backends.get(cluster_id, ()):
                    if backend.address == address:
                        self.dropped.setdefault(backend.identity, step)
            case rq.AddTcpFrontend(front):
                self.tcp_bindings[front.address] = front.cluster_id
                self.unbound.pop(front.address, None)
            case rq.RemoveTcpFrontend(front):
                self.tcp_bindings.pop(front.address, None)
                if any(f.address == front.address for f in main.iter_tcp_frontends()):
                    self.unbound.setdefault(front.address, step)
            case _:
                pass

    def has_backend(self, cluster_id: str) -> bool:
        return bool(self.backends.get(cluster_id))


# Condition name -> whether it holds, for one route in one state.
_Conditions = dict[str, bool]


def simulate(plan: Plan, live: ProxyState, *, sozu_version: int = 2) -> SimulationReport:
    main = live.to_config_state(sozu_version=sozu_version)
    workers = _Workers.of(live)
    routes = sorted(_routes(main, workers))
    refusals: list[Violation] = []
    history: list[dict[str, tuple[_Conditions, dict[str, str]]]] = [
        {route: _evaluate(route, main, workers) for route in routes}
    ]
    for index, step in enumerate(plan.steps):
        request = step.request
        if isinstance(request, rq.RemoveHttpFrontend | rq.RemoveHttpsFrontend):
            refusals.extend(_position_mismatch(index, request, main))
        try:
            main.dispatch(request)
        except StateError as error:
            refusals.append(
                Violation(index, None, f"Sōzu's main refuses {rq.verb_name(request)}: {error}")
            )
        else:
            workers.apply(request, index, main)
        history.append({route: _evaluate(route, main, workers) for route in routes})

    final = history[-1]
    tracked = [route for route in routes if final[route][0]["exists"]]
    violations: list[Violation] = list(refusals)
    tolerated: list[Violation] = []
    for route in tracked:
        before = history[0][route][0]
        required = [name for name, held in before.items() if held and final[route][0][name]]
        window_open = False
        for index, step in enumerate(plan.steps):
            if route in step.gap_routes:
                window_open = True
            conditions, details = history[index + 1][route]
            failing = [name for name in required if not conditions[name]]
            if not failing:
                window_open = False
                continue
            found = Violation(index, route, "; ".join(details[name] for name in failing))
            (tolerated if window_open else violations).append(found)
    violations.extend(_divergences(workers, main))
    violations.sort(key=lambda v: (v.step, v.route or "", v.detail))
    return SimulationReport(
        violations=tuple(violations),
        tolerated=tuple(tolerated),
        final=ProxyState.from_config_state(main),
    )


def _routes(main: ConfigState, workers: _Workers) -> Iterator[str]:
    for key in main.http_frontends:
        yield route_name(ListenerType.HTTP, key)
    for key in main.https_frontends:
        yield route_name(ListenerType.HTTPS, key)
    for address in workers.tcp_bindings:
        yield route_name(ListenerType.TCP, str(address))


def _evaluate(
    route: str, main: ConfigState, workers: _Workers
) -> tuple[_Conditions, dict[str, str]]:
    kind_text, _, identity = route.partition(" ")
    conditions: _Conditions = {}
    details: dict[str, str] = {}
    cluster_id: str | None
    front: HttpFrontend | None = None
    if kind_text == "tcp":
        cluster_id = workers.tcp_bindings.get(SocketAddress.parse(identity))
        exists = cluster_id is not None
    else:
        table = main.http_frontends if kind_text == "http" else main.https_frontends
        front = table.get(identity)
        exists = front is not None
        cluster_id = None if front is None else front.cluster_id
    conditions["exists"] = exists
    details["exists"] = "route missing" if kind_text != "tcp" else "listener bound to no cluster"
    conditions["cluster"] = not exists or cluster_id is None or cluster_id in main.clusters
    details["cluster"] = f"cluster {cluster_id} missing"
    conditions["backends"] = not exists or cluster_id is None or workers.has_backend(cluster_id)
    details["backends"] = f"cluster {cluster_id} has no backend in workers"
    if kind_text == "https":
        covered = front is not None and any(
            certificate_covers(certificate, front.hostname)
            for certificate in main.certificates.get(front.address, {}).values()
        )
        conditions["certificate"] = not exists or covered
        hostname = front.hostname if front is not None else "?"
        details["certificate"] = f"no certificate serves {hostname} at its address"
    return conditions, details


def _position_mismatch(
    index: int, request: rq.RemoveHttpFrontend | rq.RemoveHttpsFrontend, main: ConfigState
) -> Iterator[Violation]:
    https = isinstance(request, rq.RemoveHttpsFrontend)
    table = main.https_frontends if https else main.http_frontends
    current = table.get(request.frontend.key)
    if current is not None and current.position != request.frontend.position:
        kind = ListenerType.HTTPS if https else ListenerType.HTTP
        yield Violation(
            index,
            route_name(kind, request.frontend.key),
            f"removal names position {request.frontend.position.name} but the route is in "
            f"{current.position.name}: workers would leave it in place",
        )


def _divergences(workers: _Workers, main: ConfigState) -> Iterator[Violation]:
    """Differences between main and workers left at the end of the plan."""
    in_main = {backend.identity for backend in main.iter_backends()}
    for identity, step in sorted(workers.dropped.items(), key=lambda item: item[1]):
        if identity in in_main:
            cluster_id, backend_id, address = identity
            yield Violation(
                step, None,
                f"workers dropped backend {cluster_id}/{backend_id} {address} (same address as a "
                "removed one) while main still lists it",
            )
    by_address: dict[SocketAddress, set[str]] = defaultdict(set)
    for front in main.iter_tcp_frontends():
        by_address[front.address].add(front.cluster_id)
    for address, step in sorted(workers.unbound.items(), key=lambda item: item[1]):
        if by_address.get(address) and address not in workers.tcp_bindings:
            yield Violation(
                step, route_name(ListenerType.TCP, str(address)),
                "workers' TCP listener is unbound while main still lists a frontend there",
            )
