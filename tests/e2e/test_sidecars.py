"""Two sidecars (two `sozu-operator run` processes, each with its own Sōzu) share the resources'
status: each writes only `status.proxies.<its pod>`, neither erases the other's entry, the
aggregate reads "2/2", and once everything is programmed nobody writes anything (no status
ping-pong between the two). A sidecar that stops withdraws its entry."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import StartOperator, StartSozu
from tests.e2e.e2e_support import (
    Api,
    converged,
    eventually,
    example_documents,
    patch_requests,
    programmed_by,
    quiet,
    status_of,
)

from sozu_operator.emulators.kube import KubeEmulator

PODS = ("a", "b")
RESYNC = 1.0
NAMES = [(d["kind"], d["metadata"]["name"]) for d in example_documents()]


def aggregate(kube: KubeEmulator) -> dict[tuple[str, str], str | None]:
    return {(k, n): status_of(kube, k, n).get("proxiesProgrammed") for k, n in NAMES}


def entries(kube: KubeEmulator) -> dict[tuple[str, str], set[str]]:
    return {(k, n): set(status_of(kube, k, n).get("proxies") or {}) for k, n in NAMES}


async def test_two_sidecars_each_write_their_own_entry(
    crds: Api, kube: KubeEmulator, start_sozu: StartSozu, start_operator: StartOperator
) -> None:
    api = crds
    sozus = {pod: await start_sozu(pod) for pod in PODS}
    operators = {
        pod: await start_operator(sozus[pod].socket_path, pod=pod, process=True, resync=RESYNC)
        for pod in PODS
    }
    await api.create(*example_documents())
    for pod in PODS:
        await converged(api, sozus[pod], within=15, what=f"sidecar {pod} to program its Sōzu")
    await eventually(lambda: all(programmed_by(kube, k, n, PODS) for k, n in NAMES),
                     within=10, what="both sidecars to report every resource")
    assert set(aggregate(kube).values()) == {"2/2"}
    assert set(map(frozenset, entries(kube).values())) == {frozenset(PODS)}

    # A change: both program it, and the aggregate follows the new generation.
    await api.patch("SozuCluster", "web", {"spec": {"loadBalancing": "RANDOM"}})
    for pod in PODS:
        await converged(api, sozus[pod], what=f"sidecar {pod} to program the change")
    await eventually(lambda: programmed_by(kube, "SozuCluster", "web", PODS), within=10,
                     what="generation 2 programmed by both")
    web = status_of(kube, "SozuCluster", "web")
    assert web["proxiesProgrammed"] == "2/2"
    assert {pod: web["proxies"][pod]["programmedGeneration"] for pod in PODS} == {"a": 2, "b": 2}

    # No status loop: once settled, over three resync periods, no write and no new version.
    await quiet(kube, RESYNC)
    version, mark = kube.resource_version, len(kube.requests)
    await asyncio.sleep(3.2 * RESYNC)
    assert patch_requests(kube, since=mark) == []
    assert kube.resource_version == version
    assert set(map(frozenset, entries(kube).values())) == {frozenset(PODS)}

    # A sidecar that stops (rollout, scale-down: its pod name will not come back) removes its
    # entry on the way out; the other one rewrites the aggregate, and a change reads "1/1".
    assert await operators["b"].stop() == 0
    await eventually(lambda: all(programmed_by(kube, k, n, ["a"]) for k, n in NAMES)
                     and set(map(frozenset, entries(kube).values())) == {frozenset("a")},
                     within=10, what="b's entries to be withdrawn and the aggregate rewritten")
    assert set(aggregate(kube).values()) == {"1/1"}
    await api.patch("SozuCluster", "web", {"spec": {"loadBalancing": "ROUND_ROBIN"}})
    await converged(api, sozus["a"], what="sidecar a alone to program the change")
    await eventually(lambda: programmed_by(kube, "SozuCluster", "web", ["a"]), within=5,
                     what='"1/1" for generation 3 while b is gone')

    await start_operator(sozus["b"].socket_path, pod="b", process=True, resync=RESYNC)
    await converged(api, sozus["b"], within=15, what="the restarted sidecar b to catch up")
    await eventually(lambda: all(programmed_by(kube, k, n, PODS) for k, n in NAMES),
                     within=10, what='"2/2" again once b is back')
    assert operators["a"].alive
