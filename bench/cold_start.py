"""Figure 1: cold start. An empty Sōzu (listeners only) programmed with N frontends through
the CLI's `apply` path, against the raw round-trip rate of the same client on the same
emulator with a trivial request (`ListWorkers`), measured right before, between reconcile and
send (outside the timed sections) and right after; the reference is their median.

A secondary reference is the same for `Status`, which Sōzu answers like a mutation (a
PROCESSING frame, then the final one): mutations can never be faster than that.

The `apply` path is `sozu_operator.cli.gitops._apply` without YAML loading (resources are
built in memory) and without progress output (`--quiet`): read the live state with a fresh
`LiveReader`, `reconcile` (validate and build the desired state, plan), send the steps with
`apply_steps` over the CLI's default connections (independent steps side by side), then, as
the CLI does, read again and re-plan to confirm nothing remains.
"Programmed" is when the last step is acknowledged; the confirmation is reported apart.
"""

from __future__ import annotations

import time

from bench import operator_hooks
from bench.common import OPERATOR_SKIPPED, Json, median, operator_skipped
from bench.emulator import EmulatorProcess, mutations_in
from bench.workload import OWNER, SOZU_VERSION, Workload
from sozu_operator.applier import DEFAULT_LANES, apply_steps
from sozu_operator.live import LiveReader
from sozu_operator.proxy import requests as rq
from sozu_operator.reconcile.pipeline import reconcile
from sozu_operator.wire import SozuClient

TARGET_RATIO = 0.8


async def raw_round_trips(
    client: SozuClient, count: int, batches: int = 4, request: rq.Request | None = None
) -> Json:
    """Round trips per second of `ListWorkers` (answered by main alone, one frame, no state):
    the ceiling any sequence of requests on one connection can reach. Median of batches."""
    rates = []
    per_batch = max(1, count // batches)
    request = request or rq.ListWorkers()
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(per_batch):
            await client.send(request)
        rates.append(per_batch / (time.perf_counter() - started))
    return {"requests": per_batch * batches, "rate": median(rates), "batch_rates": rates}


async def run(emulator: EmulatorProcess, workload: Workload, *, raw_count: int) -> Json:
    await emulator.reset()
    bodies = workload.resources
    async with emulator.client() as client:
        before = await raw_round_trips(client, raw_count)
        # Secondary reference: a trivial request answered like a mutation, PROCESSING then OK.
        two_frames = await raw_round_trips(client, raw_count, request=rq.Status())
        await emulator.command("reset_counts")

        cpu0, emu0 = time.process_time(), emulator.cpu_seconds()
        t0 = time.perf_counter()
        reader = LiveReader()
        live = await reader.read(client)
        t1 = time.perf_counter()
        result = reconcile(bodies, live, owner=OWNER, sozu_version=SOZU_VERSION)
        t2 = time.perf_counter()
        cpu2, emu2 = time.process_time(), emulator.cpu_seconds()
        if result.build.problems or result.plan.problems or not result.plan.guard.allowed:
            raise AssertionError(f"workload does not plan cleanly: {result.build.problems[:3]}")
        # The reference once more between the two phases (outside the timed sections): the
        # machine may be shared, and one measurement before and one after can both be off.
        mid = await raw_round_trips(client, raw_count)
        await emulator.command("reset_counts")
        t2_send = time.perf_counter()
        cpu2_send, emu2_send = time.process_time(), emulator.cpu_seconds()
        outcome = await apply_steps(client, result.plan.steps, lanes=DEFAULT_LANES)
        t3 = time.perf_counter()
        cpu3, emu3 = time.process_time(), emulator.cpu_seconds()
        send_seconds = t3 - t2_send
        cpu_client = (cpu2 - cpu0) + (cpu3 - cpu2_send)
        cpu_emulator = (emu2 - emu0) + (emu3 - emu2_send)
        if not outcome.ok:
            raise AssertionError(f"apply failed: {outcome.failure}")
        verbs = await emulator.verbs()

        # The CLI's confirmation: a fresh read and a re-plan, which must be empty.
        t4 = time.perf_counter()
        confirm_reader = LiveReader()
        after = await confirm_reader.read(client)
        first_read = time.perf_counter() - t4
        remaining = reconcile(bodies, after, owner=OWNER, sozu_version=SOZU_VERSION).plan
        t5 = time.perf_counter()
        if not remaining.is_empty:
            raise AssertionError(f"{len(remaining.steps)} steps remain after apply")
        first_requests = confirm_reader.last_stats.requests
        # For the growth figure: the same reader again, hash-guided (nothing changed); best
        # of three, so that one full collection of the collector does not decide it.
        rereads = []
        for _ in range(3):
            t6 = time.perf_counter()
            await confirm_reader.read(client)
            rereads.append(time.perf_counter() - t6)
        reread = min(rereads)
        await emulator.command("reset_counts")
        after_raw = await raw_round_trips(client, raw_count)

    steps = len(result.plan.steps)
    raw_rate = median([before["rate"], mid["rate"], after_raw["rate"]])
    programmed = (t2 - t0) + send_seconds
    rate = steps / programmed
    send_rate = steps / send_seconds
    return {
        "frontends": workload.frontends,
        "objects": workload.expected_objects(),
        "requests": steps,
        "mutations_seen_by_emulator": mutations_in(verbs),
        "requests_by_verb": result.plan.counts_by_verb(),
        "seconds": {
            "read": t1 - t0,
            "reconcile": t2 - t1,
            "send": send_seconds,
            "programmed": programmed,
            "confirm": t5 - t4,
            "cli_total": programmed + (t5 - t4),
        },
        "cpu_seconds": {"client": cpu_client, "emulator": cpu_emulator},
        "reads": {
            "first_seconds": first_read,
            "first_requests": first_requests,
            "reread_seconds": reread,
            "reread_requests": confirm_reader.last_stats.requests,
        },
        "rate": rate,
        "send_rate": send_rate,
        "reference": {
            "raw_round_trip_rate": raw_rate,
            "before": before["rate"],
            "between": mid["rate"],
            "after": after_raw["rate"],
            "two_frame_rate": two_frames["rate"],
        },
        "ratio": rate / raw_rate,
        "send_ratio": send_rate / raw_rate,
        "target_ratio": TARGET_RATIO,
        "met": rate / raw_rate >= TARGET_RATIO,
        "operator": OPERATOR_SKIPPED if operator_skipped()
        else await operator_hooks.cold_start(emulator, workload),
    }
