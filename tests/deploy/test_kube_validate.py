"""Every object the chart renders, every file in manifests/ and the CRDs validate against the
Kubernetes OpenAPI schemas shipped by kubernetes-validate (strict: unknown fields fail), at the
chart's minimum Kubernetes version and at the newest one the package ships. Resources of our own
kinds validate against the CRDs' schemas with jsonschema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from tests.deploy._support import (
    CHART,
    CHART_CRDS,
    CRDS,
    DATA,
    EXAMPLES,
    KUBE_MIN,
    KUBE_NEWEST,
    MANIFESTS,
    PROFILES,
    Manifest,
    profile_objects,
)

KUBE_VERSIONS = (KUBE_MIN, KUBE_NEWEST)

# Kinds that kubernetes-validate does not know (not built into Kubernetes), with our schema.
LOCAL_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): DATA / "servicemonitor-monitoring-v1.json",
}


def _validate(obj: Manifest, kube_version: str) -> None:
    local = LOCAL_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if local is not None:
        jsonschema.Draft7Validator(json.loads(local.read_text(encoding="utf-8"))).validate(obj)
        return
    validated = kubernetes_validate.validate(obj, kube_version, strict=True)
    assert validated == kube_version


def _documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def test_the_newest_schemas_are_the_ones_validated_against() -> None:
    assert kubernetes_validate.utils.latest_version().startswith(KUBE_NEWEST + ".")
    assert KUBE_MIN + ".0" in kubernetes_validate.utils.all_versions()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["kubeVersion"] == f">={KUBE_MIN}.0-0"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_rendered_objects_validate(profile: str, kube_version: str) -> None:
    found = profile_objects(profile)
    assert found
    for obj in found:
        _validate(obj, kube_version)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_manifest_files_validate(kube_version: str) -> None:
    files = sorted(p for p in MANIFESTS.rglob("*") if p.is_file())
    assert files
    for path in files:
        documents = _documents(path)
        assert documents, path
        for obj in documents:
            _validate(obj, kube_version)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("crd_dir", [CRDS, CHART_CRDS], ids=["crds", "chart-crds"])
def test_crds_validate(crd_dir: Path, kube_version: str) -> None:
    for path in sorted(crd_dir.glob("*.yaml")):
        (crd,) = _documents(path)
        _validate(crd, kube_version)


def test_the_validator_rejects_a_typo() -> None:
    deployment = next(o for o in profile_objects("default") if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment, KUBE_NEWEST)
    monitor = next(o for o in profile_objects("cluster-wide") if o["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        _validate(monitor, KUBE_NEWEST)


def _crd_schemas(crd_dir: Path) -> dict[str, dict[str, Any]]:
    schemas = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        (crd,) = _documents(path)
        (version,) = crd["spec"]["versions"]
        api_version = f"{crd['spec']['group']}/{version['name']}"
        schemas[f"{api_version}/{crd['spec']['names']['kind']}"] = version["schema"][
            "openAPIV3Schema"
        ]
    return schemas


def test_example_resources_validate_against_the_chart_crds() -> None:
    schemas = _crd_schemas(CHART_CRDS)
    examples = [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in _documents(path)]
    assert {f"{doc['apiVersion']}/{doc['kind']}" for doc in examples} == set(schemas)
    for doc in examples:
        jsonschema.Draft202012Validator(schemas[f"{doc['apiVersion']}/{doc['kind']}"]).validate(
            doc
        )
    # And a broken one does not.
    cluster = next(doc for doc in examples if doc["kind"] == "SozuCluster")
    broken = dict(cluster, spec={**cluster["spec"], "loadBalancing": "COIN_TOSS"})
    schema = schemas[f"{broken['apiVersion']}/{broken['kind']}"]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))
