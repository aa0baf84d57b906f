"""Sends a plan to Sōzu, one request at a time, and says exactly how far it got.

One outstanding request per connection is a Sōzu rule (pipelined requests are dropped), so the
applier waits for each final answer before the next request. On the first FAILURE it stops:
nothing after that step is sent, and the result names what was applied, what failed and why,
and what was not attempted. Re-planning against the live state then shows what remains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sozu_operator.proxy.requests import verb_name
from sozu_operator.reconcile.planner import Step
from sozu_operator.wire.client import SozuClient
from sozu_operator.wire.errors import RequestFailed, SozuError

ProgressCallback = Callable[[int, int, Step], None]


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

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def rate(self) -> float:
        """Requests per second over the whole apply."""
        return len(self.applied) / self.seconds if self.seconds > 0 else 0.0


_DISPATCH_PREFIX = "could not dispatch request on the main process state"


async def apply_steps(
    client: SozuClient,
    steps: Sequence[Step],
    *,
    on_step: ProgressCallback | None = None,
) -> ApplyResult:
    started = time.perf_counter()
    applied: list[Step] = []
    for index, step in enumerate(steps):
        try:
            await client.send(step.request)
        except RequestFailed as error:
            failure = StepFailure(
                step=step,
                index=index,
                message=error.message,
                reached_main_state=not error.message.startswith(_DISPATCH_PREFIX),
            )
            return ApplyResult(
                tuple(applied), failure, tuple(steps[index + 1 :]), time.perf_counter() - started
            )
        except SozuError as error:
            # The connection broke or timed out: whether Sōzu applied this request is unknown
            # until the live state is read again.
            failure = StepFailure(
                step=step,
                index=index,
                message=f"{verb_name(step.request)}: {error}",
                reached_main_state=None,
            )
            return ApplyResult(
                tuple(applied), failure, tuple(steps[index + 1 :]), time.perf_counter() - started
            )
        applied.append(step)
        if on_step is not None:
            on_step(index + 1, len(steps), step)
    return ApplyResult(tuple(applied), None, (), time.perf_counter() - started)
