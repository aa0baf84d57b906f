"""Independent steps over several connections: the same end state as one at a time, both
connections really used, and on a failure an exact account of what was applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from sozu_operator.applier import INDEPENDENT_PHASES, apply_steps
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    Cluster,
    HttpFrontend,
    HttpListener,
    SocketAddress,
)
from sozu_operator.reconcile.planner import PlanOptions, plan
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.wire import SozuClient

A = SocketAddress.parse
OWNER = "lanes"
LISTENER = HttpListener(A("127.0.0.1:8080"))


def _desired(clusters: int) -> ProxyState:
    return ProxyState.build(
        clusters=[Cluster(f"{OWNER}:c{i}") for i in range(clusters)],
        backends=[
            Backend(f"{OWNER}:c{i}", f"b{j}", A(f"10.0.{i}.{j + 1}:80"))
            for i in range(clusters) for j in range(2)
        ],
        http_frontends=[
            HttpFrontend(LISTENER.address, f"c{i}.example.com", cluster_id=f"{OWNER}:c{i}",
                         tags=(("sozu.io/owner", OWNER), ("sozu.io/resource", f"ns/c{i}")))
            for i in range(clusters)
        ],
        listeners=[LISTENER],
    )


async def test_two_connections_reach_the_same_state(tmp_path: Path) -> None:
    socket = str(tmp_path / "sozu.sock")
    desired = _desired(40)
    async with (
        SozuEmulator(socket, initial_state=[rq.AddHttpListener(LISTENER)]) as sozu,
        SozuClient(socket, timeout=5) as client,
    ):
        live = ProxyState.from_config_state(sozu.state)
        steps = plan(desired, live, owner=OWNER, options=PlanOptions()).steps
        assert {step.phase for step in steps} <= INDEPENDENT_PHASES
        sozu.reset_counts()
        seen: list[int] = []
        outcome = await apply_steps(client, steps, lanes=2,
                                    on_step=lambda done, total, step: seen.append(done))
        assert outcome.ok
        assert outcome.applied == tuple(steps)  # in plan order, whatever lane sent them
        assert seen == list(range(1, len(steps) + 1))
        assert ProxyState.from_config_state(sozu.state) == desired
        # Both connections carried a fair share of the 120 requests.
        shares = sorted(sozu.requests_by_connection.values())
        assert len(shares) == 2
        assert shares[0] >= len(steps) // 4
        assert sum(shares) == len(steps)


@pytest.mark.parametrize("failing", [1, 17, 41, 80, 120])
async def test_a_failure_is_accounted_for_exactly(tmp_path: Path, failing: int) -> None:
    """Whatever mutation fails, the result partitions the plan: applied ones are in Sōzu,
    failed ones are named, the rest was never sent; nothing of a later phase was sent."""
    socket = str(tmp_path / "sozu.sock")
    desired = _desired(40)
    async with (
        SozuEmulator(socket, initial_state=[rq.AddHttpListener(LISTENER)]) as sozu,
        SozuClient(socket, timeout=5) as client,
    ):
        steps = plan(desired, ProxyState.from_config_state(sozu.state), owner=OWNER,
                     options=PlanOptions()).steps
        sozu.reset_counts()
        sozu.fail_nth_mutation(failing, "refused on purpose", in_main=True)
        outcome = await apply_steps(client, steps, lanes=2)
        assert outcome.failure is not None
        failed = [outcome.failure, *outcome.more_failures]
        assert outcome.failure.message.endswith("refused on purpose")
        parts = [*outcome.applied, *(f.step for f in failed), *outcome.not_attempted]
        assert sorted(map(steps.index, parts)) == list(range(len(steps)))
        sent = len(outcome.applied) + len(failed)
        assert sum(sozu.requests_by_connection.values()) == sent
        # Main refused the failed step: Sōzu holds exactly the applied ones.
        expected = ProxyState.from_config_state(sozu.state)
        replay = SozuEmulator(str(tmp_path / "replay.sock"),
                              initial_state=[rq.AddHttpListener(LISTENER),
                                             *(s.request for s in outcome.applied)])
        async with replay:
            assert ProxyState.from_config_state(replay.state) == expected
        phase_of_failure = outcome.failure.step.phase
        later = [s for s in outcome.applied
                 if steps.index(s) > steps.index(outcome.failure.step)]
        assert all(s.phase == phase_of_failure for s in later)
