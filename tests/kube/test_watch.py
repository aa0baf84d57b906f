"""API semantics over plain HTTP (aiohttp): list/watch, writes, patches, errors, discovery,
faults. Everything kopf relies on is pinned here without kopf in the loop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from tests.kube.kube_support import WIDGETS, widget

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.kube_schema import StructuralSchema

ROOT = Path(__file__).resolve().parents[2]
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
KUBECTL_DISCOVERY = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                     "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
                     "application/json")
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.fixture
async def http(widgets: KubeEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with widgets.session() as session:
        yield session


async def call(session: aiohttp.ClientSession, method: str, path: str, body: Any = None,
               *, headers: dict[str, str] | None = None, expect: int = 200,
               **params: str) -> Any:
    data = None if body is None else json.dumps(body)
    async with session.request(method, path, data=data, params=params,
                               headers={"Content-Type": "application/json", **(headers or {})}
                               ) as response:
        text = await response.text()
        assert response.status == expect, f"{method} {path}: {response.status} {text}"
        assert response.content_type == "application/json", response.content_type
        return json.loads(text)


class Watch:
    """An open watch stream, read one event at a time."""

    def __init__(self, session: aiohttp.ClientSession, path: str, **params: str) -> None:
        self.session, self.path, self.params = session, path, {"watch": "true", **params}
        self.response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> Watch:
        self.response = await self.session.get(self.path, params=self.params)
        assert self.response.status == 200
        assert self.response.content_type == "application/json"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.response is not None
        self.response.close()

    async def next(self, wait: float = 2.0) -> dict[str, Any]:
        assert self.response is not None
        line = await asyncio.wait_for(self.response.content.readline(), wait)
        if not line:
            raise EOFError("the watch stream ended")
        event: dict[str, Any] = json.loads(line)
        return event

    async def next_non_bookmark(self, wait: float = 2.0) -> dict[str, Any]:
        while (event := await self.next(wait))["type"] == "BOOKMARK":
            pass
        return event

    async def ended(self, wait: float = 2.0) -> bool:
        try:
            while True:
                await self.next(wait)
        except EOFError:
            return True


def summary(event: dict[str, Any]) -> tuple[str, str]:
    return event["type"], event["object"]["metadata"].get("name", "")


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


# --- list + watch --------------------------------------------------------------------------------


async def test_list_then_watch_resumes_from_the_list_resource_version(
    http: aiohttp.ClientSession,
) -> None:
    for name in ("w1", "w2"):
        await call(http, "POST", WIDGETS, widget(name), expect=201)
    listed = await call(http, "GET", WIDGETS)
    assert listed["kind"] == "WidgetList"
    assert listed["apiVersion"] == "example.sozu.io/v1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w1", "w2"]
    assert all(i["kind"] == "Widget" for i in listed["items"])
    start = rv(listed)
    assert start == max(rv(i) for i in listed["items"])

    await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 5}}, headers=MERGE)
    await call(http, "POST", WIDGETS, widget("w3"), expect=201)
    await call(http, "DELETE", f"{WIDGETS}/w2")

    async with Watch(http, WIDGETS, resourceVersion=str(start)) as watch:
        events = [await watch.next() for _ in range(3)]
    assert [summary(e) for e in events] == [("MODIFIED", "w1"), ("ADDED", "w3"),
                                            ("DELETED", "w2")]
    versions = [rv(e["object"]) for e in events]
    assert versions == sorted(versions)
    assert versions[0] > start

    # No resourceVersion: the current state first, as synthetic ADDED events.
    async with Watch(http, WIDGETS) as watch:
        assert [summary(await watch.next()) for _ in range(2)] == [("ADDED", "w1"),
                                                                   ("ADDED", "w3")]


async def test_bookmarks_and_initial_events_end(http: aiohttp.ClientSession,
                                                widgets: KubeEmulator) -> None:
    await call(http, "POST", WIDGETS, widget("w1"), expect=201)
    current = str(widgets.resource_version)
    async with Watch(http, WIDGETS, resourceVersion=current,
                     allowWatchBookmarks="true") as watch:
        started = time.monotonic()
        bookmark = await watch.next(wait=2)
        assert time.monotonic() - started < 1.5
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["kind"] == "Widget"
    assert bookmark["object"]["metadata"]["resourceVersion"] == current

    async with Watch(http, WIDGETS, sendInitialEvents="true", allowWatchBookmarks="true",
                     resourceVersionMatch="NotOlderThan") as watch:
        assert summary(await watch.next()) == ("ADDED", "w1")
        end = await watch.next()
    assert end["type"] == "BOOKMARK"
    assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_expired_resource_versions_get_an_in_stream_410(
    http: aiohttp.ClientSession, widgets: KubeEmulator
) -> None:
    await call(http, "POST", WIDGETS, widget("w1"), expect=201)
    old = rv(await call(http, "GET", WIDGETS))
    await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 2}}, headers=MERGE)
    widgets.compact()
    async with Watch(http, WIDGETS, resourceVersion=str(old)) as watch:
        error = await watch.next()
        assert await watch.ended()
    assert error["type"] == "ERROR"
    assert error["object"]["kind"] == "Status"
    assert error["object"]["code"] == 410
    assert error["object"]["reason"] == "Expired"

    # From the current version everything is fine again.
    now = str(widgets.resource_version)
    async with Watch(http, WIDGETS, resourceVersion=now) as watch:
        await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"size": 3}}, headers=MERGE)
        assert summary(await watch.next_non_bookmark()) == ("MODIFIED", "w1")

    # Injected: the next watch only (any resourceVersion) is told 410.
    widgets.gone_next_watch()
    async with Watch(http, WIDGETS, resourceVersion=now) as watch:
        assert (await watch.next())["object"]["code"] == 410
    async with Watch(http, WIDGETS, resourceVersion=now) as watch:
        assert summary(await watch.next_non_bookmark()) == ("MODIFIED", "w1")
        # And open watches can be expired at once.
        assert widgets.expire_watches() == 1
        assert (await watch.next_non_bookmark())["object"]["code"] == 410
        assert await watch.ended()


async def test_history_is_bounded() -> None:
    async with KubeEmulator(history_limit=10) as emulator, emulator.session() as session:
        start = emulator.resource_version
        for index in range(12):
            await call(session, "POST", "/api/v1/namespaces/default/configmaps",
                       {"metadata": {"name": f"c{index}"}}, expect=201)
        async with Watch(session, "/api/v1/namespaces/default/configmaps",
                         resourceVersion=str(start)) as watch:
            assert (await watch.next())["object"]["code"] == 410


async def test_dropped_and_timed_out_watches_end(http: aiohttp.ClientSession,
                                                 widgets: KubeEmulator) -> None:
    async with Watch(http, WIDGETS, resourceVersion="0") as watch:
        await asyncio.sleep(0.05)
        assert widgets.open_watches == 1
        assert widgets.drop_watches() == 1
        assert await watch.ended()
    async with Watch(http, WIDGETS, resourceVersion="0") as watch:
        await asyncio.sleep(0.05)
        widgets.drop_watches(abrupt=True)
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                            aiohttp.ClientConnectionError)):
            await watch.next()
    started = time.monotonic()
    async with Watch(http, WIDGETS, resourceVersion=str(widgets.resource_version),
                     timeoutSeconds="1") as watch:
        assert await watch.ended(wait=3)
    assert 0.9 < time.monotonic() - started < 2.5


# --- writes --------------------------------------------------------------------------------------


async def test_status_subresource_and_generation_rules(http: aiohttp.ClientSession) -> None:
    body = widget("w1")
    body["status"] = {"phase": "ignored on create"}
    created = await call(http, "POST", WIDGETS, body, expect=201)
    assert "status" not in created
    assert created["metadata"]["generation"] == 1

    # PUT on the main resource: the spec changes, the status does not.
    replace = {**created, "spec": {"color": "blue", "size": 2}, "status": {"phase": "x"}}
    replaced = await call(http, "PUT", f"{WIDGETS}/w1", replace)
    assert replaced["spec"] == {"color": "blue", "size": 2}
    assert "status" not in replaced
    assert replaced["metadata"]["generation"] == 2

    # The status subresource: the status changes, the spec does not, nor the generation.
    patched = await call(http, "PATCH", f"{WIDGETS}/w1/status",
                         {"spec": {"color": "red"}, "status": {"phase": "Ready"},
                          "metadata": {"labels": {"ignored": "yes"}}}, headers=MERGE)
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["color"] == "blue"
    assert "labels" not in patched["metadata"]
    assert patched["metadata"]["generation"] == 2
    assert rv(patched) > rv(replaced)
    assert (await call(http, "GET", f"{WIDGETS}/w1/status"))["status"] == {"phase": "Ready"}

    # PUT /status needs the current resourceVersion like any update.
    stale = {**patched, "status": {"phase": "Gone"}}
    stale["metadata"] = {**patched["metadata"], "resourceVersion": str(rv(replaced))}
    await call(http, "PUT", f"{WIDGETS}/w1/status", stale, expect=409)
    fresh = await call(http, "PUT", f"{WIDGETS}/w1/status", {**patched,
                                                              "status": {"phase": "Done"}})
    assert fresh["status"] == {"phase": "Done"}

    # Metadata-only changes keep the generation; writes that change nothing keep the version.
    labelled = await call(http, "PATCH", f"{WIDGETS}/w1", {"metadata": {"labels": {"a": "b"}}},
                          headers=MERGE)
    assert labelled["metadata"]["generation"] == 2
    same = await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"color": "blue"}}, headers=MERGE)
    assert rv(same) == rv(labelled)
    # A status change through the main resource is dropped (so nothing changes).
    ignored = await call(http, "PATCH", f"{WIDGETS}/w1", {"status": {"phase": "Nope"}},
                         headers=MERGE)
    assert ignored["status"] == {"phase": "Done"}
    assert rv(ignored) == rv(labelled)

    # CRs need a resourceVersion on PUT (no unconditional updates).
    unconditional = {**same, "metadata": {"name": "w1", "namespace": "default"}}
    error = await call(http, "PUT", f"{WIDGETS}/w1", unconditional, expect=422)
    assert error["details"]["causes"][0]["field"] == "metadata.resourceVersion"


async def test_merge_and_json_patches(http: aiohttp.ClientSession) -> None:
    created = await call(http, "POST", WIDGETS, {**widget("w1"),
                                                 "spec": {"color": "red", "size": 2,
                                                          "tags": ["a", "b"]}}, expect=201)
    merged = await call(http, "PATCH", f"{WIDGETS}/w1",
                        {"spec": {"tags": ["c"], "size": None}}, headers=MERGE)
    assert merged["spec"] == {"color": "red", "tags": ["c"], "size": 1}  # size re-defaulted

    patched = await call(http, "PATCH", f"{WIDGETS}/w1", [
        {"op": "test", "path": "/spec/color", "value": "red"},
        {"op": "add", "path": "/spec/tags/-", "value": "d"},
        {"op": "replace", "path": "/spec/size", "value": 7},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.sozu.io/hold"]},
    ], headers=JSON_PATCH)
    assert patched["spec"] == {"color": "red", "tags": ["c", "d"], "size": 7}
    assert patched["metadata"]["finalizers"] == ["example.sozu.io/hold"]

    # kopf's finalizer removal: a `test` on the resourceVersion guards the patch.
    stale = [{"op": "test", "path": "/metadata/resourceVersion",
              "value": created["metadata"]["resourceVersion"]},
             {"op": "remove", "path": "/metadata/finalizers/0"}]
    error = await call(http, "PATCH", f"{WIDGETS}/w1", stale, headers=JSON_PATCH, expect=422)
    assert error["kind"] == "Status"
    assert error["reason"] == "Invalid"
    assert "test failed" in error["message"]
    fresh = [{**stale[0], "value": patched["metadata"]["resourceVersion"]}, stale[1]]
    done = await call(http, "PATCH", f"{WIDGETS}/w1", fresh, headers=JSON_PATCH)
    assert done["metadata"]["finalizers"] == []

    missing = [{"op": "replace", "path": "/spec/nothing/here", "value": 1}]
    await call(http, "PATCH", f"{WIDGETS}/w1", missing, headers=JSON_PATCH, expect=422)
    # Schema validation applies to patched objects too; list-type=set forbids duplicates.
    dupes = await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {"tags": ["x", "x"]}},
                       headers=MERGE, expect=422)
    assert dupes["details"]["causes"][0]["reason"] == "FieldValueDuplicate"
    smp = {"Content-Type": "application/strategic-merge-patch+json"}
    await call(http, "PATCH", f"{WIDGETS}/w1", {"spec": {}}, headers=smp, expect=415)
    # A resourceVersion in a merge patch is a precondition.
    await call(http, "PATCH", f"{WIDGETS}/w1", {"metadata": {"resourceVersion": "1"}},
               headers=MERGE, expect=409)


async def test_finalizers_hold_deletion(http: aiohttp.ClientSession,
                                        widgets: KubeEmulator) -> None:
    body = widget("w1")
    body["metadata"]["finalizers"] = ["example.sozu.io/hold"]
    await call(http, "POST", WIDGETS, body, expect=201)
    async with Watch(http, WIDGETS, resourceVersion=str(widgets.resource_version)) as watch:
        deleting = await call(http, "DELETE", f"{WIDGETS}/w1")
        assert deleting["metadata"]["deletionTimestamp"]
        assert deleting["metadata"]["generation"] == 2
        assert summary(await watch.next_non_bookmark()) == ("MODIFIED", "w1")
        # Deleting again changes nothing; new finalizers are refused while deleting.
        again = await call(http, "DELETE", f"{WIDGETS}/w1")
        assert rv(again) == rv(deleting)
        refused = await call(http, "PATCH", f"{WIDGETS}/w1",
                             {"metadata": {"finalizers": ["example.sozu.io/hold", "more/x"]}},
                             headers=MERGE, expect=422)
        assert "no new finalizers can be added" in refused["message"]
        await call(http, "PATCH", f"{WIDGETS}/w1", {"metadata": {"finalizers": None}},
                   headers=MERGE)
        assert summary(await watch.next_non_bookmark()) == ("DELETED", "w1")
    await call(http, "GET", f"{WIDGETS}/w1", expect=404)


async def test_namespace_deletion_cascades(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": "team"}}, expect=201)
    await call(http, "POST", "/api/v1/namespaces/team/configmaps",
               {"metadata": {"name": "c1"}, "data": {"k": "v"}}, expect=201)
    held = {"metadata": {"name": "c2", "finalizers": ["example.sozu.io/hold"]}}
    await call(http, "POST", "/api/v1/namespaces/team/configmaps", held, expect=201)
    terminating = await call(http, "DELETE", "/api/v1/namespaces/team")
    assert terminating["status"]["phase"] == "Terminating"
    await call(http, "GET", "/api/v1/namespaces/team/configmaps/c1", expect=404)
    refused = await call(http, "POST", "/api/v1/namespaces/team/configmaps",
                         {"metadata": {"name": "c3"}}, expect=403)
    assert "being terminated" in refused["message"]
    await call(http, "PATCH", "/api/v1/namespaces/team/configmaps/c2",
               {"metadata": {"finalizers": []}}, headers=MERGE)
    await call(http, "GET", "/api/v1/namespaces/team", expect=404)
    missing = await call(http, "POST", "/api/v1/namespaces/team/configmaps",
                         {"metadata": {"name": "c4"}}, expect=404)
    assert missing["message"] == 'namespaces "team" not found'


async def test_errors_are_status_bodies(http: aiohttp.ClientSession) -> None:
    missing = await call(http, "GET", f"{WIDGETS}/nope", expect=404)
    assert missing == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'widgets.example.sozu.io "nope" not found', "reason": "NotFound",
        "code": 404, "details": {"name": "nope", "group": "example.sozu.io", "kind": "widgets"},
    }
    created = await call(http, "POST", WIDGETS, widget("w1"), expect=201)
    assert (await call(http, "POST", WIDGETS, widget("w1"), expect=409))["reason"] == \
        "AlreadyExists"
    stale = {**created, "spec": {"color": "red"}}
    await call(http, "PUT", f"{WIDGETS}/w1", stale)
    conflict = await call(http, "PUT", f"{WIDGETS}/w1", stale, expect=409)
    assert conflict["reason"] == "Conflict"
    assert "the object has been modified" in conflict["message"]

    invalid = await call(http, "POST", WIDGETS, {**widget("Bad_Name"), "spec": {"size": "x"}},
                         expect=422)
    assert invalid["reason"] == "Invalid"
    assert invalid["details"]["kind"] == "Widget"
    causes = {c["field"]: c for c in invalid["details"]["causes"]}
    assert set(causes) == {"metadata.name", "spec.color", "spec.size"}
    assert causes["spec.color"]["reason"] == "FieldValueRequired"
    assert causes["spec.size"]["message"].startswith('Invalid value: "string": spec.size in '
                                                     'body must be of type integer')
    assert invalid["message"].startswith('Widget.example.sozu.io "Bad_Name" is invalid: [')

    assert (await call(http, "GET", "/apis/example.sozu.io/v1/nothings", expect=404))["code"] \
        == 404
    await call(http, "POST", "/api/v1/namespaces/default/secrets", {
        "metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {}}, expect=422)
    await call(http, "POST", "/api/v1/namespaces/default/secrets", {
        "metadata": {"name": "s"}, "data": {"k": "not base64!"}}, expect=400)


# --- selectors -----------------------------------------------------------------------------------


async def test_selectors_on_list_and_watch(http: aiohttp.ClientSession,
                                           widgets: KubeEmulator) -> None:
    await call(http, "POST", WIDGETS, widget("a", labels={"tier": "front", "team": "x"}),
               expect=201)
    await call(http, "POST", WIDGETS, widget("b", labels={"tier": "back"}), expect=201)
    await call(http, "POST", WIDGETS, widget("c"), expect=201)

    async def names(**params: str) -> list[str]:
        listed = await call(http, "GET", WIDGETS, **params)
        return [i["metadata"]["name"] for i in listed["items"]]

    assert await names(labelSelector="tier=front") == ["a"]
    assert await names(labelSelector="tier!=front") == ["b", "c"]
    assert await names(labelSelector="tier in (front,back),!team") == ["b"]
    assert await names(labelSelector="tier") == ["a", "b"]
    assert await names(fieldSelector="metadata.name=c") == ["c"]
    assert await names(fieldSelector="metadata.namespace=default,metadata.name!=a") == ["b", "c"]
    bad = await call(http, "GET", WIDGETS, expect=400, fieldSelector="spec.color=red")
    assert bad["message"] == "field label not supported: spec.color"

    # A watch with a selector sees objects enter (ADDED) and leave (DELETED) the selection.
    async with Watch(http, WIDGETS, resourceVersion=str(widgets.resource_version),
                     labelSelector="tier=front") as watch:
        await call(http, "PATCH", f"{WIDGETS}/c", {"metadata": {"labels": {"tier": "front"}}},
                   headers=MERGE)
        await call(http, "PATCH", f"{WIDGETS}/b", {"spec": {"size": 9}}, headers=MERGE)
        await call(http, "PATCH", f"{WIDGETS}/a", {"metadata": {"labels": {"tier": None}}},
                   headers=MERGE)
        events = [summary(await watch.next_non_bookmark()) for _ in range(2)]
    assert events == [("ADDED", "c"), ("DELETED", "a")]
    async with Watch(http, WIDGETS, fieldSelector="metadata.name=b") as watch:
        assert summary(await watch.next()) == ("ADDED", "b")

    # Secrets select on their type.
    for name, kind in (("plain", "Opaque"), ("site", "kubernetes.io/tls")):
        data = {"tls.crt": "Y2VydA==", "tls.key": "a2V5"} if kind != "Opaque" else {}
        await call(http, "POST", "/api/v1/namespaces/default/secrets",
                   {"metadata": {"name": name}, "type": kind, "data": data}, expect=201)
    tls = await call(http, "GET", "/api/v1/namespaces/default/secrets",
                     fieldSelector="type=kubernetes.io/tls")
    assert [s["metadata"]["name"] for s in tls["items"]] == ["site"]


async def test_pagination(http: aiohttp.ClientSession) -> None:
    for index in range(5):
        await call(http, "POST", "/api/v1/namespaces/default/configmaps",
                   {"metadata": {"name": f"c{index}"}}, expect=201)
    seen: list[str] = []
    token = ""
    while True:
        params = {"limit": "2", **({"continue": token} if token else {})}
        page = await call(http, "GET", "/api/v1/namespaces/default/configmaps", **params)
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 5 - len(seen)
    assert seen == [f"c{index}" for index in range(5)]


async def test_pagination_across_namespaces(http: aiohttp.ClientSession) -> None:
    """Pages of every namespace, and of one among others, in (namespace, name) order, with
    the exact count of what remains."""
    for namespace in ("a", "b", "c"):
        await call(http, "POST", "/api/v1/namespaces", {"metadata": {"name": namespace}},
                   expect=201)
        for index in range(3):
            await call(http, "POST", f"/api/v1/namespaces/{namespace}/configmaps",
                       {"metadata": {"name": f"m{index}"}}, expect=201)

    async def pages(path: str, total: int) -> list[str]:
        seen: list[str] = []
        token = ""
        while True:
            params = {"limit": "2", **({"continue": token} if token else {})}
            page = await call(http, "GET", path, **params)
            seen += [f"{i['metadata']['namespace']}/{i['metadata']['name']}"
                     for i in page["items"]]
            token = page["metadata"].get("continue", "")
            if not token:
                return seen
            assert page["metadata"]["remainingItemCount"] == total - len(seen)

    everything = [f"{ns}/m{index}" for ns in ("a", "b", "c") for index in range(3)]
    assert await pages("/api/v1/configmaps", 9) == everything
    assert await pages("/api/v1/namespaces/b/configmaps", 3) == ["b/m0", "b/m1", "b/m2"]


# --- built-ins, discovery, tables ----------------------------------------------------------------


async def test_builtin_kinds_kopf_and_the_operator_use(http: aiohttp.ClientSession) -> None:
    event = await call(http, "POST", "/api/v1/namespaces/default/events", {
        "metadata": {"generateName": "w1."},
        "involvedObject": {"kind": "Widget", "name": "w1", "namespace": "default"},
        "type": "Normal", "reason": "Logging", "message": "hello",
    }, expect=201)
    assert event["metadata"]["name"].startswith("w1.")
    assert len(event["metadata"]["name"]) == len("w1.") + 5
    found = await call(http, "GET", "/api/v1/namespaces/default/events",
                       fieldSelector="involvedObject.name=w1,reason=Logging")
    assert len(found["items"]) == 1
    await call(http, "POST", "/apis/events.k8s.io/v1/namespaces/default/events", {
        "metadata": {"name": "e2"}, "reason": "Tested", "note": "n",
        "eventTime": "2025-01-01T00:00:00.000000Z", "action": "Test",
        "reportingController": "tests", "reportingInstance": "tests-1",
    }, expect=201)

    slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
    await call(http, "POST", slices, {"metadata": {"name": "bad"}, "addressType": "IPX"},
               expect=422)
    await call(http, "POST", slices, {
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
    }, expect=201)
    owned = await call(http, "GET", slices, labelSelector="kubernetes.io/service-name=web")
    assert [s["metadata"]["name"] for s in owned["items"]] == ["web-abc"]

    review = await call(http, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "widgets"}},
    }, expect=201)
    assert review["status"]["allowed"] is True

    leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    lease = await call(http, "PUT", f"{leases}/leader", {
        "metadata": {"name": "leader"}, "spec": {"holderIdentity": "me"}}, expect=201)
    lease["spec"]["holderIdentity"] = "you"
    assert (await call(http, "PUT", f"{leases}/leader", lease))["spec"]["holderIdentity"] == "you"

    service = await call(http, "POST", "/api/v1/namespaces/default/services", {
        "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}, expect=201)
    assert service["spec"]["clusterIP"].startswith("10.96.")
    assert service["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]


async def test_discovery_legacy_and_aggregated(http: aiohttp.ClientSession) -> None:
    async with http.get("/apis", headers={"Accept": KUBECTL_DISCOVERY}) as response:
        assert response.headers["Content-Type"].endswith("as=APIGroupDiscoveryList")
        aggregated = await response.json(content_type=None)
    group = next(g for g in aggregated["items"] if g["metadata"]["name"] == "example.sozu.io")
    resource = group["versions"][0]["resources"][0]
    assert resource["resource"] == "widgets"
    assert resource["scope"] == "Namespaced"
    assert resource["subresources"][0]["subresource"] == "status"

    legacy = await call(http, "GET", "/apis", headers={"Accept": "application/json"})
    assert legacy["kind"] == "APIGroupList"
    names = [g["name"] for g in legacy["groups"]]
    assert "example.sozu.io" in names
    assert "apiextensions.k8s.io" in names
    resources = await call(http, "GET", "/apis/example.sozu.io/v1")
    entries = {r["name"]: r for r in resources["resources"]}
    assert entries["widgets"]["singularName"] == "widget"
    assert entries["widgets"]["shortNames"] == ["wd"]
    assert {"list", "watch", "patch"} <= set(entries["widgets"]["verbs"])
    assert entries["widgets/status"]["singularName"] == ""
    core = await call(http, "GET", "/api")
    assert core["versions"] == ["v1"]
    assert {"namespaces", "secrets", "events"} <= {
        r["name"] for r in (await call(http, "GET", "/api/v1"))["resources"]}
    await call(http, "GET", "/apis", headers={
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})

    index = await call(http, "GET", "/openapi/v3")
    assert "apis/example.sozu.io/v1" in index["paths"]
    document = await call(http, "GET", "/openapi/v3/apis/example.sozu.io/v1")
    patch = document["paths"]["/apis/example.sozu.io/v1/namespaces/{namespace}/widgets/{name}"][
        "patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "example.sozu.io", "version": "v1", "kind": "Widget"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]


async def test_table_output(http: aiohttp.ClientSession) -> None:
    await call(http, "POST", WIDGETS, widget("w1", size=4), expect=201)
    await call(http, "PATCH", f"{WIDGETS}/w1/status",
               {"status": {"conditions": [{"type": "Other", "status": "False"},
                                          {"type": "Ready", "status": "True"}]}},
               headers=MERGE)
    table = await call(http, "GET", WIDGETS, headers={"Accept": TABLE})
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Color", "Size", "Ready",
                                                               "Age"]
    cells = table["rows"][0]["cells"]
    assert cells[:4] == ["w1", "green", 4, "True"]
    assert cells[4].endswith("s")
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


# --- faults, request log, the project's CRDs -----------------------------------------------------


async def test_fault_injection_and_request_log(http: aiohttp.ClientSession,
                                               widgets: KubeEmulator) -> None:
    widgets.clear_log()
    rule = widgets.fail_next(2, status=503, path=r"/widgets\b")
    for _ in range(2):
        async with http.get(WIDGETS) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["reason"] == "ServiceUnavailable"
    await call(http, "GET", WIDGETS)
    assert rule.remaining == 0
    assert len(rule.fired) == 2
    await call(http, "GET", "/api/v1/namespaces")  # did not match the regex anyway

    widgets.slow_next(1, seconds=0.3, method="POST")
    started = time.monotonic()
    await call(http, "POST", WIDGETS, widget("w1"), expect=201)
    assert time.monotonic() - started >= 0.3
    await call(http, "PATCH", f"{WIDGETS}/w1/status", {"status": {"x": 1}}, headers=MERGE)

    # kmock's own DSL still works for one-off reactions, ahead of the emulation.
    widgets.api["get /version"][:1] << {"major": "99"}
    assert (await call(http, "GET", "/version"))["major"] == "99"
    assert (await call(http, "GET", "/version"))["major"] == "1"

    assert widgets.recorded_permissions() >= {
        ("list", "example.sozu.io", "widgets", ""),
        ("list", "", "namespaces", ""),
        ("create", "example.sozu.io", "widgets", ""),
        ("patch", "example.sozu.io", "widgets", "status"),
    }
    post = next(r for r in widgets.requests if r.method == "POST")
    assert post.content_type == "application/json"
    assert post.json["metadata"]["name"] == "w1"
    assert (post.verb, post.resource, post.namespace, post.status) == \
        ("create", "widgets", "default", 201)


async def test_the_project_crd_rules_are_all_enforced() -> None:
    files = sorted((ROOT / "crds").glob("*.yaml"))
    if not files:
        pytest.skip("no crds/*.yaml in the repository yet")
    for path in files:
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            schema = StructuralSchema(version["schema"]["openAPIV3Schema"])
            assert schema.skipped_rules == [], path.name

