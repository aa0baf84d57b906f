"""Figure 4: planning cost at N frontends, each size in a fresh process (so one size's heap
does not slow the next one's garbage collector).

CPU seconds (`time.process_time`, median of repeats, with the share spent in the cyclic GC)
and peak traced memory (`tracemalloc`, in a separate pass: tracing slows everything down):

- build: `build_desired` from raw resource dicts (validation included, as the CLI does it)
  and from already validated resources (what a long-running process re-does on a resync);
- plan cold: desired state against a Sōzu with listeners only (the cold start's plan);
- plan no-op: desired state against the same state served (the resync's plan);
- plan one change: one backend weight changed;
- the three plans again with the collector's first threshold raised (`gc.set_threshold(50_000,
  20, 100)`), as every `sozu-operator` command sets it at start: the figure the summary judges
  against the target (the default thresholds' figure stands next to it).

Reference: Sōzu's own `ConfigState::diff` (the count model in `reconcile/upstream_diff.py`)
run on the same pairs of states: a plain diff that neither orders, checks ownership nor
writes summaries. Peak memory is also compared with the size of the desired state itself.

Run as `python -m bench.planning --frontends N` it prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import resource
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # run as a script or with -m from anywhere
    sys.path[:0] = [str(_REPO), str(_REPO / "operator")]

from bench import operator_hooks  # noqa: E402
from bench.common import OPERATOR_SKIPPED, Json, median, operator_skipped, timed  # noqa: E402
from bench.workload import (  # noqa: E402
    OWNER,
    SOZU_VERSION,
    CertificatePool,
    ParseCache,
    Resource,
    Workload,
    listeners_state,
)
from sozu_operator.reconcile.desired import build_desired  # noqa: E402
from sozu_operator.reconcile.planner import plan  # noqa: E402
from sozu_operator.reconcile.proxystate import ProxyState  # noqa: E402
from sozu_operator.reconcile.upstream_diff import upstream_diff  # noqa: E402

TARGET_CPU_SECONDS = 1.0  # plan of 10k clusters + 50k frontends
GC_THRESHOLDS = (50_000, 20, 100)


def _cpu(repeats: int, work: Callable[[], object]) -> Json:
    cpus, gcs, rest = [], [], []
    for _ in range(repeats):
        with timed() as t:
            work()
        cpus.append(t.cpu)
        gcs.append(t.gc)
        rest.append(max(t.cpu - t.gc, 0.0))
    return {"cpu": median(cpus), "gc": median(gcs), "cpu_minus_gc": median(rest), "all": cpus}


def _peak(work: Callable[[], object]) -> int:
    """Peak bytes traced while `work` runs, above what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        kept = work()
        _, peak = tracemalloc.get_traced_memory()
        del kept
    finally:
        tracemalloc.stop()
    return peak - base


def measure(frontends: int, repeats: int) -> Json:
    pool = CertificatePool()
    workload = Workload.build(frontends, pool)
    listeners = listeners_state()
    bodies = workload.resources
    parsed = ParseCache().objects(bodies)

    def build_raw() -> Any:
        return build_desired(bodies, owner=OWNER, sozu_version=SOZU_VERSION,
                             live_listeners=listeners.listeners)

    def build_parsed() -> Any:
        return build_desired(parsed, owner=OWNER, sozu_version=SOZU_VERSION,
                             live_listeners=listeners.listeners)

    desired = build_parsed().state
    # What Sōzu serves, as the reader returns it: equal objects, but not the same ones (a
    # comparison of an object with itself would cost nothing).
    served = dataclasses.replace(build_parsed().state, listeners=listeners.listeners)
    changed_cluster = workload.edit_cluster(0)
    changed_cluster["spec"]["backends"][0]["weight"] = 42
    changed = build_desired(ParseCache().objects(workload.resources), owner=OWNER,
                            sozu_version=SOZU_VERSION, live_listeners=listeners.listeners).state

    pairs: dict[str, tuple[ProxyState, ProxyState]] = {
        "plan_cold": (desired, listeners),
        "plan_noop": (desired, served),
        "plan_one_change": (changed, served),
    }
    result: Json = {"frontends": frontends, "clusters": workload.clusters}
    build_repeats = 1 if frontends > 20_000 else repeats
    result["build_raw"] = _cpu(build_repeats, build_raw)
    result["build_parsed"] = _cpu(repeats, build_parsed)
    for name, (want, have) in pairs.items():
        steps = len(plan(want, have, owner=OWNER).steps)
        upstream = len(upstream_diff(have, want))
        ours = _cpu(repeats, functools.partial(plan, want, have, owner=OWNER))
        reference = _cpu(repeats, functools.partial(upstream_diff, have, want))
        result[name] = {
            **ours,
            "steps": steps,
            "reference_cpu": reference["cpu"],
            "reference_requests": upstream,
            "ratio": ours["cpu"] / reference["cpu"] if reference["cpu"] else None,
        }
    # The same plans with the collector's first threshold raised (see resync.GC_THRESHOLDS).
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        for name, (want, have) in pairs.items():
            relaxed = _cpu(repeats, functools.partial(plan, want, have, owner=OWNER))
            result[name]["cpu_gc_relaxed"] = relaxed["cpu"]
    finally:
        gc.set_threshold(*thresholds)
    # Memory, traced in a second pass.
    result["desired_state_bytes"] = _peak(lambda: build_parsed().state)
    for name, (want, have) in pairs.items():
        result[name]["peak_bytes"] = _peak(functools.partial(plan, want, have, owner=OWNER))
        result[name]["reference_peak_bytes"] = _peak(functools.partial(upstream_diff, have, want))
    result["build_raw"]["peak_bytes"] = _peak(build_raw)
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["target_cpu_seconds"] = TARGET_CPU_SECONDS
    result["operator_resident_memory"] = (
        OPERATOR_SKIPPED if operator_skipped() else operator_hooks.resident_memory(bodies)
    )
    if frontends == 10_000 and not operator_skipped():
        # The target speaks of 10k custom resources; the 10k-frontend workload has 12.1k.
        result["operator_resident_memory"]["at_target_size"] = operator_hooks.resident_memory(
            _custom_resources(operator_hooks.TARGET_RSS_RESOURCES, pool)
        )
    return result


def _custom_resources(count: int, pool: CertificatePool) -> list[Resource]:
    """The largest workload of at most `count` custom resources (clusters, frontends and
    certificates in the usual proportions)."""
    frontends = count
    while len(workload := Workload.build(frontends, pool).resources) > count:
        frontends = frontends * count // len(workload)
    return list(workload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontends", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.frontends, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
