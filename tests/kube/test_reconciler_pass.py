"""The operator's pass (`Reconciler.pass_once`) against a real Sōzu emulator socket, fed from
in-memory indexes (no API): what a pass reuses, and that reusing never changes what it does."""

from __future__ import annotations

import asyncio
import copy
import datetime
from pathlib import Path
from typing import Any

from tests.certs import make_certificate

from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.kube.reconciler import Inputs, OperatorConfig, Reconciler
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import HttpListener, HttpsListener, SocketAddress
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.wire import SozuClient

A = SocketAddress.parse
LISTENERS = [rq.AddHttpListener(HttpListener(A("0.0.0.0:8080"))),
             rq.AddHttpsListener(HttpsListener(A("0.0.0.0:8443")))]


class Index:
    """Bodies as an informer holds them; `edit` replaces one with a new generation."""

    def __init__(self, bodies: list[dict[str, Any]]) -> None:
        self.version = 0
        self.bodies = [self._stamped(body) for body in bodies]

    def _stamped(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        meta = body["metadata"]
        meta.update(uid=f"{body['kind']}/{meta['name']}", generation=self.version,
                    resourceVersion=str(self.version), creationTimestamp="2026-01-01T00:00:00Z")
        return body

    def edit(self, name: str, change: dict[str, Any]) -> None:
        for position, body in enumerate(self.bodies):
            if body["metadata"]["name"] == name:
                edited = copy.deepcopy(body)
                edited["spec"].update(change)
                self.bodies[position] = self._stamped(edited)

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.bodies)


def _resources(routes: int, certificate: tuple[str, str]) -> list[dict[str, Any]]:
    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": "default"}

    found: list[dict[str, Any]] = [{
        "apiVersion": "sozu.io/v1alpha1", "kind": "SozuCluster", "metadata": meta("web"),
        "spec": {"backends": [{"address": "10.0.0.1:80"}, {"address": "10.0.0.2:80"}]},
    }, {
        "apiVersion": "sozu.io/v1alpha1", "kind": "SozuCertificate", "metadata": meta("tls"),
        "spec": {"addresses": ["0.0.0.0:8443"], "certificate": certificate[0],
                 "key": certificate[1]},
    }]
    found += [{
        "apiVersion": "sozu.io/v1alpha1", "kind": "SozuFrontend", "metadata": meta(f"r{n}"),
        "spec": {"cluster": "web", "protocol": "HTTP", "address": "0.0.0.0:8080",
                 "hostname": f"r{n}.example.com"},
    } for n in range(routes)]
    return found


async def test_a_pass_plans_what_moved_and_reuses_what_did_not(tmp_path: Path) -> None:
    socket = str(tmp_path / "sozu.sock")
    index = Index(_resources(30, make_certificate(["*.example.com"], days=30)))
    async with SozuEmulator(socket, initial_state=LISTENERS) as sozu:
        reconciler = Reconciler(OperatorConfig(socket=socket, pod_name="p"),
                                inputs=Inputs(resources=index.snapshot))
        reconciler.indexed.set()
        try:
            first = await reconciler.pass_once()
            assert first.applied == 1 + 1 + 2 + 30  # certificate, cluster, backends, routes
            assert not first.scoped

            # Sōzu moved (our own requests): planned, scoped, nothing to send.
            settled = await reconciler.pass_once()
            assert (settled.applied, settled.reused, settled.scoped) == (0, False, True)
            # Nothing moved at all: the last reconciliation is served again.
            idle = await reconciler.pass_once()
            assert (idle.applied, idle.reused, idle.planned_objects) == (0, True, 0)
            reconciler.request_full_read()
            assert (await reconciler.pass_once()).reused  # a resync's full read, same answers

            # One route edited: one remove and one add, planned among a handful of objects.
            sozu.reset_counts()
            index.edit("r7", {"hostname": "seven.example.com"})
            changed = await reconciler.pass_once()
            assert changed.applied == 2
            assert changed.scoped
            assert changed.planned_objects <= 8
            assert {k: v for k, v in sozu.verb_counts.items() if "Frontend" in k} == {
                "AddHttpFrontend": 1, "RemoveHttpFrontend": 1,
            }
            assert not any("r7.example.com" in key for key in sozu.state.http_frontends)
            assert any("seven.example.com" in key for key in sozu.state.http_frontends)

            # A hand edit in Sōzu is a moved live state: seen, planned and repaired.
            settle = await reconciler.pass_once()
            assert settle.applied == 0
            expected = ProxyState.from_config_state(sozu.state)
            async with SozuClient(socket, timeout=5) as client:
                await client.send(rq.RemoveCluster(next(iter(sozu.state.clusters))))
            repaired = await reconciler.pass_once()
            assert not repaired.reused
            assert repaired.applied >= 1
            assert ProxyState.from_config_state(sozu.state) == expected
        finally:
            await reconciler.close()


async def test_a_reused_result_expires_with_a_certificate(tmp_path: Path) -> None:
    """The build depends on the clock through certificate validity: a certificate that
    becomes valid between two passes is programmed, though nothing else moved."""
    socket = str(tmp_path / "sozu.sock")
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    certificate = make_certificate(["*.example.com"], days=30, not_before=soon)
    index = Index(_resources(2, certificate))
    async with SozuEmulator(socket, initial_state=LISTENERS) as sozu:
        reconciler = Reconciler(OperatorConfig(socket=socket, pod_name="p"),
                                inputs=Inputs(resources=index.snapshot))
        reconciler.indexed.set()
        try:
            await reconciler.pass_once()
            assert not sozu.state.certificates  # not valid yet
            await reconciler.pass_once()
            assert (await reconciler.pass_once()).reused
            await asyncio.sleep((soon - datetime.datetime.now(datetime.UTC)).total_seconds() + 0.1)
            later = await reconciler.pass_once()
            assert not later.reused
            assert later.applied == 1
            assert sozu.state.certificates
        finally:
            await reconciler.close()
