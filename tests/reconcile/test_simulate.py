"""The simulator: refusals, the traffic-safety invariant, gap windows, worker divergences."""

from __future__ import annotations

import dataclasses

from tests.reconcile._world import (
    EMPTY,
    HTTPS,
    OWNER,
    Spec,
    backend,
    certificate,
    cluster,
    front,
    secure,
    tcp,
    web,
)

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import RulePosition
from sozu_operator.reconcile.planner import Action, Phase, Plan, Step, plan
from sozu_operator.reconcile.simulate import simulate

ROUTE = "http 0.0.0.0:80;example.com;P/"
REMOVE = rq.RemoveHttpFrontend(front("example.com"))
ADD = rq.AddHttpFrontend(front("example.com"))


def _steps(*requests: rq.Mutation, gaps: dict[int, tuple[str, ...]] | None = None) -> Plan:
    """A hand-made plan; `gaps` maps a step index to the routes it flags."""
    gaps = gaps or {}
    steps = tuple(
        Step(
            request, Phase.BACKENDS, Action.ADD, rq.verb_name(request),
            gap="test gap" if index in gaps else None, gap_routes=gaps.get(index, ()),
        )
        for index, request in enumerate(requests)
    )
    return dataclasses.replace(plan(EMPTY.desired(), EMPTY.live(), owner=OWNER), steps=steps)


def test_a_step_main_refuses_is_a_violation_with_sozus_error() -> None:
    report = simulate(_steps(ADD), web().live())
    assert not report.ok
    (violation,) = report.violations
    assert violation.step == 0
    assert violation.route is None
    assert "AddHttpFrontend" in violation.detail
    assert "already exists" in violation.detail


def test_removal_with_another_position_than_live_is_a_violation() -> None:
    wrong = dataclasses.replace(front("example.com"), position=RulePosition.PRE)
    report = simulate(_steps(rq.RemoveHttpFrontend(wrong), ADD), web().live())
    assert any("position PRE" in v.detail for v in report.violations)


def test_unflagged_route_removal_and_readd_is_a_violation_then_a_flag_tolerates_it() -> None:
    unflagged = simulate(_steps(REMOVE, ADD), web().live())
    assert [(v.step, v.route, v.detail) for v in unflagged.violations] == [
        (0, ROUTE, "route missing")
    ]
    flagged = simulate(_steps(REMOVE, ADD, gaps={0: (ROUTE,)}), web().live())
    assert flagged.ok
    assert [v.step for v in flagged.tolerated] == [0]


def test_gap_window_closes_once_the_route_is_whole_again() -> None:
    report = simulate(_steps(REMOVE, ADD, REMOVE, ADD, gaps={0: (ROUTE,)}), web().live())
    assert [(v.step, v.route) for v in report.violations] == [(2, ROUTE)]


def test_gap_flag_only_covers_the_routes_it_names() -> None:
    report = simulate(
        _steps(REMOVE, ADD, gaps={0: ("http 0.0.0.0:80;other.test;P/",)}), web().live()
    )
    assert not report.ok


def test_emptying_a_cluster_in_use_is_a_violation() -> None:
    removes = [rq.RemoveBackend(b.cluster_id, b.backend_id, b.address) for b in web().backends]
    adds = [rq.AddBackend(b) for b in web().backends]
    report = simulate(_steps(*removes, *adds), web().live())
    # Both routes (HTTP and HTTPS) of the cluster, after the second removal.
    assert [(v.step, v.detail) for v in report.violations] == [
        (1, "cluster me:web has no backend in workers")
    ] * 2


def test_removing_the_certificate_of_a_kept_route_is_a_violation() -> None:
    old = certificate(["example.com"], label="a")
    new = certificate(["example.com"], label="b")
    live = web().but(certificates=[old]).live()
    report = simulate(
        _steps(rq.RemoveCertificate(HTTPS, old[1]), rq.AddCertificate(HTTPS, new[2])), live
    )
    assert [v.detail for v in report.violations] == [
        "no certificate serves example.com at its address"
    ]
    swapped = simulate(
        _steps(rq.AddCertificate(HTTPS, new[2]), rq.RemoveCertificate(HTTPS, old[1])), live
    )
    assert swapped.ok


def test_wildcard_certificate_covers_a_route() -> None:
    wildcard = certificate(["*.example.com"], label="w")
    old = certificate(["a.example.com"], label="a")
    live = Spec(
        clusters=(cluster("web"),),
        backends=(backend("web", "w", "10.0.0.1:80"),),
        fronts=(secure("a.example.com"),),
        certificates=(old,),
    ).live()
    report = simulate(
        _steps(rq.AddCertificate(HTTPS, wildcard[2]), rq.RemoveCertificate(HTTPS, old[1])), live
    )
    assert report.ok


def test_conditions_broken_before_or_given_up_by_the_final_state_are_not_required() -> None:
    # The route already points at a missing cluster in live: not required to have one.
    broken = Spec(fronts=(front("example.com", target="ghost"),)).live()
    assert simulate(_steps(rq.AddCluster(cluster("web"))), broken).ok
    # The final state gives the cluster no backend: losing them is the outcome asked for.
    result = plan(web().but(backends=[]).desired(), web().live(), owner=OWNER)
    assert simulate(result, web().live()).ok


def test_tcp_route_unbound_by_removing_another_cluster_there_is_caught() -> None:
    live = Spec(
        clusters=(cluster("a"), cluster("b")),
        backends=(backend("a", "a", "10.0.0.1:1"), backend("b", "b", "10.0.0.2:1")),
        tcp_fronts=(tcp("a"), tcp("b")),
    ).live()
    report = simulate(_steps(rq.RemoveTcpFrontend(tcp("a"))), live)
    assert any("unbound" in v.detail for v in report.violations)


def test_final_state_is_reported() -> None:
    report = simulate(_steps(rq.AddCluster(cluster("api"))), web().live())
    assert "me:api" in report.final.clusters
    assert report.final.listeners == web().live().listeners
