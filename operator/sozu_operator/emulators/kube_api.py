"""`KubeApi`: kmock's `KubernetesEmulator` turned into an API server faithful enough for kopf
and kubectl.

What is kmock's and what is ours:

* kmock: the aiohttp plumbing (`RawHandler`, served by `kmock.Server`), the parsed request
  records (`handler.requests` views and the whole kmock DSL, so tests can still script
  reactions such as `api['get /apis'] << 503`, which take precedence over the emulation), the
  object store with per-object history (`handler.objects`), the discovery registry
  (`handler.resources`) and the bundled built-in discovery data.
* ours: routing and every verb's semantics. `KubernetesEmulator._handle` applies its own
  create/patch/delete (a dict merge, a fixed resourceVersion, no validation) before any
  reaction runs and cannot be switched off, so `_handle` is replaced and kmock's fallback
  reactions are removed; `__call__` is replaced because kmock 0.8's path parser raises on
  `/api/v1/namespaces` (and reads `/api/v1/namespaces/<name>` as a namespace prefix), which
  would turn kopf's namespace listing into a 500 before any handler runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import itertools
import json
import logging
import random
import re
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp.web
import attrs
import kmock
import yaml

from sozu_operator.emulators import kube_openapi, kube_proto
from sozu_operator.emulators.kube_meta import (
    MODIFIED_CONFLICT,
    ApiError,
    FieldError,
    JsonObj,
    already_exists,
    bad_request,
    conflict,
    dumps,
    forbidden,
    forbidden_field,
    generic_for_code,
    invalid,
    invalid_object,
    method_not_allowed,
    not_found,
    not_supported,
    now_rfc3339,
    required,
    route_not_found,
    unauthorized,
    unsupported_media_type,
    validate_metadata,
)
from sozu_operator.emulators.kube_patch import json_patch, merge_patch, strategic_merge_patch
from sozu_operator.emulators.kube_query import (
    Column,
    FieldRequirement,
    Requirement,
    check_fields,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    partial_metadata,
    render_table,
)
from sozu_operator.emulators.kube_schema import Outcome, crd_status, prune, validate_crd
from sozu_operator.emulators.kube_store import (
    CREATE_ON_UPDATE,
    Change,
    Registry,
    ResourceType,
    Store,
    builtin_types,
    deep_copy,
    type_from_crd,
)

logger = logging.getLogger(__name__)

NAMESPACES: Final = ("", "namespaces")
CRDS: Final = ("apiextensions.k8s.io", "customresourcedefinitions")
_JSON: Final = "application/json"
_PROTOBUF: Final = "application/vnd.kubernetes.protobuf"
_AGGREGATED: Final = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
_GENERATE_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_SET_META: Final = ("uid", "creationTimestamp", "deletionTimestamp",
                           "deletionGracePeriodSeconds", "generation", "selfLink")

# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A resource URL, parsed the way the API server routes it."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str


@dataclass
class LoggedRequest:
    """One request as the emulator saw it (for tests: what did the client send?)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes
    user_agent: str
    verb: str | None = None
    group: str | None = None
    version: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    status: int | None = None
    authenticated: bool = False  # carried an Authorization header (a wrong one gets 401)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(eq=False)  # identity-hashed: kept in a set
class Watcher:
    target: Target
    transport: asyncio.BaseTransport | None
    dropped: bool = False
    abrupt: bool = False
    expired: bool = False


@dataclass
class FaultRule:
    """Answer (or delay) the next `remaining` requests that match."""

    remaining: int
    status: int | None = None
    delay: float = 0.0
    gone: bool = False  # watches only: an in-stream 410 ERROR instead of events
    path: re.Pattern[str] | None = None
    method: str | None = None
    verb: str | None = None
    message: str | None = None
    fired: list[str] = field(default_factory=list)

    def matches(self, method: str, path_qs: str, verb: str | None) -> bool:
        if self.remaining <= 0:
            return False
        if self.gone and verb != "watch":
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.verb is not None and self.verb != verb:
            return False
        return self.path is None or self.path.search(path_qs) is not None


class _Context:
    """Everything a verb handler needs about one request."""

    def __init__(self, request: kmock.Request, raw: aiohttp.web.BaseRequest, rt: ResourceType,
                 target: Target) -> None:
        self.request = request
        self.raw = raw
        self.rt = rt
        self.target = target
        self.version = target.version
        self.namespace = target.namespace
        self.name = target.name
        self.sub = target.subresource
        self.params: Mapping[str, str] = raw.query
        self.warnings: list[str] = []
        self.dry_run = "All" in raw.query.getall("dryRun", [])
        validation = raw.query.get("fieldValidation", "Warn") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f'fieldValidation must be one of "Strict", "Warn" or "Ignore", got '
                              f'"{validation}"')
        self.field_validation = validation

    @property
    def content_type(self) -> str:
        return self.raw.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    ranges = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip().lower()] = value.strip()
        ranges.append((pieces[0].lower(), params))
    return ranges


def _accept_as(accept: str) -> str | None:
    """'Table', 'PartialObjectMetadata', 'APIGroupDiscoveryList' or None (plain JSON).
    Raises 406 if nothing acceptable is offered."""
    ranges = _media_ranges(accept)
    if not ranges:
        return None
    for media, params in ranges:
        if media not in (_JSON, "application/*", "*/*"):
            continue
        kind = params.get("as")
        if kind is None:
            return None
        if kind in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList") and \
                params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return kind.removesuffix("List")
        if kind == "APIGroupDiscoveryList" and params.get("g") == "apidiscovery.k8s.io" and \
                params.get("v") == "v2":
            return kind
    if any(m in ("application/yaml", "application/vnd.kubernetes.protobuf") for m, _ in ranges):
        return None  # we answer JSON; clients that offer these also decode JSON by content type
    raise ApiError(406, "NotAcceptable", "only the following media types are accepted: "
                                         "application/json, application/yaml")


def _yaml_to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _yaml_to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_to_json(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _decode(body: bytes, content_type: str) -> Any:
    if not body:
        raise bad_request("the body of the request is empty")
    try:
        if content_type in ("application/yaml", "application/apply-patch+yaml"):
            return _yaml_to_json(yaml.safe_load(body))
        return json.loads(body)
    except (ValueError, yaml.YAMLError) as error:
        raise bad_request(f"json parse error: {error}") from error


def _meta(obj: Mapping[str, Any]) -> JsonObj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _content(obj: Mapping[str, Any], *, without_status: bool) -> JsonObj:
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if without_status else set())
    return {k: v for k, v in obj.items() if k not in skip}


def _same_object(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal except for the resourceVersion (a write that changes nothing is not stored)."""
    def strip(obj: Mapping[str, Any]) -> JsonObj:
        out = dict(obj)
        meta = dict(_meta(obj))
        meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
        out["metadata"] = meta
        out.pop("apiVersion", None)
        return out

    return strip(a) == strip(b)


def _generate_name(prefix: str) -> str:
    return prefix + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))


# --- the handler ----------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class KubeApi(kmock.KubernetesEmulator):
    """The API handler. Serve it with `kmock.Server(api)` (see `KubeEmulator`)."""

    token: str | None = None
    # kubectl sends bearer tokens over TLS only; on plain http it comes anonymous.
    allow_anonymous: bool = True
    bookmark_interval: float = 60.0
    watch_timeout: float | None = None  # server-side cap when the client sends none
    history_limit: int = 10_000
    versions_per_object: int | None = 50
    request_log_limit: int = 10_000
    aggregated_discovery: bool = True
    server_version: tuple[str, str] = ("1", "32")
    initial_namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public",
                                           "kube-node-lease")

    registry: Registry = attrs.field(init=False)
    store: Store = attrs.field(init=False)
    faults: list[FaultRule] = attrs.field(init=False, factory=list)
    log: list[LoggedRequest] = attrs.field(init=False, factory=list)
    # (verb, group, resource, subresource, client) of every resource request, never trimmed.
    permissions: set[tuple[str, str, str, str, str]] = attrs.field(init=False, factory=set)
    internal_errors: list[str] = attrs.field(init=False, factory=list)
    watchers: set[Watcher] = attrs.field(init=False, factory=set)
    address: str = attrs.field(init=False, default="127.0.0.1:0")
    _closing: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock's fallback reactions emulate naively; only user-added reactions stay possible.
        self._payloads.clear()
        self.registry = Registry(self.resources)
        for rt in builtin_types():
            self.registry.add(rt)
        self.store = Store(self.objects, history_limit=self.history_limit,
                           versions_per_object=self.versions_per_object)
        namespaces = self.registry.get(*NAMESPACES)
        assert namespaces is not None
        for name in self.initial_namespaces:
            self.store.commit(namespaces, "ADDED", None, name, self._new_namespace(name), None)

    def end_watches(self, *, abrupt: bool = False, expire: bool = False) -> int:
        """End every open watch: cleanly, by closing the connection (`abrupt`), or with an
        in-stream 410 Gone (`expire`). Returns how many were open."""
        for watcher in self.watchers:
            if expire:
                watcher.expired = True
            else:
                watcher.dropped, watcher.abrupt = True, abrupt
        self.store.notify()
        return len(self.watchers)

    def shut_down(self) -> None:
        """Let every watch stream end so the HTTP server can stop without waiting."""
        self._closing = True
        self.store.notify()

    def reopen(self) -> None:
        """Undo `shut_down` (serving again after a stop)."""
        self._closing = False

    def path_for(self, api_version: str, kind: str, namespace: str | None = None,
                 name: str | None = None) -> str:
        """The URL path of an object (or of its collection when `name` is None)."""
        group, _, version = api_version.rpartition("/")
        rt = self.registry.by_kind(group, version, kind)
        if rt is None:
            raise not_found(group, kind, name or "")
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        if rt.namespaced:
            base += f"/namespaces/{namespace or 'default'}"
        base += f"/{rt.plural}"
        return f"{base}/{name}" if name else base

    def _new_namespace(self, name: str) -> JsonObj:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid4()),
                         "creationTimestamp": now_rfc3339(),
                         "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    # -- entry point -------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        raw = raw_request
        body = await raw.read()
        try:
            request = await kmock.Request._parse(raw, id=len(self._requests))
        except Exception:  # kmock's k8s path parsing fails on some valid paths (see module doc)
            request = kmock.Request(
                id=len(self._requests), raw_request=raw, url=raw.url, method=raw.method,
                params=dict(raw.query), headers=dict(raw.headers), cookies=dict(raw.cookies),
                body=body, text=body.decode(errors="replace"),
            )
        self._requests.append(request)
        if len(self._requests) > 2 * self.request_log_limit:
            del self._requests[: -self.request_log_limit]
        entry = LoggedRequest(
            method=raw.method, path=raw.path, query=dict(raw.query),
            content_type=raw.headers.get("Content-Type", ""), body=body,
            user_agent=raw.headers.get("User-Agent", ""),
        )
        self.log.append(entry)
        if len(self.log) > 2 * self.request_log_limit:
            del self.log[: -self.request_log_limit]
        try:
            response = await self._handle_logged(request, raw, entry)
        except ApiError as error:
            response = self._error_response(error)
        except Exception as error:  # an emulator bug: answer 500 and keep it for the tests
            self.internal_errors.append("".join(traceback.format_exception(error)))
            logger.exception("kube emulator: internal error on %s %s", raw.method, raw.path_qs)
            response = self._error_response(
                ApiError(500, "InternalError", f"emulator error: {error!r}"))
        entry.status = response.status
        return response

    async def _handle_logged(self, request: kmock.Request, raw: aiohttp.web.BaseRequest,
                             entry: LoggedRequest) -> aiohttp.web.StreamResponse:
        target = self._route(raw)
        if isinstance(target, Target):
            entry.verb, entry.group, entry.version = target.verb, target.group, target.version
            entry.resource, entry.subresource = target.plural, target.subresource
            entry.namespace, entry.name = target.namespace, target.name
            client = entry.user_agent.split("/", 1)[0]  # "kopf/1.45.2" -> "kopf"
            self.permissions.add(
                (target.verb, target.group, target.plural, target.subresource or "", client))
        authorization = raw.headers.get("Authorization")
        entry.authenticated = authorization is not None
        if self.token is not None:
            public = target in ("version", "health")  # as system:public-info-viewer allows
            if authorization is None and not (self.allow_anonymous or public):
                raise unauthorized()
            if authorization is not None and authorization != f"Bearer {self.token}":
                raise unauthorized()
        gone_rule = await self._apply_faults(raw, target)
        if self._payloads:  # reactions scripted with the kmock DSL win over the emulation
            try:
                return await kmock.RawHandler._handle(self, request)
            except NotImplementedError:
                pass
        return await self._dispatch(request, raw, target, gone_rule)

    async def _apply_faults(self, raw: aiohttp.web.BaseRequest,
                            target: Target | str) -> FaultRule | None:
        verb = target.verb if isinstance(target, Target) else None
        gone_rule: FaultRule | None = None
        for rule in list(self.faults):
            if not rule.matches(raw.method, raw.path_qs, verb):
                continue
            rule.remaining -= 1
            rule.fired.append(f"{raw.method} {raw.path_qs}")
            if rule.remaining <= 0:
                self.faults.remove(rule)
            if rule.delay:
                await asyncio.sleep(rule.delay)
            if rule.gone:
                gone_rule = rule
            elif rule.status is not None:
                raise generic_for_code(rule.status, rule.message)
        return gone_rule

    def _error_response(self, error: ApiError) -> aiohttp.web.Response:
        response = aiohttp.web.Response(
            body=dumps(error.body()), status=error.code, content_type=_JSON)
        for key, value in getattr(error, "extra_headers", {}).items():
            response.headers[key] = value
        return response

    def _json(self, body: Any, status: int = 200, *, content_type: str = _JSON,
              warnings: Sequence[str] = ()) -> aiohttp.web.Response:
        response = aiohttp.web.Response(body=dumps(body), status=status)
        response.headers["Content-Type"] = content_type
        for warning in warnings:
            escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
            response.headers.add("Warning", f'299 - "{escaped}"')
        return response

    # -- routing -----------------------------------------------------------------------------------

    def _route(self, raw: aiohttp.web.BaseRequest) -> Target | str:
        """A resource Target, or the name of a non-resource endpoint."""
        parts = [p for p in raw.path.split("/") if p]
        if not parts:
            return "root"
        head = parts[0]
        if head in ("healthz", "readyz", "livez"):
            return "health"
        if head == "version" and len(parts) == 1:
            return "version"
        if head == "openapi":
            return "openapi"
        if head == "api":
            if len(parts) == 1:
                return "api"
            group, version, rest = "", parts[1], parts[2:]
        elif head == "apis":
            if len(parts) == 1:
                return "apis"
            if len(parts) == 2:
                return "group"
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return "unknown"
        if not rest:
            return "resources"
        watch = raw.query.get("watch", "") in ("true", "1")
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        namespace = None
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and not (
                len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return "unknown"
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        method = raw.method.upper()
        verb = {
            "GET": "watch" if watch else ("get" if name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method, method.lower())
        return Target(group, version, plural, namespace, name, sub, verb)

    async def _dispatch(self, request: kmock.Request, raw: aiohttp.web.BaseRequest,
                        target: Target | str, gone_rule: FaultRule | None
                        ) -> aiohttp.web.StreamResponse:
        if isinstance(target, str):
            return await self._serve_non_resource(raw, target)
        rt = self.registry.lookup(target.group, target.version, target.plural)
        if rt is None or (target.namespace is not None and not rt.namespaced):
            raise route_not_found()
        if target.verb not in rt.verbs and not (target.verb == "watch" and "list" in rt.verbs):
            raise method_not_allowed()
        if target.subresource is not None and (
                target.subresource != "status" or not rt.has_status(target.version)
                or target.verb not in ("get", "update", "patch")):
            raise route_not_found()
        if target.name is None and target.verb == "create" and rt.namespaced and \
                target.namespace is None and not rt.virtual:
            raise route_not_found()
        ctx = _Context(request, raw, rt, target)
        match target.verb:
            case "get":
                return self._get(ctx)
            case "list":
                return self._list(ctx)
            case "watch":
                return await self._watch(ctx, gone_rule)
            case "create":
                if target.name is not None:
                    raise method_not_allowed()
                return self._create(ctx)
            case "update":
                if target.name is None:
                    raise method_not_allowed()
                return self._replace(ctx)
            case "patch":
                if target.name is None:
                    raise method_not_allowed()
                return self._patch(ctx)
            case "delete":
                return self._delete(ctx)
            case "deletecollection":
                return self._delete_collection(ctx)
        raise method_not_allowed()

    # -- non-resource endpoints --------------------------------------------------------------------

    async def _serve_non_resource(self, raw: aiohttp.web.BaseRequest,
                                  what: str) -> aiohttp.web.StreamResponse:
        accept = raw.headers.get("Accept", "")
        if raw.method.upper() not in ("GET", "HEAD"):
            raise method_not_allowed()
        match what:
            case "health":
                return aiohttp.web.Response(text="ok", content_type="text/plain")
            case "version":
                major, minor = self.server_version
                return self._json({
                    "major": major, "minor": minor,
                    "gitVersion": f"v{major}.{minor}.0-sozu-kube-emulator",
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64",
                })
            case "root":
                paths = {"/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz",
                         "/openapi/v2", "/openapi/v3", "/version"}
                for group, versions in self.registry.group_versions().items():
                    if group:
                        paths.add(f"/apis/{group}")
                        paths.update(f"/apis/{group}/{v}" for v in versions)
                return self._json({"paths": sorted(paths)})
            case "api":
                if _accept_as(accept) == "APIGroupDiscoveryList" and self.aggregated_discovery:
                    return self._json(self._aggregated(core=True), content_type=_AGGREGATED)
                return self._json({
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}],
                })
            case "apis":
                if _accept_as(accept) == "APIGroupDiscoveryList" and self.aggregated_discovery:
                    return self._json(self._aggregated(core=False), content_type=_AGGREGATED)
                return self._json({"kind": "APIGroupList", "apiVersion": "v1",
                                   "groups": [self._group(g, vs) for g, vs
                                              in self.registry.group_versions().items() if g]})
            case "group":
                group = raw.path.strip("/").split("/")[1]
                served = self.registry.group_versions().get(group)
                if not served:
                    raise route_not_found()
                return self._json({"kind": "APIGroup", "apiVersion": "v1",
                                   **self._group(group, served)})
            case "resources":
                parts = raw.path.strip("/").split("/")
                group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
                types = [rt for rt in self.registry if rt.group == group and
                         version in rt.versions]
                if not types:
                    raise route_not_found()
                return self._json({
                    "kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": f"{group}/{version}" if group else version,
                    "resources": [e for rt in types for e in self._resource_entries(rt, version)],
                })
            case "openapi":
                return self._openapi(raw)
        raise route_not_found()

    def _group(self, group: str, versions: list[str]) -> JsonObj:
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}",
                                 "version": versions[0]},
        }

    def _resource_entries(self, rt: ResourceType, version: str) -> list[JsonObj]:
        entry: JsonObj = {"name": rt.plural, "singularName": rt.singular,
                          "namespaced": rt.namespaced, "kind": rt.kind, "verbs": list(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        entries = [entry]
        if rt.has_status(version):
            entries.append({"name": f"{rt.plural}/status", "singularName": "",
                            "namespaced": rt.namespaced, "kind": rt.kind,
                            "verbs": ["get", "patch", "update"]})
        return entries

    def _aggregated(self, *, core: bool) -> JsonObj:
        """apidiscovery.k8s.io/v2: all groups, versions and resources in one document."""
        items = []
        for group, versions in self.registry.group_versions().items():
            if (group == "") != core:
                continue
            version_docs = []
            for version in versions:
                resources = []
                for rt in self.registry:
                    if rt.group != group or version not in rt.versions:
                        continue
                    kind = {"group": group, "version": version, "kind": rt.kind}
                    doc: JsonObj = {
                        "resource": rt.plural, "responseKind": kind,
                        "scope": "Namespaced" if rt.namespaced else "Cluster",
                        "singularResource": rt.singular, "verbs": list(rt.verbs),
                    }
                    if rt.short_names:
                        doc["shortNames"] = list(rt.short_names)
                    if rt.categories:
                        doc["categories"] = list(rt.categories)
                    if rt.has_status(version):
                        doc["subresources"] = [{"subresource": "status", "responseKind": kind,
                                                "verbs": ["get", "patch", "update"]}]
                    resources.append(doc)
                version_docs.append({"version": version, "resources": resources,
                                     "freshness": "Current"})
            items.append({"metadata": {"name": group, "creationTimestamp": None},
                          "versions": version_docs})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                "metadata": {}, "items": items}

    def _openapi(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        parts = raw.path.strip("/").split("/")
        if parts[1:2] == ["v2"]:
            accept = raw.headers.get("Accept", "")
            if accept and not any(m in (_JSON, "*/*", "application/*")
                                  for m, _ in _media_ranges(accept)):
                raise ApiError(406, "NotAcceptable",
                               "the emulator serves /openapi/v2 as application/json only")
            return self._json(kube_openapi.v2_document(self.registry))
        if parts[1:2] != ["v3"]:
            raise route_not_found()
        groups = self.registry.group_versions()
        if len(parts) == 2:
            index: JsonObj = {}
            for group, versions in groups.items():
                for version in versions:
                    doc = kube_openapi.gv_document(group, version, self.registry)
                    path = kube_openapi.gv_path(group, version)
                    index[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash="
                                                        f"{kube_openapi.content_hash(doc)}"}
            return self._json({"paths": index})
        rest = parts[2:]
        if rest[0] == "api" and len(rest) == 2:
            group, version = "", rest[1]
        elif rest[0] == "apis" and len(rest) == 3:
            group, version = rest[1], rest[2]
        else:
            raise route_not_found()
        if version not in groups.get(group, []):
            raise route_not_found()
        return self._json(kube_openapi.gv_document(group, version, self.registry))

    # -- reading -----------------------------------------------------------------------------------

    def _present(self, ctx: _Context, obj: JsonObj) -> JsonObj:
        """The stored object as the requested version (no conversion: same fields)."""
        api_version = ctx.rt.api_version(ctx.version)
        if obj.get("apiVersion") == api_version and obj.get("kind") == ctx.rt.kind:
            return obj
        return {**obj, "apiVersion": api_version, "kind": ctx.rt.kind}

    def _columns(self, ctx: _Context) -> tuple[Column, ...]:
        return ctx.rt.versions[ctx.version].columns

    def _get(self, ctx: _Context) -> aiohttp.web.Response:
        assert ctx.name is not None
        as_kind = _accept_as(ctx.raw.headers.get("Accept", ""))
        obj = self.store.get(ctx.rt, ctx.namespace, ctx.name)
        if obj is None:
            raise not_found(ctx.rt.group, ctx.rt.plural, ctx.name)
        shown = self._present(ctx, obj)
        if as_kind == "Table":
            return self._json(render_table(
                [shown], self._columns(ctx), resource_version=_meta(obj)["resourceVersion"],
                include_object=ctx.params.get("includeObject", "Metadata")))
        if as_kind == "PartialObjectMetadata":
            return self._json(partial_metadata(shown))
        return self._json(shown)

    def _selectors(self, ctx: _Context) -> tuple[list[Requirement], list[FieldRequirement],
                                                 dict[str, str]]:
        labels = parse_label_selector(ctx.params.get("labelSelector"))
        fields = parse_field_selector(ctx.params.get("fieldSelector"))
        allowed = ctx.rt.selectable_fields(ctx.version)
        check_fields(fields, allowed)
        if ctx.name is not None:  # a watch on a named object's URL
            fields.append(FieldRequirement("metadata.name", ctx.name, False))
        return labels, fields, allowed

    def _list(self, ctx: _Context) -> aiohttp.web.Response:
        as_kind = _accept_as(ctx.raw.headers.get("Accept", ""))
        labels, fields, allowed = self._selectors(ctx)
        list_rv = self.store.rv
        start: tuple[str, str] | None = None
        token = ctx.params.get("continue")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                list_rv, start = int(state["rv"]), (str(state["start"][0]), str(state["start"][1]))
            except (ValueError, KeyError, TypeError, IndexError) as error:
                raise bad_request(f"continue key is not valid: {error}") from error
            if list_rv < self.store.compacted:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to "
                                               "display a consistent list result.")
        selected = (self._present(ctx, o)
                    for o in self.store.iter_objects(ctx.rt, ctx.namespace, after=start)
                    if labels_match(labels, o) and fields_match(fields, o, allowed))
        limit = int(ctx.params.get("limit") or 0)
        items = list(itertools.islice(selected, limit + 1) if limit > 0 else selected)
        next_token = None
        remaining = None
        if limit > 0 and len(items) > limit:
            items = items[:limit]
            last = _meta(items[-1])
            after = (last.get("namespace") or "", str(last.get("name")))
            next_token = base64.urlsafe_b64encode(json.dumps(
                {"rv": list_rv, "start": list(after)}).encode()).decode()
            if not labels and not fields:  # as the API server: exact only without selectors
                remaining = self.store.count_objects(ctx.rt, ctx.namespace, after=after)
        if as_kind == "Table":
            return self._json(render_table(
                items, self._columns(ctx), resource_version=str(list_rv),
                include_object=ctx.params.get("includeObject", "Metadata"),
                continue_token=next_token))
        metadata: JsonObj = {"resourceVersion": str(list_rv)}
        if next_token:
            metadata["continue"] = next_token
            if remaining is not None:
                metadata["remainingItemCount"] = remaining
        if as_kind == "PartialObjectMetadata":
            return self._json({"kind": "PartialObjectMetadataList",
                               "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
                               "items": [partial_metadata(o) for o in items]})
        return self._json({"kind": ctx.rt.list_kind,
                           "apiVersion": ctx.rt.api_version(ctx.version),
                           "metadata": metadata, "items": items})

    # -- watching ----------------------------------------------------------------------------------

    async def _watch(self, ctx: _Context, gone_rule: FaultRule | None
                     ) -> aiohttp.web.StreamResponse:
        labels, fields, allowed = self._selectors(ctx)
        as_kind = _accept_as(ctx.raw.headers.get("Accept", ""))
        rv_param = ctx.params.get("resourceVersion", "")
        if rv_param not in ("", "0") and not rv_param.isdigit():
            raise bad_request(f"invalid resource version: {rv_param!r}")
        timeout_text = ctx.params.get("timeoutSeconds")
        timeout = float(timeout_text) if timeout_text else self.watch_timeout
        bookmarks = ctx.params.get("allowWatchBookmarks") in ("true", "1")
        initial = ctx.params.get("sendInitialEvents") in ("true", "1")
        response = aiohttp.web.StreamResponse(status=200)
        response.headers["Content-Type"] = _JSON
        response.headers["Cache-Control"] = "no-cache, private"
        try:
            await response.prepare(ctx.raw)
        except ConnectionError:
            return response  # the client went away before the stream began
        watcher = Watcher(ctx.target, ctx.raw.transport)
        self.watchers.add(watcher)

        def selected(obj: Mapping[str, Any]) -> bool:
            return labels_match(labels, obj) and fields_match(fields, obj, allowed)

        def wrap(event_type: str, obj: JsonObj) -> JsonObj:
            shown = self._present(ctx, obj)
            if as_kind == "Table":
                shown = render_table([shown], self._columns(ctx),
                                     resource_version=_meta(obj).get("resourceVersion", ""),
                                     include_object=ctx.params.get("includeObject", "Metadata"))
            return {"type": event_type, "object": shown}

        try:
            if gone_rule is not None:
                error = ApiError(410, "Expired", f"too old resource version: {rv_param or 0} "
                                                 f"({self.store.compacted + 1}) (injected)")
                await response.write(dumps({"type": "ERROR", "object": error.body()}) + b"\n")
            else:
                events = self._watch_events(ctx, watcher, selected, wrap, rv_param, timeout,
                                            bookmarks, initial)
                async for event in events:
                    await response.write(dumps(event) + b"\n")
        except ConnectionError:
            return response  # the client went away
        finally:
            self.watchers.discard(watcher)
        if watcher.abrupt and ctx.raw.transport is not None:
            ctx.raw.transport.close()  # a dropped connection, not a clean end of stream
            return response
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _watch_events(
        self,
        ctx: _Context,
        watcher: Watcher,
        selected: Callable[[Mapping[str, Any]], bool],
        wrap: Callable[[str, JsonObj], JsonObj],
        rv_param: str,
        limit_seconds: float | None,
        bookmarks: bool,
        initial: bool,
    ) -> AsyncIterator[JsonObj]:
        store = self.store
        rt = ctx.rt
        loop = asyncio.get_running_loop()
        if rv_param in ("", "0") or initial:
            # "Start at most recent/any": the current state as synthetic ADDED events first.
            cursor = store.rv
            for obj in store.list_objects(rt, ctx.namespace):
                if selected(obj):
                    yield wrap("ADDED", obj)
            if initial and bookmarks:
                yield self._bookmark(ctx, cursor, initial_end=True)
        else:
            cursor = int(rv_param)
        deadline = loop.time() + limit_seconds if limit_seconds else None
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            if watcher.dropped or self._closing:
                return
            wakeup = store.wakeup
            try:
                changes = store.changes_after(cursor)
                if watcher.expired:
                    raise ApiError(410, "Expired", "watch expired (injected)")
            except ApiError as error:
                yield {"type": "ERROR", "object": error.body()}
                return
            for change in changes:
                cursor = change.rv
                event = self._event_for(ctx, change, selected, wrap)
                if event is not None:
                    yield event
            if watcher.dropped or self._closing:
                return
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                yield self._bookmark(ctx, cursor)
                next_bookmark = now + self.bookmark_interval
            waits = [t - now for t in (deadline, next_bookmark if bookmarks else None)
                     if t is not None]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=max(0.0, min(waits))
                                       if waits else None)

    def _event_for(self, ctx: _Context, change: Change,
                   selected: Callable[[Mapping[str, Any]], bool],
                   wrap: Callable[[str, JsonObj], JsonObj]) -> JsonObj | None:
        if change.ident != ctx.rt.ident:
            return None
        if ctx.namespace is not None and change.namespace != ctx.namespace:
            return None
        if change.type == "DELETED":
            return wrap("DELETED", change.obj) if selected(change.obj) else None
        now_in = selected(change.obj)
        was_in = change.prev is not None and selected(change.prev)
        if now_in:
            return wrap("MODIFIED" if was_in else "ADDED", change.obj)
        if was_in and change.prev is not None:
            # Left the selection: the real watch cache sends DELETED with the old content.
            gone_obj = {**change.prev, "metadata": {**_meta(change.prev),
                                                    "resourceVersion": str(change.rv)}}
            return wrap("DELETED", gone_obj)
        return None

    def _bookmark(self, ctx: _Context, rv: int, *, initial_end: bool = False) -> JsonObj:
        meta: JsonObj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {
            "kind": ctx.rt.kind, "apiVersion": ctx.rt.api_version(ctx.version), "metadata": meta}}

    # -- writing: create ---------------------------------------------------------------------------

    def _body_object(self, ctx: _Context) -> JsonObj:
        accepted = [_JSON, "application/yaml", _PROTOBUF]
        if ctx.content_type == _PROTOBUF:
            try:
                body: Any = kube_proto.decode(ctx.request.body)
            except kube_proto.ProtoUnsupported as error:
                raise ApiError(415, "UnsupportedMediaType",
                               f"the kube emulator does not decode {error}; send "
                               f"application/json") from error
        elif ctx.content_type in ("", _JSON, "application/yaml"):
            body = _decode(ctx.request.body, ctx.content_type)
        else:
            raise unsupported_media_type(ctx.content_type, accepted)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object")
        self._check_type_meta(ctx, body)
        return body

    def _check_type_meta(self, ctx: _Context, body: Mapping[str, Any]) -> None:
        api_version, kind = body.get("apiVersion"), body.get("kind")
        expected = ctx.rt.api_version(ctx.version)
        if kind and kind != ctx.rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind "
                              f"({ctx.rt.kind})")
        if api_version and api_version != expected:
            raise bad_request(f"the API version in the data ({api_version}) does not match the "
                              f"expected API version ({expected})")

    def _create(self, ctx: _Context, body: JsonObj | None = None) -> aiohttp.web.Response:
        rt = ctx.rt
        body = self._body_object(ctx) if body is None else body
        if rt.virtual:
            return self._json(self._review(ctx, body), 201)
        obj = deep_copy(body)
        obj["apiVersion"], obj["kind"] = rt.api_version(ctx.version), rt.kind
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != ctx.namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = ctx.namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = _generate_name(str(meta["generateName"]))
            else:
                raise invalid_object(rt.kind, rt.group, "", [
                    required("metadata.name", "name or generateName is required")])
        name = str(meta["name"])
        if ctx.name is not None and ctx.name != name:  # PUT-as-create
            raise bad_request(f"the name of the object ({name}) does not match the name on the "
                              f"URL ({ctx.name})")
        if rt.namespaced:
            self._check_namespace_open(str(ctx.namespace))
        if self.store.get(rt, ctx.namespace, name) is not None:
            raise already_exists(rt.group, rt.plural, name)
        for key in (*_SERVER_SET_META, "resourceVersion", "managedFields"):
            meta.pop(key, None)
        if rt.has_status(ctx.version):
            obj.pop("status", None)  # status is the status subresource's business
        errors = validate_metadata(meta, name_is_label=rt.ident == NAMESPACES)
        outcome = self._admit(ctx, obj, None)
        self._check_outcome(ctx, name, errors + outcome.errors, outcome)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.maintains_generation:
            meta["generation"] = 1
        if ctx.dry_run:
            return self._json(obj, 201, warnings=ctx.warnings)
        change = self.store.commit(rt, "ADDED", ctx.namespace, name, obj, None)
        self._after_commit(rt, change)
        return self._json(self._present(ctx, change.obj), 201, warnings=ctx.warnings)

    def _check_namespace_open(self, namespace: str) -> None:
        namespaces = self.registry.get(*NAMESPACES)
        assert namespaces is not None
        ns = self.store.get(namespaces, None, namespace)
        if ns is None:
            raise not_found("", "namespaces", namespace)
        if _meta(ns).get("deletionTimestamp"):
            raise forbidden(f"unable to create new content in namespace {namespace} because it "
                            f"is being terminated")

    def _check_outcome(self, ctx: _Context, name: str, errors: list[FieldError],
                       outcome: Outcome) -> None:
        unknown = outcome.unknown_fields
        if unknown and ctx.field_validation == "Strict":
            kind = ctx.rt.kind
            fields = ", ".join(f'unknown field "{p}"' for p in unknown)
            raise bad_request(f'{kind} in version "{ctx.version}" cannot be handled as a {kind}: '
                              f"strict decoding error: {fields}")
        if unknown and ctx.field_validation == "Warn":
            ctx.warnings.extend(f'unknown field "{p}"' for p in unknown)
        ctx.warnings.extend(outcome.warnings)
        if errors:
            raise invalid_object(ctx.rt.kind, ctx.rt.group, name, errors)

    def _review(self, ctx: _Context, body: JsonObj) -> JsonObj:
        """Create-only review kinds: answered as an allowing, all-seeing server would."""
        answer = deep_copy(body)
        answer["apiVersion"], answer["kind"] = ctx.rt.api_version(ctx.version), ctx.rt.kind
        answer.setdefault("metadata", {})["creationTimestamp"] = None
        if ctx.rt.plural.endswith("accessreviews"):
            answer["status"] = {"allowed": True, "reason": "the kube emulator allows everything"}
        elif ctx.rt.plural == "selfsubjectrulesreviews":
            answer["status"] = {
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": False,
            }
        elif ctx.rt.plural in ("tokenreviews", "selfsubjectreviews"):
            user = {"username": "kube-emulator-user", "groups": ["system:masters",
                                                                "system:authenticated"]}
            answer["status"] = {"authenticated": True, "user": user} \
                if ctx.rt.plural == "tokenreviews" else {"userInfo": user}
        return answer

    # -- writing: update / patch -------------------------------------------------------------------

    def _replace(self, ctx: _Context) -> aiohttp.web.Response:
        assert ctx.name is not None
        rt = ctx.rt
        body = self._body_object(ctx)
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        if meta.get("name") != ctx.name:
            raise bad_request(f"the name of the object ({meta.get('name', '')}) does not match "
                              f"the name on the URL ({ctx.name})")
        old = self.store.get(rt, ctx.namespace, ctx.name)
        if old is None:
            if rt.ident in CREATE_ON_UPDATE and ctx.sub is None:
                return self._create(ctx, body)
            raise not_found(rt.group, rt.plural, ctx.name)
        rv = meta.get("resourceVersion")
        if not rv and not rt.builtin:
            raise invalid_object(rt.kind, rt.group, ctx.name, [invalid(
                "metadata.resourceVersion", 0, "must be specified for an update")])
        if rv and rv != _meta(old)["resourceVersion"]:
            raise conflict(rt.group, rt.plural, ctx.name, MODIFIED_CONFLICT)
        return self._update(ctx, old, deep_copy(body))

    def _patch(self, ctx: _Context) -> aiohttp.web.Response:
        assert ctx.name is not None
        rt = ctx.rt
        kind = ctx.content_type
        accepted = ["application/json-patch+json", "application/merge-patch+json",
                    "application/apply-patch+yaml"]
        if rt.builtin:
            accepted.append("application/strategic-merge-patch+json")
        if kind not in accepted:
            raise unsupported_media_type(kind, accepted)
        patch = _decode(ctx.request.body, kind)
        old = self.store.get(rt, ctx.namespace, ctx.name)
        if kind == "application/apply-patch+yaml":
            if not ctx.params.get("fieldManager"):
                raise bad_request("PATCH, fieldManager is required for apply requests")
            if not isinstance(patch, dict):
                raise bad_request("an apply patch must be an object")
            self._check_type_meta(ctx, patch)
            if old is None and ctx.sub is None:
                return self._create(ctx, patch)
        if old is None:
            raise not_found(rt.group, rt.plural, ctx.name)
        base = {**deep_copy(old), "apiVersion": rt.api_version(ctx.version)}
        if kind == "application/json-patch+json":
            new = json_patch(base, patch)
        elif kind == "application/merge-patch+json":
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            new = merge_patch(base, patch)
        elif kind == "application/strategic-merge-patch+json":
            new = strategic_merge_patch(base, patch)
        else:
            # Server-side apply, approximated: a merge without field ownership (no conflicts,
            # fields dropped from the applied config are not removed).
            new = merge_patch(base, _without_nulls(patch))
        if not isinstance(new, dict):
            raise bad_request("the patched object is not an object")
        new_rv = _meta(new).get("resourceVersion")
        if new_rv and new_rv != _meta(old)["resourceVersion"]:
            raise conflict(rt.group, rt.plural, ctx.name, MODIFIED_CONFLICT)
        return self._update(ctx, old, new)

    def _update(self, ctx: _Context, old: JsonObj, new: JsonObj) -> aiohttp.web.Response:
        assert ctx.name is not None
        rt = ctx.rt
        if not isinstance(new.get("metadata"), dict):
            raise bad_request("metadata must be an object")
        old_meta = _meta(old)
        meta: JsonObj = new["metadata"]
        if meta.get("name", ctx.name) != ctx.name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the "
                              f"name on the URL ({ctx.name})")
        if rt.namespaced and meta.get("namespace", ctx.namespace) != ctx.namespace:
            raise bad_request("the namespace of the provided object does not match the namespace "
                              "sent on the request")
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: "
                                            f"{meta['uid']}, UID in object meta: {old_meta['uid']}")
        errors: list[FieldError] = []
        if ctx.sub == "status":
            status = new.get("status")
            new = deep_copy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            meta = new["metadata"]
        else:
            if rt.has_status(ctx.version):
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            for key in _SERVER_SET_META:
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            if old_meta.get("deletionTimestamp"):
                added = [f for f in meta.get("finalizers") or []
                         if f not in (old_meta.get("finalizers") or [])]
                if added:
                    shown = ", ".join(json.dumps(f) for f in added)
                    errors.append(forbidden_field(
                        "metadata.finalizers", f"no new finalizers can be added if the object is "
                                               f"being deleted, found new finalizers "
                                               f"[]string{{{shown}}}"))
            errors.extend(validate_metadata(meta, name_is_label=rt.ident == NAMESPACES))
        new["apiVersion"], new["kind"] = rt.api_version(ctx.version), rt.kind
        meta["name"] = ctx.name
        if rt.namespaced:
            meta["namespace"] = ctx.namespace
        meta["resourceVersion"] = old_meta["resourceVersion"]
        meta.pop("managedFields", None)
        outcome = self._admit(ctx, new, old)
        self._check_outcome(ctx, ctx.name, errors + outcome.errors, outcome)
        if rt.maintains_generation:
            without_status = rt.has_status(ctx.version)
            if _content(new, without_status=without_status) != \
                    _content(old, without_status=without_status):
                meta["generation"] = int(old_meta.get("generation") or 0) + 1
        if _same_object(old, new):
            return self._json(self._present(ctx, old), warnings=ctx.warnings)
        if ctx.dry_run:
            return self._json(new, warnings=ctx.warnings)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # Emptied finalizers of an object being deleted: the real store deletes the stored
            # object as it was, so the DELETED event carries the previous content.
            change = self.store.commit(rt, "DELETED", ctx.namespace, ctx.name, deep_copy(old),
                                       old)
            self._after_commit(rt, change)
            return self._json(self._present(ctx, change.obj), warnings=ctx.warnings)
        change = self.store.commit(rt, "MODIFIED", ctx.namespace, ctx.name, new, old)
        self._after_commit(rt, change)
        return self._json(self._present(ctx, change.obj), warnings=ctx.warnings)

    # -- writing: delete ---------------------------------------------------------------------------

    def _delete_options(self, ctx: _Context) -> JsonObj:
        options: JsonObj = {}
        if ctx.request.body:
            try:
                parsed = json.loads(ctx.request.body)
            except ValueError as error:
                raise bad_request(f"invalid DeleteOptions: {error}") from error
            if isinstance(parsed, dict):
                options = parsed
        for key in ("propagationPolicy", "gracePeriodSeconds"):
            if key in ctx.params:
                options[key] = ctx.params[key]
        if "All" in (options.get("dryRun") or []):
            ctx.dry_run = True
        return options

    def _delete(self, ctx: _Context) -> aiohttp.web.Response:
        assert ctx.name is not None
        rt = ctx.rt
        options = self._delete_options(ctx)
        obj = self.store.get(rt, ctx.namespace, ctx.name)
        if obj is None:
            raise not_found(rt.group, rt.plural, ctx.name)
        preconditions = options.get("preconditions") or {}
        meta = _meta(obj)
        if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
            raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: "
                                            f"{preconditions['uid']}, UID in object meta: "
                                            f"{meta.get('uid')}")
        if preconditions.get("resourceVersion") and \
                preconditions["resourceVersion"] != meta.get("resourceVersion"):
            raise conflict(rt.group, rt.plural, ctx.name, MODIFIED_CONFLICT)
        if ctx.dry_run:
            return self._json(self._present(ctx, obj))
        result = self._delete_object(rt, obj)
        if result is None:
            return self._json({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": ctx.name, "group": rt.group, "kind": rt.plural,
                            "uid": meta.get("uid")},
            })
        return self._json(self._present(ctx, result))

    def _delete_collection(self, ctx: _Context) -> aiohttp.web.Response:
        self._delete_options(ctx)
        labels, fields, allowed = self._selectors(ctx)
        victims = [o for o in self.store.list_objects(ctx.rt, ctx.namespace)
                   if labels_match(labels, o) and fields_match(fields, o, allowed)]
        if not ctx.dry_run:
            for obj in victims:
                self._delete_object(ctx.rt, obj)
        return self._json({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Success"})

    def _delete_object(self, rt: ResourceType, obj: JsonObj) -> JsonObj | None:
        """Delete now (None), or mark as being deleted (the marked object) when finalizers —
        or contents, for namespaces and CRDs — hold it back."""
        meta = _meta(obj)
        namespace, name = meta.get("namespace"), str(meta["name"])
        if meta.get("deletionTimestamp"):
            return obj
        holds_content = rt.ident in (NAMESPACES, CRDS)
        if meta.get("finalizers") or holds_content:
            new = deep_copy(obj)
            new_meta = new["metadata"]
            new_meta["deletionTimestamp"] = now_rfc3339()
            new_meta["deletionGracePeriodSeconds"] = 0
            if new_meta.get("generation"):
                new_meta["generation"] = int(new_meta["generation"]) + 1
            if rt.ident == NAMESPACES:
                new.setdefault("status", {})["phase"] = "Terminating"
            change = self.store.commit(rt, "MODIFIED", namespace, name, new, obj)
            if rt.ident == NAMESPACES:
                self._empty_namespace(name)
            elif rt.ident == CRDS:
                self._empty_crd(change.obj)
            current = self.store.get(rt, namespace, name)
            if current is not None and not _meta(current).get("finalizers") and \
                    not self._holds_content(rt, current):
                change = self.store.commit(rt, "DELETED", namespace, name, deep_copy(current),
                                           current)
                self._after_commit(rt, change)
                return None
            return current
        change = self.store.commit(rt, "DELETED", namespace, name, deep_copy(obj), obj)
        self._after_commit(rt, change)
        return None

    def _holds_content(self, rt: ResourceType, obj: JsonObj) -> bool:
        name = str(_meta(obj)["name"])
        if rt.ident == NAMESPACES:
            return any(True for _ in self.store.objects_in_namespace(name))
        if rt.ident == CRDS:
            served = self._crd_type(obj)
            return served is not None and bool(self.store.list_objects(served, None))
        return False

    def _empty_namespace(self, namespace: str) -> None:
        for ident, (ns, name) in list(self.store.objects_in_namespace(namespace)):
            rt = self.registry.get(*ident)
            obj = self.store.get(rt, ns, name) if rt is not None else None
            if rt is not None and obj is not None:
                self._delete_object(rt, obj)

    def _empty_crd(self, crd: JsonObj) -> None:
        served = self._crd_type(crd)
        if served is not None:
            for obj in self.store.list_objects(served, None):
                self._delete_object(served, obj)

    def _crd_type(self, crd: JsonObj) -> ResourceType | None:
        spec = crd.get("spec") or {}
        rt = self.registry.get(str(spec.get("group")), str((spec.get("names") or {})
                                                           .get("plural")))
        return rt if rt is not None and rt.crd_name == _meta(crd).get("name") else None

    # -- after a commit ----------------------------------------------------------------------------

    def _after_commit(self, rt: ResourceType, change: Change) -> None:
        if rt.ident == CRDS:
            if change.type == "DELETED":
                self._unregister_crd(change.obj)
            else:
                spec = change.obj["spec"]
                previous = self.registry.get(spec["group"], spec["names"]["plural"])
                self.registry.add(type_from_crd(change.obj, previous))
        if change.type != "DELETED":
            return
        if change.namespace is not None:
            self._finish_if_empty(NAMESPACES, None, change.namespace)
        if not rt.builtin and rt.crd_name is not None:
            self._finish_if_empty(CRDS, None, rt.crd_name)

    def _finish_if_empty(self, ident: tuple[str, str], namespace: str | None, name: str) -> None:
        """A namespace or CRD being deleted goes away with its last content."""
        rt = self.registry.get(*ident)
        obj = self.store.get(rt, namespace, name) if rt is not None else None
        if rt is None or obj is None or not _meta(obj).get("deletionTimestamp"):
            return
        if _meta(obj).get("finalizers") or self._holds_content(rt, obj):
            return
        change = self.store.commit(rt, "DELETED", namespace, name, deep_copy(obj), obj)
        self._after_commit(rt, change)

    def _unregister_crd(self, crd: JsonObj) -> None:
        served = self._crd_type(crd)
        if served is None:
            return
        self.registry.remove(served.ident)
        self.store.drop_type(served.ident)
        for watcher in self.watchers:
            target = watcher.target
            if (target.group, target.plural) == served.ident:
                watcher.dropped = True
        self.store.notify()

    # -- admission: defaulting and validation per kind ---------------------------------------------

    def _admit(self, ctx: _Context, obj: JsonObj, old: JsonObj | None) -> Outcome:
        rt = ctx.rt
        if not rt.builtin:
            schema = rt.versions[ctx.version].schema
            if schema is None:
                return Outcome(unknown_fields=prune(obj, None))
            return schema.process(obj, old, kind=rt.kind)
        outcome = Outcome(unknown_fields=prune(obj, None))
        admit = _BUILTIN_ADMISSION.get(rt.ident)
        if admit is not None:
            outcome.errors.extend(admit(self, obj, old))
        return outcome

    def _admit_crd(self, obj: JsonObj, old: JsonObj | None) -> list[FieldError]:
        errors = validate_crd(obj)
        if errors:
            return errors
        spec = obj["spec"]
        names = spec["names"]
        existing = self.registry.get(spec["group"], names["plural"])
        if existing is not None and existing.crd_name != _meta(obj).get("name"):
            return [invalid("spec.names.plural", names["plural"],
                            "is already served by another resource")]
        if old is not None:
            old_spec = old.get("spec") or {}
            for key in ("group", "scope"):
                if old_spec.get(key) != spec.get(key):
                    errors.append(invalid(f"spec.{key}", spec.get(key), "field is immutable"))
        obj["status"] = crd_status(obj, now_rfc3339())
        return errors

    def _admit_namespace(self, obj: JsonObj, old: JsonObj | None) -> list[FieldError]:
        meta = obj["metadata"]
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        status = obj.setdefault("status", {})
        status["phase"] = "Terminating" if meta.get("deletionTimestamp") else "Active"
        return []

    def _admit_secret(self, obj: JsonObj, old: JsonObj | None) -> list[FieldError]:
        errors: list[FieldError] = []
        data = obj.get("data") or {}
        if not isinstance(data, dict):
            return [invalid("data", data, "must be a map")]
        for key, value in data.items():
            if not isinstance(value, str):
                raise bad_request(f"Secret in version \"v1\" cannot be handled as a Secret: "
                                  f"illegal base64 data at data[{key}]")
            try:
                base64.b64decode(value, validate=True)
            except ValueError:
                raise bad_request(f"Secret in version \"v1\" cannot be handled as a Secret: "
                                  f"illegal base64 data at input byte 0 (data[{key}])") from None
        string_data = obj.pop("stringData", None) or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        if data:
            obj["data"] = data
        errors.extend(_data_key_errors("data", data))
        secret_type = obj.setdefault("type", "Opaque")
        required_keys = {
            "kubernetes.io/tls": ("tls.crt", "tls.key"),
            "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
            "kubernetes.io/dockercfg": (".dockercfg",),
            "kubernetes.io/ssh-auth": ("ssh-privatekey",),
        }.get(str(secret_type), ())
        errors.extend(required(f"data[{key}]") for key in required_keys if key not in data)
        if old is not None:
            if old.get("type", "Opaque") != secret_type:
                errors.append(invalid("type", secret_type, "field is immutable"))
            errors.extend(_immutable_data_errors(obj, old))
        return errors

    def _admit_configmap(self, obj: JsonObj, old: JsonObj | None) -> list[FieldError]:
        errors = _data_key_errors("data", obj.get("data") or {})
        errors.extend(_data_key_errors("binaryData", obj.get("binaryData") or {}))
        if old is not None:
            errors.extend(_immutable_data_errors(obj, old))
        return errors

    def _admit_service(self, obj: JsonObj, old: JsonObj | None) -> list[FieldError]:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if old is not None and (old.get("spec") or {}).get("clusterIP"):
            spec.setdefault("clusterIP", old["spec"]["clusterIP"])
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            spec["clusterIP"] = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
        if spec.get("clusterIP") not in (None, "None"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        errors: list[FieldError] = []
        if old is not None:
            old_ip = (old.get("spec") or {}).get("clusterIP")
            if old_ip and spec.get("clusterIP") != old_ip:
                errors.append(invalid("spec.clusterIP", spec.get("clusterIP"),
                                      "field is immutable"))
        return errors

    def _admit_endpointslice(self, obj: JsonObj, old: JsonObj | None) -> list[FieldError]:
        errors: list[FieldError] = []
        address_type = obj.get("addressType")
        if address_type is None:
            errors.append(required("addressType"))
        elif address_type not in ("IPv4", "IPv6", "FQDN"):
            errors.append(not_supported("addressType", address_type, ["FQDN", "IPv4", "IPv6"]))
        elif old is not None and old.get("addressType") != address_type:
            errors.append(invalid("addressType", address_type, "field is immutable"))
        for index, endpoint in enumerate(obj.get("endpoints") or []):
            if not isinstance(endpoint, dict) or not endpoint.get("addresses"):
                errors.append(required(f"endpoints[{index}].addresses"))
        return errors

    def _admit_pod(self, obj: JsonObj, old: JsonObj | None) -> list[FieldError]:
        if not (obj.get("spec") or {}).get("containers"):
            return [required("spec.containers")]
        if old is None:
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        return []


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


_DATA_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+")


def _data_key_errors(field_name: str, data: Mapping[str, Any]) -> list[FieldError]:
    return [
        invalid(field_name, key, "a valid config key must consist of alphanumeric characters, "
                                 "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                                 "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
        for key in data
        if len(key) > 253 or not _DATA_KEY.fullmatch(key)
    ]


def _immutable_data_errors(obj: JsonObj, old: JsonObj) -> list[FieldError]:
    if not old.get("immutable"):
        return []
    errors = []
    if obj.get("immutable") is not True:
        errors.append(forbidden_field("immutable", "field is immutable when `immutable` is set"))
    for key in ("data", "binaryData"):
        if obj.get(key) != old.get(key):
            errors.append(forbidden_field(key, "field is immutable when `immutable` is set"))
    return errors


_BUILTIN_ADMISSION: Final[dict[tuple[str, str], Callable[
    [KubeApi, JsonObj, JsonObj | None], list[FieldError]]]] = {
    CRDS: KubeApi._admit_crd,
    NAMESPACES: KubeApi._admit_namespace,
    ("", "secrets"): KubeApi._admit_secret,
    ("", "configmaps"): KubeApi._admit_configmap,
    ("", "services"): KubeApi._admit_service,
    ("discovery.k8s.io", "endpointslices"): KubeApi._admit_endpointslice,
    ("", "pods"): KubeApi._admit_pod,
}
