"""Sends a plan to Sōzu and says exactly how far it got.

One outstanding request per connection is a Sōzu rule (pipelined requests are dropped), so a
connection waits for each final answer before the next request. The steps of some phases are
independent of each other (each touches its own identity: adding clusters, backends, routes;
removing them): those may be spread over several connections ("lanes"), which Sōzu's main
process serves side by side, so the round trips overlap. Phases run one after the other, and
steps whose order matters (certificates, route changes) always go one at a time.

On the first FAILURE nothing new is sent: the other lanes finish the request they have in
flight, and the result names what was applied, what failed and why, and what was not
attempted. Re-planning against the live state then shows what remains.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sozu_operator.proxy.requests import verb_name
from sozu_operator.reconcile.planner import Phase, Step
from sozu_operator.wire.client import SozuClient
from sozu_operator.wire.errors import RequestFailed, SozuError

ProgressCallback = Callable[[int, int, Step], None]

# Phases whose steps each add or remove a distinct identity: any order gives the same state.
# Certificates stay in order (a replacement and Sōzu 1.0's name-sharing evictions depend on
# it), and so do route changes (a remove and an add of the same key).
INDEPENDENT_PHASES = frozenset({
    Phase.CLUSTERS, Phase.BACKENDS, Phase.FRONTENDS_ADD, Phase.FRONTENDS_REMOVE,
    Phase.BACKENDS_REMOVE, Phase.CLUSTERS_REMOVE,
})
# Two connections already overlap the client's work with Sōzu's; more only queue in Sōzu.
DEFAULT_LANES = 2


@dataclass(frozen=True)
class StepFailure:
    step: Step
    index: int
    message: str
    # Sōzu's main applies a request before fanning it out to workers: a FAILURE that names
    # workers means main already holds the change. None: no final answer came (timeout,
    # hang-up), so nobody knows; only reading the live state again tells.
    reached_main_state: bool | None


@dataclass(frozen=True)
class ApplyResult:
    applied: tuple[Step, ...]
    failure: StepFailure | None
    not_attempted: tuple[Step, ...]
    seconds: float
    # Other lanes' requests in flight when `failure` happened that failed too.
    more_failures: tuple[StepFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def rate(self) -> float:
        """Requests per second over the whole apply."""
        return len(self.applied) / self.seconds if self.seconds > 0 else 0.0


_DISPATCH_PREFIX = "could not dispatch request on the main process state"


async def _send(client: SozuClient, step: Step, index: int) -> StepFailure | None:
    try:
        await client.send(step.request)
    except RequestFailed as error:
        return StepFailure(
            step=step,
            index=index,
            message=error.message,
            reached_main_state=not error.message.startswith(_DISPATCH_PREFIX),
        )
    except SozuError as error:
        # The connection broke or timed out: whether Sōzu applied this request is unknown
        # until the live state is read again.
        return StepFailure(
            step=step,
            index=index,
            message=f"{verb_name(step.request)}: {error}",
            reached_main_state=None,
        )
    return None


def _batches(steps: Sequence[Step]) -> list[tuple[bool, range]]:
    """Consecutive runs of step indexes, each with whether its steps may go side by side."""
    batches: list[tuple[bool, range]] = []
    index = 0
    for phase, run in itertools.groupby(steps, key=lambda step: step.phase):
        size = sum(1 for _ in run)
        batches.append((phase in INDEPENDENT_PHASES, range(index, index + size)))
        index += size
    return batches


async def apply_steps(
    client: SozuClient,
    steps: Sequence[Step],
    *,
    on_step: ProgressCallback | None = None,
    lanes: int = 1,
) -> ApplyResult:
    """Sends `steps` in order; with `lanes` > 1, independent steps of a phase go over that many
    connections (the extra ones are opened here and closed at the end)."""
    started = time.perf_counter()
    done: dict[int, Step] = {}
    failures: list[StepFailure] = []
    taken = 0  # steps handed to a connection so far: every later one is not attempted
    extra = [client.sibling() for _ in range(max(0, lanes - 1))]

    def finished(index: int) -> None:
        done[index] = steps[index]
        if on_step is not None:
            on_step(len(done), len(steps), steps[index])

    async def lane(connection: SozuClient, queue: range, cursor: list[int]) -> None:
        nonlocal taken
        while not failures and cursor[0] < len(queue):
            index = queue[cursor[0]]
            cursor[0] += 1
            taken = max(taken, index + 1)
            failure = await _send(connection, steps[index], index)
            if failure is not None:
                failures.append(failure)
                return
            finished(index)

    try:
        for parallel, batch in _batches(steps):
            if failures:
                break
            cursor = [0]  # shared by the lanes: each takes the next step of the batch
            if parallel and extra and len(batch) > 1:
                await asyncio.gather(*(lane(c, batch, cursor) for c in (client, *extra)))
            else:
                await lane(client, batch, cursor)
    finally:
        for connection in extra:
            await connection.aclose()
    failures.sort(key=lambda failure: failure.index)
    return ApplyResult(
        applied=tuple(done[index] for index in sorted(done)),
        failure=failures[0] if failures else None,
        not_attempted=tuple(steps[taken:]) if failures else (),
        seconds=time.perf_counter() - started,
        more_failures=tuple(failures[1:]),
    )
