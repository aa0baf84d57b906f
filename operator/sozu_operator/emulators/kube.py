"""A Kubernetes API server emulator for running the real kopf operator and the real kubectl end
to end where no kube-apiserver can be installed.

Built on kmock (PyPI `kmock`, pinned to 0.8): `KubeApi` (kube_api.py) extends kmock's
`KubernetesEmulator` and is served by `kmock.Server`; this module wraps both into
`KubeEmulator` with a kubeconfig writer, in-process fault switches and a request log, and
provides `serve()` / `run_kube_emulator()` for `sozu-operator kube-emulator`.

What it implements: discovery (legacy and aggregated v2), `/openapi/v3` (and JSON
`/openapi/v2`), namespaces, CRDs (POSTed CRDs are served at once; CRs are pruned, defaulted and
validated against the CRD schema, CEL rules by a tiny evaluator), get/list/watch (global
resourceVersion, bookmarks, replay from a bounded history, in-stream 410 Gone,
timeoutSeconds, label and field selectors, limit/continue), create/update/delete/
deletecollection, merge/JSON/strategic/apply patches, status subresources, generation,
finalizers and deletionTimestamp, Table output with printer columns, and built-in kinds
(generic storage for everything in kmock's bundled k3s discovery data, with the server-side
behaviour of secrets, configmaps, services, endpointslices, namespaces, pods, events, leases
and the access reviews).

Request bodies are JSON or YAML; protobuf bodies (what kubectl's typed `create namespace|
secret|configmap` send) are decoded for those three kinds only. Responses are always JSON.

Known differences from a real API server: no field management (server-side apply is a merge
without conflicts), no garbage collection of dependents (ownerReferences), no conversion
between CRD versions (all versions share the stored fields), no validation ratcheting,
continue tokens page over the current state rather than a snapshot, built-in kinds are not
schema-validated (only the checks named above), no event TTL, no admission webhooks, and
namespace/CRD deletion finishes as soon as the contents are gone (no controller delay).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import re
import signal
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import aiohttp
import aiohttp.test_utils
import aiohttp.web
import kmock
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sozu_operator.emulators.kube_api import FaultRule, KubeApi, LoggedRequest
from sozu_operator.emulators.kube_meta import JsonObj

DEFAULT_TOKEN: Final = "sozu-kube-emulator-token"
DEFAULT_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")
# How long stopping waits for handlers still running after watches were told to end.
_SHUTDOWN_TIMEOUT: Final = 2.0


class _TestServer(aiohttp.test_utils.RawTestServer):
    """kmock's default server class, with a short shutdown timeout: aiohttp's default (60 s)
    would hold `stop()` for as long as any client keeps a connection open."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        server = aiohttp.web.Server(self._handler, loop=self._loop, debug=debug, **kwargs)
        return aiohttp.web.ServerRunner(
            server, debug=debug, shutdown_timeout=_SHUTDOWN_TIMEOUT, **kwargs)


def _server_class(ssl_context: ssl.SSLContext | None) -> type[_TestServer]:
    """kmock.Server instantiates its server class itself; TLS has to come in through it."""

    class _Server(_TestServer):
        async def start_server(self, loop: asyncio.AbstractEventLoop | None = None,
                               **kwargs: Any) -> None:
            if ssl_context is not None:
                kwargs.setdefault("ssl", ssl_context)
            await super().start_server(loop=loop, **kwargs)

    return _Server


def _self_signed(host: str) -> tuple[ssl.SSLContext, bytes]:
    """A throw-away serving certificate for `host` (+ localhost) and its PEM (the CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sozu-kube-emulator")])
    now = datetime.datetime.now(tz=datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt_names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as scratch:  # ssl loads key pairs from files only
        cert_path, key_path = Path(scratch, "tls.crt"), Path(scratch, "tls.key")
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(key_pem)
        key_path.chmod(0o600)
        context.load_cert_chain(cert_path, key_path)
    return context, cert_pem


def _regex(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(pattern)


class KubeEmulator:
    """One emulated API server on a local TCP port.

    Authentication: a request carrying `Authorization` must carry `Bearer <token>` (else 401).
    kubectl only sends bearer tokens over TLS, so on plain http (the default) requests without
    the header are let in; with `tls=True` the server uses a throw-away self-signed
    certificate (its PEM is `ca_pem`, and in the kubeconfig) and requires the token except on
    /version and the health endpoints.

    Fault switches act on the next matching requests (`path` is a regex searched in
    "path?query"): `fail_next`, `slow_next`, `gone_next_watch`; and at once on open watches:
    `drop_watches` (clean end or connection reset) and `expire_watches` (in-stream 410). The
    `api` attribute is the kmock handler: its DSL works too (`emu.api['get /apis'] << 503`).
    """

    def __init__(
        self,
        *,
        token: str | None = DEFAULT_TOKEN,
        bookmark_interval: float = 60.0,
        watch_timeout: float | None = None,
        history_limit: int = 10_000,
        versions_per_object: int | None = 50,
        request_log_limit: int = 10_000,
        aggregated_discovery: bool = True,
        namespaces: Sequence[str] = DEFAULT_NAMESPACES,
        tls: bool = False,
        allow_anonymous: bool | None = None,
    ) -> None:
        self.token = token
        self.tls = tls
        self.ca_pem: bytes | None = None
        self._ssl: ssl.SSLContext | None = None
        self.api = KubeApi(
            token=token,
            # kubectl only sends tokens over TLS, so plain http must let it in anonymous.
            allow_anonymous=not tls if allow_anonymous is None else allow_anonymous,
            bookmark_interval=bookmark_interval,
            watch_timeout=watch_timeout,
            history_limit=history_limit,
            versions_per_object=versions_per_object,
            request_log_limit=request_log_limit,
            aggregated_discovery=aggregated_discovery,
            initial_namespaces=tuple(namespaces),
        )
        self._server: kmock.Server | None = None
        self._api_entered = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        if self.tls and self._ssl is None:
            self._ssl, self.ca_pem = _self_signed(host)
        self.api.reopen()
        await self.api.__aenter__()
        self._api_entered = True
        server = kmock.Server(self.api, host=host, port=port or None,
                              server_cls=_server_class(self._ssl))
        await server.__aenter__()
        self._server = server
        self.api.address = f"{server.host}:{server.port}"

    async def stop(self) -> None:
        """Stop serving. Servers must be stopped in the reverse order of starting: kmock.Server
        chains a resolver hook into aiohttp and checks that the chain unwinds in order."""
        self.api.shut_down()
        await asyncio.sleep(0)  # let watch handlers see the flag and finish their streams
        server, self._server = self._server, None
        try:
            if server is not None:
                await server.__aexit__(None, None, None)
        finally:
            if self._api_entered:
                self._api_entered = False
                await self.api.__aexit__(None, None, None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return str(self._server.url).rstrip("/")

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.port)

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default",
                         name: str = "kube-emulator") -> Path:
        """A kubeconfig for kubectl/kopf: bearer token auth, plain http (https with the
        emulator's own CA when `tls=True`)."""
        target = Path(path)
        cluster: JsonObj = {"server": self.url}
        if self.ca_pem is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": name, "cluster": cluster}],
            "users": [{"name": name, "user": {"token": self.token} if self.token else {}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name,
                                                    "namespace": namespace}}],
            "current-context": name,
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    def session(self) -> aiohttp.ClientSession:
        """An aiohttp session against the emulator with the token already set."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        connector = None
        if self.ca_pem is not None:
            trusted = ssl.create_default_context(cadata=self.ca_pem.decode())
            connector = aiohttp.TCPConnector(ssl=trusted)
        return aiohttp.ClientSession(base_url=self.url, headers=headers, connector=connector)

    # -- in-process conveniences -------------------------------------------------------------------

    async def create(self, obj: JsonObj) -> JsonObj:
        """POST an object (any kind the server serves); raises on a non-2xx answer."""
        meta = obj.get("metadata") or {}
        path = self.api.path_for(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        async with self.session() as session, session.post(path, json=obj) as response:
            body: JsonObj = await response.json()
            if response.status >= 300:
                raise RuntimeError(f"create failed: {response.status} {body.get('message')}")
            return body

    def get_object(self, api_version: str, kind: str, name: str,
                   namespace: str | None = None) -> JsonObj | None:
        """The stored object, read in-process (no request, nothing logged)."""
        group, _, version = api_version.rpartition("/")
        rt = self.api.registry.by_kind(group, version, kind)
        if rt is None:
            return None
        return self.api.store.get(rt, namespace if rt.namespaced else None, name)

    @property
    def resource_version(self) -> int:
        return self.api.store.rv

    @property
    def internal_errors(self) -> list[str]:
        """Tracebacks of requests the emulator failed on by its own fault (answered 500)."""
        return list(self.api.internal_errors)

    # -- faults ------------------------------------------------------------------------------------

    def fail_next(self, times: int = 1, *, status: int = 503,
                  path: str | re.Pattern[str] | None = None, method: str | None = None,
                  verb: str | None = None, message: str | None = None) -> FaultRule:
        """Answer the next `times` matching requests with an error Status of that code."""
        rule = FaultRule(times, status=status, path=_regex(path), method=method, verb=verb,
                         message=message)
        self.api.faults.append(rule)
        return rule

    def slow_next(self, times: int = 1, *, seconds: float,
                  path: str | re.Pattern[str] | None = None, method: str | None = None,
                  verb: str | None = None) -> FaultRule:
        """Delay the next `times` matching requests by `seconds` before serving them."""
        rule = FaultRule(times, delay=seconds, path=_regex(path), method=method, verb=verb)
        self.api.faults.append(rule)
        return rule

    def gone_next_watch(self, times: int = 1, *,
                        path: str | re.Pattern[str] | None = None) -> FaultRule:
        """Answer the next `times` watch requests with an in-stream ERROR 410 Gone."""
        rule = FaultRule(times, gone=True, path=_regex(path), verb="watch")
        self.api.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        self.api.faults.clear()

    def drop_watches(self, *, abrupt: bool = False) -> int:
        """End every open watch now: a clean end of stream, or a reset connection."""
        return self.api.end_watches(abrupt=abrupt)

    def expire_watches(self) -> int:
        """Send 410 Gone into every open watch (clients must re-list)."""
        return self.api.end_watches(expire=True)

    def compact(self) -> None:
        """Forget the change history: watches resuming from older versions get 410 Gone."""
        self.api.store.compact()

    @property
    def open_watches(self) -> int:
        return len(self.api.watchers)

    # -- request log -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[LoggedRequest]:
        return list(self.api.log)

    def recorded_permissions(self, client: str | None = None) -> set[tuple[str, str, str, str]]:
        """(verb, group, resource, subresource) of every resource request seen, to compare
        with the RBAC rules the operator is deployed with; subresource is "" if none.
        `client` keeps only requests whose User-Agent product matches (e.g. "kopf")."""
        return {p[:4] for p in self.api.permissions if client is None or p[4] == client}

    def clear_log(self) -> None:
        self.api.log.clear()
        self.api.permissions.clear()


def _crd_documents(paths: Sequence[str | Path]) -> list[JsonObj]:
    documents: list[JsonObj] = []
    for entry in paths:
        path = Path(entry)
        files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() \
            else [path]
        for file in files:
            for document in yaml.safe_load_all(file.read_text()):
                if isinstance(document, dict) and document.get("kind"):
                    documents.append(document)
    return documents


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    kubeconfig: str | Path | None = None,
    token: str | None = DEFAULT_TOKEN,
    manifests: Sequence[str | Path] = (),
    bookmark_interval: float = 60.0,
) -> int:
    """Run an emulator until SIGINT/SIGTERM; exit status 0. `manifests` (files or
    directories of YAML, e.g. crds/) are created at start."""
    emulator = KubeEmulator(token=token, bookmark_interval=bookmark_interval)
    await emulator.start(host, port)
    try:
        for document in _crd_documents(manifests):
            await emulator.create(document)
        if kubeconfig is not None:
            emulator.write_kubeconfig(kubeconfig)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        where = f"; kubeconfig {kubeconfig}" if kubeconfig is not None else ""
        print(f"Kubernetes API emulator listening on {emulator.url}{where}", flush=True)
        await stopping.wait()
    finally:
        with contextlib.suppress(RuntimeError):
            await emulator.stop()
    return 0


def run_kube_emulator(
    port: int = 0,
    kubeconfig: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    token: str | None = DEFAULT_TOKEN,
    manifests: Sequence[str | Path] = (),
    bookmark_interval: float = 60.0,
) -> int:
    """Entry point for `sozu-operator kube-emulator --port N --kubeconfig PATH`; returns the
    process exit status (1 if the port cannot be bound or a manifest is refused)."""
    try:
        return asyncio.run(serve(host=host, port=port, kubeconfig=kubeconfig, token=token,
                                 manifests=manifests, bookmark_interval=bookmark_interval))
    except OSError as error:
        print(f"kube emulator: cannot listen on {host}:{port}: {error}", file=sys.stderr)
        return 1
    except (RuntimeError, yaml.YAMLError) as error:
        print(f"kube emulator: {error}", file=sys.stderr)
        return 1


__all__ = [
    "DEFAULT_TOKEN",
    "FaultRule",
    "KubeApi",
    "KubeEmulator",
    "LoggedRequest",
    "run_kube_emulator",
    "serve",
]
