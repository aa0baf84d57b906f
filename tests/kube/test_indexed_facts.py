"""What a pass reads off kopf's index: kept per object identity, digested as a multiset;
resources validated once per version."""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

from sozu_operator.kube.operator import _shared_strings, _slim
from sozu_operator.kube.reconciler import (
    IndexedFacts,
    Snapshot,
    ValidatedResources,
    _object_facts,
    _resource_facts,
)
from sozu_operator.resources.models import Parsed


def _body(name: str, generation: int, uid: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "sozu.io/v1alpha1",
        "kind": "SozuFrontend",
        "metadata": {"name": name, "namespace": "web", "uid": uid or f"uid-{name}",
                     "generation": generation, "resourceVersion": str(generation * 10)},
        "spec": {"cluster": "api"},
    }


def _snapshot(resources: list[dict[str, Any]], facts: IndexedFacts | None = None,
              deleted: set[str] | None = None) -> Snapshot:
    facts = facts or IndexedFacts(_resource_facts)
    return Snapshot(facts.of(resources, deleted or set()), [], [])


def test_facts_are_kept_for_the_very_same_object_only() -> None:
    facts = IndexedFacts(_resource_facts)
    a, b = _body("a", 1), _body("b", 1)
    first = facts.of([a, b], set())
    again = facts.of([a, b], set())
    assert again[0] is first[0]
    assert again[1] is first[1]
    equal_copy = copy.deepcopy(a)
    third = facts.of([equal_copy, b], set())
    assert third[0] is not first[0]
    assert third[0] == first[0]._replace(body=equal_copy)
    assert third[1] is first[1]


def test_objects_known_deleted_are_left_out() -> None:
    facts = IndexedFacts(_resource_facts)
    found = facts.of([_body("a", 1), _body("b", 1)], {"uid-a"})
    assert [entry.ref.name for entry in found] == ["b"]


def test_digest_ignores_order_and_status_but_follows_generation_uid_and_membership() -> None:
    a, b = _body("a", 1), _body("b", 1)
    base = _snapshot([a, b]).digest()
    assert _snapshot([b, a]).digest() == base
    with_status = {**a, "status": {"observedGeneration": 1},
                   "metadata": {**a["metadata"], "resourceVersion": "99"}}
    assert _snapshot([with_status, b]).digest() == base
    assert _snapshot([_body("a", 2), b]).digest() != base
    assert _snapshot([_body("a", 1, uid="recreated"), b]).digest() != base
    assert _snapshot([a]).digest() != base
    assert _snapshot([a, b, _body("c", 1)]).digest() != base
    # The same object twice is not the same input as once.
    assert _snapshot([a, a, b]).digest() != base


def test_secrets_and_slices_digest_by_resource_version() -> None:
    secret: dict[str, Any] = {
        "kind": "Secret", "data": {},
        "metadata": {"name": "tls", "namespace": "web", "uid": "s", "resourceVersion": "1"},
    }
    moved = {**secret, "metadata": {**secret["metadata"], "resourceVersion": "2"}}
    facts = IndexedFacts(_object_facts)
    assert Snapshot([], facts.of([secret], set()), []).digest() != Snapshot(
        [], facts.of([moved], set()), []).digest()


def test_shared_strings_keep_values_and_share_short_strings() -> None:
    document = json.dumps({"status": {"conditions": [{"type": "Ready", "message": "x" * 200}]}})
    decoded = [json.loads(document) for _ in range(2)]  # as a watch stream decodes them
    assert decoded[0]["status"]["conditions"][0]["type"] is not \
        decoded[1]["status"]["conditions"][0]["type"]
    shared = [_shared_strings(item) for item in decoded]
    assert shared == decoded
    first, second = (item["status"]["conditions"][0] for item in shared)
    assert first["type"] is second["type"]
    assert first["message"] is not second["message"]  # long strings (PEM, messages) stay own
    assert sys.intern("type") is next(iter(first))


def test_slim_keeps_what_the_reconciler_reads() -> None:
    body = {**_body("a", 3), "status": {"proxiesProgrammed": "1/1"}}
    body["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    slim = _slim(body, keep=(), shared=("spec", "status"))
    assert slim["spec"] == body["spec"]
    assert slim["status"] == body["status"]
    assert "managedFields" not in slim["metadata"]
    assert slim["metadata"]["generation"] == 3


def _route(name: str, generation: int, path: str = "/") -> dict[str, Any]:
    return {
        "apiVersion": "sozu.io/v1alpha1",
        "kind": "SozuFrontend",
        "metadata": {"name": name, "namespace": "web", "uid": f"uid-{name}",
                     "generation": generation, "resourceVersion": str(10 * generation)},
        "spec": {"cluster": "api", "protocol": "HTTP", "address": "0.0.0.0:8080",
                 "hostname": f"{name}.example.com", "path": {"kind": "PREFIX", "value": path}},
    }


def test_resources_are_validated_once_per_version_and_forgotten_once_gone() -> None:
    validated = ValidatedResources(sozu_version=2)
    a, b = _route("a", 1), _route("b", 1)
    first = validated.objects([a, b])
    assert all(isinstance(item, Parsed) for item in first)
    assert validated.validated_last == 2

    # The very same objects, then an equal copy of one (kopf's index handed over a new body
    # of the same generation, as after the operator's own listing): nothing validated again.
    assert validated.objects([a, b]) == first
    assert validated.objects([a, b])[0] is first[0]
    copied = validated.objects([copy.deepcopy(a), b])
    assert copied[0] is first[0]
    assert validated.validated_last == 0
    # A status write moves the resourceVersion, not the generation: nothing to validate.
    written = copy.deepcopy(b)
    written["metadata"]["resourceVersion"] = "11"
    written["status"] = {"conditions": []}
    assert validated.objects([a, written])[1] is first[1]
    assert validated.validated_last == 0

    # A new generation is validated; an invalid one is handed over as its body.
    moved = _route("a", 2, path="/v2/")
    broken = _route("b", 2)
    del broken["spec"]["address"]
    found = validated.objects([moved, broken])
    assert validated.validated_last == 2
    assert isinstance(found[0], Parsed)
    assert found[0] != first[0]
    assert found[1] is broken

    # Gone objects are forgotten: the first version of "a", back under a new identity, is
    # validated again (nothing is kept for objects no index holds).
    validated.objects([moved])
    validated.objects([copy.deepcopy(a)])
    assert validated.validated_last == 1
