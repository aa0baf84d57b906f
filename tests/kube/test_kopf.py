"""The real kopf runtime (KopfRunner: kopf's CLI in a thread) against the emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from tests.kube.kube_support import WIDGET_CRD, widget

from sozu_operator.emulators.kube import KubeEmulator

GROUP, VERSION, PLURAL = "example.sozu.io", "v1", "widgets"
NAMESPACE = "ns1"
WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
MERGE = {"Content-Type": "application/merge-patch+json"}

# What an RBAC Role for this operator would grant; kopf must stay inside it.
GRANTED = {
    ("list", GROUP, PLURAL, ""), ("watch", GROUP, PLURAL, ""),
    ("patch", GROUP, PLURAL, ""), ("patch", GROUP, PLURAL, "status"),
    ("list", "", "namespaces", ""), ("watch", "", "namespaces", ""),
    ("list", "apiextensions.k8s.io", "customresourcedefinitions", ""),
    ("watch", "apiextensions.k8s.io", "customresourcedefinitions", ""),
    ("create", "", "events", ""),
}


class Operator:
    """A kopf operator with its own registry: an index, an event handler, a create handler."""

    def __init__(self) -> None:
        self.registry = kopf.OperatorRegistry()
        self.events: list[tuple[str | None, str, Any]] = []
        self.index_snapshots: list[dict[str, Any]] = []
        registry = self.registry

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.networking.error_backoffs = [0.1, 0.2, 0.5]
            settings.watching.reconnect_backoff = 0.1

        # A bare OperatorRegistry has no login handlers (kopf's default registry has them).
        @kopf.on.login(registry=registry)
        def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
            return kopf.login_with_kubeconfig(**kwargs)

        @kopf.index(GROUP, VERSION, PLURAL, id="sizes", registry=registry)
        async def sizes(name: str, spec: kopf.Spec, **_: Any) -> dict[str, Any]:
            return {name: spec.get("size")}

        @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
        async def seen(type: str | None, name: str, spec: kopf.Spec, sizes: kopf.Index[str, Any],
                       **_: Any) -> None:
            self.events.append((type, name, spec.get("size")))
            self.index_snapshots.append({key: list(store) for key, store in sizes.items()})

        @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
        async def created(name: str, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
            kopf.info(body, reason="Created", message=f"widget {name} created")
            patch.status["phase"] = "Created"

    def saw(self, event_type: str | None, name: str, size: Any = ...) -> bool:
        return any(t == event_type and n == name and (size is ... or s == size)
                   for t, n, s in self.events)


async def eventually(condition: Callable[[], bool], what: str, wait: float = 8.0) -> None:
    deadline = time.monotonic() + wait
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


async def patch_widget(emulator: KubeEmulator, name: str, body: dict[str, Any]) -> None:
    async with emulator.session() as session, session.patch(
            f"{WIDGETS}/{name}", json=body, headers=MERGE) as response:
        assert response.status == 200, await response.text()


@pytest.fixture
async def cluster(emulator: KubeEmulator, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> KubeEmulator:
    await emulator.create({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": NAMESPACE}})
    await emulator.create(WIDGET_CRD)
    monkeypatch.setenv("KUBECONFIG", str(emulator.write_kubeconfig(tmp_path / "kubeconfig")))
    return emulator


async def run_operator(operator: Operator) -> KopfRunner:
    runner = KopfRunner(["run", "--standalone", "-n", NAMESPACE], registry=operator.registry,
                        timeout=15)
    runner.__enter__()  # kopf runs in its own thread and loop; ours keeps serving the API
    return runner


async def stop_operator(runner: KopfRunner) -> None:
    await asyncio.to_thread(runner.__exit__, None, None, None)
    assert runner.exit_code == 0, runner.output


async def test_kopf_sees_changes_and_writes_status(cluster: KubeEmulator) -> None:
    operator = Operator()
    runner = await run_operator(operator)
    try:
        await eventually(lambda: cluster.open_watches >= 3, "kopf's watches (crds, ns, widgets)")
        await cluster.create({**widget("w1"), "metadata": {"name": "w1", "namespace": NAMESPACE}})
        await eventually(lambda: operator.saw(None, "w1") or operator.saw("ADDED", "w1"),
                         "the new widget")

        def phase() -> Any:
            obj = cluster.get_object(f"{GROUP}/{VERSION}", "Widget", "w1", NAMESPACE) or {}
            return (obj.get("status") or {}).get("phase")

        await eventually(lambda: phase() == "Created", "the on.create status patch")
        stored = cluster.get_object(f"{GROUP}/{VERSION}", "Widget", "w1", NAMESPACE)
        assert stored is not None
        assert stored["metadata"]["generation"] == 1  # status writes never bump it
        status_patches = [r for r in cluster.requests
                          if r.method == "PATCH" and r.subresource == "status"]
        assert status_patches
        assert all(r.content_type == "application/merge-patch+json" for r in status_patches)
        assert any((r.json or {}).get("status", {}).get("phase") == "Created"
                   for r in status_patches)
        main_patches = [r for r in cluster.requests
                        if r.method == "PATCH" and r.subresource is None]
        assert all("phase" not in ((r.json or {}).get("status") or {}) for r in main_patches)

        await patch_widget(cluster, "w1", {"spec": {"size": 7}})
        await eventually(lambda: operator.saw("MODIFIED", "w1", 7), "the spec update")
        assert operator.index_snapshots[-1] == {"w1": [7]}
        async with cluster.session() as session, session.delete(f"{WIDGETS}/w1") as response:
            assert response.status == 200
        await eventually(lambda: operator.saw("DELETED", "w1"), "the deletion")
        # kopf.info() becomes a core v1 Event, posted in the background.
        await eventually(lambda: any(r.method == "POST" and r.resource == "events"
                                     and r.status == 201 for r in cluster.requests),
                         "an Event posted by kopf")
    finally:
        await stop_operator(runner)
    assert cluster.recorded_permissions("kopf") - GRANTED == set()
    assert ("patch", GROUP, PLURAL, "status") in cluster.recorded_permissions("kopf")


async def test_kopf_keeps_up_through_faults(cluster: KubeEmulator) -> None:
    operator = Operator()
    await cluster.create({**widget("w1", size=1),
                          "metadata": {"name": "w1", "namespace": NAMESPACE}})
    runner = await run_operator(operator)
    try:
        await eventually(lambda: operator.saw(None, "w1", 1), "the initial listing")
        await eventually(lambda: cluster.open_watches >= 3, "kopf's watches")

        # Connections reset under kopf's feet: it reconnects from its last resourceVersion.
        cluster.drop_watches(abrupt=True)
        await patch_widget(cluster, "w1", {"spec": {"size": 2}})
        await eventually(lambda: operator.saw("MODIFIED", "w1", 2), "a change after resets")

        # 410 Gone in the stream: kopf re-lists and carries on.
        await eventually(lambda: cluster.open_watches >= 3, "the watches again")
        relists = sum(1 for r in cluster.requests if r.verb == "list" and r.resource == PLURAL)
        cluster.expire_watches()
        await patch_widget(cluster, "w1", {"spec": {"size": 3}})
        await eventually(lambda: operator.saw("MODIFIED", "w1", 3) or operator.saw(None, "w1", 3),
                         "a change after 410")
        await eventually(lambda: sum(1 for r in cluster.requests if r.verb == "list"
                                     and r.resource == PLURAL) > relists, "a re-list")

        # The API answers 503 for a while (and the history is gone too): kopf retries. Not
        # longer than its error_backoffs allow: one more failure and its watcher gives up,
        # which stops the whole operator.
        cluster.fail_next(3, status=503, path=rf"/{PLURAL}\b", method="GET")
        cluster.compact()
        cluster.drop_watches()
        await patch_widget(cluster, "w1", {"spec": {"size": 4}})
        await eventually(lambda: operator.saw("MODIFIED", "w1", 4) or operator.saw(None, "w1", 4),
                         "a change after 503s", wait=10)
        failed = [r for r in cluster.requests if r.status == 503]
        assert len(failed) == 3

        # And a new object still goes through the whole path, status write included.
        await cluster.create({**widget("w2"), "metadata": {"name": "w2", "namespace": NAMESPACE}})
        await eventually(lambda: (cluster.get_object(f"{GROUP}/{VERSION}", "Widget", "w2",
                                                     NAMESPACE) or {}).get("status", {})
                         .get("phase") == "Created", "w2's status")
    finally:
        await stop_operator(runner)
