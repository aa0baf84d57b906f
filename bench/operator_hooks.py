"""The running operator, measured next to the CLI: a real `python -m sozu_operator run` process
(set-up in `bench/operator_run.py`: the bundled Kubernetes API emulator in this process,
resources POSTed through its API before the operator starts, the operator watching every
namespace with owner `bench`, `--debounce 0.05 --resync 60 --restart-check 5 --health-port 0
--metrics-port <free port>`). One hook at one size, alone: `main` below.

Each hook gets the same emulator and workload as the CLI measurement next to it, so both read as
ratios of the same reference. The top-level numbers of each result are the headline (the report
prints them); details are nested. A hook that fails returns `{"status": "failed", "error": …}`
instead of stopping the whole run.

- `cold_start`: Sōzu reset to its listeners, the resources already in the API, the operator
  process started; timed from the start of the process until the Sōzu emulator has received
  (and applied) every mutation of the cold start: process start-up, the operator's own paged
  LIST at start-up (Sōzu is programmed from it before kopf has indexed everything, see
  `Reconciler.bootstrap`), validation, planning and sending included. `rate` is requests / that
  time, `ratio` that rate over the raw round-trip rate (`cold_start.raw_round_trips`:
  `ListWorkers` on one connection, the CLI row's reference) measured on the same emulator right
  before and right after (median). Afterwards Sōzu is left exactly as the CLI measurement left
  it (checked by a re-plan), which the benchmarks that follow rely on. `details.phases` splits
  the time at the moment kopf held the initial listing of every watched kind (the operator's
  `sozu_operator_initial_listing_timestamp_seconds`; None when kopf had not yet listed
  everything when Sōzu was programmed), and counts the reconcile passes finished when /metrics
  was read, right after Sōzu was programmed.
  Once every status is written and the operator idle, Sōzu is restarted under it
  (`sozu_restart`): back to its listeners, every command connection closed, as a restart of
  Sōzu's main process does. Timed from the restart until Sōzu answered the last mutation of
  the re-programming (the emulator's stamp), which must be exactly the cold start's additions;
  `ratio` over the same raw round-trip rate. No process starts: the same work as the `apply`
  row's.
- `single_change`: the operator started on what the CLI programmed (it adopts it: no mutation,
  checked) and in sync, then `CHANGES_PER_KIND` changes of each kind made through the API: a
  backend weight (merge patch of a `SozuCluster`), a route path (`SozuFrontend`), a certificate
  rotation (`SozuCertificate` with a new certificate and key). Each is timed from the PATCH's
  answer until Sōzu applied the resulting mutations, which must be exactly the CLI's minimal
  ones; "applied" is the Sōzu emulator's own time stamp of its answer to the last of them
  (`time.monotonic()`, one clock for every process), which the benchmark reads every 20 ms
  instead of polling hard and taking CPU from the operator. Between changes the benchmark
  waits until the operator wrote the resource's status and is idle, so that each change meets
  an operator in sync. The debounce is part of every latency and reported apart
  (`debounce_ms`).
- `resident_memory`: VmRSS of the operator process once in sync (Sōzu programmed, every status
  written, the process idle) with `resources`; VmHWM (its peak) next to it.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from bench.emulator import mutations_in
from bench.operator_run import (
    DEBOUNCE,
    KubeSide,
    OperatorProcess,
    expected_cold_start,
    in_sync,
    memory_kib,
    mutation_count,
    operator_command,
    percentiles_ms,
    profiled,
    until_programmed,
    verb_delta,
    wait_for,
)

if TYPE_CHECKING:
    from bench.emulator import EmulatorProcess
    from bench.single_change import Changer
    from bench.workload import Resource, Workload

PENDING: dict[str, Any] = {"status": "pending"}
RAW_REQUESTS = 2_000  # per reference measurement (median of 4 batches, as the CLI row's)
CHANGES_PER_KIND = 20  # x 3 kinds
CHANGE_OFFSET = 100_000  # the hook's n-th change is the Changer's (OFFSET + n)-th: fresh values
TARGET_RSS_MIB = 300.0
TARGET_RSS_RESOURCES = 10_000  # custom resources
TARGET_CHANGE_P50_MS = 200.0  # plus the debounce
TARGET_CHANGE_P99_MS = 1_000.0


def _mib(kib: int) -> float:
    return kib / 1024


async def _guarded(measure: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    try:
        return await measure()
    except Exception as error:  # one failed measurement never loses the whole run
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000],
                "traceback": traceback.format_exc()[-4000:]}


# --- cold start --------------------------------------------------------------------------------


async def cold_start(emulator: EmulatorProcess, workload: Workload) -> dict[str, Any]:
    return await _guarded(lambda: _cold_start(emulator, workload))


async def _cold_start(emulator: EmulatorProcess, workload: Workload) -> dict[str, Any]:
    from bench.cold_start import TARGET_RATIO, raw_round_trips
    from bench.common import median

    objects = workload.expected_objects()
    expected = expected_cold_start(objects)
    await emulator.reset()
    try:
        async with KubeSide(len(workload.resources)) as kube:
            load_seconds = await kube.load(workload.resources)
            async with emulator.client() as client:
                before = await raw_round_trips(client, RAW_REQUESTS)
            await emulator.command("reset_counts")
            operator = kube.operator(emulator.socket)
            emulator_cpu = emulator.cpu_seconds()
            await operator.start()
            try:
                async with profiled(operator, "cold_start"):
                    timing = await until_programmed(emulator, operator, expected=expected,
                                                    within=120 + expected / 200)
                operator_cpu = operator.cpu_seconds()
                emulator_cpu = emulator.cpu_seconds() - emulator_cpu
                memory = memory_kib(operator.pid)
                verbs = await emulator.verbs()
                phases = await _phases(operator, timing)
                sync_seconds = await in_sync(kube, operator, within=900 + expected / 50)
                async with profiled(operator, "sozu_restart"):
                    restart = await _sozu_restart(emulator, operator, expected)
                warnings = operator.warnings()
            finally:
                await operator.stop(grace=5.0)
            async with emulator.client() as client:
                after = await raw_round_trips(client, RAW_REQUESTS)
    finally:
        restored = await _leave_as_the_cli_did(emulator, workload)

    raw_rate = median([before["rate"], after["rate"]])
    restart["rate"] = expected / restart["seconds"]
    restart["ratio"] = restart["rate"] / raw_rate
    restart["met"] = restart["ratio"] >= TARGET_RATIO
    seconds = timing["seconds"]
    send_seconds = seconds - timing["first_mutation_seconds"]
    rate = expected / seconds
    return {
        "status": "measured",
        "requests": expected,
        "seconds": seconds,
        "rate": rate,
        "raw_round_trip_rate": raw_rate,
        "ratio": rate / raw_rate,
        "met": rate / raw_rate >= TARGET_RATIO,
        "sozu_restart": restart,
        "details": {
            "target_ratio": TARGET_RATIO,
            "start_to_in_sync_seconds": timing["seconds"] + sync_seconds,
            "reference": {"raw_round_trip_rate": raw_rate, "before": before["rate"],
                          "after": after["rate"], "requests_each": RAW_REQUESTS},
            "seconds_to_first_mutation": timing["first_mutation_seconds"],
            "first_to_last_mutation_seconds": send_seconds,
            "first_to_last_rate": expected / send_seconds if send_seconds > 0 else None,
            "phases": phases,
            "mutations_seen_by_emulator": timing["mutations"],
            "requests_by_verb": verb_delta(verbs, {}),
            "objects": objects,
            "cpu_seconds": {"operator": operator_cpu, "emulator": emulator_cpu},
            "rss_mib_when_programmed": _mib(memory.get("VmRSS", 0)),
            "operator_warnings": warnings[:5],
            "steps_to_restore_the_cli_state": restored,
            "setup": {"command": operator_command(), "resources": len(workload.resources),
                      "api_create_seconds": load_seconds},
        },
    }


async def _sozu_restart(emulator: EmulatorProcess, operator: OperatorProcess,
                        expected: int) -> dict[str, Any]:
    """Sōzu restarted under the running operator, in sync and idle: timed from the restart
    (Sōzu back to its listeners, every connection closed) until Sōzu answered the last of the
    `expected` mutations, by the emulator's own stamp (one monotonic clock for both
    processes). Nothing else may be sent: exactly the cold start's additions."""
    await emulator.command("reset_counts")
    restarted = time.monotonic()
    await emulator.restart()
    deadline = restarted + 120 + expected / 200
    first: float | None = None
    while True:
        await asyncio.sleep(0.02)  # gently: the operator needs the CPU
        counts = await emulator.command("counts")
        done = mutations_in(counts["verbs"])
        if done and first is None:
            first = time.monotonic()
        if done >= expected:
            break
        operator.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {expected} mutations after the restart:\n"
                               f"{operator.log_tail()}")
    await asyncio.sleep(0.5)  # anything more would be a defect
    verbs = await emulator.verbs()
    if mutations_in(verbs) != expected or any(verb.startswith("Remove") and count
                                              for verb, count in verbs.items()):
        raise AssertionError(f"after a restart the operator sent {verbs}, not {expected} adds")
    seconds = float(counts["last_mutation_answered"]) - restarted
    return {
        "requests": expected,
        "seconds": seconds,
        # Polled every 20 ms: up to that much late.
        "seconds_to_first_mutation": (first or restarted) - restarted,
        "requests_by_verb": verb_delta(verbs, {}),
    }


async def _phases(operator: OperatorProcess, timing: dict[str, Any]) -> dict[str, Any]:
    """Where the cold start went, from the operator's /metrics read right after Sōzu was
    programmed: seconds from the process start until kopf held the initial listing of every
    watched kind (start-up, LIST, per-object indexing), and from then until Sōzu was
    programmed (kopf's first watch events, the complete pass's read, validation, build, plan
    and sending); the reconcile passes finished when /metrics answered (a pass over a partial
    listing at start-up, usually; the complete pass goes on writing statuses)."""
    asked = time.perf_counter()
    try:
        samples = await operator.metrics()
    except Exception as error:  # the figure stands without its breakdown
        return {"error": f"{type(error).__name__}: {error}"}
    listed_at = samples.get("sozu_operator_initial_listing_timestamp_seconds", 0.0)
    listed = listed_at - operator.started_wall if listed_at else None
    return {
        "listing_indexed_seconds": listed,
        "listed_to_programmed_seconds": timing["seconds"] - listed if listed is not None
        else None,
        "first_mutation_seconds": timing["first_mutation_seconds"],
        "passes_finished": samples.get("sozu_operator_reconcile_duration_seconds_count"),
        "passes_seconds": samples.get("sozu_operator_reconcile_duration_seconds_sum"),
        "requests_counted": sum(value for name, value in samples.items()
                                if name.startswith("sozu_operator_requests_total")),
        "metrics_read_seconds": time.perf_counter() - asked,
    }


async def _leave_as_the_cli_did(emulator: EmulatorProcess, workload: Workload) -> int:
    """Re-plan the workload against Sōzu as the CLI would and apply what remains (nothing, when
    the operator programmed exactly what the CLI does): the benchmarks that follow the cold
    start (no-op resync, single changes) start from the CLI's state. Returns the steps sent."""
    from bench.workload import OWNER, SOZU_VERSION
    from sozu_operator.applier import apply_steps
    from sozu_operator.live import LiveReader
    from sozu_operator.reconcile.pipeline import reconcile

    async with emulator.client() as client:
        live = await LiveReader().read(client)
        steps = reconcile(workload.resources, live, owner=OWNER,
                          sozu_version=SOZU_VERSION).plan.steps
        if steps:
            outcome = await apply_steps(client, steps)
            if not outcome.ok:
                raise AssertionError(f"restoring the CLI's state failed: {outcome.failure}")
    await emulator.command("reset_counts")
    return len(steps)


# --- single change -----------------------------------------------------------------------------


async def single_change(emulator: EmulatorProcess, workload: Workload) -> dict[str, Any]:
    return await _guarded(lambda: _single_change(emulator, workload))


async def _single_change(emulator: EmulatorProcess, workload: Workload) -> dict[str, Any]:
    from bench.common import median
    from bench.single_change import EXPECTED, KINDS, Changer

    changer = Changer(workload)
    changer.count = dict.fromkeys(KINDS, CHANGE_OFFSET)
    for kind in KINDS:
        changer.prepare(kind, CHANGES_PER_KIND)
    async with KubeSide(len(workload.resources)) as kube:
        load_seconds = await kube.load(workload.resources)
        await emulator.command("reset_counts")
        operator = kube.operator(emulator.socket)
        await operator.start()
        try:
            sync_seconds = await in_sync(kube, operator, within=900)
            adoption_mutations = await mutation_count(emulator)
            latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
            writes: list[float] = []
            async with profiled(operator, "changes"):
                for kind in KINDS:
                    for _ in range(CHANGES_PER_KIND):
                        latency, write = await _one_change(
                            emulator, kube, operator, changer, kind, EXPECTED[kind])
                        latencies[kind].append(latency)
                        writes.append(write)
            memory = memory_kib(operator.pid)
            warnings = operator.warnings()
        finally:
            await operator.stop(grace=5.0)

    every = [value for kind in KINDS for value in latencies[kind]]
    summary = percentiles_ms(every)
    debounce_ms = DEBOUNCE * 1000
    return {
        "status": "measured",
        "changes": len(every),
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "debounce_ms": debounce_ms,
        "p50_minus_debounce_ms": summary["p50_ms"] - debounce_ms,
        "met": summary["p50_ms"] < TARGET_CHANGE_P50_MS + debounce_ms
        and summary["p99_ms"] < TARGET_CHANGE_P99_MS,
        "details": {
            "frontends": workload.frontends,
            "all": summary,
            "by_kind": {kind: percentiles_ms(latencies[kind]) for kind in KINDS},
            "latencies_ms_in_order": {kind: [round(value * 1000, 1) for value in latencies[kind]]
                                      for kind in KINDS},
            "api_write_p50_ms": median(writes) * 1000,
            "expected_requests": EXPECTED,
            "target": {"p50_ms": TARGET_CHANGE_P50_MS + debounce_ms,
                       "p99_ms": TARGET_CHANGE_P99_MS},
            "start_to_in_sync_seconds": sync_seconds,
            "mutations_on_adoption": adoption_mutations,
            "rss_mib_after_changes": _mib(memory.get("VmRSS", 0)),
            "operator_warnings": warnings[:5],
            "setup": {"command": operator_command(), "resources": len(workload.resources),
                      "api_create_seconds": load_seconds},
        },
    }


async def _one_change(emulator: EmulatorProcess, kube: KubeSide, operator: OperatorProcess,
                      changer: Changer, kind: str,
                      expected: dict[str, int]) -> tuple[float, float]:
    """One change through the API; returns (seconds from the PATCH's answer until Sōzu applied
    it, seconds the PATCH took)."""
    resources = changer.workload.resources
    before = list(resources)
    changer.apply(kind)
    changed = [new for old, new in zip(before, resources, strict=True) if old is not new]
    if len(changed) != 1:
        raise AssertionError(f"a {kind} change edited {len(changed)} resources")
    item = changed[0]
    meta = item["metadata"]
    wanted = sum(expected.values())
    verbs_before = await emulator.verbs()
    base = mutations_in(verbs_before)

    written = time.monotonic()
    answer = await kube.merge_patch(item["kind"], meta["namespace"], meta["name"],
                                    {"spec": item["spec"]})
    returned = time.monotonic()
    deadline = returned + 60
    while True:
        # Polled gently: the emulator stamps its answer to each mutation (same clock), so a
        # tight poll would only take CPU from the operator on a two-core machine.
        await asyncio.sleep(0.02)
        counts = await emulator.command("counts")
        verbs = counts["verbs"]
        if mutations_in(verbs) - base >= wanted:
            applied = float(counts["last_mutation_answered"])
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{kind} change of {meta['name']} not applied within 60 s:\n"
                               f"{operator.log_tail()}")
    delta = verb_delta(verbs, verbs_before)
    if delta != expected:
        raise AssertionError(f"{kind} change sent {delta}, expected {expected}")
    generation = int(answer["metadata"]["generation"])

    def written_back() -> bool:
        return kube.programmed(item["kind"], meta["namespace"], meta["name"], generation)

    await wait_for(written_back, within=300, what="the status of the change", interval=0.01)
    await operator.idle()
    return applied - returned, returned - written


# --- resident memory ---------------------------------------------------------------------------


def resident_memory(resources: Sequence[Resource]) -> dict[str, Any]:
    return asyncio.run(_guarded(lambda: _resident_memory(list(resources))))


async def _resident_memory(resources: list[Resource]) -> dict[str, Any]:
    from bench.emulator import EmulatorProcess

    objects = _objects_of(resources)
    expected = expected_cold_start(objects)
    async with EmulatorProcess() as emulator:
        await emulator.reset()
        async with KubeSide(len(resources)) as kube:
            await kube.load(resources)
            operator = kube.operator(emulator.socket)
            await operator.start()
            try:
                timing = await until_programmed(emulator, operator, expected=expected,
                                                within=120 + expected / 200)
                programmed = memory_kib(operator.pid)
                sync_seconds = await in_sync(kube, operator, within=1800)
                memory = memory_kib(operator.pid)
            finally:
                await operator.stop(grace=5.0)
    kinds: dict[str, int] = {}
    for item in resources:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    rss = _mib(memory.get("VmRSS", 0))
    return {
        "status": "measured",
        "resources": len(resources),
        "rss_mib": rss,
        "hwm_mib": _mib(memory.get("VmHWM", 0)),
        "met": rss < TARGET_RSS_MIB,
        "details": {
            "target_mib": TARGET_RSS_MIB,
            "by_kind": kinds,
            "rss_anon_mib": _mib(memory.get("RssAnon", 0)),
            "rss_mib_when_programmed": _mib(programmed.get("VmRSS", 0)),
            "programmed_seconds": timing["seconds"],
            "in_sync_seconds": timing["seconds"] + sync_seconds,
            "command": operator_command(),
        },
    }


def _objects_of(resources: Sequence[Resource]) -> dict[str, int]:
    """Sōzu objects the resources program, as `Workload.expected_objects` counts them."""
    counts = {"clusters": 0, "backends": 0, "frontends": 0, "certificates": 0}
    for item in resources:
        spec = item.get("spec") or {}
        if item["kind"] == "SozuCluster":
            counts["clusters"] += 1
            counts["backends"] += len(spec.get("backends") or [])
        elif item["kind"] == "SozuFrontend":
            counts["frontends"] += 1
        elif item["kind"] == "SozuCertificate":
            counts["certificates"] += len(spec.get("addresses") or [])
    return counts


# --- one hook at a chosen size -----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one hook at one size, without the rest of the benchmarks, and print its result:

        PYTHONPATH=operator .venv/bin/python -m bench.operator_hooks cold_start --frontends 10000

    (`SOZU_BENCH_PROFILE_OPERATOR=/tmp/prof` records the operator with py-spy, as in a full
    run.) The Sōzu emulator is started for the run; `cold_start` and `single_change` get the
    same workload as `bench/run.py` builds for that size."""
    import argparse
    import json

    from bench.emulator import EmulatorProcess
    from bench.workload import CertificatePool, Workload, groups_for

    hooks = ("cold_start", "single_change", "resident_memory")
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0] if main.__doc__
                                     else None)
    parser.add_argument("hook", choices=hooks)
    parser.add_argument("--frontends", type=int, default=10_000)
    args = parser.parse_args(argv)
    pool = CertificatePool()
    pool.warm(groups_for(args.frontends))
    workload = Workload.build(args.frontends, pool)
    if args.hook == "resident_memory":
        result = resident_memory(workload.resources)
    else:
        measure = cold_start if args.hook == "cold_start" else single_change

        async def run() -> dict[str, Any]:
            async with EmulatorProcess() as emulator:
                if args.hook == "single_change":  # it starts from what the CLI programmed
                    await emulator.reset()
                    await _leave_as_the_cli_did(emulator, workload)
                return await measure(emulator, workload)

        result = asyncio.run(run())
    print(json.dumps(result, indent=2, default=str))
    return 0 if result.get("status") == "measured" else 1


if __name__ == "__main__":
    raise SystemExit(main())
