"""The running operator, measured: a real `python -m sozu_operator run` process against the
bundled Kubernetes API emulator and the benchmark's Sōzu emulator process.

- The API emulator (`sozu_operator.emulators.kube.KubeEmulator`) runs in the benchmark's own
  process and event loop, with the CRDs from `crds/` and the workload's namespaces. Resources
  are created through its HTTP API (POST, as `kubectl create` would, a bounded number in
  flight), so each object goes through the same admission, defaulting, validation and
  resourceVersion bookkeeping as any other, before the operator starts.
- The operator is its own process, with KUBECONFIG pointing at that emulator, watching every
  namespace (`-A`), owner `bench` (the workload's owner, so that it manages exactly what the
  CLI measurement programmed) and `--debounce 0.05 --resync 60 --restart-check 5
  --health-port 0 --metrics-port <free port>` (/metrics is read only when a measurement is
  over, see `OperatorProcess.metrics`). Its log goes to a file, never to stdout (the planning
  subprocess prints its JSON there).
- "Sōzu holds it" is read from the Sōzu emulator's control socket (`counts`): the emulator
  counts a request and applies it in the same synchronous step, so a count that moved means
  the mutation is in main's state and in the workers'.
- "In sync" is: Sōzu holds the resources, every resource's `status.proxies.<pod>` says its
  current generation is programmed, and the operator process is idle (it used < 10 ms of CPU
  over the last 200 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket as sockets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import yaml

from bench.common import Json
from bench.emulator import MUTATING_VERBS, EmulatorProcess, mutations_in
from bench.workload import OWNER, Resource
from sozu_operator.emulators.kube import KubeEmulator

_REPO = Path(__file__).resolve().parents[1]
CRDS = _REPO / "crds"
POD = "bench-operator"
DEBOUNCE = 0.05
RESYNC = 60.0
RESTART_CHECK = 5.0
CREATE_CONCURRENCY = 16
SETUP_AGENT = "sozu-bench-setup/1"
KINDS = ("SozuCluster", "SozuFrontend", "SozuCertificate")
GROUP_VERSION = "sozu.io/v1alpha1"
# Set to a path prefix to record the operator with py-spy (raw collapsed stacks, 200 Hz) during
# each measured phase: `<prefix>.<phase>.<pid>.txt`. Profiling slows the operator a little.
PROFILE_ENV = "SOZU_BENCH_PROFILE_OPERATOR"


def operator_arguments(socket: str, metrics_port: int | str = 0) -> list[str]:
    return [
        "run", "--socket", socket, "--all-namespaces", "--pod-name", POD, "--owner", OWNER,
        "--debounce", str(DEBOUNCE), "--resync", str(RESYNC),
        "--restart-check", str(RESTART_CHECK), "--health-port", "0",
        "--metrics-port", str(metrics_port),
    ]


def operator_command(socket: str = "<socket>") -> str:
    return "python -m sozu_operator " + " ".join(operator_arguments(socket, "<free port>"))


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with sockets.socket(sockets.AF_INET, sockets.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def parse_exposition(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition: `name{labels}` → value."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            samples[name] = float(value)
        except ValueError:
            continue
    return samples


# --- /proc -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), RssAnon… of a process, in KiB (Linux /proc)."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith(("Vm", "Rss")) and value.strip().endswith("kB"):
            found[key] = int(value.split()[0])
    return found


# --- waiting -----------------------------------------------------------------------------------


async def wait_for(check: Callable[[], Any], *, within: float, what: str,
                   interval: float) -> Any:
    """Poll `check` (sync or async) until it returns something truthy, which is returned."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        last = value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:g} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def mutation_count(emulator: EmulatorProcess) -> int:
    return mutations_in(await emulator.verbs())


def verb_delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {
        verb: after.get(verb, 0) - before.get(verb, 0)
        for verb in sorted(set(after) | set(before))
        if verb in MUTATING_VERBS and after.get(verb, 0) != before.get(verb, 0)
    }


# --- the operator process ----------------------------------------------------------------------


class OperatorProcess:
    """`python -m sozu_operator run …` as a child process of the benchmark."""

    def __init__(self, socket: str, kubeconfig: Path, log_path: Path) -> None:
        self.socket = socket
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0  # time.perf_counter() at the start
        self.started_wall = 0.0  # time.time() at the start
        self.metrics_port = free_port()

    async def start(self) -> None:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("KUBERNETES_SERVICE_HOST", None)  # never an in-cluster login
        env.pop("POD_NAME", None)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_REPO / "operator"), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.started_wall = time.time()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sozu_operator",
                *operator_arguments(self.socket, self.metrics_port),
                cwd=_REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check_alive(self) -> None:
        if self.process is None or self.process.returncode is not None:
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"the operator exited ({code}):\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    async def metrics(self) -> dict[str, float]:
        """Its /metrics, parsed (`parse_exposition`). Read once a measurement is over: a busy
        operator answers late (30 s at most), and a read in the middle would cost it CPU."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        limit = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=limit) as session, session.get(url) as response:
            return parse_exposition(await response.text())

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def warnings(self) -> list[str]:
        """WARNING/ERROR lines of its log (a clean run has none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]

    async def idle(self, *, window: float = 0.2, cpu_budget: float = 0.01,
                   within: float = 600.0) -> None:
        """Wait until the process used less than `cpu_budget` CPU seconds over `window`."""
        deadline = time.monotonic() + within
        while True:
            self.check_alive()
            before = self.cpu_seconds()
            await asyncio.sleep(window)
            if self.cpu_seconds() - before < cpu_budget:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the operator stayed busy for {within:g} s")

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM (kopf's graceful stop, which withdraws this pod's status entries); SIGKILL
        after `grace` seconds."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        return process.returncode


@contextlib.asynccontextmanager
async def profiled(operator: OperatorProcess, phase: str) -> AsyncIterator[None]:
    """py-spy attached to the operator for the block, when `PROFILE_ENV` is set."""
    prefix = os.environ.get(PROFILE_ENV)
    if not prefix:
        yield
        return
    py_spy = Path(sys.executable).with_name("py-spy")
    target = f"{prefix}.{phase}.{operator.pid}.txt"
    spy = await asyncio.create_subprocess_exec(
        str(py_spy), "record", "--format", "raw", "--rate", "200", "--pid", str(operator.pid),
        "--output", target, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        if spy.returncode is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes the profile on Ctrl-C
            try:
                await asyncio.wait_for(spy.wait(), 60)
            except TimeoutError:
                spy.kill()
                await spy.wait()


# --- the Kubernetes side -----------------------------------------------------------------------


class KubeSide:
    """An API emulator in this process, holding the CRDs and the workload's namespaces, plus
    this benchmark's own HTTP client to it (User-Agent `sozu-bench-setup`)."""

    def __init__(self, objects: int = 0) -> None:
        # History: every create and every status write is one change; keep them all, as etcd
        # keeps minutes of it, so that no watch of the operator is answered 410 Gone because
        # the benchmark wrote fast.
        self.kube = KubeEmulator(
            history_limit=max(10_000, 4 * objects + 10_000),
            versions_per_object=2,
            request_log_limit=1_000,
        )
        self._dir = Path(tempfile.mkdtemp(prefix="sozu-opbench-", dir="/tmp"))
        self.kubeconfig = self._dir / "kubeconfig"
        self.log_path = self._dir / "operator.log"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        await self.kube.start()
        self.kube.write_kubeconfig(self.kubeconfig)
        headers = {"User-Agent": SETUP_AGENT}
        if self.kube.token:
            headers["Authorization"] = f"Bearer {self.kube.token}"
        self._session = aiohttp.ClientSession(
            base_url=self.kube.url, headers=headers,
            connector=aiohttp.TCPConnector(limit=CREATE_CONCURRENCY),
        )
        for path in sorted(CRDS.glob("*.yaml")):
            for document in yaml.safe_load_all(path.read_text()):
                if isinstance(document, dict) and document.get("kind"):
                    await self._call("POST", self.kube.api.path_for(
                        document["apiVersion"], document["kind"]), document)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._session is not None:
                await self._session.close()
            await self.kube.stop()
        finally:
            profile = os.environ.get(PROFILE_ENV)
            if profile and self.log_path.exists():
                shutil.copyfile(self.log_path, f"{profile}.{time.monotonic_ns()}.log")
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _call(self, method: str, path: str, body: object,
                    content_type: str = "application/json") -> Json:
        assert self._session is not None
        async with self._session.request(method, path, json=body,
                                         headers={"Content-Type": content_type}) as response:
            answer: Json = await response.json(content_type=None)
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {answer.get('message')}")
            return answer

    def _path(self, kind: str, namespace: str, name: str | None = None,
              api_version: str = GROUP_VERSION) -> str:
        return self.kube.api.path_for(api_version, kind, namespace, name)

    async def load(self, resources: Iterable[Resource]) -> float:
        """Create the namespaces, then every resource (POST, `CREATE_CONCURRENCY` in flight);
        returns the seconds the resources took."""
        items = list(resources)
        namespaces = sorted({str(item["metadata"]["namespace"]) for item in items})
        for namespace in namespaces:
            if self.kube.get_object("v1", "Namespace", namespace) is None:
                await self._call("POST", "/api/v1/namespaces", {
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        started = time.perf_counter()
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(item: Resource) -> None:
            async with gate:
                meta = item["metadata"]
                await self._call("POST", self._path(item["kind"], meta["namespace"]), item)

        await asyncio.gather(*(create(item) for item in items))
        return time.perf_counter() - started

    async def merge_patch(self, kind: str, namespace: str, name: str, patch: Json) -> Json:
        return await self._call("PATCH", self._path(kind, namespace, name), patch,
                                "application/merge-patch+json")

    def stored(self, kind: str, namespace: str, name: str) -> Json | None:
        return self.kube.get_object(GROUP_VERSION, kind, name, namespace)

    def _custom_objects(self) -> list[Json]:
        found: list[Json] = []
        for kind in KINDS:
            group, _, version = GROUP_VERSION.rpartition("/")
            rt = self.kube.api.registry.by_kind(group, version, kind)
            assert rt is not None
            found += self.kube.api.store.list_objects(rt, None)
        return found

    def not_programmed(self, pod: str = POD) -> int:
        """Custom resources whose status does not (yet) say `pod` programmed their current
        generation (read in-process, nothing sent)."""
        missing = 0
        for obj in self._custom_objects():
            proxies = (obj.get("status") or {}).get("proxies") or {}
            entry = proxies.get(pod) or {}
            if entry.get("programmedGeneration") != obj["metadata"].get("generation"):
                missing += 1
        return missing

    def programmed(self, kind: str, namespace: str, name: str, generation: int,
                   pod: str = POD) -> bool:
        obj = self.stored(kind, namespace, name) or {}
        entry = ((obj.get("status") or {}).get("proxies") or {}).get(pod) or {}
        return bool(entry.get("programmedGeneration") == generation)

    def operator(self, socket: str) -> OperatorProcess:
        return OperatorProcess(socket, self.kubeconfig, self.log_path)


# --- scenarios ---------------------------------------------------------------------------------


def expected_cold_start(objects: Mapping[str, int]) -> int:
    """Mutations a cold start sends: one Add per cluster, backend, frontend and certificate."""
    return sum(objects.values())


async def until_programmed(emulator: EmulatorProcess, operator: OperatorProcess, *,
                           expected: int, within: float, interval: float = 0.02) -> Json:
    """Poll Sōzu's counts until `expected` mutations arrived; times relative to the start of
    the operator process."""
    first: float | None = None
    deadline = time.monotonic() + within
    while True:
        count = await mutation_count(emulator)
        now = time.perf_counter()
        if count and first is None:
            first = now
        if count >= expected:
            return {
                "seconds": now - operator.started_at,
                "first_mutation_seconds": (first or now) - operator.started_at,
                "mutations": count,
            }
        operator.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} of {expected} mutations after {within:g} s:\n"
                               f"{operator.log_tail()}")
        await asyncio.sleep(interval)


async def in_sync(kube: KubeSide, operator: OperatorProcess, *, within: float) -> float:
    """Wait until every status says programmed and the operator is idle; returns seconds."""
    started = time.perf_counter()
    deadline = time.monotonic() + within

    def done() -> bool:
        operator.check_alive()
        return kube.not_programmed() == 0

    await wait_for(done, within=within, what="every status to say programmed", interval=0.25)
    await operator.idle(within=max(1.0, deadline - time.monotonic()))
    return time.perf_counter() - started


def percentiles_ms(values: Sequence[float]) -> Json:
    from bench.common import percentile

    ms = [v * 1000 for v in values]
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "mean_ms": sum(ms) / len(ms),
    }
