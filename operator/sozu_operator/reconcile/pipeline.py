"""resources → desired state → (keep what failed resources served) → plan.

The one composition of the pure core that both edges use: the CLI with resources from YAML
files and live state from a socket or state file, the operator with resources from its indexes.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sozu_operator.reconcile.desired import (
    BuildCache,
    DesiredBuild,
    SecretResolver,
    ServiceResolver,
    build_desired,
)
from sozu_operator.reconcile.incremental import Baseline, plan_changes
from sozu_operator.reconcile.planner import Plan, PlanOptions
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.reconcile.retain import FailedResource, Retention, retain_failed
from sozu_operator.resources.validate import resource_ref


@dataclass(frozen=True)
class Reconciliation:
    build: DesiredBuild
    retention: Retention
    plan: Plan
    planned_objects: int = 0  # desired and live objects the planner looked at
    scoped: bool = False  # only what moved since the baseline was planned

    @property
    def desired(self) -> ProxyState:
        return self.retention.state


def _failed_resources(build: DesiredBuild, resources: list[object]) -> list[FailedResource]:
    accepted = set(build.accepted)
    failed_refs = {p.ref for p in build.problems if p.ref not in accepted} | set(build.unresolved)
    cluster_ids: dict[object, str] = {}
    for obj in resources:
        if isinstance(obj, Mapping):
            spec: Any = obj.get("spec")
            if isinstance(spec, Mapping) and isinstance(spec.get("clusterId"), str):
                cluster_ids[resource_ref(obj)] = spec["clusterId"]
    return [FailedResource(ref, cluster_ids.get(ref)) for ref in sorted(failed_refs)]


def reconcile(
    resources: Iterable[object],
    live: ProxyState,
    *,
    owner: str,
    sozu_version: int,
    options: PlanOptions | None = None,
    resolve_service: ServiceResolver | None = None,
    resolve_secret: SecretResolver | None = None,
    class_name: str | None = None,
    default_class: bool = False,
    now: datetime.datetime | None = None,
    cache: BuildCache | None = None,
    baseline: Baseline | None = None,
) -> Reconciliation:
    """A long-running caller keeps `cache` across calls and passes the `baseline` of its last
    clean pass: the result is the same, computed at the cost of what changed."""
    objects = list(resources)
    build = build_desired(
        objects,
        owner=owner,
        sozu_version=sozu_version,
        live_listeners=live.listeners,
        resolve_service=resolve_service,
        resolve_secret=resolve_secret,
        class_name=class_name,
        default_class=default_class,
        now=now,
        cache=cache,
    )
    retention = retain_failed(build.state, live, _failed_resources(build, objects), owner=owner)
    planned = plan_changes(
        retention.state, live, owner=owner, options=options or PlanOptions(), baseline=baseline
    )
    return Reconciliation(build, retention, planned.plan, planned.objects, planned.scoped)
