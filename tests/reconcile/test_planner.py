"""Planner scenarios: minimal requests, safe order, flagged gaps, ownership, guard."""

from __future__ import annotations

import dataclasses

import pytest
from tests.reconcile._world import (
    EMPTY,
    NO_LISTENER,
    OTHER,
    OWNER,
    TCP,
    Spec,
    backend,
    certificate,
    cid,
    cluster,
    front,
    secure,
    tcp,
    web,
)

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import ListenerType, LoadBalancing, RulePosition
from sozu_operator.reconcile.planner import (
    Action,
    Phase,
    Plan,
    PlanOptions,
    name_covers,
    plan,
    route_name,
)
from sozu_operator.reconcile.simulate import simulate


def _plan(want: Spec, live: Spec, options: PlanOptions | None = None) -> Plan:
    """Plan, and check that the plan replays cleanly over live."""
    result = plan(want.desired(), live.live(), owner=OWNER, options=options or PlanOptions())
    report = simulate(result, live.live())
    assert report.ok, report.violations
    return result


def _verbs(result: Plan) -> list[str]:
    return [rq.verb_name(step.request) for step in result.steps]


def _with_api(spec: Spec) -> Spec:
    return spec.but(
        clusters=[*spec.clusters, cluster("api")],
        backends=[*spec.backends, backend("api", "api-0", "10.0.1.1:80")],
    )


# --- minimal requests ------------------------------------------------------------------------


def test_in_sync_gives_no_request() -> None:
    state = web().but(tcp_fronts=[tcp("web")])
    result = _plan(state, state)
    assert result.is_empty
    assert result.problems == ()
    assert result.counts_by_verb() == {}


def test_backend_option_change_is_one_upsert() -> None:
    first, second = web().backends
    result = _plan(web().but(backends=[first, dataclasses.replace(second, backup=True)]), web())
    assert _verbs(result) == ["AddBackend"]
    (step,) = result.steps
    assert step.action is Action.UPDATE
    assert step.phase is Phase.BACKENDS
    assert step.summary == "~ backend me:web/web-1 10.0.0.2:8080 backup unset→true"
    assert step.resource == cid("web")


def test_weight_change_is_one_upsert() -> None:
    result = _plan(web(weight=20), web(weight=10))
    assert _verbs(result) == ["AddBackend"]
    assert result.steps[0].summary == "~ backend me:web/web-0 10.0.0.1:8080 weight 10→20"


def test_cluster_option_change_is_one_upsert() -> None:
    changed = web().but(clusters=[cluster("web", load_balancing=LoadBalancing.RANDOM)])
    result = _plan(changed, web())
    assert _verbs(result) == ["AddCluster"]
    assert result.steps[0].action is Action.UPDATE
    assert result.steps[0].summary == "~ cluster me:web load_balancing ROUND_ROBIN→RANDOM"


def test_certificate_rotation_is_one_replace() -> None:
    old = certificate(["example.com"], label="a")
    new = certificate(["example.com"], label="b")
    result = _plan(web().but(certificates=[new]), web().but(certificates=[old]))
    assert _verbs(result) == ["ReplaceCertificate"]
    request = result.steps[0].request
    assert isinstance(request, rq.ReplaceCertificate)
    assert request.old_fingerprint == old[1]
    assert request.new_certificate == new[2]
    assert result.steps[0].action is Action.REPLACE


def test_rotation_to_a_certificate_with_more_names_is_still_one_replace() -> None:
    old = certificate(["example.com"], label="a")
    new = certificate(["example.com", "www.example.com"], label="b")
    result = _plan(web().but(certificates=[new]), web().but(certificates=[old]))
    assert _verbs(result) == ["ReplaceCertificate"]


def test_rotations_pair_old_and_new_certificates_by_the_names_they_serve() -> None:
    state = web().but(fronts=[secure("a.test"), secure("b.test")])
    live = [certificate(["a.test"], label="a"), certificate(["b.test"], label="c")]
    want = [certificate(["b.test"], label="b"), certificate(["a.test"], label="d")]
    result = _plan(state.but(certificates=want), state.but(certificates=live))
    pairs = {
        (step.request.old_fingerprint, step.request.new_certificate.names[0])
        for step in result.steps
        if isinstance(step.request, rq.ReplaceCertificate)
    }
    assert pairs == {(live[0][1], "a.test"), (live[1][1], "b.test")}


def test_certificate_for_other_names_is_added_first_and_the_old_one_removed_last() -> None:
    old = certificate(["example.com"], label="a")
    new = certificate(["other.example.com"], label="b")
    state = web().but(fronts=[front("example.com")])
    result = _plan(state.but(certificates=[new]), state.but(certificates=[old]))
    assert _verbs(result) == ["AddCertificate", "RemoveCertificate"]
    assert [step.phase for step in result.steps] == [
        Phase.CERTIFICATES, Phase.CERTIFICATES_REMOVE,
    ]


def test_certificate_names_change_under_one_fingerprint_is_remove_then_add_with_gap() -> None:
    old = certificate(["example.com"], label="a")
    new = certificate(["example.com", "www.example.com"], label="a")
    assert old[1] == new[1]
    live = web().but(certificates=[old]).live()
    result = plan(web().but(certificates=[new]).desired(), live, owner=OWNER)
    assert _verbs(result) == ["RemoveCertificate", "AddCertificate"]
    route = route_name(ListenerType.HTTPS, "0.0.0.0:443;example.com;P/")
    assert result.steps[0].gap is not None
    assert result.steps[0].gap_routes == (route,)
    report = simulate(result, live)
    assert report.ok
    assert [v.detail for v in report.tolerated] == [
        "no certificate serves example.com at its address"
    ]


# --- routes ----------------------------------------------------------------------------------


def test_route_retarget_is_remove_then_add_with_a_flagged_gap() -> None:
    live = _with_api(web()).but(fronts=[front("example.com", position=RulePosition.PRE)]).live()
    want = _with_api(web()).but(fronts=[front("example.com", target="api")])
    result = plan(want.desired(), live, owner=OWNER)
    assert _verbs(result) == ["RemoveHttpFrontend", "AddHttpFrontend"]
    remove, add = result.steps
    assert remove.phase is Phase.FRONTENDS_CHANGE
    assert add.phase is Phase.FRONTENDS_CHANGE
    assert remove.gap is not None
    assert add.gap is None
    assert remove.gap_routes == ("http 0.0.0.0:80;example.com;P/",)
    # The removal carries the live route, position included: workers look only there.
    assert isinstance(remove.request, rq.RemoveHttpFrontend)
    assert remove.request.frontend.position is RulePosition.PRE
    assert remove.request.frontend.cluster_id == cid("web")
    assert "cluster_id me:web→me:api" in remove.summary
    report = simulate(result, live)
    assert report.ok
    assert [v.route for v in report.tolerated] == ["http 0.0.0.0:80;example.com;P/"]
    assert result.gaps == (remove,)


def test_route_retarget_to_a_new_cluster_creates_it_first() -> None:
    want = _with_api(web()).but(fronts=[front("example.com", target="api"), secure("example.com")])
    result = _plan(want, web())
    assert _verbs(result) == ["AddCluster", "AddBackend", "RemoveHttpFrontend", "AddHttpFrontend"]


def test_route_identity_change_adds_new_before_removing_old_without_gap() -> None:
    want = web().but(fronts=[front("example.com", "/v2"), secure("example.com")])
    result = _plan(want, web())
    assert _verbs(result) == ["AddHttpFrontend", "RemoveHttpFrontend"]
    assert [step.phase for step in result.steps] == [Phase.FRONTENDS_ADD, Phase.FRONTENDS_REMOVE]
    assert result.gaps == ()


def test_new_route_with_new_cluster_comes_after_its_cluster_and_backends() -> None:
    api = front("api.example.com", target="api", resource="default/api")
    want = _with_api(web())
    want = want.but(fronts=[*want.fronts, api])
    result = _plan(want, web())
    assert _verbs(result) == ["AddCluster", "AddBackend", "AddHttpFrontend"]
    assert result.steps[2].summary == "+ http frontend 0.0.0.0:80;api.example.com;P/ → me:api"
    assert result.steps[2].resource == "default/api"


def test_new_route_on_existing_cluster_is_one_add() -> None:
    want = web().but(fronts=[*web().fronts, front("www.example.com")])
    assert _verbs(_plan(want, web())) == ["AddHttpFrontend"]


def test_route_removal_removes_route_then_backends_then_cluster() -> None:
    live = _with_api(web())
    live = live.but(fronts=[*live.fronts, front("api.example.com", target="api")])
    result = _plan(web(), live)
    assert _verbs(result) == ["RemoveHttpFrontend", "RemoveBackend", "RemoveCluster"]
    assert [step.phase for step in result.steps] == [
        Phase.FRONTENDS_REMOVE, Phase.BACKENDS_REMOVE, Phase.CLUSTERS_REMOVE,
    ]


def test_full_order_of_phases() -> None:
    live = Spec(
        clusters=(cluster("old"), cluster("web")),
        backends=(backend("old", "o", "10.9.0.1:1"), backend("web", "w0", "10.0.0.1:1")),
        fronts=(front("old.test", target="old"), secure("example.com", target="web")),
        certificates=(certificate(["old.test"], label="a"),),
    )
    want = Spec(
        clusters=(cluster("web", sticky_session=True), cluster("new")),
        backends=(backend("web", "w0", "10.0.0.1:1", weight=5), backend("new", "n", "10.1.0.1:1")),
        fronts=(front("new.test", target="new"), secure("example.com", target="new")),
        certificates=(certificate(["new.test"], label="b"),),
    )
    result = _plan(want, live)
    phases = [step.phase for step in result.steps]
    assert phases == sorted(phases, key=list(Phase).index)
    assert _verbs(result) == [
        "AddCertificate", "AddCluster", "AddCluster", "AddBackend", "AddBackend",
        "AddHttpFrontend", "RemoveHttpsFrontend", "AddHttpsFrontend", "RemoveHttpFrontend",
        "RemoveBackend", "RemoveCertificate", "RemoveCluster",
    ]


def test_tcp_retarget_empties_the_address_then_adds_with_gap() -> None:
    base = web().but(clusters=[cluster("web"), cluster("db")])
    want = base.but(
        backends=[*web().backends, backend("db", "db-0", "10.0.2.1:5432")], tcp_fronts=[tcp("db")]
    )
    result = _plan(want, base.but(tcp_fronts=[tcp("web")]))
    assert _verbs(result) == ["AddBackend", "RemoveTcpFrontend", "AddTcpFrontend"]
    assert result.steps[1].gap is not None
    assert result.steps[1].gap_routes == (f"tcp {TCP}",)


def test_tcp_new_and_removed() -> None:
    added = _plan(web().but(tcp_fronts=[tcp("web")]), web())
    assert _verbs(added) == ["AddTcpFrontend"]
    removed = _plan(web(), web().but(tcp_fronts=[tcp("web")]))
    assert _verbs(removed) == ["RemoveTcpFrontend"]


# --- backends at one address -------------------------------------------------------------

ONE_POD = Spec(
    clusters=(cluster("web"),),
    backends=(backend("web", "pod-a", "10.0.0.1:80"),),
    fronts=(front("example.com"),),
)


def test_backend_replaced_at_same_address_is_removed_first_and_flagged_when_alone() -> None:
    want = ONE_POD.but(backends=[backend("web", "pod-b", "10.0.0.1:80")])
    result = plan(want.desired(), ONE_POD.live(), owner=OWNER)
    assert _verbs(result) == ["RemoveBackend", "AddBackend"]
    remove, add = result.steps
    assert remove.phase is Phase.BACKENDS
    assert add.phase is Phase.BACKENDS
    assert remove.gap is not None
    assert remove.gap_routes == ("http 0.0.0.0:80;example.com;P/",)
    report = simulate(result, ONE_POD.live())
    assert report.ok
    assert report.tolerated  # the one-request window with no backend


def test_backend_replaced_at_same_address_has_no_gap_when_another_address_serves() -> None:
    other = backend("web", "pod-c", "10.0.0.3:80")
    live = ONE_POD.but(backends=[*ONE_POD.backends, other])
    want = ONE_POD.but(backends=[backend("web", "pod-b", "10.0.0.1:80"), other])
    result = _plan(want, live)
    assert _verbs(result) == ["RemoveBackend", "AddBackend"]
    assert result.gaps == ()


def test_same_address_group_comes_after_other_backend_upserts() -> None:
    want = ONE_POD.but(
        backends=[backend("web", "pod-b", "10.0.0.1:80"), backend("web", "pod-z", "10.0.0.9:80")]
    )
    result = _plan(want, ONE_POD)
    assert [step.summary.split(" (")[0] for step in result.steps] == [
        "+ backend me:web/pod-z 10.0.0.9:80",
        "- backend me:web/pod-a 10.0.0.1:80",
        "+ backend me:web/pod-b 10.0.0.1:80",
    ]
    assert result.gaps == ()  # pod-z already serves when pod-a's address is emptied


def test_kept_backend_sharing_an_address_with_a_removed_one_is_sent_again() -> None:
    kept = [backend("web", "b", "10.0.0.1:80"), backend("web", "c", "10.0.0.9:80")]
    live = Spec(clusters=(cluster("web"),), backends=(backend("web", "a", "10.0.0.1:80"), *kept))
    result = _plan(live.but(backends=kept), live)
    assert _verbs(result) == ["RemoveBackend", "AddBackend"]
    request = result.steps[1].request
    assert isinstance(request, rq.AddBackend)
    assert request.backend.backend_id == "b"
    assert "again" in result.steps[1].summary


def test_simulator_catches_the_naive_add_then_remove_at_one_address() -> None:
    want = ONE_POD.but(backends=[backend("web", "pod-b", "10.0.0.1:80")])
    good = plan(want.desired(), ONE_POD.live(), owner=OWNER)
    naive = dataclasses.replace(good, steps=tuple(reversed(good.steps)))
    report = simulate(naive, ONE_POD.live())
    assert not report.ok
    assert any("workers dropped backend me:web/pod-b" in v.detail for v in report.violations)


# --- ownership -------------------------------------------------------------------------------

THEIRS = Spec(
    clusters=(cluster("web", owner=OTHER),),
    backends=(backend("web", "w", "10.0.0.1:80", owner=OTHER),),
    fronts=(front("theirs.test", owner=OTHER), secure("theirs.test", owner=OTHER)),
    tcp_fronts=(tcp("web", owner=OTHER),),
    certificates=(certificate(["theirs.test"], label="t", owner=OTHER),),
)
STATIC = Spec(
    clusters=(dataclasses.replace(cluster("x"), cluster_id="static"),),
    backends=(dataclasses.replace(backend("x", "s", "10.0.0.1:80"), cluster_id="static"),),
    fronts=(front("static.test", owner=None, target="web"),),
    certificates=(certificate(["static.test"], label="s", owner=None),),
)


def test_unowned_live_objects_are_never_touched() -> None:
    result = _plan(EMPTY, THEIRS + STATIC)
    assert result.is_empty
    assert result.guard.owned_live == 0


def test_desired_objects_colliding_with_unowned_ones_are_problems_not_steps() -> None:
    mine = Spec(
        clusters=(cluster("web"),),
        fronts=(front("static.test"), secure("theirs.test")),
        tcp_fronts=(tcp("web"),),
        # The very certificate of the static config (same fingerprint), with our marker.
        certificates=(certificate(["static.test"], label="s"),),
    )
    result = _plan(mine, THEIRS + STATIC)
    assert _verbs(result) == ["AddCluster"]
    kinds = sorted(problem.kind for problem in result.problems)
    assert kinds == ["certificate", "http frontend", "https frontend", "tcp frontend"]
    texts = " ".join(problem.reason for problem in result.problems)
    assert "no owner tag" in texts
    assert f"owner {OTHER!r}" in texts


def test_two_installations_on_one_sozu_ignore_each_other() -> None:
    both = THEIRS.but(tcp_fronts=[]) + web()
    assert _plan(web(), both).is_empty
    # Removing everything of ours leaves exactly theirs.
    result = _plan(EMPTY, both)
    assert len(result.steps) == 6
    assert simulate(result, both.live()).final == THEIRS.but(tcp_fronts=[]).live()


def test_desired_object_without_marker_is_a_problem() -> None:
    unmarked = Spec(
        clusters=(dataclasses.replace(cluster("web"), cluster_id="web"),),
        backends=(dataclasses.replace(backend("web", "w", "10.0.0.1:80"), cluster_id="web"),),
        fronts=(front("x.test", owner=None),),
        tcp_fronts=(tcp("web", owner=None),),
        certificates=(certificate(["x.test"], owner=None),),
    )
    result = _plan(unmarked, EMPTY)
    assert result.is_empty
    assert len(result.problems) == 5


# --- listeners -------------------------------------------------------------------------------


def test_desired_object_on_missing_listener_is_a_problem_and_no_step() -> None:
    mine = Spec(
        clusters=(cluster("web"),),
        fronts=(front("x.test", address=NO_LISTENER), front("ok.test")),
        tcp_fronts=(tcp("web", address=NO_LISTENER),),
        certificates=(certificate(["x.test"], address=NO_LISTENER),),
    )
    result = _plan(mine, EMPTY)
    assert _verbs(result) == ["AddCluster", "AddHttpFrontend"]
    kinds = sorted(p.kind for p in result.problems)
    assert kinds == ["certificate", "http frontend", "tcp frontend"]
    assert all("listener" in p.reason for p in result.problems)


def test_frontend_on_listener_of_the_wrong_type_is_a_problem() -> None:
    result = _plan(Spec(fronts=(front("x.test", address=TCP),)), EMPTY)
    assert result.is_empty
    assert "no HTTP listener" in result.problems[0].reason


def test_listeners_in_desired_are_reported_not_planned() -> None:
    result = plan(EMPTY.live(), EMPTY.live(), owner=OWNER)
    assert result.is_empty
    assert {p.kind for p in result.problems} == {"listener"}


# --- guard -----------------------------------------------------------------------------------


def _clusters(count: int) -> Spec:
    return Spec(clusters=tuple(cluster(f"c{i}") for i in range(count)))


def test_guard_blocks_removing_more_than_half_of_ten_or_more_owned_objects() -> None:
    result = _plan(_clusters(4), _clusters(12))
    assert result.guard.owned_live == 12
    assert result.guard.removals == 8
    assert not result.guard.allowed
    assert "blocked" in result.guard.reason
    assert len(result.steps) == 8  # still computed and printable


def test_guard_force_allows() -> None:
    result = _plan(EMPTY, _clusters(12), PlanOptions(force=True))
    assert result.guard.allowed
    assert result.guard.forced
    assert result.guard.share == 1.0
    assert "forced" in result.guard.reason


def test_guard_does_not_apply_below_its_floor_or_at_the_limit() -> None:
    assert _plan(EMPTY, _clusters(9)).guard.allowed
    assert _plan(_clusters(5), _clusters(10)).guard.allowed


def test_guard_thresholds_are_options() -> None:
    strict = PlanOptions(max_removal_share=0.1, guard_min_objects=2)
    assert not _plan(_clusters(3), _clusters(4), strict).guard.allowed


def test_guard_treats_backend_churn_as_no_deletion() -> None:
    old = Spec(clusters=(cluster("web"),),
               backends=tuple(backend("web", f"old-{i}", f"10.0.0.{i}:80") for i in range(12)))
    new = old.but(backends=[backend("web", f"new-{i}", f"10.0.1.{i}:80") for i in range(12)])
    result = _plan(new, old)
    assert result.guard.removals == 0
    assert result.guard.allowed
    scaled_down = _plan(new.but(backends=new.backends[:2]), old)
    assert scaled_down.guard.removals == 10
    assert not scaled_down.guard.allowed


def test_guard_counts_route_and_certificate_changes_as_no_deletion() -> None:
    rotated = web().but(certificates=[certificate(["example.com"], label="b")])
    retargeted = _with_api(rotated).but(
        fronts=[front("example.com", target="api"), secure("example.com", target="api")]
    )
    assert _plan(retargeted, _with_api(web())).guard.removals == 0


def test_plan_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_removal_share"):
        PlanOptions(max_removal_share=1.5)
    with pytest.raises(ValueError, match="guard_min_objects"):
        PlanOptions(guard_min_objects=-1)


# --- determinism and hygiene -----------------------------------------------------------------


def test_same_inputs_in_any_order_give_the_same_plan() -> None:
    state = Spec(
        clusters=tuple(cluster(n) for n in "abc"),
        backends=tuple(backend(n, f"{n}-{i}", f"10.0.{i}.1:80") for n in "abc" for i in range(3)),
        fronts=tuple(front(f"{n}.test", target=n) for n in "abc"),
    )
    backward = Spec(*(tuple(reversed(getattr(state, f.name))) for f in dataclasses.fields(state)))
    assert plan(EMPTY.desired(), state.live(), owner=OWNER) == plan(
        EMPTY.desired(), backward.live(), owner=OWNER
    )


def test_summaries_and_problems_never_carry_key_material() -> None:
    old = certificate(["example.com"], label="a")
    new = certificate(["example.com"], label="b")
    unmarked = certificate(["x.test"], label="c", owner=None)
    result = plan(
        web().but(certificates=[new, unmarked]).desired(),
        web().but(certificates=[old]).live(),
        owner=OWNER,
    )
    text = " ".join(
        [s.summary for s in result.steps] + [p.reason + p.key for p in result.problems]
    )
    assert "PRIVATE KEY" not in text
    assert "BEGIN" not in text
    assert old[2].key.splitlines()[1] not in text


def test_owner_name_is_checked() -> None:
    with pytest.raises(ValueError, match="owner"):
        plan(EMPTY.desired(), EMPTY.live(), owner="Not Valid")


def test_hostnames_differing_only_by_case_are_changed_remove_first() -> None:
    live = web().but(fronts=[front("Example.com")])
    result = _plan(web().but(fronts=[front("example.com")]), live)
    assert _verbs(result) == ["RemoveHttpFrontend", "AddHttpFrontend"]
    assert result.steps[0].gap is not None


def test_owned_tcp_frontend_sharing_an_address_with_a_foreign_one_is_left_alone() -> None:
    live = Spec(clusters=(cluster("web"),), tcp_fronts=(tcp("web"), tcp("db", owner=OTHER)))
    result = _plan(Spec(clusters=(cluster("web"),)), live)
    assert result.is_empty
    assert "unbind" in result.problems[0].reason


@pytest.mark.parametrize(
    ("pattern", "hostname", "covered"),
    [
        ("example.com", "EXAMPLE.com", True),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "example.com", False),
        ("*.example.com", "*.example.com", True),
        ("a.example.com", "*.example.com", False),
    ],
)
def test_name_covers(pattern: str, hostname: str, covered: bool) -> None:
    assert name_covers(pattern, hostname) is covered
