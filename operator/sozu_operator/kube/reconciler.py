"""The operator's one reconcile loop: level-triggered over everything watched, debounced.

kopf keeps in-memory indexes of the custom resources, TLS Secrets and EndpointSlices and tells
the reconciler when something changed. A pass then snapshots the indexes, reads Sōzu's live
state, runs the same pure pipeline as the CLI (resources → desired → plan), applies the plan
one request at a time, and writes each resource's status and new problems as Events.

Safety rails:
- nothing is removed from Sōzu, no status or Event is written and /readyz stays 503 before the
  indexes are known to hold their initial listing (kopf delivers its first event only then;
  with nothing to watch, a LIST that finds nothing new says so): until then an empty index
  means "not known yet", not "delete everything";
- the planner's mass-deletion guard holds here too: a refused plan is reported, not applied;
- status-only changes of our resources (our own writes, other sidecars' writes) never trigger a
  pass against Sōzu; they only let the aggregate `Programmed` condition catch up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sozu_operator.applier import DEFAULT_LANES, apply_steps
from sozu_operator.kube.api import GROUP, PLURALS, VERSION, KubeApi, KubeApiError
from sozu_operator.kube.metrics import OperatorMetrics
from sozu_operator.kube.status import ProxyReport, ResourceOutcome, status_patch
from sozu_operator.live import LiveReader, ReadStats
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.certificates import fingerprint
from sozu_operator.proxy.model import SocketAddress
from sozu_operator.proxy.responses import WorkerInfo
from sozu_operator.reconcile.desired import (
    BuildCache,
    DesiredBuild,
    ObjectKey,
    ResolutionError,
)
from sozu_operator.reconcile.incremental import Baseline
from sozu_operator.reconcile.pipeline import Reconciliation, reconcile
from sozu_operator.reconcile.planner import Phase, PlanOptions, Step
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.resources.models import (
    BackendSpec,
    FieldError,
    Parsed,
    ResourceRef,
    SecretRef,
    ServiceRef,
    TlsMaterial,
)
from sozu_operator.resources.secrets import tls_material
from sozu_operator.resources.validate import parse_resource
from sozu_operator.wire import SozuClient, SozuError, WireVersion

log = logging.getLogger("sozu_operator.reconciler")

KINDS = ("SozuCluster", "SozuFrontend", "SozuCertificate")
REMOVAL_PHASES = frozenset(
    {Phase.FRONTENDS_REMOVE, Phase.BACKENDS_REMOVE, Phase.CERTIFICATES_REMOVE,
     Phase.CLUSTERS_REMOVE}
)
IndexReader = Callable[[], Iterable[Mapping[str, Any]]]
# What kopf's indexes hold: (group, version, plural, field selector).
WATCHED = (
    *((GROUP, VERSION, PLURALS[kind], None) for kind in KINDS),
    ("", "v1", "secrets", "type=kubernetes.io/tls"),
    ("discovery.k8s.io", "v1", "endpointslices", None),
)


# A restarted Sōzu is drift for every resource: one Event each would flood the API server
# (60k after a restart at 50k routes). Past this many, the log says how many.
DRIFT_EVENTS_PER_PASS = 10
# Seconds before retrying a Sōzu that hung up (doubled up to --restart-check), and the least
# time between two reconnections.
HANG_UP_RETRY = 0.05


@dataclass(frozen=True)
class OperatorConfig:
    socket: str
    pod_name: str
    sozu_version: int = 2
    owner: str = "sozu-operator"
    class_name: str | None = None
    default_class: bool = False
    resync: float = 60.0
    debounce: float = 0.2
    restart_check: float = 2.0
    timeout: float = 10.0
    max_removal_share: float = 0.5
    connections: int = DEFAULT_LANES


@dataclass
class Inputs:
    """Read access to kopf's indexes; each callable returns the current bodies."""

    resources: IndexReader = lambda: ()
    secrets: IndexReader = lambda: ()
    endpoint_slices: IndexReader = lambda: ()


@dataclass
class PassOutcome:
    applied: int = 0
    failed: str | None = None
    deferred_removals: int = 0
    guard_blocked: bool = False
    drift: bool = False
    send_seconds: float = 0.0  # of the pass, sending the plan to Sōzu
    programmed_seconds: float = 0.0  # from the start of the pass until its plan was sent
    reused: bool = False  # the last reconciliation served again: nothing moved
    scoped: bool = False  # only what moved since the last clean pass was planned
    planned_objects: int = 0  # desired and live objects the planner looked at


@dataclass
class _Memory:
    """What the reconciler remembers between passes (all of it can be rebuilt from scratch)."""

    generations: dict[tuple[str, str, str], int | None] = field(default_factory=dict)
    programmed: dict[ResourceRef, int | None] = field(default_factory=dict)
    last_applied: dict[ResourceRef, str] = field(default_factory=dict)
    posted_problems: dict[ResourceRef, frozenset[str]] = field(default_factory=dict)
    outcomes: dict[ResourceRef, ResourceOutcome] = field(default_factory=dict)
    uids: dict[ResourceRef, str | None] = field(default_factory=dict)
    inputs_digest: str | None = None
    last_good_digest: str | None = None
    worker_pids: tuple[int, ...] | None = None
    # uid → when its first watch event arrived, and uids of objects known to be deleted that
    # kopf's indexes still hold (see `Reconciler._forget_deleted`).
    first_seen: dict[str, float] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    # ref → (the Sōzu objects it produced, their digest): most resources keep theirs.
    plan_hashes: dict[ResourceRef, tuple[tuple[ObjectKey, ...], str]] = field(
        default_factory=dict
    )
    # ref → what its last outcome was made from (see `Reconciler._report`).
    outcome_inputs: dict[ResourceRef, tuple[object, ...]] = field(default_factory=dict)
    # ref → (outcome, resourceVersion of the object) whose stored status needed no patch.
    status_current: dict[ResourceRef, tuple[ResourceOutcome, object]] = field(
        default_factory=dict
    )


@dataclass(frozen=True)
class _LastReconciliation:
    """The last pass's inputs and result. Reconciling is a pure function of the resources, the
    Secrets and EndpointSlices they use, the live state and (through certificate validity) the
    clock: with the same inputs digest, the very same live state object (the reader returns
    it when Sōzu answered exactly as before) and before `valid_until`, the result is the
    same, so a periodic resync of an unchanged system costs the reads and nothing else."""

    digest: str
    live: ProxyState
    result: Reconciliation
    reported: bool  # its status and Events were written in full

    def reusable(self, digest: str, live: ProxyState) -> bool:
        until = self.result.build.valid_until
        return (
            self.digest == digest
            and self.live is live
            and (until is None or datetime.datetime.now(datetime.UTC) < until)
        )


def release_free_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's `malloc_trim`). CPython frees
    Python objects into its allocator and the C heap, which keep freed memory for reuse: after
    a one-off peak the process's resident memory would stay at the peak. Without glibc (musl,
    macOS), nothing happens."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return
    trim(0)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid(body: Mapping[str, Any]) -> str | None:
    uid = (body.get("metadata") or {}).get("uid")
    return uid if isinstance(uid, str) else None


def _ref(body: Mapping[str, Any]) -> ResourceRef:
    metadata = body.get("metadata") or {}
    return ResourceRef(str(body.get("kind")), str(metadata.get("namespace")),
                       str(metadata.get("name")))


# Shares of the inputs digest are keyed per process: nobody can pick names whose shares cancel.
_SHARE_KEY = os.urandom(16)
_SHARE_MODULUS = 1 << 128


class Indexed(NamedTuple):
    """An object of kopf's index, with what every pass reads off it."""

    body: Mapping[str, Any]
    uid: str | None
    ref: ResourceRef
    share: int  # its share of the inputs digest


def _share(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=16, key=_SHARE_KEY).digest())


def _resource_facts(body: Mapping[str, Any]) -> Indexed:
    """A custom resource feeds the desired state through its spec: its uid and generation say
    which spec it is (status writes move neither)."""
    ref = _ref(body)
    metadata = body.get("metadata") or {}
    return Indexed(body, _uid(body), ref,
                   _share(f"{ref}:{metadata.get('uid')}@{metadata.get('generation')}"))


def _object_facts(body: Mapping[str, Any]) -> Indexed:
    """A Secret or an EndpointSlice feeds it whole: its resourceVersion says which one it is."""
    ref = _ref(body)
    metadata = body.get("metadata") or {}
    return Indexed(body, _uid(body), ref, _share(f"{ref}@{metadata.get('resourceVersion')}"))


class IndexedFacts:
    """`Indexed` facts of each object, kept while the index holds that very object.

    kopf keeps an object's indexed value as it is until the object changes, so at 10k objects a
    pass after a change to one derives facts for one, instead of reading, hashing and sorting
    every object again (a third of such a pass's time went there)."""

    def __init__(self, facts: Callable[[Mapping[str, Any]], Indexed]) -> None:
        self._facts = facts
        self._kept: dict[int, Indexed] = {}

    def of(self, bodies: Iterable[Mapping[str, Any]], deleted: set[str]) -> list[Indexed]:
        """Facts of `bodies` in their order, leaving out objects known to be deleted."""
        kept: dict[int, Indexed] = {}
        found: list[Indexed] = []
        for body in bodies:
            entry = self._kept.get(id(body))
            if entry is None or entry.body is not body:
                entry = self._facts(body)
            kept[id(body)] = entry
            if not deleted or entry.uid not in deleted:
                found.append(entry)
        self._kept = kept
        return found


class Snapshot(NamedTuple):
    """The indexes' contents at the start of a pass."""

    resources: list[Indexed]
    secrets: list[Indexed]
    endpoint_slices: list[Indexed]

    def everything(self) -> Iterable[Indexed]:
        return (*self.resources, *self.secrets, *self.endpoint_slices)

    def by_ref(self) -> dict[ResourceRef, Mapping[str, Any]]:
        return {entry.ref: entry.body for entry in self.resources}

    def digest(self) -> str:
        """What the desired state is made from, as a digest of the multiset of shares: summed,
        so that it costs no sorting, and the same whatever order the indexes list objects in."""
        entries = tuple(self.everything())
        total = sum(entry.share for entry in entries) % _SHARE_MODULUS
        return f"{len(entries)}:{total:032x}"


def endpoint_backends(
    slices: Iterable[Mapping[str, Any]], service: ServiceRef
) -> list[BackendSpec] | ResolutionError:
    """Backends from the EndpointSlices of a Service: ready endpoints serve; endpoints that are
    terminating but still serving stay as backup backends, so their connections drain instead
    of being cut while nothing else can take them."""
    of_service = [
        piece
        for piece in slices
        if ((piece.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name")
        == service.name
    ]
    if not of_service:
        return ResolutionError(
            f"Service {service.namespace}/{service.name} has no EndpointSlices (yet)"
        )
    found: dict[str, BackendSpec] = {}
    matched_port = False
    for piece in of_service:
        for port in piece.get("ports") or []:
            number = port.get("port")
            wanted = port.get("name") if isinstance(service.port, str) else number
            if wanted != service.port:
                continue
            matched_port = True
            for endpoint in piece.get("endpoints") or []:
                conditions = endpoint.get("conditions") or {}
                ready = conditions.get("ready", True) is not False
                draining = conditions.get("serving") is True and conditions.get("terminating")
                if not ready and not draining:
                    continue
                for ip in endpoint.get("addresses") or []:
                    text = f"[{ip}]:{number}" if ":" in str(ip) else f"{ip}:{number}"
                    try:
                        address = SocketAddress.parse(text)
                    except ValueError:
                        continue
                    found[str(address)] = BackendSpec(
                        address=address, backup=None if ready else True
                    )
    if not matched_port:
        return ResolutionError(
            f"no port {service.port!r} in the EndpointSlices of Service "
            f"{service.namespace}/{service.name}"
        )
    return [found[key] for key in sorted(found)]


def _object_key(request: rq.Mutation) -> ObjectKey | None:
    match request:
        case rq.AddCluster(cluster):
            return ("cluster", cluster.cluster_id)
        case rq.AddBackend(backend):
            return ("backend", backend.identity)
        case rq.AddHttpFrontend(frontend):
            return ("http_frontend", frontend.key)
        case rq.AddHttpsFrontend(frontend):
            return ("https_frontend", frontend.key)
        case rq.AddTcpFrontend(frontend):
            return ("tcp_frontend", frontend)
        case rq.AddCertificate(address, certificate, _):
            return ("certificate", (address, fingerprint(certificate.certificate)))
        case rq.ReplaceCertificate(address, certificate, _, _):
            return ("certificate", (address, fingerprint(certificate.certificate)))
    return None


def _objects_digest(keys: Iterable[ObjectKey]) -> str:
    """A short hash of the Sōzu objects one resource produced (`planHash`)."""
    texts = sorted(repr(key) for key in keys)
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def _by_ref(errors: Iterable[FieldError]) -> dict[ResourceRef, tuple[FieldError, ...]]:
    """`DesiredBuild.problems_for` / `notes_for` for every resource at once, in order."""
    grouped: dict[ResourceRef, list[FieldError]] = {}
    for error in errors:
        grouped.setdefault(error.ref, []).append(error)
    return {ref: tuple(found) for ref, found in grouped.items()}


class ValidatedResources:
    """Resources validated once per version of the object and kept across passes.

    Validation (`parse_resource`: the CRD schema through jsonschema, then every rule) ran on
    every resource at every pass: most of a pass's CPU at 10k resources, for a change to one.
    Here a resource is validated again only when what validation reads may have moved: its
    apiVersion, kind, name, uid, creation time or generation (which the API server moves with
    every change to the spec, and only then: a status write moves the resourceVersion alone,
    and validating all 10k resources again after the first pass wrote their statuses took a
    second). Without a generation, the resourceVersion stands in. The pipeline gets the kept
    `Parsed`, the very result validating the body gives (validation is a pure function of
    those parts of the body). Handed over as bodies instead: invalid resources (the builder
    reports them from the body) and SozuClusters that set `spec.clusterId` (retention reads
    that from the body when the cluster fails)."""

    def __init__(self, sozu_version: int) -> None:
        self.sozu_version = sozu_version
        self._kept: dict[tuple[object, ...], Parsed | None] = {}  # None: invalid
        # The very same body as last time (kopf keeps an unchanged object's indexed value):
        # what was handed over for it, without reading it again.
        self._by_body: dict[int, tuple[Mapping[str, Any], tuple[object, ...] | None, object]] = {}
        self.validated_last = 0  # resources validated by the last `objects` call
        self.validated = 0  # in all

    def objects(self, bodies: Iterable[Mapping[str, Any]]) -> list[object]:
        previous = self._by_body
        by_body: dict[int, tuple[Mapping[str, Any], tuple[object, ...] | None, object]] = {}
        found: list[object] = []
        looked_up: set[tuple[object, ...]] = set()
        validated_before = self.validated
        for body in bodies:
            same = previous.get(id(body))
            if same is None or same[0] is not body:
                same = self._handed(body)
                if same[1] is not None:
                    looked_up.add(same[1])
            by_body[id(body)] = same
            found.append(same[2])
        # Unchanged objects cost one lookup above; only those gone since are looked at here.
        for gone in previous.keys() - by_body.keys():
            key = previous[gone][1]
            if key is not None and key not in looked_up:
                self._kept.pop(key, None)
        self._by_body = by_body
        self.validated_last = self.validated - validated_before
        return found

    def _handed(
        self, body: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], tuple[object, ...] | None, object]:
        """(body, its version key or None, what the pipeline gets for it)."""
        metadata = body.get("metadata") or {}
        generation = metadata.get("generation")
        version = (("generation", generation) if isinstance(generation, int)
                   else metadata.get("resourceVersion"))
        spec = body.get("spec")
        if version is None or (
            body.get("kind") == "SozuCluster"
            and isinstance(spec, Mapping)
            and spec.get("clusterId") is not None
        ):
            return body, None, body
        key = (body.get("apiVersion"), body.get("kind"), metadata.get("namespace"),
               metadata.get("name"), metadata.get("uid"), metadata.get("creationTimestamp"),
               version)
        if key in self._kept:
            parsed = self._kept[key]
        else:
            self.validated += 1
            result = parse_resource(body, sozu_version=self.sozu_version)
            parsed = self._kept[key] = result if isinstance(result, Parsed) else None
        return body, key, body if parsed is None else parsed


class Reconciler:
    def __init__(
        self,
        config: OperatorConfig,
        *,
        metrics: OperatorMetrics | None = None,
        inputs: Inputs | None = None,
        namespaces: Sequence[str] = (),
        clusterwide: bool = False,
    ) -> None:
        self.config = config
        self.namespaces = tuple(namespaces)
        self.clusterwide = clusterwide
        self.metrics = metrics or OperatorMetrics()
        self.inputs = inputs or Inputs()
        self.api: KubeApi | None = None
        self.dirty = asyncio.Event()
        self.status_dirty = asyncio.Event()
        self.indexed = asyncio.Event()
        self.ready = False
        self.heartbeat = time.monotonic()
        self.last_error: str | None = None
        self._memory = _Memory()
        self._reader = LiveReader()
        self._validated = ValidatedResources(config.sozu_version)
        self._resource_facts = IndexedFacts(_resource_facts)
        self._secret_facts = IndexedFacts(_object_facts)
        self._slice_facts = IndexedFacts(_object_facts)
        self._client: SozuClient | None = None
        self._own_listing: Inputs | None = None  # see `bootstrap`
        # A full read also lists routes no cluster covers; other passes read what moved.
        self._full_read_due = True
        self._last: _LastReconciliation | None = None
        # Kept across passes so that a change costs what it changes: the objects built for
        # each resource, and the last clean pass to plan the next one from.
        self._build_cache = BuildCache()
        self._baseline: Baseline | None = None
        self._sozu_restarted = False  # the next pass skips the debounce
        self._sozu_back = asyncio.Event()  # set when a restarted Sōzu answers again

    # --- signals from kopf ------------------------------------------------------------------

    def observe(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Called for every watch event. Spec changes (a new generation) and deletions start a
        pass; status-only changes only refresh the status aggregate."""
        self.indexed.set()
        uid = _uid(body)
        if uid is not None:
            if event_type == "DELETED":
                self._memory.first_seen.pop(uid, None)
                self._memory.deleted.discard(uid)
            else:
                self._memory.first_seen.setdefault(uid, time.monotonic())
        if kind not in KINDS:
            self.dirty.set()
            return
        metadata = body.get("metadata") or {}
        key = (kind, str(metadata.get("namespace")), str(metadata.get("name")))
        generation = metadata.get("generation")
        if event_type == "DELETED":
            self._memory.generations.pop(key, None)
            self.dirty.set()
        elif key not in self._memory.generations or self._memory.generations[key] != generation:
            self._memory.generations[key] = generation
            self.dirty.set()
        else:
            self.status_dirty.set()

    def indexes_listed(self) -> None:
        """kopf's indexes hold their initial listing, whether or not any event follows (with
        nothing to list, none does): passes may plan from them, removals included."""
        if not self.indexed.is_set():
            self.indexed.set()
            self.dirty.set()

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = 0.5
        if not self.ready:  # else `bootstrap` programmed Sōzu: kopf's listing starts a pass
            self.dirty.set()
        # Beside the loop, so that neither waits for the other: a LIST of 10k objects before a
        # pass delayed the change that woke it by as much.
        watchers = [asyncio.create_task(self._watch_restarts()),
                    asyncio.create_task(self._watch_hang_ups()),
                    asyncio.create_task(self._watch_deletions())]
        try:
            while True:
                self.heartbeat = time.monotonic()
                await self._wait_for_work()
                if not self.dirty.is_set():
                    self.status_dirty.clear()
                    await self.refresh_status()
                    continue
                if not self._sozu_restarted:  # else nothing is served: no time to gather
                    await asyncio.sleep(self.config.debounce)
                self._sozu_restarted = False
                self.dirty.clear()
                self.status_dirty.clear()
                try:
                    outcome = await self.pass_once()
                except (SozuError, OSError) as error:
                    self._fail(f"Sōzu at {self.config.socket}: {error}")
                except KubeApiError as error:
                    self._fail(f"Kubernetes API: {error}")
                else:
                    if outcome.failed is None:
                        backoff = 0.5
                        continue
                    self._fail(outcome.failed)
                self._sozu_back.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._sozu_back.wait()  # a restarted Sōzu cuts the wait short
                backoff = min(backoff * 2, 30.0)
                self.dirty.set()
        finally:
            for watcher in watchers:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await self.close()

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.metrics.reconcile_errors.inc()
        self._forget_live()
        log.warning("reconcile pass failed, will retry: %s", message)

    async def _wait_for_work(self) -> None:
        """Wait for a change or the resync period."""
        dirty = asyncio.create_task(self.dirty.wait())
        status = asyncio.create_task(self.status_dirty.wait())
        try:
            done, _ = await asyncio.wait(
                {dirty, status}, timeout=self.config.resync, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # periodic resync: catches drift Kubernetes never tells us about
                self.request_full_read()
                self.dirty.set()
        finally:
            dirty.cancel()
            status.cancel()

    async def _watch_deletions(self) -> None:
        """Once per resync period, whether or not changes keep the loop busy."""
        while True:
            await asyncio.sleep(self.config.resync)
            try:
                await self._forget_deleted()
            except Exception:  # the check comes back at the next period; the loop goes on
                log.exception("looking for deletions the watch never reported failed")

    async def _forget_deleted(self) -> None:
        """Find objects deleted while a watch was re-listing, which kopf's indexes keep.

        After a watch expires (410 Gone), kopf lists again but never reports the objects
        deleted in between: they would stay in its indexes, and be served by Sōzu, for good.
        At each resync, a metadata-only LIST of everything watched finds them: an object whose
        first event came before the LIST started, in a namespace that was listed, but that the
        LIST does not return, is gone. Nothing is forgotten unless every LIST succeeded.
        (A resync-timer-only check would never run while changes keep the loop busy.)"""
        started = time.monotonic()
        if self.api is None:
            return
        scopes = self._scopes()
        try:
            listed = await self._list_watched(scopes)
        except KubeApiError as error:
            log.warning("cannot list the watched objects to find deleted ones: %s", error)
            return
        in_index: set[str] = set()
        for body in (*self.inputs.resources(), *self.inputs.secrets(),
                     *self.inputs.endpoint_slices()):
            uid = _uid(body)
            if uid is None:
                continue
            in_index.add(uid)
            namespace = (body.get("metadata") or {}).get("namespace")
            if (
                uid not in listed
                and uid not in self._memory.deleted
                and (self.clusterwide or namespace in scopes)
                and self._memory.first_seen.get(uid, math.inf) < started
            ):
                log.warning("%s %s/%s is gone but its deletion was never reported (the watch "
                            "re-listed): forgetting it", body.get("kind"), namespace,
                            (body.get("metadata") or {}).get("name"))
                self._memory.deleted.add(uid)
                self.dirty.set()
        self._memory.deleted &= in_index

    def _scopes(self) -> list[str | None]:
        """Namespaces a LIST can cover (None: all); patterns are left out."""
        return [None] if self.clusterwide else [
            ns for ns in self.namespaces if not any(c in ns for c in "*?[]!,")
        ]

    async def _list_watched(self, scopes: Sequence[str | None]) -> set[str]:
        """The uids of every watched object a metadata-only LIST returns now."""
        assert self.api is not None
        listed: set[str] = set()
        for group, version, plural, selector in WATCHED:
            for namespace in scopes:
                listed |= await self.api.list_uids(
                    group, version, plural, namespace=namespace, field_selector=selector
                )
        return listed

    async def _listing_complete(self, snapshot: Iterable[Mapping[str, Any]]) -> bool:
        """Whether a snapshot taken before kopf's first event holds the complete listing.

        kopf delivers its first event only once every index holds its initial listing, so any
        event says so (`indexed`, checked by the caller before its snapshot). With nothing to
        watch at all there is no event: then a LIST of everything watched, made after the
        snapshot, that returns only objects the snapshot holds (nothing, in an empty
        namespace) says the same. Until then, an empty or partial index means "not known
        yet"."""
        scopes = self._scopes()
        if self.api is None or (not self.clusterwide and len(scopes) < len(self.namespaces)):
            return False
        try:
            listed = await self._list_watched(scopes)
        except KubeApiError as error:
            log.info("cannot tell yet whether the indexes hold everything: %s", error)
            return False
        if listed - {_uid(body) for body in snapshot}:
            return False
        log.info("the indexes hold every watched object (%d): removals are allowed",
                 len(listed))
        self.indexed.set()
        return True

    def _snapshot(self, inputs: Inputs | None = None) -> Snapshot:
        """The indexes' contents (or those of `inputs`), without the objects known to be
        deleted."""
        inputs = inputs or self.inputs
        deleted = self._memory.deleted
        return Snapshot(self._resource_facts.of(inputs.resources(), deleted),
                        self._secret_facts.of(inputs.secrets(), deleted),
                        self._slice_facts.of(inputs.endpoint_slices(), deleted))

    async def _watch_restarts(self) -> None:
        """A cheap look at Sōzu's workers every few seconds: new worker pids mean Sōzu (or its
        workers) restarted, possibly empty, so a pass runs at once instead of at the resync."""
        while True:
            await asyncio.sleep(self.config.restart_check)
            try:
                workers = await (await self._sozu()).list_workers()
            except SozuError:
                self.dirty.set()
                continue
            self._note_workers(workers)

    async def _watch_hang_ups(self) -> None:
        """Sōzu's main process closes every command connection when it stops (restart, crash,
        upgrade). An idle connection of our own sees that at once; as soon as Sōzu answers
        again, a pass re-programs it, empty or back to its boot state, without waiting for the
        next worker check or for the backoff of a pass that failed meanwhile."""
        watch = (await self._sozu()).sibling()
        hung_up = False
        retry = HANG_UP_RETRY
        try:
            while True:
                try:
                    workers = await watch.list_workers()
                except SozuError:  # down: retried quickly after a hang-up, else at the check
                    await asyncio.sleep(retry if hung_up else self.config.restart_check)
                    retry = min(retry * 2, self.config.restart_check)
                    continue
                connected = time.monotonic()
                self._note_workers(workers)
                if hung_up:
                    log.warning("Sōzu answers again after closing its command connection "
                                "(restart, upgrade or crash): re-reading live state")
                    self._restarted()
                    hung_up, retry = False, HANG_UP_RETRY
                try:
                    hung_up = await watch.wait_until_hung_up()
                except SozuError:
                    continue
                if hung_up:
                    self.metrics.sozu_restarts.inc()
                    self._forget_live()
                    # The pids that follow are the restart's, counted once here, not news.
                    self._memory.worker_pids = None
                else:
                    log.warning("Sōzu wrote on a command connection where nothing was asked: "
                                "reconnecting")
                # A Sōzu that answers and hangs up at once (a crash loop) is not a busy loop.
                await asyncio.sleep(max(0.0, connected + HANG_UP_RETRY - time.monotonic()))
        finally:
            await watch.aclose()

    def _note_workers(self, workers: Iterable[WorkerInfo]) -> None:
        """Compare Sōzu's worker pids with the last ones seen: new pids are a restart."""
        pids = tuple(sorted(w.pid for w in workers))
        before, self._memory.worker_pids = self._memory.worker_pids, pids
        if before is not None and pids != before:
            log.warning("Sōzu workers changed (%s → %s): re-reading live state", before, pids)
            self.metrics.sozu_restarts.inc()
            self._restarted()

    def _restarted(self) -> None:
        """Sōzu restarted and answers: read it whole and re-program it now, without the
        debounce (it serves nothing meanwhile) nor the backoff of a failed pass."""
        self._forget_live()
        self._sozu_restarted = True
        self._sozu_back.set()
        self.dirty.set()

    def request_full_read(self) -> None:
        """Have the next pass read Sōzu whole (routes no cluster covers included), as each
        periodic resync does."""
        self._full_read_due = True

    @property
    def read_stats(self) -> ReadStats:
        """What the last read of Sōzu cost."""
        return self._reader.last_stats

    def _forget_live(self) -> None:
        """Sōzu may hold anything now (a failure, a restart): read it whole next time and plan
        everything."""
        self._reader.forget()
        self._full_read_due = True
        self._baseline = None

    async def _sozu(self) -> SozuClient:
        if self._client is None:
            self._client = SozuClient(
                self.config.socket,
                version=WireVersion(self.config.sozu_version),
                timeout=self.config.timeout,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- one pass ---------------------------------------------------------------------------

    def _resolvers(
        self, secret_bodies: Iterable[Mapping[str, Any]], slices: Sequence[Mapping[str, Any]]
    ) -> tuple[Any, Any]:
        secrets = {
            ((s.get("metadata") or {}).get("namespace"), (s.get("metadata") or {}).get("name")): s
            for s in secret_bodies
        }

        def resolve_secret(ref: ResourceRef, secret: SecretRef) -> TlsMaterial | ResolutionError:
            found = tls_material(
                secrets.get((secret.namespace, secret.name)),
                name=f"Secret {secret.namespace}/{secret.name}",
            )
            return ResolutionError(found) if isinstance(found, str) else found

        def resolve_service(
            ref: ResourceRef, service: ServiceRef
        ) -> Sequence[BackendSpec] | ResolutionError:
            in_namespace = [
                s for s in slices if (s.get("metadata") or {}).get("namespace") == service.namespace
            ]
            return endpoint_backends(in_namespace, service)

        return resolve_service, resolve_secret

    async def bootstrap(
        self, keep: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda body: body
    ) -> bool:
        """Program Sōzu from one paged LIST of everything watched, before kopf starts.

        kopf indexes its initial listing one object at a time (about 0.3 ms each: 18 s at 60k
        objects) and calls no handler before it holds all of it, so a restarted proxy would
        serve nothing, or part, for that long. A LIST of every watched kind is as complete a
        view as the indexes once listed: one pass over it programs Sōzu, removals included
        (behind the same guard), and makes the proxy ready. It stands in for kopf's indexes
        until they hold their listing (a Sōzu restart meanwhile is repaired from it), and
        statuses wait for them: the first pass over them finds Sōzu in place and writes them.
        `keep` makes of each listed object what an index would keep of it (page by page, so
        that whole objects never pile up). Returns whether Sōzu was programmed; after any
        failure the operator goes on the usual way."""
        if self.api is None:
            return False
        scopes = self._scopes()
        if not self.clusterwide and len(scopes) < len(self.namespaces):
            log.info("namespace patterns cannot be listed directly: Sōzu is programmed once "
                     "kopf has listed everything")
            return False
        started = time.perf_counter()
        try:
            listed = {plural: await self._list_bodies(group, version, plural, selector, scopes,
                                                      keep)
                      for group, version, plural, selector in WATCHED}
        except KubeApiError as error:
            log.warning("cannot list the watched objects at start-up (%s): Sōzu is programmed "
                        "once kopf has listed everything", error)
            return False
        listed_seconds = time.perf_counter() - started
        secrets = [body for body in listed["secrets"] if body.get("type") == "kubernetes.io/tls"]
        self._own_listing = Inputs(
            resources=lambda: [body for kind in KINDS for body in listed[PLURALS[kind]]],
            secrets=lambda: secrets,
            endpoint_slices=lambda: listed["endpointslices"],
        )
        try:
            outcome = await self.pass_once()
        except (SozuError, OSError) as error:
            self._fail(f"Sōzu at {self.config.socket}: {error}")
            return False
        if outcome.failed is not None:
            self._fail(outcome.failed)
            return False
        log.info("programmed Sōzu from a LIST of %d object(s): listed in %.1f s, %d request(s) "
                 "sent after %.1f s more; statuses follow kopf's listing",
                 sum(len(bodies) for bodies in listed.values()), listed_seconds,
                 outcome.applied, time.perf_counter() - started - listed_seconds)
        return self.ready

    async def _list_bodies(self, group: str, version: str, plural: str, selector: str | None,
                           scopes: Sequence[str | None],
                           keep: Callable[[Mapping[str, Any]], Mapping[str, Any]]
                           ) -> list[Mapping[str, Any]]:
        assert self.api is not None
        return [body for namespace in scopes
                for body in await self.api.list_objects(group, version, plural,
                                                        namespace=namespace,
                                                        field_selector=selector, keep=keep)]

    async def pass_once(self) -> PassOutcome:
        started = time.perf_counter()
        # Whether the snapshot holds the complete listing is known only from before it is
        # taken: the listing may complete while this pass reads Sōzu, but the plan is made
        # from the snapshot.
        indexed = self.indexed.is_set()
        # Until kopf holds its listing, the operator's own (complete, if older) stands in for
        # it; passes over it write no status (they come with kopf's listing).
        own = None if indexed else self._own_listing
        handed_over = indexed and self._own_listing is not None
        if indexed:
            self._own_listing = None
        report = own is None
        indexed = indexed or own is not None
        snapshot = self._snapshot(own or self.inputs)
        bodies = [entry.body for entry in snapshot.resources]
        secrets = [entry.body for entry in snapshot.secrets]
        slices = [entry.body for entry in snapshot.endpoint_slices]
        client = await self._sozu()
        live = await self._reader.read(client, full=self._full_read_due)
        self._full_read_due = False
        digest = snapshot.digest()
        last = self._last
        reused = last is not None and last.reusable(digest, live)
        if last is not None and reused:
            result = last.result
        else:
            resolve_service, resolve_secret = self._resolvers(secrets, slices)
            result = reconcile(
                self._validated.objects(bodies),
                live,
                owner=self.config.owner,
                sozu_version=self.config.sozu_version,
                options=PlanOptions(max_removal_share=self.config.max_removal_share),
                resolve_service=resolve_service,
                resolve_secret=resolve_secret,
                class_name=self.config.class_name,
                default_class=self.config.default_class,
                cache=self._build_cache,
                baseline=self._baseline,
            )
        outcome = PassOutcome(reused=reused, scoped=result.scoped and not reused,
                              planned_objects=0 if reused else result.planned_objects)
        steps: Sequence[Step] = result.plan.steps
        complete = indexed or await self._listing_complete((*bodies, *secrets, *slices))
        if not complete:
            kept = [s for s in steps if s.phase not in REMOVAL_PHASES]
            outcome.deferred_removals = len(steps) - len(kept)
            steps = kept
        # Over a partial listing the removals already wait: the guard has nothing to hold.
        if complete and not result.plan.guard.allowed:
            outcome.guard_blocked = True
            self.metrics.guard_blocked.set(1)
            log.error("mass-deletion guard refused the plan: %s; removals are held (an operator "
                      "started with --max-removal-share 1.0 lets them through)",
                      result.plan.guard.reason)
            steps = [s for s in steps if s.phase not in REMOVAL_PHASES]
        elif complete:
            self.metrics.guard_blocked.set(0)
        outcome.drift = bool(steps) and digest == self._memory.last_good_digest
        applied = await apply_steps(client, steps, lanes=self.config.connections)
        for step in applied.applied:
            self.metrics.requests.labels(rq.verb_name(step.request)).inc()
        outcome.applied = len(applied.applied)
        outcome.send_seconds = applied.seconds
        outcome.programmed_seconds = time.perf_counter() - started
        touched = self._touched(result, applied.applied)
        if applied.failure is not None:
            for failed in (applied.failure, *applied.more_failures):
                self.metrics.request_failures.labels(rq.verb_name(failed.step.request)).inc()
            outcome.failed = f"{applied.failure.step.summary}: {applied.failure.message}"
            self._forget_live()
        elif not outcome.guard_blocked and complete:
            self._memory.last_good_digest = digest
            self.metrics.last_success.set_to_current_time()
            if outcome.drift:
                self.metrics.drift_repairs.inc()
                log.warning("repaired drift: %d request(s) brought Sōzu back to the desired "
                            "state", outcome.applied)
            # Ready once Sōzu serves what every watched kind, fully listed, describes: a pass
            # over a partial index (additions only) is not that.
            self.ready = True
        applied_ok = applied.failure is None and not outcome.guard_blocked
        reported = False
        by_ref = snapshot.by_ref() if complete and report else {}  # made after "programmed"
        if complete and report and reused and last is not None and last.reported \
                and applied_ok and not applied.applied:
            # The same result, already written in full; statuses are still looked at (cheap:
            # only objects that moved), since status-only events may have been folded into
            # this pass.
            reported = await self._write_statuses(by_ref)
        elif complete and report:
            reported = await self._report(result, by_ref, applied_ok=applied_ok,
                                          touched=touched, drift=outcome.drift)
        elif not complete:
            # A partial view would report resources whose references are not listed yet as
            # Invalid (status and Warning Events): nothing is reported until it is complete.
            log.info("not every watched kind is listed yet: applied %d addition(s), %d "
                     "removal(s) wait, nothing reported", outcome.applied,
                     outcome.deferred_removals)
        self._last = _LastReconciliation(digest, live, result, reported and applied_ok)
        # The next plan may look only at what moves from here if this pass sent its whole plan
        # (nothing held back, nothing failed): every object it did not send for was in place.
        clean = complete and applied_ok and len(applied.applied) == len(result.plan.steps)
        self._baseline = Baseline(result.desired, live, applied.applied) if clean else None
        seconds = time.perf_counter() - started
        self.metrics.reconcile_seconds.observe(seconds)
        log.debug("pass: %.1f ms, %d request(s) sent in %.1f ms, %s", seconds * 1000,
                  outcome.applied, outcome.send_seconds * 1000,
                  "nothing moved" if reused else f"{outcome.planned_objects} object(s) planned"
                  + (" (what moved)" if outcome.scoped else " (everything)"))
        if outcome.failed is None:
            self.last_error = None
        if handed_over:
            # The start-up listing, and all that was made from it alone, is garbage now: its
            # freed heap goes back to the system (about 30 MiB at 12k resources).
            release_free_heap()
        return outcome

    def _touched(self, result: Reconciliation, steps: Iterable[Step]) -> set[ResourceRef]:
        touched: set[ResourceRef] = set()
        for step in steps:
            key = _object_key(step.request)
            if key is not None and key in result.build.sources:
                touched.add(result.build.sources[key])
        return touched

    # --- status, Events, metrics ------------------------------------------------------------

    def _extra(
        self, build: DesiredBuild, ref: ResourceRef, keys: Sequence[ObjectKey]
    ) -> dict[str, Any]:
        """Kind-specific status fields; `keys`: the Sōzu objects `ref` produced, in
        `build.sources` order."""
        if ref.kind == "SozuCluster":
            clusters = [k[1] for k in keys if k[0] == "cluster"]
            return {
                "clusterId": clusters[0] if clusters else None,
                "backends": sum(1 for k in keys if k[0] == "backend"),
            }
        if ref.kind == "SozuFrontend":
            routes = [k for k in keys if k[0] != "cluster"]
            key = routes[0] if routes else None
            text = None
            if key is not None:
                text = key[1] if isinstance(key[1], str) else str(getattr(key[1], "address", ""))
            return {"sozuKey": text}
        facts = build.certificates.get(ref)
        if facts is None:
            return {}
        days = (facts.not_after - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400
        self.metrics.certificate_expiry_days.labels(ref.namespace, ref.name).set(days)
        return {
            "fingerprint": facts.fingerprint,
            "notAfter": facts.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "servedNames": list(facts.names),
        }

    async def _report(
        self,
        result: Reconciliation,
        by_ref: Mapping[ResourceRef, Mapping[str, Any]],
        *,
        applied_ok: bool,
        touched: set[ResourceRef],
        drift: bool,
    ) -> bool:
        """Writes statuses and Events; False when a write failed (the next pass retries).

        A resource whose inputs to its outcome (generation, verdict, problems, notes, Sōzu
        objects, programmed generation, last apply) are those of the previous pass keeps its
        previous outcome object: after a change to one of 10k resources, building every
        outcome again was most of a pass."""
        build = result.build
        accepted = set(build.accepted)
        unresolved = set(build.unresolved)
        ignored = set(build.ignored)
        # Grouped once per pass: looking each resource's objects and problems up in the whole
        # build made this loop quadratic (10k resources: minutes of CPU after every pass).
        keys_by_ref: dict[ResourceRef, list[ObjectKey]] = {}
        for key, source in build.sources.items():
            keys_by_ref.setdefault(source, []).append(key)
        problems = _by_ref(build.problems)
        notes = _by_ref(build.notes)
        counts: dict[tuple[str, str], int] = {}
        outcomes: dict[ResourceRef, ResourceOutcome] = {}
        previous = self._memory.outcomes
        signatures = self._memory.outcome_inputs
        now = _now()
        for ref, body in by_ref.items():
            keys = tuple(keys_by_ref.get(ref, ()))
            if ref in ignored:
                counts[(ref.kind, "ignored")] = counts.get((ref.kind, "ignored"), 0) + 1
                continue
            metadata = body.get("metadata") or {}
            generation = metadata.get("generation")
            self._memory.uids[ref] = metadata.get("uid")
            is_accepted = ref in accepted and ref not in unresolved
            if is_accepted and applied_ok:
                self._memory.programmed[ref] = generation
            if ref in touched:
                self._memory.last_applied[ref] = now
            state = "ready" if is_accepted else "failed"
            counts[(ref.kind, state)] = counts.get((ref.kind, state), 0) + 1
            inputs = (generation, is_accepted, problems.get(ref, ()), notes.get(ref, ()), keys,
                      self._memory.programmed.get(ref), self._memory.last_applied.get(ref))
            kept = previous.get(ref)
            # Certificates' extra fields follow the clock (days to expiry): always rebuilt.
            if kept is not None and signatures.get(ref) == inputs \
                    and ref.kind != "SozuCertificate":
                outcomes[ref] = kept
                continue
            signatures[ref] = inputs
            outcomes[ref] = ResourceOutcome(
                ref=ref,
                generation=generation,
                accepted=is_accepted,
                problems=problems.get(ref, ()),
                notes=notes.get(ref, ()),
                report=ProxyReport(
                    pod=self.config.pod_name,
                    programmed_generation=self._memory.programmed.get(ref),
                    plan_hash=self._plan_hash(ref, keys),
                    last_applied=self._memory.last_applied.get(ref),
                    sozu_version=f"{self.config.sozu_version}.x",
                ),
                extra=self._extra(build, ref, keys),
            )
        for kind in KINDS:
            for state in ("ready", "failed", "ignored"):
                self.metrics.resources.labels(kind, state).set(counts.get((kind, state), 0))
        self._memory.outcomes = outcomes
        for ref in [r for r in signatures if r not in outcomes]:
            del signatures[ref]
        written = await self._write_statuses(by_ref)
        posted = await self._post_events(outcomes, drift=drift, touched=touched)
        return written and posted

    def _plan_hash(self, ref: ResourceRef, keys: Sequence[ObjectKey]) -> str:
        found = tuple(keys)
        kept = self._memory.plan_hashes.get(ref)
        if kept is not None and kept[0] == found:
            return kept[1]
        digest = _objects_digest(found)
        self._memory.plan_hashes[ref] = (found, digest)
        return digest

    async def refresh_status(self) -> None:
        """Status-only refresh from the last pass (no Sōzu I/O)."""
        await self._write_statuses(self._snapshot().by_ref())

    async def _write_statuses(self, by_ref: Mapping[ResourceRef, Mapping[str, Any]]) -> bool:
        """Patches every status that does not say its outcome yet; False if a patch failed.

        An object whose resourceVersion has not moved since its status was found to say the
        same outcome needs no look: at 10k resources, computing every patch again was most of
        a pass after a change to one."""
        if self.api is None:
            return True
        ok = True
        current_by_ref = self._memory.status_current
        for ref in [r for r in current_by_ref if r not in self._memory.outcomes]:
            del current_by_ref[ref]
        for ref, outcome in self._memory.outcomes.items():
            body = by_ref.get(ref)
            if body is None:
                continue
            metadata = body.get("metadata") or {}
            if metadata.get("generation") != outcome.generation:
                continue  # changed since the pass: the next pass reports on it
            version = metadata.get("resourceVersion")
            seen = current_by_ref.get(ref)
            if seen is not None and seen[1] == version and seen[0] == outcome:
                continue
            current = body.get("status")
            patch = status_patch(outcome, current if isinstance(current, Mapping) else None)
            if patch is None:
                current_by_ref[ref] = (outcome, version)
                continue
            current_by_ref.pop(ref, None)
            try:
                await self.api.patch_status(ref, patch)
            except KubeApiError as error:
                ok = False
                log.warning("cannot write the status of %s: %s", ref, error)
        return ok

    async def withdraw(self) -> None:
        """On shutdown, remove this proxy's entry from the status of every resource.

        Pods of a Deployment get new names at every rollout and scale-down: an entry left
        behind would count forever as a proxy that never programs the next generation
        ("2/4", Programmed=False). The remaining sidecars see the change and rewrite the
        aggregate. A pod that dies without a graceful stop still leaves its entry."""
        if self.api is None:
            return
        pod = self.config.pod_name
        for ref, body in self._snapshot().by_ref().items():
            status = body.get("status")
            proxies = status.get("proxies") if isinstance(status, Mapping) else None
            if ref not in self._memory.outcomes and not (
                isinstance(proxies, Mapping) and pod in proxies
            ):
                continue
            try:
                await self.api.patch_status(ref, {"proxies": {pod: None}})
            except KubeApiError as error:
                log.warning("cannot remove %s from the status of %s: %s", pod, ref, error)

    async def _post_events(
        self, outcomes: Mapping[ResourceRef, ResourceOutcome], *, drift: bool,
        touched: set[ResourceRef],
    ) -> bool:
        """Events only for problems that are new since the previous pass (no spam); False if
        one could not be posted."""
        ok = True
        posted = self._memory.posted_problems
        for ref in list(posted):
            if ref not in outcomes:
                del posted[ref]
        for ref, outcome in outcomes.items():
            problems = frozenset(str(p) for p in outcome.problems)
            new = problems - posted.get(ref, frozenset())
            posted[ref] = problems
            for text in sorted(new):
                ok = await self._event(ref, "Warning", "Invalid", text) and ok
        if not drift:
            return ok
        repaired = sorted(ref for ref in touched if ref in outcomes)
        for ref in repaired[:DRIFT_EVENTS_PER_PASS]:
            ok = await self._event(
                ref, "Warning", "DriftRepaired",
                f"Sōzu no longer served what {ref} describes (hand edit or restart); "
                f"proxy {self.config.pod_name} re-programmed it.",
            ) and ok
        if len(repaired) > DRIFT_EVENTS_PER_PASS:
            log.warning("re-programmed %d resources after drift; DriftRepaired Events were "
                        "posted for the first %d only", len(repaired), DRIFT_EVENTS_PER_PASS)
        return ok

    async def _event(self, ref: ResourceRef, type_: str, reason: str, message: str) -> bool:
        if self.api is None:
            return True
        try:
            await self.api.post_event(
                ref, uid=self._memory.uids.get(ref), type_=type_, reason=reason,
                message=message, instance=self.config.pod_name,
            )
        except KubeApiError as error:
            log.warning("cannot post an Event for %s: %s", ref, error)
            return False
        return True
