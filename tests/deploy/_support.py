"""Shared by the deployment tests: the chart rendered through the Helm v4 engine that
helm-python-sdk embeds (the same code path as scripts/gen_manifests.py), value profiles, and
small accessors."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "sozu-operator"
MANIFESTS = ROOT / "manifests"
CRDS = ROOT / "crds"
CHART_CRDS = CHART / "crds"
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).resolve().parent / "data"

RELEASE = "sozu-operator"
NAMESPACE = "sozu-system"

# Kubernetes versions the objects are validated against: the chart's kubeVersion floor and
# the newest schemas kubernetes-validate ships.
KUBE_MIN = "1.30"
KUBE_NEWEST = "1.37"

Manifest = dict[str, Any]

# Value profiles every structural test runs on.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "cluster-wide": {
        "allNamespaces": True,
        "className": "edge",
        "defaultClass": True,
        "replicas": 3,
        "sozuVersion": 1,
        "resync": 30,
        "debounce": 0.5,
        "owner": "edge-proxies",
        "extraArgs": ["--restart-check", "5", "--verbose"],
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "resources": {
            "requests": {"cpu": "200m", "memory": "192Mi"},
            "limits": {"cpu": 1, "memory": "384Mi"},
        },
        "sozu": {
            "image": {"tag": "1.0.6"},
            "resources": {
                "requests": {"cpu": "500m", "memory": "256Mi"},
                "limits": {"cpu": "2", "memory": "1Gi"},
            },
            "listeners": {
                "http": {"enabled": True, "port": 80},
                "https": {"enabled": True, "port": 443},
                "tcp": [{"name": "postgres", "port": 5432, "servicePort": 15432}],
            },
            "extraConfig": "max_connections = 20000\nmax_buffers = 20000",
            "preStopSleepSeconds": 0,
        },
        "service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
        "podDisruptionBudget": {"maxUnavailable": "34%"},
        "rollout": {"maxSurge": 2},
        "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"node-role.kubernetes.io/edge": ""},
    },
    "namespaced": {
        "watchNamespaces": ["team-a", "team-b"],
        "replicas": 1,
        "metrics": {"enabled": False},
        "service": {"type": "ClusterIP"},
        "serviceAccount": {"name": "proxy"},
        "fullnameOverride": "edge",
    },
}


def script(name: str) -> ModuleType:
    """Load scripts/<name>.py as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def gen_manifests() -> ModuleType:
    return script("gen_manifests")


@functools.cache
def _render_cached(values_json: str, namespace: str) -> dict[str, str]:
    rendered: dict[str, str] = gen_manifests().render_chart(
        json.loads(values_json), namespace=namespace
    )
    return rendered


def render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> dict[str, str]:
    """{template path: text} of the chart rendered with these values (cached)."""
    return dict(_render_cached(json.dumps(values or {}, sort_keys=True), namespace))


def objects(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[Manifest]:
    """The rendered Kubernetes objects (fresh copies, safe to mutate)."""
    parsed: list[Manifest] = gen_manifests().parse_rendered(render(values, namespace))
    return copy.deepcopy(parsed)


def profile_objects(profile: str) -> list[Manifest]:
    return objects(PROFILES[profile])


def merged_values(values: dict[str, Any] | None = None) -> dict[str, Any]:
    with helm.Chart.load(CHART) as chart:
        return chart.merge_values(values or {})


def values_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (CHART / "values.schema.json").read_text(encoding="utf-8")
    )
    return schema


def only(found: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    matches = [
        obj
        for obj in found
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def of_kind(found: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in found if obj["kind"] == kind]


def container(deployment: Manifest, name: str) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    matches = [c for c in containers if c["name"] == name]
    assert len(matches) == 1, name
    found: dict[str, Any] = matches[0]
    return found


def flag_values(args: list[str], flag: str) -> list[str]:
    """Every value given to `flag` in an argument list (`--flag VALUE` form)."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == flag]
