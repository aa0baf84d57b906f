"""Kubernetes API trouble (watches ending or reset, 410 Gone, 503 on list/watch/patch, slow
answers): after each fault, a change made during or right after it still reaches Sōzu."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import (
    NS,
    Api,
    FlakyProxy,
    converged,
    eventually,
    example_documents,
    programmed_by,
    status_of,
)

from sozu_operator.emulators.kube import FaultRule, KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator

POD = "pod-a"
WATCHES = 5


def route(name: str) -> dict[str, Any]:
    return {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuFrontend",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"cluster": "web", "protocol": "HTTP", "address": "0.0.0.0:8080",
                     "hostname": f"{name}.localhost"}}


def hostnames(sozu: SozuEmulator) -> set[str]:
    return {f.hostname for f in sozu.state.http_frontends.values()}


async def test_api_faults_do_not_stop_convergence(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    await start_operator(sozu.socket_path, pod=POD, resync=1.0)
    await api.create(*example_documents())
    await converged(api, sozu, what="the examples")
    counter = iter(range(1, 100))

    async def watching() -> None:
        """Every watch (3 kinds, TLS Secrets, EndpointSlices) is open again."""
        await eventually(lambda: kube.open_watches >= WATCHES, within=10,
                         what="the operator's watches to be open")

    async def change(what: str, *faults: FaultRule, wait: float = 10.0) -> str:
        """Create a route; once the faults are used up (they would hit the test's own reads
        too), wait until Sōzu serves it."""
        name = f"r{next(counter)}"
        await api.create(route(name))
        await eventually(lambda: all(f.remaining == 0 for f in faults), within=wait,
                         what="the faults to be used up")
        await converged(api, sozu, within=wait, what=f"a new route {what}")
        assert f"{name}.localhost" in hostnames(sozu)
        return name

    # Every watch ends cleanly: kopf resumes each from the last version it saw.
    await watching()
    assert kube.drop_watches() >= WATCHES
    await change("after every watch ended")

    # Every watch connection is reset.
    await watching()
    assert kube.drop_watches(abrupt=True) >= WATCHES
    await change("after every watch connection was reset")

    # 410 Gone in every stream: kopf lists again.
    await watching()
    assert kube.expire_watches() >= WATCHES
    await change("after 410 Gone in every watch")

    # A deletion in the gap between 410 and the new listing: the new listing lacks the object
    # and no watch ever sends DELETED for it (kopf keeps it in its index); the operator's
    # LIST at the next resync finds it gone.
    gone = await change("before a 410")
    await watching()
    slow_lists = kube.slow_next(WATCHES, seconds=0.5, verb="list", method="GET")
    assert kube.expire_watches() >= WATCHES
    await api.delete("SozuFrontend", gone)
    await eventually(lambda: slow_lists.remaining == 0, within=10, what="the re-lists")
    await converged(api, sozu, what="a deletion made while watches re-list")
    assert f"{gone}.localhost" not in hostnames(sozu)

    # The history is compacted: resuming from an old version gets 410 Gone, then re-lists.
    await watching()
    kube.compact()
    assert kube.drop_watches() >= WATCHES
    await change("after a compaction")

    # 503 on the re-list and the re-watch (kopf retries with its error backoff).
    await watching()
    failing_lists = kube.fail_next(3, status=503, verb="list")
    failing_watches = kube.fail_next(3, status=503, verb="watch")
    assert kube.expire_watches() >= WATCHES
    await change("made while list and watch answer 503", failing_lists, failing_watches,
                 wait=20)

    # Slow watch reconnects.
    await watching()
    slow = kube.slow_next(WATCHES, seconds=1.0, verb="watch")
    assert kube.drop_watches() >= WATCHES
    await change("made while watches reconnect slowly", slow)

    # 503 on the operator's own status writes: Sōzu is programmed, the status catches up.
    failing_patches = kube.fail_next(3, status=503, method="PATCH")
    name = await change("while status patches fail", failing_patches)
    await eventually(lambda: programmed_by(kube, "SozuFrontend", name, [POD]), within=10,
                     what="the status to be written once patches succeed again")
    assert status_of(kube, "SozuFrontend", name)["proxies"][POD]["programmedGeneration"] == 1
    assert kube.internal_errors == []


async def test_api_connections_hung_up_do_not_kill_the_loop(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator,
    workdir: Path,
) -> None:
    """The API server hangs up mid-request (no HTTP answer at all) while the operator writes
    statuses and Events and lists: once it answers again, changes still converge."""
    api = crds
    proxy = await FlakyProxy(kube.port).start()
    try:
        kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig-proxied")
        text = kubeconfig.read_text().replace(kube.url, proxy.url)
        kubeconfig.write_text(text)
        operator = await start_operator(sozu.socket_path, pod=POD, process=True, resync=0.5,
                                        restart_check=0.3, kubeconfig=kubeconfig)
        await api.create(*example_documents())
        await converged(api, sozu, within=15, what="the examples, through the proxy")

        proxy.cut()
        # A restarted Sōzu: the repair pass writes statuses and posts DriftRepaired Events;
        # resyncs list the watched kinds. Every one of those requests is hung up on.
        await sozu.restart(to="boot")
        await converged(api, sozu, what="the repair while the API hangs up")
        await asyncio.sleep(1.5)
        proxy.heal()

        await api.create(route("after"))
        await converged(api, sozu, within=20, what="a change once the API answers again")
        await eventually(lambda: programmed_by(kube, "SozuFrontend", "after", [POD]),
                         within=10, what="its status")
        assert operator.alive
        assert await operator.stop() == 0  # while the proxy still relays its last writes
    finally:
        await proxy.stop()
