"""Prometheus metrics of one operator process (a registry per reconciler, so that tests can run
several operators in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.reconcile_seconds = Histogram(
            "sozu_operator_reconcile_duration_seconds",
            "Time of one reconcile pass: read live state, plan, apply, write status.",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.requests = Counter(
            "sozu_operator_requests", "Mutating requests sent to Sōzu, by verb.", ["verb"],
            registry=r,
        )
        self.request_failures = Counter(
            "sozu_operator_request_failures", "Requests Sōzu answered with FAILURE, by verb.",
            ["verb"], registry=r,
        )
        self.reconcile_errors = Counter(
            "sozu_operator_reconcile_errors",
            "Passes that could not complete (socket, API or apply errors).", registry=r,
        )
        self.drift_repairs = Counter(
            "sozu_operator_drift_repairs",
            "Passes that found live state differing from desired with no resource change "
            "(hand edits, Sōzu restarts) and repaired it.", registry=r,
        )
        self.sozu_restarts = Counter(
            "sozu_operator_sozu_restarts",
            "Sōzu restarts noticed (its command connection closed, or new worker processes).",
            registry=r,
        )
        self.resources = Gauge(
            "sozu_operator_resources", "Watched resources by kind and state.", ["kind", "state"],
            registry=r,
        )
        self.certificate_expiry_days = Gauge(
            "sozu_operator_certificate_expiry_days",
            "Days until a served certificate expires.", ["namespace", "name"], registry=r,
        )
        self.last_success = Gauge(
            "sozu_operator_last_success_timestamp_seconds",
            "Unix time of the last pass that left Sōzu as desired.", registry=r,
        )
        self.initial_listing = Gauge(
            "sozu_operator_initial_listing_timestamp_seconds",
            "Unix time at which kopf held the initial listing of every watched kind (its first "
            "watch event; 0 before that). Minus the process start: what listing and indexing "
            "everything took before the first complete pass could start.", registry=r,
        )
        self.guard_blocked = Gauge(
            "sozu_operator_guard_blocked",
            "1 while the mass-deletion guard refuses the current plan.", registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
