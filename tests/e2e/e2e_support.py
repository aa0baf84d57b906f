"""Machinery shared by the end-to-end tests: the test's own API client, the operator as a process
or in-process, polling with deadlines, and the convergence check.

The test talks to the API emulator with its own User-Agent (`SETUP_AGENT`), so that what the
operator sent can be told apart in the emulator's request log (kopf sends `kopf/<version>`, the
operator's own status/Event writes `sozu-operator/<version>`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, overload

import aiohttp
import yaml

from sozu_operator.cli import build_parser
from sozu_operator.cli.run import config_from_args
from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.kube_api import FaultRule
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.kube.operator import Endpoints, run_operator
from sozu_operator.kube.permissions import flatten
from sozu_operator.kube.reconciler import endpoint_backends
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import Backend, Cluster, HttpFrontend, SocketAddress
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.desired import ResolutionError
from sozu_operator.reconcile.pipeline import reconcile
from sozu_operator.reconcile.planner import Step
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.resources.models import (
    BackendSpec,
    ResourceRef,
    SecretRef,
    ServiceRef,
    TlsMaterial,
)
from sozu_operator.resources.secrets import tls_material
from sozu_operator.wire import SozuClient, WireVersion

T = TypeVar("T")
Json = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = ("clusters.yaml", "frontends.yaml", "certificate.yaml")
SEED = EXAMPLES / "sozu" / "state.json"
NS = "default"
OWNER = "sozu-operator"
GV = "sozu.io/v1alpha1"
SETUP_AGENT = "sozu-e2e-setup/1"
OPERATOR_AGENTS = ("kopf/", "sozu-operator/")
MUTATION_VERBS = frozenset(kind.__name__ for kind in rq.MUTATIONS)
SOZU_KINDS = ("SozuCluster", "SozuFrontend", "SozuCertificate")


# --- small things ----------------------------------------------------------------------------


def short_dir() -> Path:
    """A directory with a short path: unix socket paths are limited to ~107 bytes, and pytest's
    tmp_path (plus ".control") can exceed that."""
    return Path(tempfile.mkdtemp(prefix="e2e-", dir="/tmp"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def refuse_start_up_listing(kube: KubeEmulator, plural: str) -> FaultRule:
    """The operator's own paged LIST of `plural` at start-up is answered 503: it then waits
    for kopf's indexes, as they fill (`Reconciler.bootstrap`). kopf lists without pages, so
    `slow_kopf_listing` never matches this LIST, nor this rule kopf's."""
    return kube.fail_next(1, status=503, verb="list", path=rf"/{plural}\?limit=")


def slow_kopf_listing(kube: KubeEmulator, plural: str, *, times: int,
                      seconds: float) -> FaultRule:
    """kopf's next `times` LISTs of `plural` (unpaged) answer after `seconds`."""
    return kube.slow_next(times, seconds=seconds, verb="list", path=rf"/{plural}$")


def documents(*paths: Path) -> list[Json]:
    found: list[Json] = []
    for path in paths:
        found += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return found


def example_documents() -> list[Json]:
    return documents(*(EXAMPLES / name for name in EXAMPLE_FILES))


@overload
async def eventually(check: Callable[[], Awaitable[T | None]], *, within: float, what: str,
                     interval: float = ...) -> T: ...


@overload
async def eventually(check: Callable[[], T | None], *, within: float, what: str,
                     interval: float = ...) -> T: ...


async def eventually(
    check: Callable[[], Any],
    *,
    within: float,
    what: str,
    interval: float = 0.02,
) -> Any:
    """Poll `check` until it returns something truthy (returned) or `within` seconds pass."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        result = check()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what} "
                                 f"(last: {last!r})")
        await asyncio.sleep(interval)


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_line(label: str, values: Sequence[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{label}: n={len(ms)} p50={percentile(ms, 0.5):.0f} ms "
            f"p99={percentile(ms, 0.99):.0f} ms mean={statistics.fmean(ms):.0f} ms "
            f"min={min(ms):.0f} ms max={max(ms):.0f} ms")


# --- the test's own API client ----------------------------------------------------------------


class Api:
    """What the test does to the cluster, through the emulator's HTTP API with its own
    User-Agent (as kubectl or a CI job would), never in-process behind the operator's back."""

    def __init__(self, kube: KubeEmulator) -> None:
        self.kube = kube
        headers = {"User-Agent": SETUP_AGENT}
        if kube.token:
            headers["Authorization"] = f"Bearer {kube.token}"
        self._session = aiohttp.ClientSession(base_url=kube.url, headers=headers)

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def _path(self, api_version: str, kind: str, name: str | None = None,
              namespace: str | None = NS) -> str:
        return self.kube.api.path_for(api_version, kind, namespace, name)

    async def _call(self, method: str, path: str, body: object = None,
                    content_type: str = "application/json",
                    params: Mapping[str, str] | None = None) -> Json:
        kwargs: dict[str, Any] = {"params": params or {}}
        if body is not None:
            kwargs["json"] = body
            kwargs["headers"] = {"Content-Type": content_type}
        async with self._session.request(method, path, **kwargs) as response:
            answer: Json = await response.json(content_type=None)
            if response.status >= 300:
                raise AssertionError(f"{method} {path}: {response.status} "
                                     f"{answer.get('message')}")
            return answer

    async def create(self, *objects: Json) -> list[Json]:
        created = []
        for obj in objects:
            namespace = (obj.get("metadata") or {}).get("namespace")
            path = self._path(obj["apiVersion"], obj["kind"], namespace=namespace or NS)
            created.append(await self._call("POST", path, obj))
        return created

    async def patch(self, kind: str, name: str, patch: Json, *, api_version: str = GV,
                    namespace: str = NS) -> Json:
        """A JSON merge patch (lists are replaced wholesale, `None` removes a field)."""
        return await self._call("PATCH", self._path(api_version, kind, name, namespace), patch,
                                "application/merge-patch+json")

    async def delete(self, kind: str, name: str, *, api_version: str = GV,
                     namespace: str = NS) -> None:
        await self._call("DELETE", self._path(api_version, kind, name, namespace))

    async def delete_all(self, kind: str, *, api_version: str = GV, namespace: str = NS) -> None:
        """One DELETE on the collection (`deletecollection`): every object of the kind at once."""
        await self._call("DELETE", self._path(api_version, kind, namespace=namespace))

    async def objects(self, kind: str, *, api_version: str = GV, namespace: str = NS,
                   params: Mapping[str, str] | None = None) -> list[Json]:
        answer = await self._call("GET", self._path(api_version, kind, namespace=namespace),
                                  params=params)
        items: list[Json] = answer["items"]
        for item in items:  # lists leave kind/apiVersion to the list itself
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
        return items

    async def events(self, namespace: str = NS) -> list[Json]:
        return await self.objects("Event", api_version="v1", namespace=namespace)

    async def install_crds(self) -> None:
        await self.create(*documents(*sorted(CRDS.glob("*.yaml"))))


def stored(kube: KubeEmulator, kind: str, name: str, *, api_version: str = GV,
           namespace: str = NS) -> Json | None:
    """The object as stored, read in-process (no request, nothing logged)."""
    return kube.get_object(api_version, kind, name, namespace)


def status_of(kube: KubeEmulator, kind: str, name: str) -> Json:
    obj = stored(kube, kind, name) or {}
    status: Json = obj.get("status") or {}
    return status


def condition(status: Mapping[str, Any], kind: str) -> Json | None:
    for entry in status.get("conditions") or []:
        if entry.get("type") == kind:
            found: Json = entry
            return found
    return None


def programmed_by(kube: KubeEmulator, kind: str, name: str, pods: Iterable[str]) -> bool:
    """Every pod in `pods` reports the object's current generation as programmed, and the
    aggregate says Ready and Programmed."""
    obj = stored(kube, kind, name)
    if obj is None:
        return False
    generation = obj["metadata"].get("generation")
    status = obj.get("status") or {}
    proxies = status.get("proxies") or {}
    if any((proxies.get(pod) or {}).get("programmedGeneration") != generation for pod in pods):
        return False
    ready, done = condition(status, "Ready"), condition(status, "Programmed")
    return bool(ready and ready["status"] == "True" and done and done["status"] == "True"
                and done.get("observedGeneration") == generation
                and status.get("proxiesProgrammed") == f"{len(proxies)}/{len(proxies)}")


# --- Sōzu side -----------------------------------------------------------------------------


def mutations(sozu: SozuEmulator) -> dict[str, int]:
    """Mutating requests Sōzu received since the last `reset_counts()`, by verb."""
    return {verb: n for verb, n in sozu.verb_counts.items() if verb in MUTATION_VERBS and n}


def live(sozu: SozuEmulator) -> ProxyState:
    return ProxyState.from_config_state(sozu.state)


def _split(sozu: SozuEmulator, mine: bool) -> ProxyState:
    state = live(sozu)
    return dataclasses.replace(
        state,
        clusters={k: v for k, v in state.clusters.items()
                  if ownership.owns_cluster(OWNER, k) == mine},
        backends={k: v for k, v in state.backends.items()
                  if ownership.owns_cluster(OWNER, v.cluster_id) == mine},
        http_frontends={k: v for k, v in state.http_frontends.items()
                        if ownership.owns_frontend(OWNER, v) == mine},
        https_frontends={k: v for k, v in state.https_frontends.items()
                         if ownership.owns_frontend(OWNER, v) == mine},
        tcp_frontends=frozenset(f for f in state.tcp_frontends
                                if ownership.owns_frontend(OWNER, f) == mine),
        certificates={k: v for k, v in state.certificates.items()
                      if ownership.owns_certificate(OWNER, v) == mine},
    )


def owned(sozu: SozuEmulator) -> ProxyState:
    """The part of Sōzu's live state this installation owns (cheap: no I/O)."""
    return _split(sozu, True)


def unowned(sozu: SozuEmulator) -> ProxyState:
    """Everything else: listeners, Sōzu's boot objects, objects added by hand (no I/O)."""
    return _split(sozu, False)


def foreign(cluster_id: str, hostname: str, port: int) -> list[rq.Mutation]:
    """A cluster, a backend and a route without our markers, as an administrator adds them."""
    return [
        rq.AddCluster(Cluster(cluster_id)),
        rq.AddBackend(Backend(cluster_id, f"{cluster_id}-0",
                              SocketAddress.parse(f"127.0.0.1:{port}"))),
        rq.AddHttpFrontend(HttpFrontend(SocketAddress.parse("0.0.0.0:8080"), hostname,
                                        cluster_id=cluster_id)),
    ]


def hostnames(sozu: SozuEmulator) -> set[str]:
    return {f.hostname for f in sozu.state.http_frontends.values()}


async def by_hand(sozu: SozuEmulator, *requests: rq.Request, save: bool = False) -> None:
    """What an administrator does with the `sozu` CLI, over the same socket (`save`: then
    `sozu state save` into Sōzu's boot state file, so that the objects survive restarts)."""
    async with SozuClient(sozu.socket_path, version=WireVersion.V2, timeout=5) as client:
        for request in requests:
            await client.send(request)
        if save:
            assert sozu.state_file is not None
            await client.save_state(str(sozu.state_file))


async def plan_steps(api: Api, sozu: SozuEmulator, *, namespace: str = NS) -> list[Step]:
    """`pipeline.reconcile` of the resources as stored (with the Secrets and EndpointSlices
    they use) against what Sōzu serves: empty when Sōzu is exactly what the resources say."""
    bodies = [b for kind in SOZU_KINDS for b in await api.objects(kind, namespace=namespace)]
    secrets = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s
        for s in await api.objects("Secret", api_version="v1", namespace=namespace)
    }
    slices = await api.objects("EndpointSlice", api_version="discovery.k8s.io/v1",
                            namespace=namespace)

    def resolve_secret(ref: ResourceRef, secret: SecretRef) -> TlsMaterial | ResolutionError:
        found = tls_material(secrets.get((secret.namespace, secret.name)),
                             name=f"Secret {secret.namespace}/{secret.name}")
        return ResolutionError(found) if isinstance(found, str) else found

    def resolve_service(ref: ResourceRef,
                        service: ServiceRef) -> Sequence[BackendSpec] | ResolutionError:
        return endpoint_backends(
            [s for s in slices if s["metadata"]["namespace"] == service.namespace], service)

    result = reconcile(bodies, live(sozu), owner=OWNER, sozu_version=int(sozu.version),
                       resolve_service=resolve_service, resolve_secret=resolve_secret)
    return list(result.plan.steps)


async def converged(api: Api, sozu: SozuEmulator, *, within: float = 10.0,
                    what: str = "Sōzu to match the resources") -> float:
    """Wait until re-planning gives nothing to do; returns the time it took."""
    started = time.monotonic()
    last: list[str] = []

    async def empty() -> bool:
        steps = await plan_steps(api, sozu)
        last[:] = [step.summary for step in steps]
        return not steps

    try:
        await eventually(empty, within=within, what=what, interval=0.05)
    except AssertionError as error:
        raise AssertionError(f"{error}; remaining plan: {last}") from None
    return time.monotonic() - started


# --- what the operator asked of the API -----------------------------------------------------


def operator_permissions(kube: KubeEmulator) -> set[tuple[str, str, str]]:
    """(api group, resource[/subresource], verb) of every resource request the operator made,
    in the form of `permissions.flatten()`; the test's own requests are left out."""
    found = set()
    for entry in kube.requests:
        if entry.user_agent.startswith(SETUP_AGENT) or entry.verb is None:
            continue
        resource = entry.resource or ""
        if entry.subresource:
            resource += f"/{entry.subresource}"
        found.add((entry.group or "", resource, entry.verb))
    return found


def foreign_agents(kube: KubeEmulator) -> set[str]:
    """User-Agents in the request log that are neither the test's nor the operator's."""
    return {
        entry.user_agent for entry in kube.requests
        if not entry.user_agent.startswith((SETUP_AGENT, *OPERATOR_AGENTS))
    }


def assert_within_rbac(kube: KubeEmulator) -> set[tuple[str, str, str]]:
    used = operator_permissions(kube)
    assert foreign_agents(kube) == set(), "requests from an unexpected client"
    extra = used - flatten()
    assert not extra, f"the operator used permissions REQUIRED_PERMISSIONS lacks: {extra}"
    return used


async def quiet(kube: KubeEmulator, period: float, *, within: float = 10.0) -> None:
    """Wait until the operators wrote nothing for `period` seconds. Sidecars write the
    aggregate from their own view, so a write based on a view just overtaken by another
    sidecar's write is corrected by one more write; this waits for those to settle."""
    deadline = time.monotonic() + within
    while True:
        mark = len(kube.requests)
        await asyncio.sleep(period)
        if not patch_requests(kube, since=mark):
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"the operators kept writing for {within:g} s: "
                                 f"{patch_requests(kube, since=mark)}")


def patch_requests(kube: KubeEmulator, *, since: int = 0) -> list[str]:
    return [f"{e.method} {e.path}" for e in kube.requests[since:]
            if e.method in ("PATCH", "PUT", "POST", "DELETE")
            and not e.user_agent.startswith(SETUP_AGENT)]


# --- the operator ---------------------------------------------------------------------------


@dataclass
class OperatorSpec:
    kubeconfig: Path
    socket: str
    pod: str
    resync: float = 1.0
    debounce: float = 0.05
    restart_check: float = 1.0
    health_port: int | None = None
    metrics_port: int | None = None
    extra: Sequence[str] = field(default_factory=tuple)

    def arguments(self) -> list[str]:
        return [
            "run", "--socket", self.socket, "-n", NS, "--pod-name", self.pod,
            "--resync", str(self.resync), "--debounce", str(self.debounce),
            "--restart-check", str(self.restart_check),
            "--health-port", str(self.health_port or 0),
            "--metrics-port", str(self.metrics_port or 0),
            *self.extra,
        ]


class OperatorProcess:
    """`python -m sozu_operator run …` as a child process; its output goes to a log file
    (printed when a test fails through `log_tail`)."""

    def __init__(self, spec: OperatorSpec, log_path: Path) -> None:
        self.spec = spec
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.stopped = False  # stop() was called: exiting is expected
        self.killed = False  # kill() was called: dying by SIGKILL is expected

    async def start(self) -> Self:
        env = {**os.environ, "KUBECONFIG": str(self.spec.kubeconfig), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)  # never the in-cluster login
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sozu_operator", *self.spec.arguments(),
                cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL now (a node lost, the OOM killer): no cleanup of any kind. Synchronous, so
        that it can be called from inside an emulator hook at an exact request."""
        if self.process is not None and self.process.returncode is None:
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (kopf stops gracefully), SIGKILL if it does not exit in time."""
        process = self.process
        if process is None:
            return None
        self.stopped = True
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                process.kill()
                await process.wait()
        return process.returncode


class InProcessOperator:
    """`run_operator` in this process, in a thread with its own event loop (as kopf's own
    `KopfRunner` does), stopped through its stop_flag. KUBECONFIG must point at the emulator
    (the `kubeconfig` fixture sets it).

    Not in the test's loop: at shutdown kopf waits for, then cancels, every task of its loop
    that appeared after it started ("hung tasks"), which would include the test's own tasks
    and the emulators' connection handlers."""

    def __init__(self, spec: OperatorSpec) -> None:
        self.spec = spec
        self.stop_flag = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stopped = False
        self.killed = False

    def _run(self) -> None:
        # The very arguments a process would get (`extra` included), through the CLI's parser.
        args = build_parser().parse_args(self.spec.arguments())
        config = config_from_args(args)
        endpoints = Endpoints(self.spec.health_port, self.spec.metrics_port, host="127.0.0.1")
        try:
            asyncio.run(run_operator(config, namespaces=[NS], clusterwide=False,
                                     endpoints=endpoints, stop_flag=self.stop_flag))
        except BaseException as error:  # reported by stop()
            self.error = error

    async def start(self) -> Self:
        self.thread = threading.Thread(target=self._run, name=f"operator-{self.spec.pod}",
                                       daemon=True)
        self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def log_tail(self, lines: int = 40) -> str:
        return repr(self.error) if self.error else ""

    async def stop(self, grace: float = 15.0) -> int | None:
        if self.thread is None:
            return None
        self.stopped = True
        self.stop_flag.set()
        await asyncio.to_thread(self.thread.join, grace)
        if self.thread.is_alive():
            raise AssertionError(f"operator {self.spec.pod} did not stop within {grace} s")
        return 1 if self.error is not None else 0


Operator = OperatorProcess | InProcessOperator


async def http_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def copy_seed(directory: Path) -> Path:
    """Sōzu's boot state (listeners + the unowned `status-page` cluster), as a private copy."""
    target = directory / "state.json"
    shutil.copyfile(SEED, target)
    return target


class FlakyProxy:
    """A TCP relay in front of the API emulator that can hang up on every connection, as an
    API server (or a load balancer in front of it) going away mid-request does: clients get
    "server disconnected", not an HTTP error."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hang_up = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def cut(self) -> None:
        """Hang up on every open connection and on every new one until `heal()`."""
        self.hang_up = True
        for writer in list(self._writers):
            writer.transport.abort()

    def heal(self) -> None:
        self.hang_up = False

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.hang_up:
            with contextlib.suppress(OSError):
                await reader.read(65536)  # take the request, answer nothing
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
