"""The emulator's state: which resources are served (built-ins from kmock's bundled discovery
data, custom resources from posted CRDs), the objects, the global resourceVersion counter and
the bounded change history that watches replay from.

Invariants: every committed write bumps the counter by exactly one and appends exactly one
`Change`, so the history holds every resourceVersion in (compacted, current]; stored object
dicts are never mutated after commit (writers build new dicts), so changes and clients can
share them.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import functools
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import kmock

from sozu_operator.emulators.kube_meta import JsonObj, gone
from sozu_operator.emulators.kube_query import (
    AGE_COLUMN,
    BUILTIN_COLUMNS,
    BUILTIN_FIELDS,
    NAME_COLUMN,
    Column,
    printer_column,
)
from sozu_operator.emulators.kube_schema import StructuralSchema

# Group-versions of kmock's bundled (k3s) discovery data that the emulator serves. The bundle
# also has metrics.k8s.io and gateway.networking.k8s.io, which are add-ons, not built-ins.
SERVED_BUILTIN_GROUP_VERSIONS: Final = (
    "v1", "apiregistration.k8s.io/v1", "apps/v1", "events.k8s.io/v1", "authentication.k8s.io/v1",
    "authorization.k8s.io/v1", "autoscaling/v2", "autoscaling/v1", "batch/v1",
    "certificates.k8s.io/v1", "networking.k8s.io/v1", "policy/v1", "rbac.authorization.k8s.io/v1",
    "storage.k8s.io/v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1",
    "scheduling.k8s.io/v1", "coordination.k8s.io/v1", "node.k8s.io/v1", "discovery.k8s.io/v1",
    "flowcontrol.apiserver.k8s.io/v1",
)
# Built-ins whose generation the server maintains (the others leave it unset).
GENERATION_BUILTINS: Final = frozenset({
    ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"),
    ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"),
    ("networking.k8s.io", "ingresses"), ("networking.k8s.io", "networkpolicies"),
    ("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
})
# Built-ins a PUT may create (AllowCreateOnUpdate in the real registry strategies).
CREATE_ON_UPDATE: Final = frozenset({
    ("", "events"), ("events.k8s.io", "events"), ("", "endpoints"),
    ("coordination.k8s.io", "leases"), ("", "nodes"),
})


@dataclass
class VersionInfo:
    name: str
    schema: StructuralSchema | None = None
    raw_schema: JsonObj | None = None
    status: bool = False
    columns: tuple[Column, ...] = (NAME_COLUMN, AGE_COLUMN)
    selectable: dict[str, str] = field(default_factory=dict)


@dataclass
class ResourceType:
    group: str
    plural: str
    singular: str
    kind: str
    list_kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    versions: dict[str, VersionInfo]  # served versions, preferred first
    storage_version: str
    key_version: str  # the version in kmock's object keys; fixed for the type's lifetime
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    crd_name: str | None = None
    virtual: bool = False  # create-only reviews: answered, never stored

    @property
    def builtin(self) -> bool:
        return self.crd_name is None

    @property
    def ident(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def kmock_resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.key_version, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def has_status(self, version: str) -> bool:
        info = self.versions.get(version)
        return bool(info and info.status)

    def selectable_fields(self, version: str) -> dict[str, str]:
        fields = {"metadata.name": ".metadata.name"}
        if self.namespaced:
            fields["metadata.namespace"] = ".metadata.namespace"
        for name in BUILTIN_FIELDS.get(self.ident, ()):
            fields[name] = "." + name
        info = self.versions.get(version)
        if info:
            fields.update(info.selectable)
        return fields

    @property
    def maintains_generation(self) -> bool:
        return not self.builtin or self.ident in GENERATION_BUILTINS

    @property
    def label(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


@functools.cache
def _bundle() -> kmock.ResourcesArray:
    bundle = kmock.ResourcesArray()
    with warnings.catch_warnings():  # kmock 0.8 uses the deprecated importlib.resources API
        warnings.simplefilter("ignore", DeprecationWarning)
        bundle.load_bundled()
    return bundle


def builtin_types() -> list[ResourceType]:
    """Built-in resources from kmock's bundled discovery documents (a k3s cluster's)."""
    bundle = _bundle()
    served = set(SERVED_BUILTIN_GROUP_VERSIONS)
    by_ident: dict[tuple[str, str], ResourceType] = {}
    for resource in bundle:
        gv = f"{resource.group}/{resource.version}" if resource.group else str(resource.version)
        if gv not in served or resource.plural is None or resource.version is None:
            continue
        info = bundle[resource]
        ident = (str(resource.group), resource.plural)
        version = VersionInfo(
            resource.version,
            status="status" in info.subresources,
            columns=BUILTIN_COLUMNS.get(ident, (NAME_COLUMN, AGE_COLUMN)),
        )
        existing = by_ident.get(ident)
        if existing is not None:
            existing.versions[resource.version] = version
            continue
        verbs = tuple(sorted(info.verbs))
        by_ident[ident] = ResourceType(
            group=ident[0],
            plural=resource.plural,
            singular=info.singular or resource.plural,
            kind=str(info.kind),
            list_kind=f"{info.kind}List",
            namespaced=bool(info.namespaced),
            verbs=verbs,
            versions={resource.version: version},
            storage_version=resource.version,
            key_version=resource.version,
            short_names=tuple(sorted(info.shortnames)),
            categories=tuple(sorted(info.categories)),
            subresources=frozenset(info.subresources),
            virtual=set(verbs) == {"create"},
        )
    # Preferred version first, the way the real server orders them (autoscaling: v2 then v1).
    for rt in by_ident.values():
        order = [gv.rsplit("/", 1)[-1] for gv in SERVED_BUILTIN_GROUP_VERSIONS
                 if (gv.rsplit("/", 1)[0] if "/" in gv else "") == rt.group]
        rt.versions = {v: rt.versions[v] for v in order if v in rt.versions}
        rt.storage_version = rt.key_version = next(iter(rt.versions))
    return list(by_ident.values())


CR_VERBS: Final = ("delete", "deletecollection", "get", "list", "patch", "create", "update",
                   "watch")


def type_from_crd(crd: JsonObj, previous: ResourceType | None) -> ResourceType:
    """The served resource a (validated) CRD describes."""
    spec = crd["spec"]
    names = spec["names"]
    kind = str(names["kind"])
    versions: dict[str, VersionInfo] = {}
    storage = ""
    for version in spec["versions"]:
        if version.get("storage"):
            storage = str(version["name"])
        if not version.get("served"):
            continue
        raw = copy.deepcopy((version.get("schema") or {}).get("openAPIV3Schema"))
        columns = [printer_column(c) for c in version.get("additionalPrinterColumns") or []]
        # The API server's default when a version declares no printer columns.
        info = VersionInfo(
            str(version["name"]),
            schema=StructuralSchema(raw) if raw is not None else None,
            raw_schema=raw,
            status="status" in (version.get("subresources") or {}),
            columns=(NAME_COLUMN, *columns) if columns else (NAME_COLUMN, AGE_COLUMN),
            selectable={
                str(f["jsonPath"]).lstrip("."): str(f["jsonPath"])
                for f in version.get("selectableFields") or [] if f.get("jsonPath")
            },
        )
        versions[info.name] = info
    ordered = sorted(versions, key=_version_priority)
    return ResourceType(
        group=str(spec["group"]),
        plural=str(names["plural"]),
        singular=str(names.get("singular") or kind.lower()),
        kind=kind,
        list_kind=str(names.get("listKind") or f"{kind}List"),
        namespaced=spec.get("scope") == "Namespaced",
        verbs=CR_VERBS,
        versions={v: versions[v] for v in ordered},
        storage_version=storage,
        key_version=previous.key_version if previous else storage,
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=frozenset(
            s for v in versions.values() for s in (("status",) if v.status else ())
        ),
        crd_name=str(crd["metadata"]["name"]),
    )


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if match is None:
        return (3, 0, 0, version)
    stability = {"": 0, "beta": 1, "alpha": 2}[match.group(2) or ""]
    return (stability, -int(match.group(1)), -int(match.group(3) or 0), version)


class Registry:
    """Served resources by (group, plural), plus kmock's `ResourcesArray` kept in sync so
    that `handler.resources` shows what discovery shows."""

    def __init__(self, mirror: kmock.ResourcesArray) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._mirror = mirror

    def add(self, rt: ResourceType) -> None:
        old = self._types.get(rt.ident)
        if old is not None:
            for version in old.versions:
                self._mirror.pop(kmock.resource(old.group, version, old.plural), None)
        self._types[rt.ident] = rt
        for version in rt.versions:
            self._mirror[kmock.resource(rt.group, version, rt.plural)] = kmock.ResourceInfo(
                kind=rt.kind,
                singular=rt.singular,
                namespaced=rt.namespaced,
                verbs=set(rt.verbs),
                shortnames=set(rt.short_names),
                categories=set(rt.categories),
                subresources=set(rt.subresources),
            )

    def remove(self, ident: tuple[str, str]) -> ResourceType | None:
        rt = self._types.pop(ident, None)
        if rt is not None:
            for version in rt.versions:
                self._mirror.pop(kmock.resource(rt.group, version, rt.plural), None)
        return rt

    def get(self, group: str, plural: str) -> ResourceType | None:
        return self._types.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self._types.get((group, plural))
        return rt if rt is not None and version in rt.versions else None

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.group == group and rt.kind == kind and version in rt.versions \
                    and not rt.virtual:
                return rt
        return None

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._types.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, preferred first ("" is the core group)."""
        groups: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = groups.setdefault(rt.group, [])
            for version in rt.versions:
                if version not in versions:
                    versions.append(version)
        for group, versions in groups.items():
            if group == "":
                continue
            builtin_order = [gv.rsplit("/", 1)[1] for gv in SERVED_BUILTIN_GROUP_VERSIONS
                             if gv.startswith(group + "/")]
            versions.sort(key=lambda v: (builtin_order.index(v) if v in builtin_order
                                         else len(builtin_order), _version_priority(v)))
        return groups


# --- objects and changes --------------------------------------------------------------------------

ObjKey = tuple[str | None, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Change:
    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    ident: tuple[str, str]
    namespace: str | None
    name: str
    obj: JsonObj
    prev: JsonObj | None


class Store:
    def __init__(
        self,
        objects: kmock.ObjectsArray,
        *,
        history_limit: int,
        versions_per_object: int | None,
        first_rv: int = 1000,
    ) -> None:
        self.objects = objects  # kmock's array: history per object, for assertions in tests
        self.history_limit = history_limit
        self.versions_per_object = versions_per_object
        self.rv = first_rv
        self.compacted = first_rv  # changes with rv <= compacted are gone
        self.changes: list[Change] = []
        self._live: dict[tuple[str, str], dict[ObjKey, JsonObj]] = {}
        # Per type, the sorted keys of `_live` ("" for no namespace), made again after a
        # creation or a deletion.
        self._order: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._wakeup = asyncio.Event()

    # -- reading -----------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> JsonObj | None:
        return self._live.get(rt.ident, {}).get((namespace, name))

    def list_objects(self, rt: ResourceType, namespace: str | None, *,
                     after: tuple[str, str] | None = None) -> list[JsonObj]:
        """Objects of `rt` (of `namespace`, or of all) in (namespace, name) order; with `after`,
        only those that come after that (namespace, name)."""
        return list(self.iter_objects(rt, namespace, after=after))

    def iter_objects(self, rt: ResourceType, namespace: str | None, *,
                     after: tuple[str, str] | None = None) -> Iterator[JsonObj]:
        live = self._live.get(rt.ident, {})
        order, low, high = self._range(rt.ident, namespace, after)
        for at in range(low, high):
            found = order[at]
            yield live[(found[0] or None, found[1])]

    def count_objects(self, rt: ResourceType, namespace: str | None, *,
                      after: tuple[str, str] | None = None) -> int:
        _, low, high = self._range(rt.ident, namespace, after)
        return high - low

    def _range(self, ident: tuple[str, str], namespace: str | None,
               after: tuple[str, str] | None) -> tuple[list[tuple[str, str]], int, int]:
        """The sorted (namespace or "", name) keys of a type, and the slice of them that a
        LIST of `namespace` after `after` covers: a page of a paged LIST costs its own size,
        not the whole type's (50k objects in pages of 2k: 25 sorts and filters of all 50k)."""
        order = self._order.get(ident)
        if order is None:
            order = self._order[ident] = sorted(
                (key[0] or "", key[1]) for key in self._live.get(ident, {}))
        low, high = 0, len(order)
        if namespace is not None:
            low = bisect.bisect_left(order, (namespace, ""))
            high = bisect.bisect_left(order, (namespace + "\0", ""))
        if after is not None:
            low = max(low, bisect.bisect_right(order, after))
        return order, low, min(max(low, high), len(order))

    def objects_in_namespace(self, namespace: str) -> Iterator[tuple[tuple[str, str], ObjKey]]:
        for ident, live in self._live.items():
            for key in live:
                if key[0] == namespace:
                    yield ident, key

    def drop_type(self, ident: tuple[str, str]) -> None:
        self._live.pop(ident, None)
        self._order.pop(ident, None)

    # -- writing -----------------------------------------------------------------------------------

    def commit(
        self,
        rt: ResourceType,
        event: str,
        namespace: str | None,
        name: str,
        obj: JsonObj,
        prev: JsonObj | None,
    ) -> Change:
        """Store `obj` (a fresh dict) under a new resourceVersion and record the change."""
        self.rv += 1
        meta = dict(obj.get("metadata") or {})
        meta["resourceVersion"] = str(self.rv)
        obj["metadata"] = meta
        live = self._live.setdefault(rt.ident, {})
        if event == "DELETED" or (namespace, name) not in live:
            self._order.pop(rt.ident, None)
        key = (rt.kmock_resource, namespace, name)
        if event == "DELETED":
            live.pop((namespace, name), None)
            if key in self.objects:
                self.objects[key].delete()
        else:
            live[(namespace, name)] = obj
            if key in self.objects:
                self.objects[key].history.append(obj)
            else:
                self.objects[key] = obj
        if self.versions_per_object and key in self.objects:
            history = self.objects[key].history
            if len(history) > self.versions_per_object:
                del history[: len(history) - self.versions_per_object]
        change = Change(self.rv, event, rt.ident, namespace, name, obj, prev)
        self.changes.append(change)
        if len(self.changes) > self.history_limit:
            self.compact(keep=self.history_limit // 2)
        self.notify()
        return change

    def compact(self, keep: int = 0) -> None:
        """Forget history (etcd compaction): watches from before it get 410 Gone."""
        drop = max(0, len(self.changes) - keep)
        if drop:
            del self.changes[:drop]
        self.compacted = self.rv - len(self.changes)

    def changes_after(self, rv: int) -> list[Change]:
        if rv < self.compacted:
            raise gone(f"too old resource version: {rv} ({self.compacted + 1})")
        return self.changes[rv - self.compacted:] if rv < self.rv else []

    # -- waking watchers ---------------------------------------------------------------------------

    @property
    def wakeup(self) -> asyncio.Event:
        return self._wakeup

    def notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()


def deep_copy(obj: Mapping[str, Any]) -> JsonObj:
    return copy.deepcopy(dict(obj))
