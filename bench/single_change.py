"""Figure 3: one change on a programmed Sōzu (10k routes in the full run): the latency from the
changed resource to "programmed" (last request acknowledged), p50 and p99.

Three kinds of change, each giving a minimal plan, checked:

- backend: a weight set on one backend → 1 `AddBackend` (an upsert);
- route: one route's path changed → `AddHttpFrontend` then `RemoveHttpFrontend`;
- certificate: one certificate rotated (same names, new key) → 1 `ReplaceCertificate`.

Two client paths, side by side with the bare send of the same requests (the reference: what
the change costs on the wire alone):

- CLI (`sozu-operator apply`): a fresh `LiveReader` (every cluster queried) and every
  resource validated again, each time;
- kept state: one `LiveReader` kept across changes (hash-guided re-reads) and validated
  resources kept (`ParseCache`), then a whole reconcile and plan: what a long-running process
  does without the operator's incremental pass;
- operator pass: the operator's own `Reconciler.pass_once` (`operator_pass.py`): objects kept
  per resource, only what moved planned, outcomes kept per resource; no API, so no status
  write. Its latency runs from the start of the pass until its plan was sent (the outcomes
  it then makes for statuses and Events come after "programmed": `whole_pass_p50_ms`). The
  running operator, kopf and API included, is the hook `operator_hooks.single_change`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import operator_hooks, operator_pass
from bench.common import (
    OPERATOR_SKIPPED,
    Json,
    as_the_cli_runs,
    median,
    operator_skipped,
    percentile,
)
from bench.emulator import MUTATING_VERBS, EmulatorProcess
from bench.workload import (
    OWNER,
    SOZU_VERSION,
    ParseCache,
    Workload,
    certificate_resource,
)
from sozu_operator.applier import apply_steps
from sozu_operator.kube.reconciler import Reconciler
from sozu_operator.live import LiveReader
from sozu_operator.reconcile.pipeline import reconcile
from sozu_operator.wire import SozuClient

KINDS = ("backend", "route", "certificate")
EXPECTED = {
    "backend": {"AddBackend": 1},
    "route": {"AddHttpFrontend": 1, "RemoveHttpFrontend": 1},
    "certificate": {"ReplaceCertificate": 1},
}


class Changer:
    """Deterministic changes: the n-th change of a kind touches a different object."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.count = dict.fromkeys(KINDS, 0)

    def prepare(self, kind: str, changes: int) -> None:
        """Generate the certificates rotations will need, outside any timed section."""
        if kind == "certificate":
            for n in range(self.count[kind], self.count[kind] + changes):
                group, generation = self._rotation(n)
                self.workload.pool.pem(group, generation)

    def _rotation(self, n: int) -> tuple[int, int]:
        groups = self.workload.groups
        return n % groups, n // groups + 1

    def apply(self, kind: str) -> None:
        n = self.count[kind]
        self.count[kind] += 1
        w = self.workload
        stride = max(1, w.clusters // 97)
        i = (n * stride + n // 97) % w.clusters
        if kind == "backend":
            cluster = w.edit_cluster(i)
            backend: dict[str, Any] = cluster["spec"]["backends"][0]
            backend["weight"] = 10 + (int(backend.get("weight", 0)) + 7) % 90
        elif kind == "route":
            front = w.edit_frontend(i, 1)
            front["spec"]["path"]["value"] = f"/api-{n}/"
        else:
            group, generation = self._rotation(n)
            w.replace(certificate_resource(group, w.pool, generation))


async def _change(
    client: SozuClient, objects: Callable[[], list[object]], reader: LiveReader
) -> tuple[float, float, dict[str, int]]:
    started = time.perf_counter()
    live = await reader.read(client)
    result = reconcile(objects(), live, owner=OWNER, sozu_version=SOZU_VERSION)
    sent = time.perf_counter()
    outcome = await apply_steps(client, result.plan.steps)
    done = time.perf_counter()
    if not outcome.ok:
        raise AssertionError(f"apply failed: {outcome.failure}")
    return done - started, done - sent, result.plan.counts_by_verb()


def _summary(latencies: list[float], sends: list[float]) -> Json:
    return {
        "changes": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "send_p50_ms": percentile(sends, 50) * 1000,
        "send_p99_ms": percentile(sends, 99) * 1000,
        "ratio_p50": median(latencies) / median(sends),
    }


async def _pass_change(found: Reconciler, emulator: EmulatorProcess, passes: list[float]
                       ) -> tuple[float, float, dict[str, int]]:
    """The latency of a change is its pass's time until Sōzu was programmed; the whole pass
    (statuses and Events made after that) goes to `passes`."""
    await emulator.command("reset_counts")
    started = time.perf_counter()
    outcome = await found.pass_once()
    passes.append(time.perf_counter() - started)
    if outcome.failed:
        raise AssertionError(f"pass failed: {outcome.failed}")
    verbs = {v: n for v, n in (await emulator.verbs()).items() if v in MUTATING_VERBS}
    return outcome.programmed_seconds, outcome.send_seconds, dict(sorted(verbs.items()))


async def run(emulator: EmulatorProcess, workload: Workload, *, kept_changes: int,
              cli_changes: int) -> Json:
    """`kept_changes` and `cli_changes` are per kind."""
    changer = Changer(workload)
    for kind in KINDS:
        changer.prepare(kind, kept_changes + cli_changes)
    cache = ParseCache()
    kept_reader = LiveReader()
    paths: dict[str, dict[str, Json]] = {"pass": {}, "kept": {}, "cli": {}}
    all_latencies: dict[str, list[float]] = {path: [] for path in paths}
    all_sends: dict[str, list[float]] = {path: [] for path in paths}
    found = operator_pass.reconciler(emulator, operator_pass.IndexedWorkload(workload))
    whole_passes: list[float] = []
    async with emulator.client() as client:
        await kept_reader.read(client)
        cache.objects(workload.resources)
        with as_the_cli_runs():
            await found.pass_once()  # the operator's first pass: nothing to send
        for kind in KINDS:
            for path, changes in (("pass", kept_changes), ("kept", kept_changes),
                                  ("cli", cli_changes)):
                latencies: list[float] = []
                sends: list[float] = []
                for _ in range(changes):
                    changer.apply(kind)
                    if path == "pass":
                        with as_the_cli_runs():
                            latency, send, verbs = await _pass_change(found, emulator,
                                                                      whole_passes)
                    elif path == "kept":
                        latency, send, verbs = await _change(
                            client, lambda: cache.objects(workload.resources), kept_reader
                        )
                    else:
                        latency, send, verbs = await _change(
                            client, lambda: list(workload.resources), LiveReader()
                        )
                    if verbs != EXPECTED[kind]:
                        raise AssertionError(f"{kind} change planned {verbs}")
                    latencies.append(latency)
                    sends.append(send)
                paths[path][kind] = _summary(latencies, sends)
                all_latencies[path] += latencies
                all_sends[path] += sends
    await found.close()
    for path in paths:
        paths[path]["all"] = _summary(all_latencies[path], all_sends[path])
    paths["pass"]["all"]["whole_pass_p50_ms"] = percentile(whole_passes, 50) * 1000
    paths["pass"]["all"]["whole_pass_p99_ms"] = percentile(whole_passes, 99) * 1000
    return {
        "frontends": workload.frontends,
        "clusters": workload.clusters,
        "expected_requests": EXPECTED,
        "paths": paths,
        "operator": OPERATOR_SKIPPED if operator_skipped()
        else await operator_hooks.single_change(emulator, workload),
    }
