"""What the fault scenarios add to `tests/e2e/e2e_support.py`: faults fired at an exact request
of the Sōzu emulator, an observer of every state Sōzu passes through, resource builders, the
operator's /metrics and /readyz, and seeding a Sōzu as `sozu-operator apply` would.

The Sōzu emulator counts each request in its public `verb_counts` as it decodes it, before
handling it. `RequestTap` swaps that counter for one that calls back at each count, so a
callback sees Sōzu's state as left by every earlier request (never a half-applied one), and
whatever it arms through the emulator's public switches (`fail_nth_mutation(1)`,
`close_mid_response(n)`, a restart) hits this very request or its answer, whatever the timing.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.e2e_support import (
    GV,
    MUTATION_VERBS,
    NS,
    OWNER,
    by_hand,
    foreign,
    http_get,
    unowned,
)

from sozu_operator.applier import apply_steps
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.live import LiveReader
from sozu_operator.proxy.model import ListenerType
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.pipeline import reconcile
from sozu_operator.reconcile.planner import route_name
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.wire import SozuClient, WireVersion

Json = dict[str, Any]
REMOVE_VERBS = frozenset(verb for verb in MUTATION_VERBS if verb.startswith("Remove"))


# --- faults at an exact request ---------------------------------------------------------------


@dataclass
class Trigger:
    """Runs `action` once, at the `remaining`-th request (from when it was armed) whose verb is
    in `verbs` (None: any request)."""

    remaining: int
    action: Callable[[], None]
    verbs: frozenset[str] | None = None
    fired: bool = False


class _TappedCounts(collections.Counter[str]):
    def __init__(self, tap: RequestTap, initial: Mapping[str, int]) -> None:
        self._tap: RequestTap | None = None  # no callback for the initial counts
        super().__init__(initial)
        self._tap = tap

    def __setitem__(self, verb: str, count: int) -> None:
        super().__setitem__(verb, count)
        if self._tap is not None:
            self._tap._request(verb)


@dataclass(eq=False)
class RequestTap:
    """Triggers (`at`, `at_mutation`) and observers (`observers`: `callback(verb)` before each
    request is handled, Sōzu's state being as left by the previous ones) on one emulator."""

    sozu: SozuEmulator
    triggers: list[Trigger] = field(default_factory=list)
    observers: list[Callable[[str], None]] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sozu.verb_counts = _TappedCounts(self, self.sozu.verb_counts)

    def at(self, n: int, action: Callable[[], None], *,
           verbs: Iterable[str] | None = None) -> Trigger:
        trigger = Trigger(n, action, None if verbs is None else frozenset(verbs))
        self.triggers.append(trigger)
        return trigger

    def at_mutation(self, n: int, action: Callable[[], None], *,
                    verbs: Iterable[str] = MUTATION_VERBS) -> Trigger:
        return self.at(n, action, verbs=verbs)

    def disarm(self) -> list[Trigger]:
        """Drop the triggers that did not fire; returns them."""
        left = [t for t in self.triggers if not t.fired]
        self.triggers.clear()
        return left

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run an async action (a restart) right after the current request's answer."""
        self.tasks.append(asyncio.get_running_loop().create_task(coroutine))

    def restart(self) -> Callable[[], None]:
        """An action: Sōzu restarts (state back to its boot state), right after this answer."""
        return lambda: self.spawn(self.sozu.restart(to="boot"))

    async def settle(self) -> None:
        """Wait for the spawned actions."""
        if self.tasks:
            await asyncio.gather(*self.tasks)
            self.tasks.clear()

    def _request(self, verb: str) -> None:
        for observer in self.observers:
            observer(verb)
        for trigger in list(self.triggers):
            if trigger.fired or (trigger.verbs is not None and verb not in trigger.verbs):
                continue
            trigger.remaining -= 1
            if trigger.remaining == 0:
                trigger.fired = True
                self.triggers.remove(trigger)
                trigger.action()


# --- what Sōzu serves --------------------------------------------------------------------------


def served_routes(sozu: SozuEmulator) -> set[str]:
    """Routes that carry traffic in main's state: the route exists, its cluster exists and has
    at least one backend (named as plans name them, `route_name`)."""
    state = sozu.state
    served = set()
    for kind, table in ((ListenerType.HTTP, state.http_frontends),
                        (ListenerType.HTTPS, state.https_frontends)):
        for key, front in table.items():
            cluster = front.cluster_id
            if cluster is None or (cluster in state.clusters and state.backends.get(cluster)):
                served.add(route_name(kind, key))
    return served


def owned_hostnames(sozu: SozuEmulator) -> collections.Counter[str]:
    """How many owned HTTP routes each hostname has: a duplicate shows as a count above 1."""
    return collections.Counter(
        front.hostname for front in sozu.state.http_frontends.values()
        if ownership.owns_frontend(OWNER, front)
    )


def assert_exactly_once(sozu: SozuEmulator, names: Iterable[str]) -> None:
    """Each of these routes (`frontend(name)`: one per hostname) is in Sōzu exactly once, as
    an owned route. (Re-planning to nothing already rules out any owned route that no
    resource describes; this says the same without trusting the planner.)"""
    expected = {f"{name}.localhost" for name in names}
    counts = owned_hostnames(sozu)
    assert {h: n for h, n in counts.items() if h in expected} == dict.fromkeys(expected, 1)


async def add_static(sozu: SozuEmulator) -> ProxyState:
    """Add an unowned cluster with a route by hand and save it into Sōzu's boot state (so it
    survives restarts); returns everything this installation does not own, to compare with
    at the end of a scenario."""
    await by_hand(sozu, *foreign("manual", "manual.localhost", 7000), save=True)
    return unowned(sozu)


def removals(sozu: SozuEmulator) -> int:
    return sum(n for verb, n in sozu.verb_counts.items() if verb in REMOVE_VERBS)


# --- resources ---------------------------------------------------------------------------------


def cluster(name: str, *ports: int) -> Json:
    return {"apiVersion": GV, "kind": "SozuCluster", "metadata": {"name": name, "namespace": NS},
            "spec": {"backends": [{"address": f"127.0.0.1:{port}"} for port in ports]}}


def frontend(name: str, cluster_name: str = "web", *, hostname: str | None = None,
             path: str | None = None) -> Json:
    spec: Json = {"cluster": cluster_name, "protocol": "HTTP", "address": "0.0.0.0:8080",
                  "hostname": hostname or f"{name}.localhost"}
    if path is not None:
        spec["path"] = {"kind": "PREFIX", "value": path}
    return {"apiVersion": GV, "kind": "SozuFrontend",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def many_frontends(count: int, cluster_name: str = "web", *, prefix: str = "f") -> list[Json]:
    """`count` routes to one cluster: `<prefix>000` … with hostname `<prefix>000.localhost` …"""
    return [frontend(f"{prefix}{n:03d}", cluster_name) for n in range(count)]


async def seed(sozu: SozuEmulator, documents: Iterable[Json]) -> int:
    """Program Sōzu from `documents` exactly as `sozu-operator apply -f` does (same owner):
    returns the number of requests sent."""
    async with SozuClient(sozu.socket_path, version=WireVersion.V2, timeout=5) as client:
        result = reconcile(list(documents), await LiveReader().read(client), owner=OWNER,
                           sozu_version=2)
        assert not result.build.problems, result.build.problems
        applied = await apply_steps(client, result.plan.steps)
        assert applied.ok, applied.failure
    return len(applied.applied)


# --- the operator's endpoints -----------------------------------------------------------------


async def metrics_text(port: int) -> str:
    code, text = await http_get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200, text
    return text


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def readyz(port: int) -> tuple[int, str]:
    """(status, text) of /readyz; (0, "") while nothing listens yet."""
    try:
        return await http_get(f"http://127.0.0.1:{port}/readyz")
    except aiohttp.ClientConnectionError:
        return 0, ""
