"""Sōzu restarts and hand edits, against a real `sozu-operator run` process: a restarted Sōzu
(back to its boot state) is re-programmed within seconds, a hand-removed route comes back at
the next resync, and objects this installation does not own are never touched, whether they
come from Sōzu's boot state or were added by hand while the operator runs."""

from __future__ import annotations

import asyncio
import time

from tests.e2e.conftest import StartOperator, StartSozu
from tests.e2e.e2e_support import (
    Api,
    by_hand,
    converged,
    eventually,
    example_documents,
    foreign,
    hostnames,
    latency_line,
    mutations,
    owned,
)

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.kube.reconciler import DRIFT_EVENTS_PER_PASS
from sozu_operator.proxy import requests as rq

RESYNC = 2.0
RESTART_CHECK = 1.0
RESTARTS = 3


async def test_restart_is_reprogrammed_and_foreign_objects_survive(
    crds: Api, kube: KubeEmulator, start_sozu: StartSozu, start_operator: StartOperator
) -> None:
    api = crds
    sozu = await start_sozu()
    # Added by hand before the operator starts and saved into Sōzu's boot state (the state
    # file also carries the unowned `status-page` cluster).
    await by_hand(sozu, *foreign("manual", "manual.localhost", 7000), save=True)
    operator = await start_operator(sozu.socket_path, process=True, resync=RESYNC,
                                    restart_check=RESTART_CHECK)
    await api.create(*example_documents())
    await converged(api, sozu, within=15, what="the examples to be programmed")
    programmed = owned(sozu)
    assert programmed.clusters
    assert programmed.certificates

    # Added by hand while the operator runs; several passes (changes and a resync) later it
    # is still there.
    await by_hand(sozu, *foreign("late", "late.localhost", 7001))
    for balancing in ("RANDOM", "LEAST_LOADED", "ROUND_ROBIN"):
        await api.patch("SozuCluster", "web", {"spec": {"loadBalancing": balancing}})
        await converged(api, sozu, what=f"loadBalancing {balancing}")
    await asyncio.sleep(RESYNC + 0.5)
    assert {"status-page", "manual", "late"} <= set(sozu.state.clusters)
    assert {"status.localhost", "manual.localhost", "late.localhost"} <= hostnames(sozu)

    # A route removed by hand comes back at the next resync, and only that.
    (health,) = [f for f in sozu.state.http_frontends.values() if f.path.value == "/healthz"]
    await by_hand(sozu, rq.RemoveHttpFrontend(health))
    sozu.reset_counts()
    await eventually(lambda: owned(sozu) == programmed or None, within=RESYNC + 3,
                     what="the removed route to be repaired", interval=0.01)
    assert mutations(sozu) == {"AddHttpFrontend": 1}
    assert "late" in sozu.state.clusters

    # Restarts: Sōzu comes back with its boot state only (listeners, status-page, manual).
    latencies = []
    for _ in range(RESTARTS):
        await sozu.restart(to="boot")
        started = time.monotonic()
        assert owned(sozu) != programmed
        assert {"status-page", "manual"} <= set(sozu.state.clusters)
        await eventually(lambda: owned(sozu) == programmed or None, within=10,
                         what="the restarted Sōzu to be re-programmed", interval=0.005)
        latencies.append(time.monotonic() - started)
        await converged(api, sozu, what="re-planning after the restart")
    print("\n" + latency_line(
        f"Sōzu restart → re-programmed (restart check {RESTART_CHECK:g} s, resync "
        f"{RESYNC:g} s)", latencies))
    assert max(latencies) < RESTART_CHECK + 1.0, latencies  # the restart check, not resync
    assert {"status-page", "manual"} <= set(sozu.state.clusters)
    assert {"status.localhost", "manual.localhost"} <= hostnames(sozu)

    # Still untouched after another resync, and the repairs were reported.
    await asyncio.sleep(RESYNC + 0.5)
    assert {"status-page", "manual"} <= set(sozu.state.clusters)
    assert owned(sozu) == programmed
    repaired = [e for e in await api.events() if e["reason"] == "DriftRepaired"]
    assert {e["involvedObject"]["name"] for e in repaired} >= {"web-health", "web"}
    assert operator.alive


async def test_a_restarted_sozu_is_reprogrammed_as_soon_as_it_hangs_up(
    crds: Api, start_sozu: StartSozu, start_operator: StartOperator
) -> None:
    """Sōzu closes every command connection when it restarts: the operator notices at once,
    with neither the worker check (every 60 s here) nor the resync (60 s) due. Every resource
    was drift then, but only the first DRIFT_EVENTS_PER_PASS get a DriftRepaired Event."""
    api = crds
    sozu = await start_sozu()
    operator = await start_operator(sozu.socket_path, process=True, resync=60.0,
                                    restart_check=60.0)
    routes = [{"apiVersion": "sozu.io/v1alpha1", "kind": "SozuFrontend",
               "metadata": {"name": f"extra-{n}", "namespace": "default"},
               "spec": {"cluster": "web", "protocol": "HTTP", "address": "0.0.0.0:8080",
                        "hostname": f"extra-{n}.localhost"}}
              for n in range(DRIFT_EVENTS_PER_PASS)]
    await api.create(*example_documents(), *routes)
    await converged(api, sozu, within=15, what="the examples to be programmed")
    programmed = owned(sozu)
    latencies = []
    for _ in range(RESTARTS):
        await sozu.restart(to="boot")
        started = time.monotonic()
        assert owned(sozu) != programmed
        await eventually(lambda: owned(sozu) == programmed or None, within=5,
                         what="the restarted Sōzu to be re-programmed", interval=0.005)
        latencies.append(time.monotonic() - started)
        await converged(api, sozu, what="re-planning after the restart")
    print("\n" + latency_line("Sōzu restart → re-programmed (worker check and resync 60 s)",
                              latencies))
    assert max(latencies) < 2.0, latencies

    async def drift_events() -> list[tuple[str, str]]:
        return [(e["involvedObject"]["kind"], e["involvedObject"]["name"])
                for e in await api.events() if e["reason"] == "DriftRepaired"]

    async def all_posted() -> bool:  # they follow the programming
        return len(await drift_events()) >= RESTARTS * DRIFT_EVENTS_PER_PASS

    await eventually(all_posted, within=5, what="the DriftRepaired Events")
    # The same first ten every time, not one per re-programmed resource.
    assert len(set(await drift_events())) == DRIFT_EVENTS_PER_PASS, await drift_events()
    assert "Events were posted for the first 10 only" in operator.log_tail(200)
    assert operator.alive
