"""The few Kubernetes API calls the operator makes itself: status patches, Events, LISTs.

kopf does the watching; the rest goes through this small aiohttp client so that the operator
controls exactly what is sent (one merge patch per changed status, one Event per new problem,
paged LISTs: at start-up, and to find deletions a watch never reported), with the same
credentials kopf logs in with.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import kopf

from sozu_operator.resources.models import ResourceRef

GROUP, VERSION = "sozu.io", "v1alpha1"
LIST_PAGE = 2_000  # objects per page of a LIST
_JSON = "application/json"
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1," \
                 "application/json"
PLURALS = {
    "SozuCluster": "sozuclusters",
    "SozuFrontend": "sozufrontends",
    "SozuCertificate": "sozucertificates",
}


class KubeApiError(Exception):
    """An error answer (`status` is its HTTP code), or no answer at all (`status` 0: refused,
    reset or dropped connection, timeout)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


@contextlib.asynccontextmanager
async def _no_answer_is_an_error() -> AsyncIterator[None]:
    """Connection-level failures as KubeApiError, so that callers handle one exception type
    (aiohttp's ServerDisconnectedError, for one, is not an OSError)."""
    try:
        yield
    except (aiohttp.ClientError, TimeoutError) as error:
        raise KubeApiError(0, f"no answer from the API server: {type(error).__name__}: "
                              f"{error}") from error


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=_text(info.ca_data) if info.ca_data else None,
    )
    if info.certificate_path or info.certificate_data:
        with tempfile.TemporaryDirectory() as folder:
            cert = info.certificate_path or _write(folder, "cert.pem", info.certificate_data)
            key = info.private_key_path or _write(folder, "key.pem", info.private_key_data)
            context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def _text(data: str | bytes) -> str:
    return data.decode() if isinstance(data, bytes) else data


def _write(folder: str, name: str, data: str | bytes | None) -> str | None:
    if data is None:
        return None
    path = f"{folder}/{name}"
    raw = data if isinstance(data, bytes) else data.encode()
    if not raw.lstrip().startswith(b"-----"):  # kubeconfig inlines PEM as base64
        raw = base64.b64decode(raw)
    with open(path, "wb") as file:
        file.write(raw)
    return path


class KubeApi:
    def __init__(self, info: kopf.ConnectionInfo, *, user_agent: str) -> None:
        headers = {"User-Agent": user_agent}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = (
            aiohttp.BasicAuth(info.username, info.password or "")
            if info.username and not info.token
            else None
        )
        self._server = info.server.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers=headers,
            auth=auth,
            connector=aiohttp.TCPConnector(ssl=_ssl_context(info)),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self._session.close()

    async def _request(
        self, method: str, path: str, body: Mapping[str, Any], content_type: str
    ) -> int:
        async with _no_answer_is_an_error(), self._session.request(
            method, self._server + path, json=body, headers={"Content-Type": content_type}
        ) as response:
            if response.status >= 400 and response.status != 404:
                text = await response.text()
                raise KubeApiError(response.status, text[:500])
            return response.status

    async def list_objects(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        namespace: str | None,
        field_selector: str | None = None,
        keep: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda item: item,
    ) -> list[Mapping[str, Any]]:
        """Every object a LIST returns now, each with its `kind` and `apiVersion` (the items of
        a built-in List leave them out), as `keep` makes it as soon as its page is read."""
        found: list[Mapping[str, Any]] = []
        api_version = f"{group}/{version}" if group else version
        async for kind, items in self._pages(group, version, plural, namespace=namespace,
                                             field_selector=field_selector, accept=_JSON):
            for item in items:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", api_version)
                found.append(keep(item))
        return found

    async def list_uids(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        namespace: str | None,
        field_selector: str | None = None,
    ) -> set[str]:
        """The uids of the objects a LIST returns now (metadata only: no Secret data)."""
        return {
            uid
            async for _, items in self._pages(group, version, plural, namespace=namespace,
                                              field_selector=field_selector,
                                              accept=_METADATA_ONLY)
            for item in items
            if isinstance(uid := (item.get("metadata") or {}).get("uid"), str)
        }

    async def _pages(
        self,
        group: str,
        version: str,
        plural: str,
        *,
        namespace: str | None,
        field_selector: str | None,
        accept: str,
    ) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
        """A LIST, page by page (so that no answer holds 50k objects at once): the kind of
        its items and the items."""
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        params = {"limit": str(LIST_PAGE)}
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            async with _no_answer_is_an_error(), self._session.get(
                self._server + path, params=params, headers={"Accept": accept}
            ) as response:
                if response.status >= 400:
                    raise KubeApiError(response.status, (await response.text())[:500])
                body = await response.json()
            kind = str(body.get("kind") or "").removesuffix("List")
            yield kind, body.get("items") or []
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    async def patch_status(self, ref: ResourceRef, patch: Mapping[str, Any]) -> bool:
        """Merge-patch `/status`; False if the object is gone (404)."""
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/"
            f"{PLURALS[ref.kind]}/{ref.name}/status"
        )
        status = await self._request(
            "PATCH", path, {"status": patch}, "application/merge-patch+json"
        )
        return status != 404

    async def post_event(
        self,
        ref: ResourceRef,
        *,
        uid: str | None,
        type_: str,
        reason: str,
        message: str,
        instance: str,
    ) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                **({"uid": uid} if uid else {}),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": "sozu-operator", "host": instance},
            "reportingComponent": "sozu-operator",
            "reportingInstance": instance,
        }
        await self._request(
            "POST", f"/api/v1/namespaces/{ref.namespace}/events", body, "application/json"
        )
