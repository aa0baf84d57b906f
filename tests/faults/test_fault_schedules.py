"""Random desired-state changes interleaved with random faults, against one operator.

Hypothesis draws, per example, a sequence of changes to SozuClusters (static backends) and
SozuFrontends (create, update, delete; deleting a cluster deletes its routes with it), each
paired with at most one fault: Sōzu restarted back to its boot state (at an exact request of
the change's apply, or while idle just before the change), FAILURE from main or from the
workers on the k-th request of the apply, the k-th answer cut in half, the answer to the next
frontend listing cut in half, every API watch dropped, or 410 Gone in every watch.

After each change the test waits until re-planning gives nothing to do (Sōzu equals the
resources), and checks that what this installation does not own is untouched.

No gap where no fault hit. For a change whose apply met no Sōzu fault, every route that was
served before the change and is served after it must be served in every state Sōzu passes
through meanwhile: the route exists, its cluster exists and has a backend. The states are
observed on the emulator itself (`RequestTap.observe` sees main's state before each request,
so after each mutation), not inferred from the operator's logs. Routes for which the planner
declares an unavoidable gap (a route moved to another cluster is removed and added again:
`Step.gap_routes`) are exempt. API faults (dropped watches, 410) do not exempt a change: they
change what the operator knows and when, never the order it sends things in, so the invariant
must hold through them too. Besides, the plan the operator makes for each such change
(`pipeline.reconcile` from the same live state) is replayed through the simulator
(`reconcile/simulate.py`), which must find no violation.

One operator serves every example (its start costs more than an example); each example starts
by deleting every resource (`--max-removal-share 1.0`: the mass-deletion guard is tested in
test_safety_rails.py) and restarting Sōzu, so that its workers start in step with main.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import OWNER, Api, converged, live, unowned
from tests.faults.faults_support import RequestTap, add_static, cluster, frontend, served_routes

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.reconcile.pipeline import reconcile
from sozu_operator.reconcile.planner import PlanOptions
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.reconcile.simulate import simulate

Json = dict[str, Any]
CLUSTERS = ("c0", "c1", "c2")
ROUTES = ("r0", "r1", "r2", "r3", "r4")
PORTS = (9001, 9002, 9003, 9004)
PATHS = (None, "/a/", "/b/")
SOZU_FAULTS = ("restart", "restart-idle", "fail-main", "fail-workers", "cut-answer",
               "cut-read")
API_FAULTS = ("watch-drop", "watch-gone")
KINDS = ("SozuFrontend", "SozuCertificate", "SozuCluster")


@dataclass
class Model:
    """What the resources say, as the test keeps track of it."""

    clusters: dict[str, tuple[int, ...]] = field(default_factory=dict)
    routes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # cluster, path

    def documents(self) -> list[Json]:
        return [
            *(cluster(name, *ports) for name, ports in sorted(self.clusters.items())),
            *(frontend(name, target, path=path)
              for name, (target, path) in sorted(self.routes.items())),
        ]


@dataclass
class Tally:
    examples: int = 0
    changes: int = 0
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    fired: collections.Counter[str] = field(default_factory=collections.Counter)
    checked: int = 0
    states: int = 0
    simulated: int = 0
    checked_actions: collections.Counter[str] = field(default_factory=collections.Counter)
    started: float = field(default_factory=time.monotonic)


@st.composite
def changes(draw: st.DrawFn, model: Model) -> tuple[str, str, Any]:
    """One valid change of `model` (applied to it): (action, name, argument)."""
    actions = ["put-cluster"]
    if model.clusters:
        actions += ["put-route", "put-route", "delete-cluster"]
    if model.routes:
        actions += ["delete-route"]
    serving = sorted({target for target, _ in model.routes.values()})
    if serving:
        actions += ["swap-backends", "swap-backends"]
    action = draw(st.sampled_from(actions))
    if action == "put-cluster":
        name = draw(st.sampled_from(CLUSTERS))
        ports = tuple(sorted(draw(st.sets(st.sampled_from(PORTS), min_size=1, max_size=3))))
        model.clusters[name] = ports
        return action, name, ports
    if action == "swap-backends":
        # Every backend of a cluster that serves routes replaced by others: the new ones must
        # be added before the old ones go.
        name = draw(st.sampled_from(serving))
        others = sorted(set(PORTS) - set(model.clusters[name]))
        ports = tuple(sorted(draw(st.sets(st.sampled_from(others), min_size=1))))
        model.clusters[name] = ports
        return "put-cluster", name, ports
    if action == "put-route":
        name = draw(st.sampled_from(ROUTES))
        target = (draw(st.sampled_from(sorted(model.clusters))),
                  draw(st.sampled_from(PATHS)))
        model.routes[name] = target
        return action, name, target
    if action == "delete-route":
        name = draw(st.sampled_from(sorted(model.routes)))
        del model.routes[name]
        return action, name, None
    name = draw(st.sampled_from(sorted(model.clusters)))
    del model.clusters[name]
    gone = sorted(route for route, (target, _) in model.routes.items() if target == name)
    for route in gone:
        del model.routes[route]
    return action, name, gone


async def _apply(api: Api, existing: set[tuple[str, str]], change: tuple[str, str, Any]) -> None:
    """The change, through the API as a user would make it."""
    action, name, argument = change
    if action == "put-cluster":
        body = cluster(name, *argument)
        if ("SozuCluster", name) in existing:
            await api.patch("SozuCluster", name, {"spec": body["spec"]})
        else:
            await api.create(body)
            existing.add(("SozuCluster", name))
    elif action == "put-route":
        target, path = argument
        body = frontend(name, target, path=path)
        if ("SozuFrontend", name) in existing:
            spec = {**body["spec"], "path": body["spec"].get("path")}  # null removes it
            await api.patch("SozuFrontend", name, {"spec": spec})
        else:
            await api.create(body)
            existing.add(("SozuFrontend", name))
    elif action == "delete-route":
        await api.delete("SozuFrontend", name)
        existing.discard(("SozuFrontend", name))
    else:
        for route in argument:
            await api.delete("SozuFrontend", route)
            existing.discard(("SozuFrontend", route))
        await api.delete("SozuCluster", name)
        existing.discard(("SozuCluster", name))


def _plan(model: Model, state: ProxyState) -> Any:
    return reconcile(model.documents(), state, owner=OWNER, sozu_version=2,
                     options=PlanOptions(max_removal_share=1.0)).plan


def _arm(tap: RequestTap, sozu: SozuEmulator, fault: str, k: int) -> Callable[[], bool]:
    """Arm a Sōzu fault for the coming apply; returns whether it fired."""
    mutation: Callable[[], None]
    if fault == "cut-read":
        trigger = tap.at(1, lambda: sozu.close_mid_response(1), verbs={"ListFrontends"})
        return lambda: trigger.fired
    if fault == "restart":
        mutation = tap.restart()
    elif fault == "cut-answer":
        def mutation() -> None:
            sozu.close_mid_response(2)  # this request's final answer (after PROCESSING)
    else:
        def mutation() -> None:
            sozu.fail_nth_mutation(1, "injected failure", in_main=fault == "fail-main")
    trigger = tap.at_mutation(k, mutation)
    return lambda: trigger.fired


async def _reset(api: Api, kube: KubeEmulator, sozu: SozuEmulator, tap: RequestTap,
                 static: ProxyState) -> None:
    kube.clear_faults()
    tap.disarm()
    for kind in KINDS:
        await api.delete_all(kind)
    await converged(api, sozu, within=30, what="an empty desired state before the example")
    await sozu.restart(to="boot")
    await converged(api, sozu, within=30, what="a restarted, empty Sōzu")
    assert unowned(sozu) == static


TALLY = Tally()


@dataclass
class Environment:
    static: ProxyState
    tap: RequestTap


@pytest.fixture
async def environment(crds: Api, sozu: SozuEmulator,
                      start_operator: StartOperator) -> Environment:
    """Built once for all the examples of a test (function-scoped fixtures are)."""
    static = await add_static(sozu)
    tap = RequestTap(sozu)
    await start_operator(sozu.socket_path, resync=1.0, restart_check=0.3,
                         extra=("--max-removal-share", "1.0"))
    return Environment(static, tap)


Change = tuple[str, str, Any]
# A change, the resources after it, the fault paired with it, and at which request it fires.
Event = tuple[Change, "Model", str | None, int]


@st.composite
def schedules(draw: st.DrawFn) -> list[Event]:
    """The whole schedule of an example, drawn before anything runs (so that a failure cannot
    change what is drawn)."""
    model = Model()
    events = []
    for _ in range(draw(st.integers(min_value=4, max_value=10))):
        change = draw(changes(model))
        after = Model(dict(model.clusters), dict(model.routes))
        fault = draw(st.sampled_from((*[None] * 5, *SOZU_FAULTS, *API_FAULTS)))
        events.append((change, after, fault, draw(st.integers(min_value=1, max_value=12))))
    return events


# kopf, in the operator's thread, calls the global `random` (its handler lifecycle) while
# Hypothesis draws the next example in this one, which Hypothesis takes for a strategy using it.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning")
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          phases=(Phase.explicit, Phase.generate),  # no shrinking: each try costs seconds
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(schedule=schedules())
async def test_random_faults_during_random_changes_converge(
    schedule: list[Event], environment: Environment, crds: Api, kube: KubeEmulator,
    sozu: SozuEmulator,
) -> None:
    api, static, tap = crds, environment.static, environment.tap
    await _reset(api, kube, sozu, tap, static)
    TALLY.examples += 1

    existing: set[tuple[str, str]] = set()
    previous = Model()
    for number, (change, model, fault, k) in enumerate(schedule):
        action, name, argument = change
        swap = (action == "put-cluster" and name in previous.clusters
                and not set(argument) & set(previous.clusters[name])
                and any(target == name for target, _ in previous.routes.values()))
        previous = model
        TALLY.changes += 1
        state = live(sozu)
        plan = _plan(model, state)
        if fault in ("restart", "fail-main", "fail-workers", "cut-answer"):
            if not plan.steps:
                fault = None  # nothing to apply: nothing for the fault to hit
            else:
                k = min(k, len(plan.steps))
        fired: Callable[[], bool] = lambda: False  # noqa: E731
        if fault == "restart-idle":
            await sozu.restart(to="boot")
            state = live(sozu)
            plan = _plan(model, state)
            fired = lambda: True  # noqa: E731
        elif fault in SOZU_FAULTS:
            fired = _arm(tap, sozu, fault, k)
        before = served_routes(sozu)
        gaps = {route for step in plan.steps for route in step.gap_routes}
        observed: list[set[str]] = []
        tap.observers[:] = [lambda _verb, seen=observed: seen.append(served_routes(sozu))]

        await _apply(api, existing, change)
        if fault == "watch-drop":
            kube.drop_watches(abrupt=True)
        elif fault == "watch-gone":
            kube.expire_watches()
        what = f"change {number} {change} with fault {fault}"
        await converged(api, sozu, within=30, what=what)
        await tap.settle()  # a restart spawned at the last request lands now…
        await converged(api, sozu, within=30, what=what)  # …and is repaired
        tap.observers.clear()
        hit = fault in SOZU_FAULTS and fired()
        tap.disarm()
        if fault is not None:
            TALLY.faults[fault] += 1
            TALLY.fired[fault] += hit or fault in API_FAULTS

        assert unowned(sozu) == static, what
        if fault in SOZU_FAULTS:
            continue  # a Sōzu fault may open gaps (a restart drops everything)
        required = (before & served_routes(sozu)) - gaps
        for index, served in enumerate(observed):
            missing = required - served
            assert not missing, f"{what}: {sorted(missing)} not served at request {index}"
        report = simulate(plan, state)
        assert report.ok, (what, report.violations)
        TALLY.simulated += 1
        TALLY.checked += 1
        TALLY.checked_actions["swap-backends" if swap else action] += 1
        TALLY.states += len(observed)


def test_fault_schedule_tally() -> None:
    """Prints what the property test went through (run with -s); runs after it."""
    if not TALLY.examples:
        return
    print(f"\nfault schedules: {TALLY.examples} examples, {TALLY.changes} changes in "
          f"{time.monotonic() - TALLY.started:.0f} s; faults drawn {dict(TALLY.faults)}, "
          f"fired {dict(TALLY.fired)}; no-gap checked on {TALLY.checked} changes "
          f"{dict(TALLY.checked_actions)} "
          f"({TALLY.states} Sōzu states observed), {TALLY.simulated} plans simulated")
    assert TALLY.checked_actions["swap-backends"] > 0, "no change worth checking for gaps"
    assert sum(TALLY.fired.values()) > 0
