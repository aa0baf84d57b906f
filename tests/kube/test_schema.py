"""The emulator's pure parts: the tiny CEL evaluator, pruning/defaulting/validation,
JSONPath, selectors and patches; plus CRD lifecycles (versions, scope, deletion)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tests.kube.kube_support import WIDGET_CRD

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.kube_cel import CelError, CelUnsupported, compile_rule
from sozu_operator.emulators.kube_meta import ApiError
from sozu_operator.emulators.kube_patch import json_patch, merge_patch, strategic_merge_patch
from sozu_operator.emulators.kube_query import (
    compile_jsonpath,
    eval_jsonpath,
    labels_match,
    parse_label_selector,
)
from sozu_operator.emulators.kube_schema import StructuralSchema


@pytest.mark.parametrize(("rule", "value", "expected"), [
    ("!has(self.service) || !has(self.backends) || size(self.backends) == 0",
     {"service": {}, "backends": []}, True),
    ("!has(self.service) || !has(self.backends) || size(self.backends) == 0",
     {"service": {}, "backends": [1]}, False),
    ("type(self.port) != int || (self.port >= 1 && self.port <= 65535)", {"port": "http"}, True),
    ("type(self.port) != int || (self.port >= 1 && self.port <= 65535)", {"port": 0}, False),
    ("self.all(k, !k.startsWith('sozu.io/'))", {"a": 1, "b": 2}, True),
    ("self.all(k, !k.startsWith('sozu.io/'))", {"sozu.io/x": 1}, False),
    ("has(self.certificate) != has(self.secretRef)", {"certificate": "x"}, True),
    ("self.value == '' || self.value.startsWith('/')", {"value": "api"}, False),
    ("self.items.exists(i, i.name == 'b') && self.items.map(i, i.n).size() == 2",
     {"items": [{"name": "a", "n": 1}, {"name": "b", "n": 2}]}, True),
    ("self.x in ['a', 'b'] ? self.y > 1.5 : self.y < 0", {"x": "a", "y": 2}, True),
    ("self.name.matches('^[a-z]+$') && self.name.size() <= 3", {"name": "abcd"}, False),
    ("self.n / 2 == 3 && self.n % 4 == 3 && -self.n < 0", {"n": 7}, True),
])
def test_cel_rules(rule: str, value: dict[str, Any], expected: bool) -> None:
    assert compile_rule(rule).evaluate(value) is expected


def test_cel_errors_and_unsupported_syntax() -> None:
    with pytest.raises(CelError, match="no such key: missing"):
        compile_rule("self.missing == 1").evaluate({})
    # `||` is commutative over errors: a true side wins.
    assert compile_rule("self.missing == 1 || true").evaluate({}) is True
    transition = compile_rule("self == oldSelf")
    assert transition.uses_old_self
    assert transition.evaluate(1, 1) is True
    for source in ("self.x.isSorted()", "quantity(self.q) > 1", "self.x == 1u"):
        with pytest.raises(CelUnsupported):
            compile_rule(source)


def test_structural_processing_prunes_defaults_and_validates() -> None:
    version = WIDGET_CRD["spec"]["versions"][0]
    schema = StructuralSchema(version["schema"]["openAPIV3Schema"])
    obj: dict[str, Any] = {
        "apiVersion": "example.sozu.io/v1", "kind": "Widget",
        "metadata": {"name": "w", "bogus": 1},
        "spec": {"color": "red", "size": None, "shape": "round", "tags": ["a", "a"]},
        "status": {"anything": {"goes": True}},
        "extra": 1,
    }
    outcome = schema.process(obj, None, kind="Widget")
    assert sorted(outcome.unknown_fields) == ["extra", "metadata.bogus", "spec.shape"]
    assert obj["spec"] == {"color": "red", "size": 1, "tags": ["a", "a"]}  # null -> default
    assert obj["status"] == {"anything": {"goes": True}}  # preserved unknown fields
    assert [(e.field, e.kind) for e in outcome.errors] == [("spec.tags[1]", "Duplicate")]

    bad: dict[str, Any] = {"apiVersion": "v", "kind": "Widget", "metadata": {},
                           "spec": {"color": "red", "size": 11.5}}
    errors = schema.process(bad, None, kind="Widget").errors
    assert [e.text() for e in errors] == [
        'spec.size: Invalid value: "number": spec.size in body must be of type integer: '
        '"number"']


def test_jsonpath_selectors_and_patches() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "False"},
                                     {"type": "Ready", "status": "True"}]},
           "spec": {"items": [{"n": 1}, {"n": 2}], "dotted.key": "x"}}
    assert eval_jsonpath(compile_jsonpath('.status.conditions[?(@.type=="Ready")].status'),
                         obj) == ["True"]
    assert eval_jsonpath(compile_jsonpath(".spec.items[*].n"), obj) == [1, 2]
    assert eval_jsonpath(compile_jsonpath(".spec.items[-1].n"), obj) == [2]
    assert eval_jsonpath(compile_jsonpath("{.spec['dotted.key']}"), obj) == ["x"]

    labelled = {"metadata": {"labels": {"tier": "front", "n": "5"}}}
    assert labels_match(parse_label_selector("tier in (front, back),n>3,!gone"), labelled)
    assert not labels_match(parse_label_selector("tier notin (front)"), labelled)
    with pytest.raises(ApiError):
        parse_label_selector("a in (x")

    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(base, {"a": {"b": None, "c": [3]}, "e": {"f": 1}}) == \
        {"a": {"c": [3]}, "d": 1, "e": {"f": 1}}
    assert json_patch(base, [{"op": "move", "from": "/d", "path": "/a/d"},
                             {"op": "copy", "from": "/a/c", "path": "/c"}]) == \
        {"a": {"b": 1, "c": [1, 2], "d": 1}, "c": [1, 2]}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # patches never mutate their input

    service = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}],
                        "selector": {"app": "x", "old": "y"}},
               "metadata": {"finalizers": ["a"]}}
    patched = strategic_merge_patch(service, {
        "spec": {"$setElementOrder/ports": [{"port": 8443}, {"port": 80}],
                 "ports": [{"port": 8443, "name": "https"}, {"port": 443, "$patch": "delete"}],
                 "selector": {"$patch": "replace", "app": "z"}},
        "metadata": {"finalizers": ["b"]},
    })
    assert patched == {"spec": {"ports": [{"port": 8443, "name": "https"},
                                          {"port": 80, "name": "http"}],
                                "selector": {"app": "z"}},
                       "metadata": {"finalizers": ["a", "b"]}}


async def test_crd_versions_scope_and_deletion(emulator: KubeEmulator) -> None:
    crd = copy.deepcopy(WIDGET_CRD)
    beta = copy.deepcopy(crd["spec"]["versions"][0])
    beta.update(name="v1beta1", storage=False)
    crd["spec"]["versions"].append(beta)
    crd["spec"]["scope"] = "Cluster"
    await emulator.create(crd)

    async with emulator.session() as http:
        async def call(method: str, path: str, body: Any = None, expect: int = 200) -> Any:
            async with http.request(method, path, json=body) as response:
                assert response.status == expect, await response.text()
                return json.loads(await response.text())

        group = await call("GET", "/apis/example.sozu.io")
        assert group["preferredVersion"]["version"] == "v1"
        assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
        created = await call("POST", "/apis/example.sozu.io/v1beta1/widgets", {
            "apiVersion": "example.sozu.io/v1beta1", "kind": "Widget",
            "metadata": {"name": "w1"}, "spec": {"color": "red"}}, expect=201)
        assert "namespace" not in created["metadata"]
        as_v1 = await call("GET", "/apis/example.sozu.io/v1/widgets/w1")
        assert as_v1["apiVersion"] == "example.sozu.io/v1"
        await call("GET", "/apis/example.sozu.io/v1/namespaces/default/widgets", expect=404)

        # Updating the CRD re-registers it: v1beta1 is no longer served.
        stored = await call("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                   "widgets.example.sozu.io")
        assert stored["status"]["acceptedNames"]["kind"] == "Widget"
        stored["spec"]["versions"][1]["served"] = False
        await call("PUT", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                          "widgets.example.sozu.io", stored)
        await call("GET", "/apis/example.sozu.io/v1beta1/widgets/w1", expect=404)

        # Deleting the CRD deletes its objects and stops serving it.
        await call("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                             "widgets.example.sozu.io")
        await call("GET", "/apis/example.sozu.io/v1/widgets", expect=404)
        await call("GET", "/apis/example.sozu.io", expect=404)
        assert emulator.get_object("example.sozu.io/v1", "Widget", "w1") is None
