"""Property: a build made from the last one (redoing only the resources whose `Parsed` object
is not the very same) is exactly the build of everything.

Worlds come from small pools (two namespaces, a few names per kind, hostnames differing by
case, one clusterId shared, certificates sharing names), so conflicts, missing clusters and
uncovered hostnames are frequent. Between builds each resource is kept (the very same
object), replaced by another variant, handed over raw, dropped, or listed twice; Service
endpoints, Secrets, listeners and the clock move too.
"""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.resources.test_desired import (
    CERT,
    HTTPS,
    KEY,
    LISTENERS,
    NOW,
    OWNER,
    TCP,
    _cert,
    build,
    certificate,
    cluster,
    frontend,
)

from sozu_operator.proxy.model import SocketAddress
from sozu_operator.reconcile.desired import BuildCache, DesiredBuild
from sozu_operator.reconcile.planner import plan
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.resources.models import (
    BackendSpec,
    Parsed,
    ResourceRef,
    SecretRef,
    ServiceRef,
    TlsMaterial,
)
from sozu_operator.resources.validate import parse_resource

SOON = NOW + datetime.timedelta(days=30)
SHORT_CERT, SHORT_KEY = _cert(["short.example.com"], days=20)  # expires before SOON
OTHER_CERT, OTHER_KEY = _cert(["y.example.com", "*.example.com"])
HOSTNAMES = ("x.example.com", "X.example.com", "y.example.com", "short.example.com")


def _cluster_variants(namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        cluster(name, namespace=namespace),
        cluster(name, namespace=namespace, backends=[{"address": "10.0.0.1:80", "weight": 7}]),
        cluster(name, namespace=namespace, backends=[{"address": "10.0.0.2:80"},
                                                     {"address": "10.0.0.3:80"}]),
        cluster(name, namespace=namespace, clusterId="shared"),
        cluster(name, namespace=namespace, backends=[], service={"name": "svc", "port": 80}),
        cluster(name, namespace=namespace, backends=[{"address": "nope"}]),
        cluster(name, namespace=namespace, created="2026-01-01T00:00:00Z", className="other"),
    ]


def _frontend_variants(namespace: str, name: str) -> list[dict[str, Any]]:
    own = f"{name}-{namespace}.example.com"
    variants = [
        frontend(name, namespace=namespace, hostname=own),
        frontend(name, namespace=namespace, protocol="HTTPS", address=str(HTTPS), hostname=own),
        frontend(name, namespace=namespace, hostname=own,
                 path={"kind": "PREFIX", "value": "/v2"}),
    ]
    variants += [
        frontend(name, namespace=namespace, cluster=target, hostname=host)
        for target in ("web", "api") for host in HOSTNAMES[:3]
    ]
    variants += [
        frontend(name, namespace=namespace, protocol="HTTPS", address=str(HTTPS), hostname=host)
        for host in HOSTNAMES
    ]
    variants += [
        frontend(name, namespace=namespace, cluster="gone"),
        frontend(name, namespace=namespace, path={"kind": "PREFIX", "value": f"/{name}"}),
        frontend(name, namespace=namespace, address="0.0.0.0:9999"),
        frontend(name, namespace=namespace, created="2025-01-01T00:00:00Z"),
    ]
    tcp = frontend(name, namespace=namespace, protocol="TCP", address=str(TCP))
    del tcp["spec"]["hostname"]
    return [*variants, tcp]


def _certificate_variants(namespace: str, name: str, own: int) -> list[dict[str, Any]]:
    pairs = [(CERT, KEY), (OTHER_CERT, OTHER_KEY)]
    from_secret = certificate(name, namespace=namespace, secretRef={"name": "tls"})
    del from_secret["spec"]["certificate"], from_secret["spec"]["key"]
    first, other = pairs[own], pairs[1 - own]
    return [
        certificate(name, namespace=namespace, certificate=first[0], key=first[1]),
        certificate(name, namespace=namespace, certificate=first[0], key=first[1],
                    names=["www.example.com"]),
        certificate(name, namespace=namespace, certificate=first[0], key=first[1],
                    names=["z.example.com", "example.com"]),
        certificate(name, namespace=namespace, certificate=other[0], key=other[1]),
        certificate(name, namespace=namespace, certificate=SHORT_CERT, key=SHORT_KEY),
        certificate(name, namespace=namespace, names=["x.example.com"]),
        from_secret,
        certificate(name, namespace=namespace, key=OTHER_KEY),
    ]


SLOTS: list[tuple[ResourceRef, list[dict[str, Any]]]] = [
    *[(ResourceRef("SozuCluster", ns, name), _cluster_variants(ns, name))
      for ns, name in (("a", "web"), ("a", "api"), ("b", "web"))],
    *[(ResourceRef("SozuFrontend", ns, name), _frontend_variants(ns, name))
      for ns, name in (("a", "f1"), ("a", "f2"), ("b", "f1"))],
    *[(ResourceRef("SozuCertificate", "a", name), _certificate_variants("a", name, own))
      for own, name in enumerate(("t1", "t2"))],
]


class World:
    """The inputs of one build; `Parsed` objects are kept as the operator keeps them."""

    def __init__(self) -> None:
        self.current: dict[ResourceRef, object] = {}
        self.endpoints = ["10.1.0.1:80"]
        self.secret = (OTHER_CERT, OTHER_KEY)
        self.listeners = dict(LISTENERS)
        self.now = NOW

    def resolve_service(self, owner: ResourceRef, service: ServiceRef) -> list[BackendSpec]:
        return [BackendSpec(SocketAddress.parse(address)) for address in self.endpoints]

    def resolve_secret(self, owner: ResourceRef, secret: SecretRef) -> TlsMaterial:
        return TlsMaterial(*self.secret)

    def build(self, objects: list[object], cache: BuildCache | None) -> DesiredBuild:
        return build(objects, cache=cache, now=self.now, live_listeners=self.listeners,
                     resolve_service=self.resolve_service, resolve_secret=self.resolve_secret,
                     class_name="main", default_class=True)


@st.composite
def steps(draw: st.DrawFn, world: World) -> list[object]:
    """Move the world one step; the resources to build from."""
    for ref, variants in SLOTS:
        action = draw(st.sampled_from(["keep"] * 6 + ["swap", "swap", "raw", "drop"]))
        if action == "drop":
            world.current.pop(ref, None)
        elif action in ("swap", "raw") or ref not in world.current:
            # Mostly the first three variants, which conflict with nothing: builds are often
            # clean, and only a clean build is built from.
            last = len(variants) - 1 if draw(st.integers(0, 7)) == 0 else 2
            body = variants[draw(st.integers(0, last))]
            parsed = parse_resource(body, sozu_version=2)
            handed_raw = action == "raw" or not isinstance(parsed, Parsed)
            world.current[ref] = body if handed_raw else parsed
    if draw(st.integers(0, 9)) == 0:
        world.endpoints = draw(st.sampled_from([["10.1.0.1:80"], ["10.1.0.2:80"], []]))
    if draw(st.integers(0, 9)) == 0:
        world.secret = draw(st.sampled_from([(OTHER_CERT, OTHER_KEY), (SHORT_CERT, SHORT_KEY)]))
    without_https = {k: v for k, v in LISTENERS.items() if v.address != HTTPS}
    world.listeners = without_https if draw(st.integers(0, 39)) == 0 else dict(LISTENERS)
    if draw(st.integers(0, 19)) == 0:
        world.now = SOON
    objects = list(world.current.values())
    if objects and draw(st.integers(0, 14)) == 0:
        objects.append(draw(st.sampled_from(objects)))  # listed twice
    return draw(st.permutations(objects))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_build_from_the_last_one_is_the_whole_build(data: st.DataObject) -> None:
    world = World()
    cache = BuildCache()
    live = ProxyState.build(listeners=LISTENERS.values())
    for _ in range(6):
        objects = data.draw(steps(world))
        memo = cache.memo
        kept = world.build(objects, cache)
        event("made from the last build" if memo is not None and cache.memo is memo
              else "built whole")
        whole = world.build(objects, None)
        assert kept == whole
        assert plan(kept.state, live, owner=OWNER).steps == \
            plan(whole.state, live, owner=OWNER).steps


def _workload() -> list[object]:
    objects: list[object] = []
    for n in range(40):
        objects.append(parse_resource(cluster(f"c{n}"), sozu_version=2))
        objects.append(parse_resource(frontend(f"f{n}", cluster=f"c{n}",
                                               hostname=f"h{n}.example.com"), sozu_version=2))
        objects.append(parse_resource(frontend(f"s{n}", cluster=f"c{n}", protocol="HTTPS",
                                               address=str(HTTPS),
                                               hostname=f"h{n}.example.com"), sozu_version=2))
    objects.append(parse_resource(certificate(), sozu_version=2))
    return objects


def _parsed(body: dict[str, Any]) -> Parsed:
    parsed = parse_resource(body, sozu_version=2)
    assert isinstance(parsed, Parsed)
    return parsed


def test_everyday_changes_redo_only_what_moved() -> None:
    """A weight, a path, a new route, a deleted route, a rotated certificate: each is made
    from the last build (the same memo, updated), and equals the whole build."""
    objects = _workload()
    cache = BuildCache()
    build(objects, cache=cache)
    memo = cache.memo
    assert memo is not None
    edits = [
        (1 * 3, _parsed(cluster("c1", backends=[{"address": "10.0.0.1:80", "weight": 3}]))),
        (2 * 3 + 1, _parsed(frontend("f2", cluster="c2", hostname="h2.example.com",
                                     path={"kind": "PREFIX", "value": "/v2"}))),
        (None, _parsed(frontend("new", cluster="c3", hostname="new.example.com"))),
        (len(objects) - 1, _parsed(certificate(certificate=OTHER_CERT, key=OTHER_KEY))),
    ]
    for position, edited in edits:
        if position is None:
            objects.append(edited)
        else:
            objects[position] = edited
        kept = build(objects, cache=cache)
        assert cache.memo is memo, f"{edited.ref} was not made from the last build"
        assert kept == build(objects)
    del objects[5]
    kept = build(objects, cache=cache)
    assert cache.memo is memo
    assert kept == build(objects)


def test_a_change_that_fails_builds_everything_again() -> None:
    """A route taking another's key loses to it: made whole (precedence decides), and the next
    build, with the problem still there, is whole too; once fixed, builds are made from the
    last one again."""
    objects = _workload()
    cache = BuildCache()
    build(objects, cache=cache)
    objects[9 * 3 + 1] = _parsed(frontend("f9", cluster="c9", hostname="h1.example.com"))
    kept = build(objects, cache=cache)
    assert kept == build(objects)
    assert [p.ref.name for p in kept.problems] == ["f9"]  # f1 came first
    assert cache.memo is None
    assert build(objects, cache=cache) == kept
    # Fixed: the first clean build is whole and records nothing (while builds had problems,
    # recording was only a cost), the next one records, the one after is made from it.
    objects[9 * 3 + 1] = _parsed(frontend("f9", cluster="c9", hostname="h9.example.com"))
    assert build(objects, cache=cache) == build(objects)
    assert cache.memo is None
    build(objects, cache=cache)
    memo = cache.memo
    assert memo is not None
    objects[0] = _parsed(cluster("c0", backends=[{"address": "10.0.0.9:80"}]))
    assert build(objects, cache=cache) == build(objects)
    assert cache.memo is memo
