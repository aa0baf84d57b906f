"""How long a change takes to reach Sōzu through a real `sozu-operator run` process: from the
create (or delete) request to the API until Sōzu serves (or stops serving) the route, over
sequential changes. Printed (run with -s); the bounds asserted are loose, the figures are the
point."""

from __future__ import annotations

import functools
import time
from typing import Any

from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import (
    NS,
    Api,
    converged,
    eventually,
    example_documents,
    latency_line,
    percentile,
    programmed_by,
)

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator

CHANGES = 20
DEBOUNCE = 0.05


def route(name: str) -> dict[str, Any]:
    return {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuFrontend",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"cluster": "web", "protocol": "HTTP", "address": "0.0.0.0:8080",
                     "hostname": f"{name}.localhost"}}


def serves(sozu: SozuEmulator, hostname: str) -> bool:
    return any(f.hostname == hostname for f in sozu.state.http_frontends.values())


def gone(sozu: SozuEmulator, hostname: str) -> bool:
    return not serves(sozu, hostname)


async def test_change_to_programmed_latency(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    await start_operator(sozu.socket_path, process=True, resync=30.0, debounce=DEBOUNCE)
    await api.create(*example_documents())
    await converged(api, sozu, within=15, what="the examples")
    # Sōzu may be programmed from the operator's own listing before kopf has listed: the pass
    # kopf's listing starts would absorb the first change. Timing begins once it is done.
    await eventually(lambda: programmed_by(kube, "SozuFrontend", "web", ["pod-a"]), within=15,
                     what="the examples' statuses")

    created: list[float] = []
    deleted: list[float] = []
    for n in range(CHANGES):
        name = f"lat{n}"
        started = time.monotonic()
        await api.create(route(name))
        await eventually(functools.partial(serves, sozu, f"{name}.localhost"), within=5,
                         what=f"{name} to be served", interval=0.002)
        created.append(time.monotonic() - started)
    for n in range(CHANGES):
        name = f"lat{n}"
        started = time.monotonic()
        await api.delete("SozuFrontend", name)
        await eventually(functools.partial(gone, sozu, f"{name}.localhost"), within=5,
                         what=f"{name} to be removed", interval=0.002)
        deleted.append(time.monotonic() - started)
    await converged(api, sozu, what="the end state")

    print("\n" + latency_line(f"create SozuFrontend → served by Sōzu (debounce {DEBOUNCE:g} s)",
                              created))
    print(latency_line(f"delete SozuFrontend → gone from Sōzu (debounce {DEBOUNCE:g} s)", deleted))
    assert percentile(created, 0.5) < 1.0
    assert percentile(deleted, 0.5) < 1.0
    assert min(created) >= DEBOUNCE  # the debounce is honoured
