"""`sozu-operator run`: kopf wiring, health and metrics endpoints, and the process entry point.

kopf is used only for what it does best here, keeping watch streams and in-memory indexes
alive: the handler set is `@kopf.index` plus `@kopf.on.event` (no state-changing handlers), so
kopf adds no finalizers, no annotations and no status of its own, and runs standalone (no
peering, which would freeze sidecars of equal priority). Everything else happens in the
reconciler's single loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from aiohttp import web
from kopf._cogs.aiokits import aiotoggles  # private, pinned (kopf 1.45): see _AggregateToggleSet

from sozu_operator import __version__
from sozu_operator.kube.api import GROUP, VERSION, KubeApi
from sozu_operator.kube.reconciler import Inputs, OperatorConfig, Reconciler

log = logging.getLogger("sozu_operator.operator")

_CUSTOM = (("SozuCluster", "sozuclusters"), ("SozuFrontend", "sozufrontends"),
           ("SozuCertificate", "sozucertificates"))


def _slim(body: Mapping[str, Any], *, keep: Iterable[str],
          shared: Iterable[str] = ()) -> dict[str, Any]:
    """The parts of an object the reconciler reads; indexes keep nothing else (memory). The
    parts in `shared` hold their short strings once per process (see `_shared_strings`)."""
    metadata = body.get("metadata") or {}
    slim = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: _shared_strings(metadata.get(key))
            for key in ("name", "namespace", "uid", "generation", "resourceVersion",
                        "creationTimestamp", "labels")
            if metadata.get(key) is not None
        },
    }
    for key in keep:
        if key in body:
            slim[key] = body[key]
    for key in shared:
        if key in body:
            slim[key] = _shared_strings(body[key])
    return slim


def _index_value(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a watched object, in kopf's indexes and in its own listing
    at start-up alike."""
    match body.get("kind"):
        case "Secret":
            return _slim(body, keep=("type", "data"))
        case "EndpointSlice":
            return _slim(body, keep=("ports", "endpoints", "addressType"))
        case _:
            return _slim(body, keep=(), shared=("spec", "status"))


_SHORT = 64  # characters: names, keys, reasons, timestamps; never key material or PEM


def _shared_strings(value: Any) -> Any:
    """`value` with each short string (keys included) replaced by the process's one copy of it.

    A JSON decoder makes new strings for every document: 10k statuses repeat the same keys,
    condition types, reasons, timestamps and pod name, 10k specs the same field names and
    listener addresses. Sharing them halves what an index holds (70 → 40 MiB at 12k custom
    resources) for about 10 µs per event. Strings are interned mortal: they go with their
    last user."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= _SHORT else value
    if isinstance(value, dict):
        return {sys.intern(key) if isinstance(key, str) and len(key) <= _SHORT else key:
                _shared_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shared_strings(item) for item in value]
    return value


class _AggregateToggleSet(aiotoggles.ToggleSet):
    """kopf's `ToggleSet`, waking its waiters only when adding or dropping a toggle changes the
    set's aggregate state.

    kopf blocks event handlers until every index holds its initial listing with one toggle per
    listed object in a `ToggleSet(all)`: the watcher adds a toggle for each new object and each
    object's worker drops its own once indexed, then waits on the set. Every add and drop did a
    `notify_all`, waking every worker already waiting, so the initial listing of N objects cost
    ~N² wake-ups (12k objects: minutes of CPU, 60k: hours, before the first event). Waiters on
    the set only wait for its aggregate (`is_on() == state`), which only these two methods and
    `Toggle.turn_to` (still notifying on every change) can move, so skipping the notification
    when the aggregate did not move wakes nobody who could proceed.

    The set of listings (kopf's only `ToggleSet(all)`) also tells when it turns on: see
    `_ON_INDEXED`."""

    def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
        super().__init__(fn)
        self._on_indexed = _ON_INDEXED.get()

    async def make_toggle(self, __val: bool = False, *,
                          name: str | None = None) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles((toggle,))

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()
                if self.is_on() and self._fn is all and self._on_indexed is not None:
                    self._on_indexed()


# What to call when every index holds its initial listing: the moment kopf's `ToggleSet(all)`
# of listings turns on, the only sign of it when there is nothing to list (no event comes).
# A context variable, so that each operator of a process (tests run several) gets its own.
_ON_INDEXED: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "on_indexed", default=None)


def _install_aggregate_toggle_sets() -> None:
    """kopf builds its toggle sets as `aiotoggles.ToggleSet(...)` when the operator starts."""
    aiotoggles.ToggleSet = _AggregateToggleSet  # type: ignore[misc]


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: kopf computes one for every event of every object (the essence of the new
    body, and the last-handled one parsed back from an annotation) to detect changes for
    `on.create/update/resume` handlers, spawn daemons and timers, and never stores one unless
    such a handler ran. This registry has none of those (`@kopf.index` and `@kopf.on.event`
    only), so the diff is always thrown away: building and parsing it was ~0.8 s of CPU at a
    cold start of 12k objects (py-spy), before the first pass could start. Behaviour is the
    same: no cause depends on the diff, and nothing is written (nothing was with the
    annotation storage either)."""

    def build(self, *, body: kopf.Body,
              extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return None  # type: ignore[return-value]  # kopf skips a None essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def _quiet_per_object_logs() -> None:
    """kopf logs "Handler '…_event' succeeded." at INFO for every watch event of every object
    (12k lines at a cold start of 10k frontends, and again for each status write), which is a
    measurable share of the operator's CPU before Sōzu is programmed. They stay at DEBUG level
    (`--verbose`); handler failures are logged at ERROR and still show."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def _values(index: Any) -> list[Mapping[str, Any]]:
    """Every value of an index. Each index keeps all its objects under one key (their kind):
    kopf keeps one store per key, and walking 10k stores of one object each cost a pass more
    than the pass's own work on an unchanged object."""
    return [value for store in index.values() for value in store]


def _log_in(reconciler: Reconciler, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, then kubeconfig; the reconciler's own client logs in
    with the same credentials as kopf."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is not None and reconciler.api is None:
        reconciler.api = KubeApi(info, user_agent=f"sozu-operator/{__version__}")
    return info


async def _program_before_kopf(reconciler: Reconciler) -> bool:
    """Sōzu programmed from one LIST before kopf lists and indexes everything on its own (see
    `Reconciler.bootstrap`); any failure leaves it to the usual first passes. False when
    SIGINT or SIGTERM came meanwhile: kopf, which handles them once started, is not yet."""
    try:
        _log_in(reconciler, kopf.OperatorSettings())
    except kopf.LoginError as error:
        log.warning("cannot log in before kopf starts (%s): Sōzu is programmed once kopf has "
                    "listed everything", error)
        return True
    loop = asyncio.get_running_loop()
    start_up = asyncio.create_task(reconciler.bootstrap(keep=_index_value))
    stopped: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        stopped.append(signum)
        start_up.cancel()

    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            continue
        handled.append(signum)
    try:
        await start_up
    except asyncio.CancelledError:
        if not stopped:
            raise  # the operator itself is being cancelled
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        if not start_up.done():
            start_up.cancel()
    if stopped:
        log.info("%s during start-up: stopping", stopped[0].name)
        return False
    return True


def build_registry(reconciler: Reconciler) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    indexes: dict[str, Any] = {}

    def all_listed() -> None:
        """Every index holds its initial listing (logged, and a metric): from now on the
        indexes are a complete view, even when there was nothing to list."""
        reconciler.metrics.initial_listing.set_to_current_time()
        objects = sum(len(store) for index in indexes.values() for store in index.values())
        log.info("kopf holds the initial listing of every watched kind: %d indexed object(s)",
                 objects)
        reconciler.indexes_listed()

    _ON_INDEXED.set(all_listed)

    for kind, plural in _CUSTOM:
        def make(kind: str, plural: str) -> None:
            @kopf.index(GROUP, VERSION, plural, registry=registry, id=f"{plural}_index")
            async def index(body: kopf.Body, **_: Any) -> dict[Any, Any]:
                return {kind: _index_value(body)}

            @kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"{plural}_event")
            async def event(type: str | None, body: kopf.Body, **_: Any) -> None:
                reconciler.observe(kind, type, body)

        make(kind, plural)

    @kopf.index("v1", "secrets", registry=registry, id="secrets_index")
    async def secrets(body: kopf.Body, **_: Any) -> dict[Any, Any]:
        if body.get("type") != "kubernetes.io/tls":
            return {}
        return {"Secret": _index_value(body)}

    @kopf.on.event("v1", "secrets", registry=registry, id="secrets_event")
    async def secret_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        if body.get("type") == "kubernetes.io/tls":
            reconciler.observe("Secret", type, body)

    @kopf.index("discovery.k8s.io", "v1", "endpointslices", registry=registry,
                id="endpointslices_index")
    async def slices(body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {"EndpointSlice": _index_value(body)}

    @kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry,
                   id="endpointslices_event")
    async def slice_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        reconciler.observe("EndpointSlice", type, body)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
        settings.scanning.disabled = True
        settings.posting.enabled = False
        settings.persistence.diffbase_storage = _NoDiffBase()
        settings.persistence.finalizer = "sozu.io/operator"
        settings.watching.field_selectors["v1", "secrets"] = "type=kubernetes.io/tls"
        # kopf gives up on a resource after its last backoff (a dead watcher stops the whole
        # operator): keep retrying for about half an hour of API trouble instead.
        settings.networking.error_backoffs = [1, 1, 2, 3, 5, 8, 13, 21] + [30] * 60
        indexes.update({k: v for k, v in kwargs.items() if k.endswith("_index")})
        reconciler.inputs = Inputs(
            resources=lambda: [
                v for plural in ("sozuclusters", "sozufrontends", "sozucertificates")
                for v in _values(indexes[f"{plural}_index"])
            ],
            secrets=lambda: _values(indexes["secrets_index"]),
            endpoint_slices=lambda: _values(indexes["endpointslices_index"]),
        )
        memo["reconcile_task"] = asyncio.create_task(reconciler.run(), name="reconcile")

    @kopf.on.login(registry=registry)
    async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
        return _log_in(reconciler, settings)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("reconcile_task")
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # raising here would make kopf retry the cleanup for minutes
                log.exception("the reconcile loop had died")
        if reconciler.api is not None:
            await reconciler.withdraw()
            await reconciler.api.close()

    return registry


@dataclass(frozen=True)
class Endpoints:
    health_port: int | None
    metrics_port: int | None
    host: str = "0.0.0.0"


async def serve_endpoints(reconciler: Reconciler, endpoints: Endpoints) -> list[web.AppRunner]:
    """`/healthz` (the loop is alive), `/readyz` (programmed at least once), `/metrics`."""

    async def healthz(_: web.Request) -> web.Response:
        stale = time.monotonic() - reconciler.heartbeat > 3 * reconciler.config.resync + 30
        if stale:
            return web.Response(status=500, text="reconcile loop stalled\n")
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if reconciler.ready:
            return web.Response(text="ready\n")
        reason = reconciler.last_error or "not programmed yet"
        return web.Response(status=503, text=f"not ready: {reason}\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=reconciler.metrics.exposition(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    runners = []
    routes = {
        endpoints.health_port: [("/healthz", healthz), ("/readyz", readyz)],
        endpoints.metrics_port: [("/metrics", metrics)],
    }
    merged: dict[int, list[Any]] = {}
    for port, handlers in routes.items():
        if port is not None:
            merged.setdefault(port, []).extend(handlers)
    for port, handlers in merged.items():
        app = web.Application()
        for path, handler in handlers:
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, endpoints.host, port).start()
        runners.append(runner)
    return runners


async def run_operator(
    config: OperatorConfig,
    *,
    namespaces: list[str],
    clusterwide: bool,
    endpoints: Endpoints,
    stop_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    _install_aggregate_toggle_sets()
    _quiet_per_object_logs()
    reconciler = Reconciler(config, namespaces=namespaces, clusterwide=clusterwide)
    registry = build_registry(reconciler)
    runners = await serve_endpoints(reconciler, endpoints)
    log.info(
        "sozu-operator %s: programming %s (Sōzu %d.x) as %s, owner %r, watching %s",
        __version__, config.socket, config.sozu_version, config.pod_name, config.owner,
        "all namespaces" if clusterwide else ", ".join(namespaces),
    )
    try:
        if not await _program_before_kopf(reconciler):
            await reconciler.close()
            if reconciler.api is not None:
                await reconciler.api.close()
            return
        await kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=clusterwide,
            # kopf refuses both at once; `sozu-operator run -A` still passes the default list.
            namespaces=() if clusterwide else namespaces,
            stop_flag=stop_flag,
            memo=kopf.Memo(),
        )
    finally:
        for runner in runners:
            await runner.cleanup()
