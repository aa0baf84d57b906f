"""OpenAPI documents for kubectl.

kubectl (1.27+) asks `/openapi/v3` whether each kind's PATCH operation takes the
`fieldValidation` query parameter; when it does, kubectl leaves validation to the server and
sends `fieldValidation=Strict` instead of downloading the protobuf-only `/openapi/v2` for
client-side validation. So every served kind gets collection/item paths with a PATCH operation
tagged `x-kubernetes-group-version-kind`. Custom resources also get their schema as a component
(kubectl explain); built-ins get none, so kubectl's apply falls back to its compiled-in types
for strategic merge patches, exactly as it does against a cluster whose OpenAPI lacks a kind.
`/openapi/v2` is served as JSON only (a protobuf-only Accept gets 406).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Final

from sozu_operator.emulators.kube_meta import JsonObj
from sozu_operator.emulators.kube_store import ResourceType

_QUERY_PARAMS: Final = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
_PATCH_TYPES_CR: Final = (
    "application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml",
)
_PATCH_TYPES_BUILTIN: Final = (*_PATCH_TYPES_CR, "application/strategic-merge-patch+json")


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _component_name(rt: ResourceType, version: str) -> str:
    reversed_group = ".".join(reversed(rt.group.split("."))) if rt.group else "io.k8s.api.core"
    return f"{reversed_group}.{version}.{rt.kind}"


def _params(names: Iterable[str]) -> list[JsonObj]:
    return [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in names
    ]


def _ref_content(types: Iterable[str], ref: str) -> JsonObj:
    return {t: {"schema": {"$ref": ref}} for t in types}


def gv_document(group: str, version: str, types: Iterable[ResourceType]) -> JsonObj:
    paths: JsonObj = {}
    schemas: JsonObj = {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch": {
            "type": "object", "description": "Patch is provided to give a concrete name and "
                                             "type to the Kubernetes PATCH request body."},
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status": {"type": "object"},
    }
    patch_ref = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    for rt in types:
        if version not in rt.versions:
            continue
        gvk = {"group": rt.group, "version": version, "kind": rt.kind}
        name = _component_name(rt, version)
        info = rt.versions[version]
        object_ref = f"#/components/schemas/{name}"
        if info.raw_schema is not None:
            schemas[name] = {**info.raw_schema, "x-kubernetes-group-version-kind": [gvk]}
        else:
            schemas[name] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        body = {"content": _ref_content(["application/json", "application/yaml"], object_ref)}
        ok = {"200": {"description": "OK", "content": _ref_content(["application/json"],
                                                                  object_ref)}}
        base = f"/{gv_path(rt.group, version)}"
        if rt.namespaced:
            base += "/namespaces/{namespace}"
        collection = f"{base}/{rt.plural}"
        item = f"{collection}/{{name}}"
        ops: JsonObj = {}
        if "create" in rt.verbs:
            ops["post"] = {"operationId": f"create{rt.kind}", "parameters": _params(
                _QUERY_PARAMS[:3]), "requestBody": body, "responses": ok,
                "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk}
        if "list" in rt.verbs:
            ops["get"] = {"operationId": f"list{rt.kind}", "responses": ok,
                          "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk}
        if ops:
            paths[collection] = ops
        if rt.virtual:
            continue
        patch_types = _PATCH_TYPES_CR if rt.crd_name else _PATCH_TYPES_BUILTIN
        paths[item] = {
            "get": {"operationId": f"read{rt.kind}", "responses": ok,
                    "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
            "put": {"operationId": f"replace{rt.kind}", "parameters": _params(_QUERY_PARAMS[:3]),
                    "requestBody": body, "responses": ok, "x-kubernetes-action": "put",
                    "x-kubernetes-group-version-kind": gvk},
            "patch": {"operationId": f"patch{rt.kind}", "parameters": _params(_QUERY_PARAMS),
                      "requestBody": {"content": _ref_content(patch_types, patch_ref)},
                      "responses": ok, "x-kubernetes-action": "patch",
                      "x-kubernetes-group-version-kind": gvk},
            "delete": {"operationId": f"delete{rt.kind}", "responses": ok,
                       "x-kubernetes-action": "delete", "x-kubernetes-group-version-kind": gvk},
        }
        if info.status:
            paths[f"{item}/status"] = {
                "patch": {"operationId": f"patch{rt.kind}Status",
                          "parameters": _params(_QUERY_PARAMS),
                          "requestBody": {"content": _ref_content(patch_types, patch_ref)},
                          "responses": ok, "x-kubernetes-action": "patch",
                          "x-kubernetes-group-version-kind": gvk},
            }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def content_hash(document: Any) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:128].upper()


def v2_document(types: Iterable[ResourceType]) -> JsonObj:
    """A JSON Swagger 2.0 document with the CR schemas (for tools that read it as JSON)."""
    definitions: JsonObj = {}
    for rt in types:
        for version, info in rt.versions.items():
            gvk = {"group": rt.group, "version": version, "kind": rt.kind}
            schema = info.raw_schema or {"type": "object"}
            definitions[_component_name(rt, version)] = {
                **schema, "x-kubernetes-group-version-kind": [gvk]}
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": {},
        "definitions": definitions,
    }
