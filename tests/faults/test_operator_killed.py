"""The operator process SIGKILLed in the middle of a large apply (no cleanup of any kind), then
started again, as Kubernetes restarts a container: the restarted operator finishes the job,
sends nothing twice, and removes nothing, not even before its first complete listing (the
LIST of SozuFrontends is slowed, and `--max-removal-share 1.0` takes the mass-deletion guard
out of the way, so only the listing gate can hold back the removals a partial index asks for).
"""

from __future__ import annotations

import pytest
from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import Api, converged, eventually, owned, unowned
from tests.faults.faults_support import (
    RequestTap,
    add_static,
    assert_exactly_once,
    cluster,
    many_frontends,
    owned_hostnames,
    removals,
)

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator

BATCH = 200
NAMES = [f"f{n:03d}" for n in range(BATCH)]


@pytest.mark.parametrize("connections", [1, 2])
async def test_operator_killed_mid_apply_then_restarted(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator,
    connections: int,
) -> None:
    api = crds
    static = await add_static(sozu)
    await api.create(cluster("web", 9001, 9002), *many_frontends(BATCH))
    sozu.reset_counts()
    tap = RequestTap(sozu)
    operator = await start_operator(sozu.socket_path, process=True,
                                    extra=("--connections", str(connections)))
    served_at_kill: list[int] = []

    def kill() -> None:
        served_at_kill.append(sum(owned_hostnames(sozu).values()))
        operator.kill()

    killed = tap.at_mutation(BATCH // 2, kill, verbs={"AddHttpFrontend"})
    await eventually(lambda: killed.fired, within=30, what="the kill in the middle of the batch")
    assert operator.process is not None
    assert await operator.process.wait() == -9
    assert served_at_kill == [BATCH // 2 - 1]
    # The request being read when the process died was still applied, and so may be the one
    # another connection had already written.
    half = owned(sozu)
    assert BATCH // 2 <= len(half.http_frontends) <= BATCH // 2 + connections - 1

    slow = kube.slow_next(2, seconds=2.0, verb="list", path=r"/sozufrontends(\?|$)")
    restarted = await start_operator(sozu.socket_path, process=True,
                                     extra=("--max-removal-share", "1.0"))
    await converged(api, sozu, within=60, what="the restarted operator to finish the batch")
    assert slow.remaining < 2, "the restarted operator's LIST was not the slowed one"
    assert removals(sozu) == 0
    assert sozu.verb_counts["AddHttpFrontend"] == BATCH  # each route sent once, in all
    assert_exactly_once(sozu, NAMES)
    assert unowned(sozu) == static
    assert restarted.alive
