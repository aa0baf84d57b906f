"""Property: planning only what moved since a baseline gives exactly the plan of everything.

Baselines and new states come from the planner property test's scenarios (owned, unowned and
foreign objects from small key pools, so collisions and case twins are frequent). The new
states keep each object of the baseline as the very same object, drop it, or take another one
from a second scenario: what the builder and the live reader do for unchanged resources and
clusters, for deleted ones, and for changed ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.reconcile._world import HTTP, front
from tests.reconcile.test_planner_properties import OWNER, _state, scenarios

from sozu_operator.proxy.model import HttpFrontend, HttpListener, RulePosition
from sozu_operator.reconcile.incremental import Baseline, plan_changes
from sozu_operator.reconcile.planner import PlanOptions, plan
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.reconcile.simulate import simulate

K = TypeVar("K")
V = TypeVar("V")
OPTIONS = PlanOptions(guard_min_objects=3)


@st.composite
def _mixed(draw: st.DrawFn, old: Mapping[K, V], other: Mapping[K, V]) -> dict[K, V]:
    """Each entry of `old` kept (the same object) or dropped; entries of `other` taken."""
    mixed = {k: v for k, v in old.items() if draw(st.sampled_from([True, True, True, False]))}
    for key, value in other.items():
        if draw(st.booleans()):
            mixed[key] = value
    return mixed


@st.composite
def _moved(draw: st.DrawFn, old: ProxyState, other: ProxyState) -> ProxyState:
    if draw(st.booleans()):
        return old  # nothing moved: the very same state object
    tcp = {f for f in old.tcp_frontends if draw(st.booleans())}
    tcp |= {f for f in other.tcp_frontends if draw(st.booleans())}
    return ProxyState(
        clusters=draw(_mixed(old.clusters, other.clusters)),
        backends=draw(_mixed(old.backends, other.backends)),
        http_frontends=draw(_mixed(old.http_frontends, other.http_frontends)),
        https_frontends=draw(_mixed(old.https_frontends, other.https_frontends)),
        tcp_frontends=frozenset(tcp),
        certificates=draw(_mixed(old.certificates, other.certificates)),
        listeners=old.listeners,
    )


def _retagged(state: ProxyState) -> ProxyState:
    """The same routes as other objects, one changed field (position): what a re-read of a
    cluster whose hash moved gives for each of its routes."""
    def fresh(table: Mapping[str, HttpFrontend]) -> dict[str, HttpFrontend]:
        return {
            key: HttpFrontend(f.address, f.hostname, f.path, f.cluster_id, f.method,
                              RulePosition.PRE if f.position is RulePosition.TREE
                              else RulePosition.TREE, f.tags)
            for key, f in table.items()
        }
    return ProxyState(state.clusters, state.backends, fresh(state.http_frontends),
                      fresh(state.https_frontends), state.tcp_frontends, state.certificates,
                      state.listeners)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), scenarios(), st.data())
def test_scoped_plan_equals_the_whole_plan(
    first: tuple[object, object], second: tuple[object, object], data: st.DataObject
) -> None:
    wanted, present = first
    desired0 = _state(wanted, listeners=False)  # type: ignore[arg-type]
    live0 = _state(present, listeners=True)  # type: ignore[arg-type]
    other_desired = _state(second[0], listeners=False)  # type: ignore[arg-type]
    other_live = _state(second[1], listeners=True)  # type: ignore[arg-type]
    sent = plan(desired0, live0, owner=OWNER, options=OPTIONS).steps
    baseline = Baseline(desired0, live0, sent)

    candidates = [
        (data.draw(_moved(desired0, other_desired)), data.draw(_moved(live0, other_live))),
        # The pass after a clean apply: live is what the steps made of it.
        (desired0, simulate(plan(desired0, live0, owner=OWNER), live0).final),
        (data.draw(_moved(desired0, other_desired)), _retagged(live0)),
    ]
    for desired, live in candidates:
        whole = plan(desired, live, owner=OWNER, options=OPTIONS)
        scoped = plan_changes(desired, live, owner=OWNER, options=OPTIONS, baseline=baseline)
        assert scoped.plan.steps == whole.steps, (
            [s.summary for s in scoped.plan.steps], [s.summary for s in whole.steps]
        )
        assert scoped.plan.guard == whole.guard


def test_a_small_change_plans_a_small_part() -> None:
    """Not only equal: smaller. One route changed among many plans that route alone."""
    routes = [front(f"h{n}.example.com") for n in range(200)]
    desired = ProxyState.build(http_frontends=routes)
    live = desired
    baseline = Baseline(desired, live, ())
    changed = ProxyState.build(http_frontends=[*routes[1:], front("new.example.com")])
    result = plan_changes(changed, live, owner=OWNER, options=OPTIONS, baseline=baseline)
    assert result.scoped
    assert result.objects <= 4  # the removed route and the added one, in desired and live
    assert result.plan.steps == plan(changed, live, owner=OWNER, options=OPTIONS).steps
    unchanged = plan_changes(desired, live, owner=OWNER, options=OPTIONS, baseline=baseline)
    assert unchanged.scoped
    assert unchanged.objects == 0
    assert unchanged.plan.steps == ()


def test_a_route_with_an_unmoved_case_twin_is_planned_with_everything() -> None:
    """Routes differing only by hostname case are one route to workers: a new route whose twin
    did not move must still be seen next to it (here: refused as a duplicate)."""
    twin = front("Shop.example.com")
    desired = ProxyState.build(http_frontends=[twin])
    live = simulate(plan(desired, ProxyState.build(listeners=_listeners()), owner=OWNER),
                    ProxyState.build(listeners=_listeners())).final
    baseline = Baseline(desired, live, ())
    added = ProxyState.build(http_frontends=[twin, front("shop.example.com")])
    result = plan_changes(added, live, owner=OWNER, options=OPTIONS, baseline=baseline)
    whole = plan(added, live, owner=OWNER, options=OPTIONS)
    assert not result.scoped
    assert result.plan.steps == whole.steps == ()
    assert any("only by hostname case" in p.reason for p in whole.problems)


def _listeners() -> list[HttpListener]:
    return [HttpListener(HTTP)]
