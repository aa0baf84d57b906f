"""Figure 5: requests sent on a recorded churn trace, our planner against Sōzu's own
`ConfigState::diff` (the count model in `reconcile/upstream_diff.py`) on the same pairs.

The trace is generated from a seed (so it is the same in every run, and recorded in the JSON)
over a programmed base workload. Each event edits resources the way Kubernetes would:

- rollout: every pod of a cluster replaced (new addresses, so new backend ids);
- scale-up / scale-down: one pod more / less;
- weight-shift: backend weights changed in place (a canary shift);
- cert-rotation: a certificate renewed (same names, new key and fingerprint);
- route-move: a route pointed at another cluster of its namespace.

After each event our plan is applied to the emulator, the live state read back (hash-guided),
and the plan of the same desired state must then be empty (convergence) and the simulator
must find no traffic-safety violation. Targets: never more requests than upstream on any
event, strictly fewer on weight shifts and certificate rotations.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from bench.common import Json
from bench.emulator import EmulatorProcess
from bench.workload import (
    CLUSTERS_PER_GROUP,
    NAMESPACES,
    OWNER,
    SOZU_VERSION,
    ParseCache,
    Workload,
    certificate_resource,
    cluster_resource,
)
from sozu_operator.applier import apply_steps
from sozu_operator.live import LiveReader
from sozu_operator.reconcile.pipeline import reconcile
from sozu_operator.reconcile.simulate import simulate
from sozu_operator.reconcile.upstream_diff import upstream_diff

EVENT_WEIGHTS = {
    "rollout": 30,
    "scale-up": 15,
    "scale-down": 15,
    "weight-shift": 15,
    "cert-rotation": 10,
    "route-move": 15,
}
STRICTLY_FEWER = ("weight-shift", "cert-rotation")
MAX_PODS = 8


@dataclass
class _Clusters:
    """What the trace varies per cluster; resources are rebuilt from it."""

    pods: dict[int, int] = field(default_factory=dict)
    generation: dict[int, int] = field(default_factory=dict)
    weights: dict[int, list[int | None]] = field(default_factory=dict)


class Trace:
    def __init__(self, workload: Workload, seed: int) -> None:
        self.workload = workload
        self.random = random.Random(seed)
        self.clusters = _Clusters()
        self.certificates: dict[int, int] = {}

    def _cluster(self, i: int) -> None:
        c = self.clusters
        self.workload.replace(
            cluster_resource(
                i,
                generation=c.generation.get(i, 0),
                pods=c.pods.get(i, 3),
                weights=c.weights.get(i),
            )
        )

    def next_event(self) -> Json:
        kinds, weights = zip(*EVENT_WEIGHTS.items(), strict=True)
        kind = self.random.choices(kinds, weights)[0]
        w, c, rnd = self.workload, self.clusters, self.random
        i = rnd.randrange(w.clusters)
        event: Json = {"kind": kind}
        if kind == "rollout":
            c.generation[i] = c.generation.get(i, 0) + 1
            event["cluster"] = i
        elif kind == "scale-up":
            if c.pods.get(i, 3) >= MAX_PODS:
                return self.next_event()
            c.pods[i] = c.pods.get(i, 3) + 1
            event["cluster"] = i
        elif kind == "scale-down":
            if c.pods.get(i, 3) <= 1:
                return self.next_event()
            c.pods[i] = c.pods.get(i, 3) - 1
            event["cluster"] = i
        elif kind == "weight-shift":
            pods, before = c.pods.get(i, 3), c.weights.get(i) or []
            current = [before[j] if j < len(before) else None for j in range(pods)]
            shifted = current
            while shifted == current:  # a shift always changes something
                shifted = [rnd.randrange(1, 101) for _ in range(pods)]
            c.weights[i] = shifted
            event["cluster"] = i
        elif kind == "cert-rotation":
            group = rnd.randrange(w.groups)
            self.certificates[group] = self.certificates.get(group, 0) + 1
            w.replace(certificate_resource(group, w.pool, self.certificates[group]))
            event["group"] = group
            return event
        else:  # route-move: to another cluster of the same namespace
            route = rnd.randrange(5)
            same_namespace = range(i % NAMESPACES, w.clusters, NAMESPACES)
            target = rnd.choice([j for j in same_namespace if j != i] or [i])
            front = w.edit_frontend(i, route)
            front["spec"]["cluster"] = f"c{target}"
            event.update(cluster=i, route=route, to=target)
            return event
        self._cluster(i)
        return event


async def run(emulator: EmulatorProcess, workload: Workload, *, events: int, seed: int) -> Json:
    await emulator.reset()
    cache = ParseCache()
    reader = LiveReader()
    trace = Trace(workload, seed)
    recorded: list[Json] = []
    totals: dict[str, Counter[str]] = {}
    violations = 0
    gaps = 0
    async with emulator.client() as client:
        live = await reader.read(client)
        first = reconcile(cache.objects(workload.resources), live, owner=OWNER,
                          sozu_version=SOZU_VERSION)
        if not (await apply_steps(client, first.plan.steps)).ok:
            raise AssertionError("could not program the churn base workload")
        live = await reader.read(client)
        for _ in range(events):
            event = trace.next_event()
            result = reconcile(cache.objects(workload.resources), live, owner=OWNER,
                               sozu_version=SOZU_VERSION)
            if result.build.problems or result.plan.problems:
                raise AssertionError(f"churn event {event} does not plan cleanly")
            ours = len(result.plan.steps)
            theirs = len(upstream_diff(live, result.desired))
            report = simulate(result.plan, live, sozu_version=SOZU_VERSION)
            violations += len(report.violations)
            gaps += len(result.plan.gaps)
            outcome = await apply_steps(client, result.plan.steps)
            if not outcome.ok:
                raise AssertionError(f"churn event {event} failed: {outcome.failure}")
            live = await reader.read(client)
            again = reconcile(cache.objects(workload.resources), live, owner=OWNER,
                              sozu_version=SOZU_VERSION)
            if not again.plan.is_empty:
                raise AssertionError(f"churn event {event} did not converge")
            event.update(ours=ours, upstream=theirs, verbs=result.plan.counts_by_verb())
            recorded.append(event)
            total = totals.setdefault(event["kind"], Counter())
            total["events"] += 1
            total["ours"] += ours
            total["upstream"] += theirs
            total["more"] += ours > theirs
            total["fewer"] += ours < theirs
    by_kind: dict[str, Json] = {}
    for kind in EVENT_WEIGHTS:
        total = totals.get(kind, Counter())
        by_kind[kind] = {
            "events": total["events"],
            "ours": total["ours"],
            "upstream": total["upstream"],
            "ratio": total["ours"] / total["upstream"] if total["upstream"] else None,
            "events_with_more": total["more"],
            "events_with_fewer": total["fewer"],
            "strictly_fewer_required": kind in STRICTLY_FEWER,
        }
    ours_total = sum(e["ours"] for e in recorded)
    upstream_total = sum(e["upstream"] for e in recorded)
    never_more = all(e["ours"] <= e["upstream"] for e in recorded)
    strict = all(
        e["ours"] < e["upstream"] for e in recorded if e["kind"] in STRICTLY_FEWER
    )
    return {
        "base_frontends": workload.frontends,
        "clusters": workload.clusters,
        "clusters_per_certificate": CLUSTERS_PER_GROUP,
        "seed": seed,
        "events": len(recorded),
        "ours": ours_total,
        "upstream": upstream_total,
        "ratio": ours_total / upstream_total if upstream_total else None,
        "by_kind": by_kind,
        "never_more": never_more,
        "strictly_fewer_where_required": strict,
        "met": never_more and strict,
        "simulator_violations": violations,
        "flagged_gaps": gaps,
        "trace": recorded,
    }
