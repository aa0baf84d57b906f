"""The operator's reconcile pass in the benchmark's process: `Reconciler.pass_once`, the code
the running operator runs after each debounce and at each resync, fed from an in-memory index
instead of kopf's, and with no Kubernetes API (no status writes, no Events).

It measures what a pass costs the operator itself (snapshot, hash-guided read, validation of
changed resources, build, plan, send); the running-operator figures (`operator_hooks.py`) add
kopf, the API and status writes on top.
"""

from __future__ import annotations

from typing import Any

from bench.emulator import EmulatorProcess
from bench.workload import OWNER, SOZU_VERSION, Resource, Workload
from sozu_operator.kube.reconciler import Inputs, OperatorConfig, PassOutcome, Reconciler

CREATED = "2026-01-01T00:00:00Z"


class IndexedWorkload:
    """The workload as an informer's index holds it: each object with the uid, generation and
    resourceVersion an API server gives it. An edited resource (a new dict in the workload)
    gets a new generation and resourceVersion; the others keep the very same body."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._bodies: dict[int, tuple[Resource, dict[str, Any]]] = {}
        self._version = 0

    def bodies(self) -> list[dict[str, Any]]:
        kept: dict[int, tuple[Resource, dict[str, Any]]] = {}
        found = []
        for item in self.workload.resources:
            entry = self._bodies.get(id(item))
            if entry is None or entry[0] is not item:
                self._version += 1
                meta = item["metadata"]
                body = {**item, "metadata": {
                    **meta,
                    "uid": f"{item['kind']}/{meta['namespace']}/{meta['name']}",
                    "generation": self._version,
                    "resourceVersion": str(self._version),
                    "creationTimestamp": CREATED,
                }}
                entry = (item, body)
            kept[id(item)] = entry
            found.append(entry[1])
        self._bodies = kept
        return found


def reconciler(emulator: EmulatorProcess, indexed: IndexedWorkload) -> Reconciler:
    """A reconciler as `sozu-operator run` configures it (defaults), indexes already listed."""
    config = OperatorConfig(socket=emulator.socket, pod_name="bench", owner=OWNER,
                            sozu_version=SOZU_VERSION, timeout=120.0)
    found = Reconciler(config, inputs=Inputs(resources=indexed.bodies))
    found.indexed.set()
    return found


async def resync_pass(found: Reconciler) -> PassOutcome:
    """One pass as the resync timer starts it (a full read of Sōzu)."""
    found.request_full_read()
    return await found.pass_once()
