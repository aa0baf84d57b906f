"""Sōzu misbehaving under the operator: restarted (state dropped) in the middle of a large apply
and while idle, hanging up in the middle of an answer, answering FAILURE, not answering at all.
Each scenario ends with Sōzu exactly as the resources say (re-planning gives nothing to do),
every owned route present once, nothing removed that should stay, and the objects this
installation does not own (the boot state's listeners and `status-page` cluster, a cluster
added by hand and saved) untouched.

The faults fire at an exact request (`RequestTap`), whatever the machine's speed; the operator
runs in this process (`run_operator` in a thread, configured from the same command line as a
process)."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import (
    Api,
    converged,
    eventually,
    example_documents,
    free_port,
    latency_line,
    mutations,
    owned,
    quiet,
    unowned,
)
from tests.faults.faults_support import (
    RequestTap,
    add_static,
    assert_exactly_once,
    cluster,
    many_frontends,
    metric,
    metrics_text,
    owned_hostnames,
    readyz,
    removals,
)

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator

BATCH = 200
NAMES = [f"f{n:03d}" for n in range(BATCH)]
RESTART_CHECK = 0.5
HANG = 3.0
IDLE_RESTARTS = 5


async def test_restart_mid_apply_and_while_idle(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    static = await add_static(sozu)
    await api.create(cluster("web", 9001, 9002), *many_frontends(BATCH))
    tap = RequestTap(sozu)
    served_at_restart: list[int] = []

    def restart() -> None:
        served_at_restart.append(sum(owned_hostnames(sozu).values()))
        tap.spawn(sozu.restart(to="boot"))

    # One pass applies the whole batch (everything exists before the operator starts); Sōzu
    # restarts, back to its boot state, when half of the routes are in.
    trigger = tap.at_mutation(BATCH // 2, restart, verbs={"AddHttpFrontend"})
    sozu.reset_counts()
    await start_operator(sozu.socket_path, restart_check=RESTART_CHECK)
    await converged(api, sozu, within=60, what="the batch after a restart in its middle")
    await tap.settle()
    assert trigger.fired
    assert served_at_restart == [BATCH // 2 - 1]
    assert_exactly_once(sozu, NAMES)
    assert removals(sozu) == 0
    assert unowned(sozu) == static
    programmed = owned(sozu)

    # Idle: exactly what the restart dropped is sent again, nothing else. The time from the
    # restart to Sōzu serving everything again is the figure in docs/reliability.md.
    latencies = []
    for _ in range(IDLE_RESTARTS):
        # Idle means idle: the last repair's status writes and Events are done too (a pass
        # writes them after applying, and a restart noticed meanwhile waits for the next pass).
        await quiet(kube, 0.3, within=30)
        sozu.reset_counts()
        await sozu.restart(to="boot")
        started = time.monotonic()
        assert not owned(sozu).clusters
        await eventually(lambda: owned(sozu) == programmed, within=30,
                         what="the idle restart to be repaired", interval=0.01)
        latencies.append(time.monotonic() - started)
        await converged(api, sozu, what="re-planning after an idle restart")
        assert mutations(sozu) == {"AddCluster": 1, "AddBackend": 2, "AddHttpFrontend": BATCH}
        assert unowned(sozu) == static
    print("\n" + latency_line(f"idle restart → {BATCH + 3} objects re-programmed (restart check "
                              f"{RESTART_CHECK:g} s)", latencies))
    assert max(latencies) < RESTART_CHECK + 4.0, latencies  # generous: the figure is printed


async def test_a_restart_during_a_pass_is_not_planned_from_what_it_read(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    """Sōzu restarts right after answering the only request of a pass, which then writes its
    statuses for a second more: that pass read a Sōzu that is gone and ends after Sōzu answers
    again. The pass that follows must plan everything, not only what moved since the pass
    before (nothing, on the resources' side); with the worker check and the resync at 60 s,
    only the hang-up watch starts it."""
    api = crds
    static = await add_static(sozu)
    await start_operator(sozu.socket_path, resync=60.0, restart_check=60.0)
    await api.create(cluster("web", 9001, 9002), *many_frontends(3))
    await converged(api, sozu, what="the first routes")
    await quiet(kube, 0.3, within=30)
    tap = RequestTap(sozu)
    trigger = tap.at_mutation(1, tap.restart())
    # The pass's status write outlasts the restart and Sōzu answering again.
    slowed = kube.slow_next(1, seconds=1.0, path=r"/late000/status$", method="PATCH")
    await api.create(*many_frontends(1, prefix="late"))
    await eventually(lambda: trigger.fired, within=10, what="the pass adding the late route")
    await tap.settle()
    await converged(api, sozu, within=5, what="Sōzu re-programmed after the restart")
    assert slowed.remaining == 0
    assert set(owned_hostnames(sozu)) == {"f000.localhost", "f001.localhost",
                                          "f002.localhost", "late000.localhost"}
    assert unowned(sozu) == static


async def test_socket_closed_mid_response(
    crds: Api, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    static = await add_static(sozu)
    await start_operator(sozu.socket_path, restart_check=RESTART_CHECK)
    await api.create(*example_documents())
    await converged(api, sozu, what="the examples")
    tap = RequestTap(sozu)

    # The final answer of the 10th route is cut in half: Sōzu applied it, the operator cannot
    # know. It reads Sōzu again and goes on; the route is not sent twice.
    sozu.reset_counts()
    cut = tap.at_mutation(10, lambda: sozu.close_mid_response(2), verbs={"AddHttpFrontend"})
    await api.create(*many_frontends(30))
    await converged(api, sozu, what="the routes after an answer was cut")
    assert cut.fired
    assert mutations(sozu) == {"AddHttpFrontend": 30}
    assert_exactly_once(sozu, NAMES[:30])

    # The answer to a read cut in half: the next cluster hashes, which every pass reads (the
    # pass for the deletions below, or a resync's).
    sozu.reset_counts()
    cut_read = tap.at(1, lambda: sozu.close_mid_response(1), verbs={"QueryClustersHashes"})
    for name in ("f000", "f001", "f002"):
        await api.delete("SozuFrontend", name)
    await converged(api, sozu, what="the deletions after a read was cut")
    assert cut_read.fired
    assert mutations(sozu) == {"RemoveHttpFrontend": 3}
    # And later changes are still seen and applied exactly.
    sozu.reset_counts()
    await api.delete("SozuFrontend", "f003")
    await converged(api, sozu, what="a later deletion")
    assert mutations(sozu) == {"RemoveHttpFrontend": 1}
    assert_exactly_once(sozu, NAMES[4:30])
    assert not {f"{n}.localhost" for n in NAMES[:4]} & set(owned_hostnames(sozu))
    assert unowned(sozu) == static


@pytest.mark.parametrize("in_main", [True, False], ids=["main-refuses", "workers-refuse"])
async def test_failure_answers_are_reported_and_retried(
    in_main: bool, crds: Api, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    """Three mutations in a row are refused: the 3rd of the first full pass, then the first of
    each of the next two passes (with main refusing, that is the same request again; with the
    workers refusing, main took each one, so the next pass moves on). The operator stays not
    ready, names the failure on /readyz, counts it, and converges on the pass after."""
    api = crds
    static = await add_static(sozu)
    await api.create(*example_documents(), *many_frontends(20))
    for n in (3, 4, 5):
        sozu.fail_nth_mutation(n, "injected failure", in_main=in_main)
    health, port = free_port(), free_port()
    sozu.reset_counts()
    # One connection, so that the passes go as told above (two would meet two of the refusals
    # in one pass).
    await start_operator(sozu.socket_path, health_port=health, metrics_port=port,
                         extra=("--connections", "1"))

    code, reason = await eventually(lambda: _failing(health), within=15,
                                    what="/readyz to name the failure")
    assert code == 503
    assert reason.startswith("not ready: ")
    if in_main:
        assert "could not dispatch request on the main process state: injected failure" in reason
    await converged(api, sozu, within=20, what="convergence once Sōzu accepts again")
    await eventually(lambda: _ready(health), within=10, what="/readyz 200")
    text = await metrics_text(port)
    failures = sum(metric(text, "sozu_operator_request_failures_total", verb=verb)
                   for verb in mutations(sozu))
    assert failures == 3
    assert metric(text, "sozu_operator_reconcile_errors_total") >= 3
    assert_exactly_once(sozu, NAMES[:20])
    assert removals(sozu) == 0
    assert unowned(sozu) == static


async def test_hung_sozu_times_out_then_recovers(
    crds: Api, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    static = await add_static(sozu)
    health, port = free_port(), free_port()
    # Hung from the start: not ready, and the reason says Sōzu does not answer.
    sozu.hang()
    await api.create(*example_documents())
    # One connection: with two, the other one's request in flight when Sōzu hangs would be
    # sent again too, and the count of re-sent requests below would depend on timing.
    await start_operator(sozu.socket_path, health_port=health, metrics_port=port,
                         restart_check=RESTART_CHECK,
                         extra=("--timeout", "1", "--connections", "1"))
    code, _ = await eventually(lambda: _failing(health, "No answer to"), within=15,
                               what="/readyz to say that Sōzu does not answer")
    assert code == 503
    sozu.unhang()
    await converged(api, sozu, within=20, what="the examples once Sōzu answers")
    await eventually(lambda: _ready(health), within=10, what="/readyz 200")
    tap = RequestTap(sozu)

    # Hung for 3 s from the 2nd route of a change on (its answer never comes; with
    # apply=True main still applies it, as when only the answers are lost). The change lands
    # after the hang, each route once, and /readyz stays 200 meanwhile (ready is for the life
    # of the process).
    for apply in (False, True):
        name = "hung-apply" if apply else "hung"
        errors = metric(await metrics_text(port), "sozu_operator_reconcile_errors_total")
        sozu.reset_counts()
        hung_at: list[float] = []

        def hang(apply: bool = apply, hung_at: list[float] = hung_at) -> None:
            hung_at.append(time.monotonic())
            sozu.hang(HANG, apply=apply)

        trigger = tap.at_mutation(2, hang, verbs={"AddHttpFrontend"})
        await api.create(cluster(name, 9100), *many_frontends(5, name, prefix=name))
        await eventually(lambda trigger=trigger: trigger.fired, within=10,
                         what="the hang to start")
        codes = set()
        while time.monotonic() - hung_at[0] < HANG:
            codes.add((await readyz(health))[0])
            await asyncio.sleep(0.1)
        assert codes == {200}
        await converged(api, sozu, within=20, what=f"the change after the hang (apply={apply})")
        took = time.monotonic() - hung_at[0]
        print(f"\nSōzu hung {HANG:g} s, operator --timeout 1 (apply={apply}): converged "
              f"{took:.1f} s after the hang began")
        assert metric(await metrics_text(port), "sozu_operator_reconcile_errors_total") > errors
        # Main applied the hung request (apply=True): read back, not sent again. Otherwise it
        # is sent again once Sōzu answers.
        assert mutations(sozu)["AddHttpFrontend"] == (5 if apply else 6)
        assert (await readyz(health))[0] == 200
    assert_exactly_once(sozu, [f"{p}{n:03d}" for p in ("hung", "hung-apply") for n in range(5)])
    assert removals(sozu) == 0
    assert unowned(sozu) == static


async def _ready(port: int) -> bool:
    return (await readyz(port))[0] == 200


async def _failing(port: int, needle: str = "injected failure") -> tuple[int, str] | None:
    code, text = await readyz(port)
    assert code != 200, "ready before Sōzu was programmed"
    return (code, text) if code == 503 and needle in text else None
