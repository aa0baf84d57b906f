"""Creating, changing and deleting each kind converges: after every change, re-planning the
resources as stored against Sōzu's live state gives nothing to do, and EndpointSlice and TLS
Secret changes cost exactly the Sōzu requests they should.

The operator runs in-process (`run_operator`); the API and Sōzu emulators serve on real
sockets."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from tests.certs import make_certificate
from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import (
    NS,
    Api,
    assert_within_rbac,
    converged,
    eventually,
    example_documents,
    live,
    mutations,
    programmed_by,
    status_of,
)

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import LoadBalancing
from sozu_operator.wire import SozuClient

POD = "pod-a"
WEB = "sozu-operator:default/web"
SHOP = "sozu-operator:default/shop"
EXAMPLES = [(d["kind"], d["metadata"]["name"]) for d in example_documents()]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tls_secret(name: str, certificate: str, key: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": _b64(certificate), "tls.key": _b64(key)}}


def endpoint(ip: str, *, ready: bool = True, serving: bool | None = None,
             terminating: bool = False) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": {
        "ready": ready, "serving": ready if serving is None else serving,
        "terminating": terminating}}


def endpoint_slice(name: str, service: str, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": NS,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def service_cluster() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuCluster",
         "metadata": {"name": "shop", "namespace": NS},
         "spec": {"service": {"name": "shop", "port": "http"}}},
        {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuFrontend",
         "metadata": {"name": "shop", "namespace": NS},
         "spec": {"cluster": "shop", "protocol": "HTTP", "address": "0.0.0.0:8080",
                  "hostname": "shop.localhost"}},
    ]


def backends(sozu: SozuEmulator, cluster: str) -> dict[str, bool]:
    """address → backup flag of the cluster's backends in Sōzu."""
    return {str(b.address): bool(b.backup) for b in sozu.state.backends.get(cluster, [])}


async def test_create_update_delete_of_each_kind_converges(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    kube.clear_log()
    await start_operator(sozu.socket_path, pod=POD)

    # Create.
    await api.create(*example_documents())
    await converged(api, sozu, what="the examples to be programmed")
    await eventually(lambda: all(programmed_by(kube, k, n, [POD]) for k, n in EXAMPLES),
                     within=5, what="every example to report Programmed 1/1")
    assert set(sozu.state.clusters) == {"status-page", WEB, "sozu-operator:default/postgres"}
    assert len(sozu.state.http_frontends) == 4  # 3 routes + the unowned status-page one

    # Update each kind.
    await api.patch("SozuCluster", "web", {"spec": {
        "loadBalancing": "RANDOM",
        "backends": [{"address": "127.0.0.1:9001"}, {"address": "127.0.0.1:9004"}]}})
    await converged(api, sozu, what="the SozuCluster update")
    assert sozu.state.clusters[WEB].load_balancing is LoadBalancing.RANDOM
    assert set(backends(sozu, WEB)) == {"127.0.0.1:9001", "127.0.0.1:9004"}

    await api.patch("SozuFrontend", "web-api", {"spec": {"path": {"value": "/v2/"}}})
    await converged(api, sozu, what="the SozuFrontend update")
    paths = {f.path.value for f in sozu.state.http_frontends.values() if f.cluster_id == WEB}
    assert "/v2/" in paths
    assert "/api/" not in paths

    certificate, key = make_certificate(["example.localhost"])
    await api.patch("SozuCertificate", "example-localhost",
                    {"spec": {"certificate": certificate, "key": key}})
    await converged(api, sozu, what="the SozuCertificate update")
    served = [c.certificate for certs in sozu.state.certificates.values() for c in certs.values()]
    assert served == [certificate]

    await eventually(lambda: all(programmed_by(kube, k, n, [POD]) for k, n in EXAMPLES),
                     within=5, what="statuses to follow the new generations")
    assert status_of(kube, "SozuCluster", "web")["backends"] == 2

    # Delete each kind (a frontend, the certificate, then a cluster with its route).
    await api.delete("SozuFrontend", "web-api")
    await converged(api, sozu, what="the SozuFrontend deletion")
    await api.delete("SozuCertificate", "example-localhost")
    await converged(api, sozu, what="the SozuCertificate deletion")
    assert not any(sozu.state.certificates.values())
    await api.delete("SozuFrontend", "postgres")
    await api.delete("SozuCluster", "postgres")
    await converged(api, sozu, what="the SozuCluster deletion")
    assert set(sozu.state.clusters) == {"status-page", WEB}
    assert "status-page" in {f.cluster_id for f in sozu.state.http_frontends.values()}

    assert_within_rbac(kube)


async def test_endpoint_slice_scaling_changes_only_backends(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    await start_operator(sozu.socket_path, pod=POD)
    ips = [f"10.0.0.{n}" for n in range(1, 5)]
    await api.create(*service_cluster(),
                     endpoint_slice("shop-1", "shop", [endpoint(ip) for ip in ips[:2]]))
    await converged(api, sozu, what="the Service-backed cluster")
    assert backends(sozu, SHOP) == {"10.0.0.1:8080": False, "10.0.0.2:8080": False}
    await eventually(lambda: programmed_by(kube, "SozuCluster", "shop", [POD]), within=5,
                     what="the cluster's status")

    async def step(slice_name: str, endpoints: list[dict[str, Any]],
                   expected: dict[str, int], what: str) -> None:
        sozu.reset_counts()
        await api.patch("EndpointSlice", slice_name, {"endpoints": endpoints},
                        api_version="discovery.k8s.io/v1")
        await converged(api, sozu, what=what)
        assert mutations(sozu) == expected, what

    await step("shop-1", [endpoint(ip) for ip in ips], {"AddBackend": 2}, "scale up 2 → 4")
    await step("shop-1", [endpoint(ips[0])], {"RemoveBackend": 3}, "scale down 4 → 1")

    sozu.reset_counts()
    await api.create(endpoint_slice("shop-2", "shop", [endpoint("10.0.1.1")]))
    await converged(api, sozu, what="a second EndpointSlice")
    assert mutations(sozu) == {"AddBackend": 1}

    # A terminating endpoint that still serves stays, as a backup backend (drained, not cut).
    sozu.reset_counts()
    await api.patch("EndpointSlice", "shop-2", {"endpoints": [
        endpoint("10.0.1.1", ready=False, serving=True, terminating=True)]},
        api_version="discovery.k8s.io/v1")
    await converged(api, sozu, what="a terminating endpoint")
    assert backends(sozu, SHOP) == {"10.0.0.1:8080": False, "10.0.1.1:8080": True}
    assert mutations(sozu) == {"AddBackend": 1}  # an upsert of the same backend

    # Once it stops serving, it goes.
    await step("shop-2", [endpoint("10.0.1.1", ready=False, serving=False, terminating=True)],
               {"RemoveBackend": 1}, "a terminated endpoint")
    assert backends(sozu, SHOP) == {"10.0.0.1:8080": False}
    await eventually(lambda: status_of(kube, "SozuCluster", "shop").get("backends") == 1,
                     within=5, what="status.backends to follow the slices")
    assert "status-page" in sozu.state.clusters
    assert_within_rbac(kube)


async def test_tls_secret_rotation_is_one_replace_certificate(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    await start_operator(sozu.socket_path, pod=POD, resync=0.5)
    first, first_key = make_certificate(["shop.localhost"])
    await api.create(
        tls_secret("shop-tls", first, first_key),
        {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuCertificate",
         "metadata": {"name": "shop", "namespace": NS},
         "spec": {"addresses": ["0.0.0.0:8443"], "secretRef": {"name": "shop-tls"}}},
    )
    await converged(api, sozu, what="the Secret-backed certificate")
    fingerprint = (await eventually(
        lambda: status_of(kube, "SozuCertificate", "shop").get("fingerprint"),
        within=5, what="status.fingerprint"))

    sozu.reset_counts()
    second, second_key = make_certificate(["shop.localhost"])
    await api.patch("Secret", "shop-tls", {"data": {"tls.crt": _b64(second),
                                                    "tls.key": _b64(second_key)}},
                    api_version="v1")
    await converged(api, sozu, what="the rotated certificate")
    served = [c.certificate for certs in sozu.state.certificates.values() for c in certs.values()]
    assert served == [second]
    await eventually(
        lambda: status_of(kube, "SozuCertificate", "shop").get("fingerprint") not in
        (None, fingerprint), within=5, what="status.fingerprint to follow the rotation")
    # Several resyncs later, still exactly that one request.
    await asyncio.sleep(1.6)
    assert mutations(sozu) == {"ReplaceCertificate": 1}
    assert live(sozu).certificates
    assert_within_rbac(kube)


async def test_resyncs_of_an_unchanged_system_only_read_and_still_repair_drift(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    """Each resync reads Sōzu (hash-guided: no cluster queried) and, with nothing moved,
    neither re-plans nor writes a status; a hand edit in Sōzu is still repaired by the next
    resync, which shows the reads are not skipped."""
    api = crds
    await start_operator(sozu.socket_path, pod=POD, resync=0.3)
    await api.create(*example_documents())
    await converged(api, sozu, what="the examples")
    await asyncio.sleep(1.0)  # the statuses written after programming settle
    sozu.reset_counts()
    kube.clear_log()
    await asyncio.sleep(2.0)  # several resyncs
    passes = sozu.verb_counts["QueryClustersHashes"]
    assert passes >= 3, sozu.verb_counts
    assert mutations(sozu) == {}
    assert sozu.verb_counts["QueryClusterById"] == 0
    writes = [r for r in kube.requests if r.method in ("PATCH", "POST", "PUT", "DELETE")]
    assert writes == [], [(r.method, r.path) for r in writes]

    # Drift: a backend removed behind the operator's back comes back at the next resync.
    web = next(cid for cid in sozu.state.clusters if cid.endswith("/web"))
    backend = next(iter(sozu.state.backends[web]))
    before = live(sozu)
    async with SozuClient(sozu.socket_path, timeout=5) as client:
        await client.send(rq.RemoveBackend(web, backend.backend_id, backend.address))
    assert live(sozu) != before
    await eventually(lambda: live(sozu) == before, within=5, what="the drift repaired")
    assert mutations(sozu) == {"RemoveBackend": 1, "AddBackend": 1}
