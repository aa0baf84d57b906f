"""A resource only the operator can find wrong (the CRD schema lets it through) is reported on the
resource and with one Warning Event, while everything else converges; and the operator stays
within the RBAC rules it is deployed with."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.certs import make_certificate
from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import (
    NS,
    Api,
    assert_within_rbac,
    condition,
    converged,
    eventually,
    example_documents,
    patch_requests,
    programmed_by,
    status_of,
    stored,
)

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.kube.permissions import flatten

POD = "pod-a"
RESYNC = 0.5


def frontend(name: str, cluster: str, hostname: str) -> dict[str, Any]:
    return {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuFrontend",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"cluster": cluster, "protocol": "HTTP", "address": "0.0.0.0:8080",
                     "hostname": hostname}}


def mismatched_certificate() -> dict[str, Any]:
    certificate, _ = make_certificate(["bad.localhost"])
    _, other_key = make_certificate(["bad.localhost"])
    return {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuCertificate",
            "metadata": {"name": "mismatch", "namespace": NS},
            "spec": {"addresses": ["0.0.0.0:8443"], "certificate": certificate,
                     "key": other_key}}


def warnings_for(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events
            if e["involvedObject"]["name"] == name and e.get("type") == "Warning"]


def not_ready(kube: KubeEmulator, kind: str, name: str) -> dict[str, Any] | None:
    ready = condition(status_of(kube, kind, name), "Ready")
    return ready if ready is not None and ready["status"] == "False" else None


async def test_invalid_resources_are_reported_and_the_rest_converges(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    kube.clear_log()
    await start_operator(sozu.socket_path, pod=POD, resync=RESYNC)
    await api.create(*example_documents(), frontend("orphan", "nope", "orphan.localhost"),
                     mismatched_certificate())
    await converged(api, sozu, what="the valid resources to be programmed")
    valid = [(d["kind"], d["metadata"]["name"]) for d in example_documents()]
    await eventually(lambda: all(programmed_by(kube, k, n, [POD]) for k, n in valid),
                     within=5, what="every valid resource to be Programmed")
    assert "orphan.localhost" not in {f.hostname for f in sozu.state.http_frontends.values()}

    # Ready=False naming the field at fault, and Programmed=False.
    orphan = await eventually(lambda: not_ready(kube, "SozuFrontend", "orphan"), within=5,
                              what="Ready=False on the orphan frontend")
    assert orphan["reason"] == "Invalid"
    assert orphan["message"].startswith("spec.cluster: "), orphan["message"]
    assert "'nope'" in orphan["message"]
    programmed = condition(status_of(kube, "SozuFrontend", "orphan"), "Programmed")
    assert programmed is not None
    assert programmed["status"] == "False"
    mismatch = await eventually(lambda: not_ready(kube, "SozuCertificate", "mismatch"),
                                within=5, what="Ready=False on the mismatched certificate")
    assert mismatch["message"].startswith("spec.key: "), mismatch["message"]
    assert "does not match" in mismatch["message"]

    # One Warning Event per problem, naming the resource and the field.
    events = await eventually(
        lambda: _both_warned(api), within=5, what="Warning Events for both bad resources")
    (orphan_event,) = warnings_for(events, "orphan")
    assert orphan_event["reason"] == "Invalid"
    assert orphan_event["involvedObject"]["kind"] == "SozuFrontend"
    orphan_object = stored(kube, "SozuFrontend", "orphan")
    assert orphan_object is not None
    assert orphan_event["involvedObject"]["uid"] == orphan_object["metadata"]["uid"]
    assert "spec.cluster" in orphan_event["message"]
    assert orphan_event["reportingInstance"] == POD

    # Nothing more over several resyncs: no new Event, no status write, no new version.
    version, mark = kube.resource_version, len(kube.requests)
    await asyncio.sleep(3.5 * RESYNC)
    assert patch_requests(kube, since=mark) == []
    assert kube.resource_version == version
    assert len(warnings_for(await api.events(), "orphan")) == 1

    # A resource that served and then becomes invalid keeps what it served (and says so).
    await api.patch("SozuFrontend", "web-health", {"spec": {"cluster": "gone"}})
    await eventually(lambda: not_ready(kube, "SozuFrontend", "web-health"), within=5,
                     what="Ready=False on the broken frontend")
    assert "/healthz" in {f.path.value for f in sozu.state.http_frontends.values()}

    # Fixing them converges.
    await api.patch("SozuFrontend", "orphan", {"spec": {"cluster": "web"}})
    await api.patch("SozuFrontend", "web-health", {"spec": {"cluster": "web"}})
    await converged(api, sozu, what="the fixed frontends")
    await eventually(lambda: programmed_by(kube, "SozuFrontend", "orphan", [POD])
                     and programmed_by(kube, "SozuFrontend", "web-health", [POD]),
                     within=5, what="the fixed frontends to be Programmed")
    assert "orphan.localhost" in {f.hostname for f in sozu.state.http_frontends.values()}

    used = assert_within_rbac(kube)
    assert ("", "events", "create") in used
    print(f"\npermissions used: {sorted(used)}\nunused: {sorted(flatten() - used)}")


async def _both_warned(api: Api) -> list[dict[str, Any]] | None:
    events = await api.events()
    if warnings_for(events, "orphan") and warnings_for(events, "mismatch"):
        return events
    return None
