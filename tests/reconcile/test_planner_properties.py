"""Property: for random (desired, live) pairs, the plan replays cleanly and converges.

Live holds owned objects (partly the desired ones, some dropped or altered, plus extras),
unowned objects (Sōzu's static config and another installation) drawn from the same small key
pools so that collisions are frequent, and one listener set. Desired holds owned objects,
sometimes at addresses with no listener. For every pair:

- every step is accepted by Sōzu main's state and the traffic-safety invariant holds after
  every step, except inside flagged gaps (`simulate(...).ok`);
- the owned part of the final state is what an independent model says it must be: desired,
  minus what collides with unowned objects or lacks a listener;
- unowned objects are exactly as they were;
- planning again from the final state gives no step;
- the plan does not depend on the order the inputs were built in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.reconcile._world import Cert, Spec, pem_pair

from sozu_operator.proxy.certificates import fingerprint
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    ListenerType,
    LoadBalancing,
    PathRule,
    PathRuleKind,
    RulePosition,
    SocketAddress,
    TcpFrontend,
    TcpListener,
)
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.planner import plan
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.reconcile.simulate import simulate

T = TypeVar("T")
OWNER, OTHER = "me", "them"

_A = SocketAddress.parse
HTTP, HTTPS = [_A("0.0.0.0:80")], [_A("0.0.0.0:443"), _A("0.0.0.0:8443")]
TCP = [_A("0.0.0.0:5000"), _A("0.0.0.0:5001")]
MISSING = {
    ListenerType.HTTP: _A("0.0.0.0:81"),
    ListenerType.HTTPS: _A("0.0.0.0:9443"),
    ListenerType.TCP: _A("0.0.0.0:5999"),
}
LISTENERS: tuple[HttpListener | HttpsListener | TcpListener, ...] = (
    *(HttpListener(a) for a in HTTP), *(HttpsListener(a) for a in HTTPS),
    *(TcpListener(a) for a in TCP),
)
HOSTS = ["a.example.com", "b.example.com", "x.test"]
CERT_NAMES = [*HOSTS, "*.example.com"]
PATHS = [PathRule(PathRuleKind.PREFIX, "/"), PathRule(PathRuleKind.PREFIX, "/api"),
         PathRule(PathRuleKind.EQUALS, "/")]
CLUSTERS = ["a", "b", "c"]
BACKEND_IDS = ["p0", "p1", "p2"]
BACKEND_ADDRESSES = [_A("10.0.0.1:80"), _A("10.0.0.2:80")]
CERT_LABELS = ["pool0", "pool1", "pool2", "pool3"]
RESOURCES = ["ns/one", "ns/two"]


def _pem(label: str) -> tuple[str, str, str]:
    pem, key = pem_pair(label)
    return pem, key, fingerprint(pem)


# --- object strategies -----------------------------------------------------------------------
# `owner` None = Sōzu's static config (no marker at all); OTHER = another installation.


def _cluster_id(name: str, owner: str | None) -> str:
    return f"static-{name}" if owner is None else ownership.sozu_cluster_id(owner, name)


def _tags(owner: str | None, resource: str) -> tuple[tuple[str, str], ...]:
    return () if owner is None else ownership.frontend_tags(owner, resource)


@st.composite
def clusters(draw: st.DrawFn, owner: str | None) -> list[Cluster]:
    names = draw(st.lists(st.sampled_from(CLUSTERS), unique=True, max_size=3))
    return [
        Cluster(
            _cluster_id(name, owner),
            sticky_session=draw(st.booleans()),
            load_balancing=draw(st.sampled_from([LoadBalancing.ROUND_ROBIN, LoadBalancing.RANDOM])),
        )
        for name in names
    ]


@st.composite
def backends(draw: st.DrawFn, owner: str | None) -> list[Backend]:
    found = draw(st.lists(
        st.tuples(st.sampled_from(CLUSTERS), st.sampled_from(BACKEND_IDS),
                  st.sampled_from(BACKEND_ADDRESSES)),
        unique=True, max_size=5,
    ))
    return [
        Backend(
            _cluster_id(name, owner), backend_id, address,
            weight=draw(st.sampled_from([None, 10, 20])),
            backup=draw(st.sampled_from([None, True])),
        )
        for name, backend_id, address in found
    ]


@st.composite
def http_fronts(
    draw: st.DrawFn, owner: str | None, kind: ListenerType, *, missing: bool = False
) -> list[HttpFrontend]:
    addresses = list(HTTP if kind is ListenerType.HTTP else HTTPS)
    if missing:
        addresses.append(MISSING[kind])
    found = draw(st.lists(
        st.tuples(st.sampled_from(addresses), st.sampled_from(HOSTS), st.sampled_from(PATHS)),
        unique=True, max_size=4,
    ))
    return [
        HttpFrontend(
            address, hostname, path,
            cluster_id=draw(st.sampled_from([*(_cluster_id(c, owner) for c in CLUSTERS), None])),
            position=draw(st.sampled_from(list(RulePosition))),
            tags=_tags(owner, draw(st.sampled_from(RESOURCES))),
        )
        for address, hostname, path in found
    ]


@st.composite
def tcp_fronts(
    draw: st.DrawFn, owner: str | None, *, missing: bool = False, one_per_address: bool = False
) -> list[TcpFrontend]:
    addresses = [*TCP, MISSING[ListenerType.TCP]] if missing else TCP
    found = draw(st.lists(
        st.tuples(st.sampled_from(addresses), st.sampled_from(CLUSTERS)), unique=True, max_size=3
    ))
    fronts: dict[object, TcpFrontend] = {}
    for address, name in found:
        front = TcpFrontend(_cluster_id(name, owner), address,
                            _tags(owner, draw(st.sampled_from(RESOURCES))))
        fronts.setdefault(address if one_per_address else front, front)
    return list(fronts.values())


@st.composite
def certificates(draw: st.DrawFn, owner: str | None, *, missing: bool = False) -> list[Cert]:
    addresses = [*HTTPS, MISSING[ListenerType.HTTPS]] if missing else HTTPS
    found = draw(st.lists(
        st.tuples(st.sampled_from(addresses), st.sampled_from(CERT_LABELS)), unique=True, max_size=3
    ))
    return [_certificate(address, label, draw(_names()), owner) for address, label in found]


def _names() -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(CERT_NAMES), unique=True, min_size=1, max_size=2)


def _certificate(address: SocketAddress, label: str, names: list[str], owner: str | None) -> Cert:
    pem, key, fp = _pem(label)
    marker = () if owner is None else (ownership.certificate_marker(owner, fp),)
    return address, fp, CertificateAndKey(pem, key, names=(*names, *marker))


# --- altering desired objects into live ones -------------------------------------------------


@st.composite
def _altered(
    draw: st.DrawFn, items: list[T], tweak: Callable[[T], st.SearchStrategy[T]]
) -> list[T]:
    """Each item kept, dropped or tweaked."""
    result = []
    for item in items:
        choice = draw(st.sampled_from(["keep", "keep", "drop", "tweak"]))
        if choice == "keep":
            result.append(item)
        elif choice == "tweak":
            result.append(draw(tweak(item)))
    return result


def _tweak_cluster(c: Cluster) -> st.SearchStrategy[Cluster]:
    return st.just(Cluster(c.cluster_id, sticky_session=not c.sticky_session,
                           load_balancing=c.load_balancing))


def _tweak_backend(b: Backend) -> st.SearchStrategy[Backend]:
    return st.sampled_from([5, 30]).map(
        lambda w: Backend(b.cluster_id, b.backend_id, b.address, b.sticky_id, w, b.backup)
    )


def _tweak_front(f: HttpFrontend) -> st.SearchStrategy[HttpFrontend]:
    return st.tuples(
        st.sampled_from([*(_cluster_id(c, OWNER) for c in CLUSTERS), None]),
        st.sampled_from(list(RulePosition)),
    ).map(lambda t: HttpFrontend(f.address, f.hostname, f.path, t[0], position=t[1], tags=f.tags))


def _tweak_tcp(f: TcpFrontend) -> st.SearchStrategy[TcpFrontend]:
    return st.sampled_from(CLUSTERS).map(
        lambda name: TcpFrontend(_cluster_id(name, OWNER), f.address, f.tags)
    )


def _tweak_certificate(c: Cert) -> st.SearchStrategy[Cert]:
    # The previous certificate of a rotation (often for the same names), or other names under
    # the same fingerprint.
    served = list(ownership.served_names(c[2]))
    return st.tuples(st.sampled_from(CERT_LABELS), st.one_of(st.just(served), _names())).map(
        lambda t: _certificate(c[0], t[0], t[1], OWNER)
    )


# --- states ----------------------------------------------------------------------------------

LIVE_ADDRESSES = {*HTTP, *HTTPS, *TCP}
HTTPS_SET = {*HTTPS, MISSING[ListenerType.HTTPS]}


def _state(spec: Spec, *, listeners: bool, reverse: bool = False) -> ProxyState:
    """Build a ProxyState; with duplicate identities the first object wins (unowned objects
    are listed first, so they win collisions with owned ones in live)."""

    def order(items: Iterable[T]) -> list[T]:
        items = list(items)
        return items[::-1] if reverse else items

    def first(items: Iterable[T], key: Callable[[T], object]) -> list[T]:
        seen: dict[object, T] = {}
        for item in items:
            seen.setdefault(key(item), item)
        return order(seen.values())

    fronts = first(spec.fronts, lambda f: (f.address, f.key))
    return ProxyState.build(
        clusters=first(spec.clusters, lambda c: c.cluster_id),
        backends=first(spec.backends, lambda b: b.identity),
        http_frontends=[f for f in fronts if f.address not in HTTPS_SET],
        https_frontends=[f for f in fronts if f.address in HTTPS_SET],
        tcp_frontends=order(spec.tcp_fronts),
        certificates=first(spec.certificates, lambda c: c[:2]),
        listeners=order(LISTENERS) if listeners else (),
    )


@st.composite
def _side(draw: st.DrawFn, owner: str | None, *, desired: bool = False) -> Spec:
    """Random objects of one owner; the desired side may use addresses with no listener."""
    return Spec(
        clusters=tuple(draw(clusters(owner))),
        backends=tuple(draw(backends(owner))),
        fronts=(
            *draw(http_fronts(owner, ListenerType.HTTP, missing=desired)),
            *draw(http_fronts(owner, ListenerType.HTTPS, missing=desired)),
        ),
        tcp_fronts=tuple(draw(tcp_fronts(owner, missing=desired, one_per_address=desired))),
        certificates=tuple(draw(certificates(owner, missing=desired))),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Spec, Spec]:
    wanted = draw(_side(OWNER, desired=True))
    live = Spec()
    for owner in (None, OTHER):
        if draw(st.booleans()):
            live = live + draw(_side(owner))
    # Live owned objects: the desired ones kept, dropped or altered (only those on existing
    # listeners: live never holds an address Sōzu has no listener for), plus extras.
    altered = Spec(
        clusters=tuple(draw(_altered(list(wanted.clusters), _tweak_cluster))),
        backends=tuple(draw(_altered(list(wanted.backends), _tweak_backend))),
        fronts=tuple(
            f for f in draw(_altered(list(wanted.fronts), _tweak_front))
            if f.address in LIVE_ADDRESSES
        ),
        tcp_fronts=tuple(
            f for f in draw(_altered(list(wanted.tcp_fronts), _tweak_tcp))
            if f.address in LIVE_ADDRESSES
        ),
        certificates=tuple(
            c for c in draw(_altered(list(wanted.certificates), _tweak_certificate))
            if c[0] in LIVE_ADDRESSES
        ),
    )
    live = live + altered
    if draw(st.booleans()):
        live = live + draw(_side(OWNER))
    return wanted, live


# --- the oracle --------------------------------------------------------------------------------


def _sorted_names(certificate: CertificateAndKey) -> CertificateAndKey:
    # The order of a certificate's names means nothing to Sōzu, and the planner ignores it.
    return dataclasses.replace(certificate, names=tuple(sorted(certificate.names)))


def _split(state: ProxyState) -> tuple[ProxyState, ProxyState]:
    """(owned, unowned) parts of a state, listeners dropped."""

    def part(mine: bool) -> ProxyState:
        def keep_cluster(cluster_id: str) -> bool:
            return ownership.owns_cluster(OWNER, cluster_id) is mine

        def keep_front(front: HttpFrontend | TcpFrontend) -> bool:
            return ownership.owns_frontend(OWNER, front) is mine

        return ProxyState.build(
            clusters=[c for c in state.clusters.values() if keep_cluster(c.cluster_id)],
            backends=[b for b in state.backends.values() if keep_cluster(b.cluster_id)],
            http_frontends=[f for f in state.http_frontends.values() if keep_front(f)],
            https_frontends=[f for f in state.https_frontends.values() if keep_front(f)],
            tcp_frontends=[f for f in state.tcp_frontends if keep_front(f)],
            certificates=[
                (a, fp, _sorted_names(c)) for (a, fp), c in state.certificates.items()
                if ownership.owns_certificate(OWNER, c) is mine
            ],
        )

    return part(True), part(False)


def _expected(want: ProxyState, live: ProxyState) -> ProxyState:
    """What the owned part of the final state must be, from first principles."""
    listening = set(live.listeners)

    def fronts(kind: ListenerType, wanted: dict[str, HttpFrontend],
               held: dict[str, HttpFrontend]) -> list[HttpFrontend]:
        return [
            f for key, f in wanted.items()
            if (kind, f.address) in listening
            and (key not in held or ownership.owns_frontend(OWNER, held[key]))
        ]

    foreign_tcp = {f.address for f in live.tcp_frontends if not ownership.owns_frontend(OWNER, f)}
    tcp = [f for f in want.tcp_frontends
           if (ListenerType.TCP, f.address) in listening and f.address not in foreign_tcp]
    tcp += [f for f in live.tcp_frontends
            if ownership.owns_frontend(OWNER, f) and f.address in foreign_tcp]
    return ProxyState.build(
        clusters=want.clusters.values(),
        backends=want.backends.values(),
        http_frontends=fronts(ListenerType.HTTP, dict(want.http_frontends),
                              dict(live.http_frontends)),
        https_frontends=fronts(ListenerType.HTTPS, dict(want.https_frontends),
                               dict(live.https_frontends)),
        tcp_frontends=tcp,
        certificates=[
            (a, fp, _sorted_names(c)) for (a, fp), c in want.certificates.items()
            if (ListenerType.HTTPS, a) in listening
            and ((a, fp) not in live.certificates
                 or ownership.owns_certificate(OWNER, live.certificates[(a, fp)]))
        ],
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_plans_replay_cleanly_converge_and_leave_others_alone(pair: tuple[Spec, Spec]) -> None:
    wanted, present = pair
    want = _state(wanted, listeners=False)
    live = _state(present, listeners=True)

    result = plan(want, live, owner=OWNER)
    report = simulate(result, live)
    assert report.ok, (report.violations, [s.summary for s in result.steps])

    owned, unowned = _split(report.final)
    assert owned == _expected(want, live), (
        [s.summary for s in result.steps], result.problems
    )
    assert unowned == _split(live)[1]

    again = plan(want, report.final, owner=OWNER)
    assert again.steps == (), [s.summary for s in again.steps]

    reordered = plan(
        _state(wanted, listeners=False, reverse=True),
        _state(present, listeners=True, reverse=True),
        owner=OWNER,
    )
    assert reordered == result
    assert result.guard.removals <= result.guard.owned_live
