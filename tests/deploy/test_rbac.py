"""The chart's RBAC grants exactly REQUIRED_PERMISSIONS (no wildcard, nothing more, nothing
less), namespaced per watched namespace or cluster-wide, bound to the operator's account."""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

import pytest
import yaml
from tests.deploy._support import (
    MANIFESTS,
    NAMESPACE,
    PROFILES,
    ROOT,
    Manifest,
    of_kind,
    only,
    profile_objects,
)

from sozu_operator.kube import permissions
from sozu_operator.kube.permissions import REQUIRED_PERMISSIONS, Permission, flatten

ROLE_KINDS = ("Role", "ClusterRole")


def _granted(role: Manifest) -> frozenset[tuple[str, str, str]]:
    return frozenset(
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    )


def _no_wildcards_or_extras(role: Manifest) -> list[str]:
    problems = []
    for index, rule in enumerate(role["rules"]):
        for field in ("apiGroups", "resources", "verbs"):
            if any("*" in item for item in rule.get(field, [])):
                problems.append(f"rule {index}: wildcard in {field}")
        for field in ("resourceNames", "nonResourceURLs"):
            if field in rule:
                problems.append(f"rule {index}: {field}")
        if set(rule) - {"apiGroups", "resources", "verbs"}:
            problems.append(f"rule {index}: unexpected {sorted(rule)}")
    if "aggregationRule" in role:
        problems.append("aggregationRule")
    return problems


def _roles(found: list[Manifest]) -> list[Manifest]:
    return [obj for obj in found if obj["kind"] in ROLE_KINDS]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_rbac_grants_exactly_the_required_permissions(profile: str) -> None:
    roles = _roles(profile_objects(profile))
    assert roles
    for role in roles:
        assert _no_wildcards_or_extras(role) == []
        assert _granted(role) == flatten(REQUIRED_PERMISSIONS)


def test_the_manifests_grant_exactly_the_required_permissions() -> None:
    found = [
        doc
        for path in sorted(MANIFESTS.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    ]
    roles = _roles(found)
    assert [role["kind"] for role in roles] == ["Role"]
    for role in roles:
        assert _no_wildcards_or_extras(role) == []
        assert _granted(role) == flatten(REQUIRED_PERMISSIONS)


def _subjects_and_ref(binding: Manifest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return binding["subjects"], binding["roleRef"]


def test_default_is_one_role_in_the_release_namespace() -> None:
    found = profile_objects("default")
    assert of_kind(found, "ClusterRole") == []
    assert of_kind(found, "ClusterRoleBinding") == []
    role = only(found, "Role")
    binding = only(found, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == NAMESPACE
    subjects, ref = _subjects_and_ref(binding)
    assert ref == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sozu-operator"}
    assert subjects == [{"kind": "ServiceAccount", "name": "sozu-operator", "namespace": NAMESPACE}]


def test_one_role_per_watched_namespace() -> None:
    found = profile_objects("namespaced")
    roles = of_kind(found, "Role")
    bindings = of_kind(found, "RoleBinding")
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["team-a", "team-b"]
    for binding in bindings:
        subjects, ref = _subjects_and_ref(binding)
        assert ref["kind"] == "Role"
        assert ref["name"] == "edge"
        # The account lives in the release namespace, the grant in the watched one.
        assert subjects == [{"kind": "ServiceAccount", "name": "proxy", "namespace": NAMESPACE}]
    assert of_kind(found, "ClusterRole") == []


def test_all_namespaces_uses_a_cluster_role() -> None:
    found = profile_objects("cluster-wide")
    assert of_kind(found, "Role") == []
    assert of_kind(found, "RoleBinding") == []
    role = only(found, "ClusterRole")
    binding = only(found, "ClusterRoleBinding")
    assert role["metadata"]["name"] == f"sozu-operator-{NAMESPACE}"
    assert "namespace" not in role["metadata"]
    subjects, ref = _subjects_and_ref(binding)
    assert ref == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert subjects == [{"kind": "ServiceAccount", "name": "sozu-operator", "namespace": NAMESPACE}]


def test_the_comparison_notices_a_missing_or_extra_grant() -> None:
    role = only(profile_objects("default"), "Role")
    fewer = dict(role, rules=role["rules"][:-1])
    assert _granted(fewer) != flatten(REQUIRED_PERMISSIONS)
    pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
    more = dict(role, rules=[*role["rules"], pods])
    assert _granted(more) != flatten(REQUIRED_PERMISSIONS)
    wild = dict(role, rules=[{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    assert len(_no_wildcards_or_extras(wild)) == 3


def test_required_permissions_as_data() -> None:
    assert dataclasses.is_dataclass(Permission)
    grant = REQUIRED_PERMISSIONS[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        grant.verbs = ("delete",)  # type: ignore[misc]
    assert isinstance(REQUIRED_PERMISSIONS, tuple)
    assert flatten() == {
        ("sozu.io", "sozuclusters", "list"), ("sozu.io", "sozuclusters", "watch"),
        ("sozu.io", "sozufrontends", "list"), ("sozu.io", "sozufrontends", "watch"),
        ("sozu.io", "sozucertificates", "list"), ("sozu.io", "sozucertificates", "watch"),
        ("sozu.io", "sozuclusters/status", "patch"),
        ("sozu.io", "sozufrontends/status", "patch"),
        ("sozu.io", "sozucertificates/status", "patch"),
        ("", "secrets", "list"), ("", "secrets", "watch"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("", "events", "create"),
    }  # fmt: skip
    assert len(flatten()) == sum(len(p.verbs) for p in REQUIRED_PERMISSIONS)


def test_the_permissions_module_imports_nothing_from_the_project() -> None:
    source = (ROOT / "operator" / "sozu_operator" / "kube" / "permissions.py").read_text(
        encoding="utf-8"
    )
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            imported.add(node.module or "")
    assert imported == {"__future__", "dataclasses", "typing"}
    assert permissions.__doc__


def test_the_deployment_guide_lists_every_permission() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for permission in REQUIRED_PERMISSIONS:
        assert f"`{permission.resource}`" in guide, permission
