"""What a user sees: `kubectl apply -f crds/` and the examples, a real `sozu-operator run`
process programs Sōzu, and kubectl shows Ready/Programmed through the CRDs' printer columns."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml
from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import (
    CRDS,
    EXAMPLES,
    Api,
    converged,
    eventually,
    example_documents,
    patch_requests,
    programmed_by,
)
from tests.kube.kube_support import HAVE_KUBECTL, NO_KUBECTL, Kubectl

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason=NO_KUBECTL)
POD = "sozu-0"
RESYNC = 1.0


def table(text: str) -> list[list[str]]:
    """kubectl's table output as rows of cells, cut at the header's column starts (an empty
    cell, e.g. a TCP route's host, is an empty string). Header names are single words except
    "CLUSTER ID" and "NOT AFTER", which are joined here."""
    lines = text.strip("\n").splitlines()
    header = lines[0].replace("CLUSTER ID", "CLUSTER_ID").replace("NOT AFTER", "NOT_AFTER")
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = [*starts[1:], None]
    return [[line[a:b].strip() for a, b in zip(starts, bounds, strict=True)]
            for line in [header, *lines[1:]]]


def tables(text: str) -> list[list[list[str]]]:
    """Several tables (`kubectl get a,b`), separated by blank lines."""
    return [table(block) for block in text.strip().split("\n\n") if block.strip()]


async def test_kubectl_apply_and_get_show_programmed_resources(
    kube: KubeEmulator, api: Api, sozu: SozuEmulator, start_operator: StartOperator,
    kubeconfig: Path, workdir: Path,
) -> None:
    kubectl = Kubectl(kubeconfig, workdir / "kubectl-cache")
    applied = await kubectl("apply", "-f", str(CRDS))
    assert applied.out.count("customresourcedefinition.apiextensions.k8s.io/") == 3

    operator = await start_operator(sozu.socket_path, pod=POD, process=True, resync=RESYNC)
    applied = await kubectl("apply", "-f", str(EXAMPLES))
    for document in example_documents():
        kind, name = document["kind"].lower(), document["metadata"]["name"]
        assert f"{kind}.sozu.io/{name} created" in applied.out, applied.out

    await converged(api, sozu, within=15, what="the operator process to program the examples")
    names = [(d["kind"], d["metadata"]["name"]) for d in example_documents()]
    await eventually(lambda: all(programmed_by(kube, k, n, [POD]) for k, n in names),
                     within=5, what="every example's status")
    assert operator.alive

    frontends = table((await kubectl("get", "sozufrontends")).out)
    assert frontends[0] == ["NAME", "READY", "PROGRAMMED", "PROTOCOL", "CLUSTER", "HOST",
                            "PATH", "AGE"]
    rows = {row[0]: row for row in frontends[1:]}
    assert set(rows) == {"web", "web-api", "web-health", "web-tls", "postgres"}
    for row in rows.values():
        assert row[1:3] == ["True", "1/1"], row
    assert rows["web"][3:7] == ["HTTP", "web", "example.localhost", "/"]
    assert rows["postgres"][3:7] == ["TCP", "postgres", "", ""]

    wide = table((await kubectl("get", "sozufrontends", "-o", "wide")).out)
    assert wide[0][-2:] == ["ADDRESS", "CLASS"]

    clusters, certificates = tables((await kubectl("get", "sozuclusters,sozucertificates")).out)
    assert clusters[0] == ["NAME", "READY", "PROGRAMMED", "CLUSTER_ID", "BACKENDS", "AGE"]
    by_name = {row[0]: row for row in clusters[1:]}
    assert by_name["sozucluster.sozu.io/web"][1:5] == [
        "True", "1/1", "sozu-operator:default/web", "3"]
    assert by_name["sozucluster.sozu.io/postgres"][1:5] == [
        "True", "1/1", "sozu-operator:default/postgres", "1"]
    assert certificates[0] == ["NAME", "READY", "PROGRAMMED", "NOT_AFTER", "AGE"]
    assert certificates[1][:3] == ["sozucertificate.sozu.io/example-localhost", "True", "1/1"]
    assert certificates[1][3].startswith("2034-12-30")

    described = (await kubectl("describe", "sozufrontend", "web")).out
    assert "Conditions:" in described
    assert re.search(r"Type:\s+Ready\n", described)
    assert re.search(r"Type:\s+Programmed\n", described)
    assert re.search(r"Proxies Programmed:\s+1/1\n", described)
    obj = yaml.safe_load((await kubectl("get", "sozufrontend", "web", "-o", "yaml")).out)
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Programmed"]["status"] == "True"
    assert conditions["Programmed"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["status"]["proxies"][POD]["programmedGeneration"] == 1
    assert obj["status"]["sozuKey"] == "0.0.0.0:8080;example.localhost;P/"

    # A change made with kubectl: printer columns follow, then nothing is written any more.
    await kubectl("patch", "sozufrontend", "web-api", "--type=merge", "-p",
                  '{"spec": {"path": {"value": "/v2/"}}}')
    await converged(api, sozu, what="the kubectl patch")
    await eventually(lambda: programmed_by(kube, "SozuFrontend", "web-api", [POD]), within=5,
                     what="web-api generation 2 to be Programmed")
    rows = {row[0]: row for row in table((await kubectl("get", "sozufrontends")).out)[1:]}
    assert rows["web-api"][1:3] == ["True", "1/1"]
    assert rows["web-api"][6] == "/v2/"

    version, mark = kube.resource_version, len(kube.requests)
    await asyncio.sleep(3.2 * RESYNC)
    assert patch_requests(kube, since=mark) == []
    assert kube.resource_version == version
    assert operator.alive
