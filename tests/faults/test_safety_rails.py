"""The safety rails, against a Sōzu that already serves what this installation owns.

- Until every watched kind has been listed, an empty or partial index means "not known yet":
  no removal is sent, /readyz stays 503, and no status or Event is written from that partial
  view. Shown with the LIST of one kind slowed far beyond the operator's other startup work,
  and with `--max-removal-share 1.0`, so that the mass-deletion guard cannot be what holds
  the removals back; and with the listing completing while the first pass reads a large Sōzu.
- A namespace with nothing in it at all is a complete listing too: the operator gets ready.
- Everything deleted at once: the mass-deletion guard holds the removals (none sent),
  `sozu_operator_guard_blocked` is 1 and the log says why; restarting the operator with
  `--max-removal-share 1.0` is how a user forces it.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.e2e.conftest import StartOperator, StartSozu
from tests.e2e.e2e_support import (
    Api,
    by_hand,
    converged,
    eventually,
    example_documents,
    foreign,
    free_port,
    owned,
    refuse_start_up_listing,
    slow_kopf_listing,
    unowned,
)
from tests.faults.faults_support import (
    REMOVE_VERBS,
    frontend,
    many_frontends,
    metric,
    metrics_text,
    readyz,
    removals,
    seed,
)

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import Cluster
from sozu_operator.proxy.state import ConfigState

SLOW_LIST = 3.0  # seconds: far longer than the operator's login, startup and first pass
BIG_SOZU = 8000  # unowned clusters: a read of the live state takes about a second
FORCE = ("--max-removal-share", "1.0")


def _warnings(events: list[dict[str, object]]) -> list[str]:
    return [f"{e.get('reason')}: {e.get('message')}" for e in events if e.get("type") == "Warning"]


@pytest.mark.parametrize("plural", ["sozufrontends", "sozuclusters"])
async def test_nothing_removed_and_not_ready_before_every_kind_is_listed(
    plural: str, crds: Api, kube: KubeEmulator, sozu: SozuEmulator,
    start_operator: StartOperator,
) -> None:
    """A restarted sidecar finds its Sōzu populated (it kept its state) while the API is slow
    to list one kind: with frontends unlisted, the plan from the partial index would remove
    every route; with clusters unlisted, every route would be reported Invalid (no such
    cluster) in its status and in Warning Events. Neither may happen."""
    api = crds
    documents = [*example_documents(), *many_frontends(12)]
    await by_hand(sozu, *foreign("manual", "manual.localhost", 7000))
    await seed(sozu, documents)
    await api.create(*documents)
    static, programmed = unowned(sozu), owned(sozu)
    sozu.reset_counts()
    kube.clear_log()
    # The operator's own LIST at start-up fails (it then waits for kopf's, see
    # `Reconciler.bootstrap`), and kopf's LISTs of that kind are slow for a while.
    refused = refuse_start_up_listing(kube, plural)
    slow = slow_kopf_listing(kube, plural, times=1, seconds=SLOW_LIST)
    health = free_port()
    await start_operator(sozu.socket_path, health_port=health, extra=FORCE)

    # The slowed LIST has begun and the operator has read Sōzu (a pass ran) meanwhile.
    started = time.monotonic()
    await eventually(lambda: slow.remaining == 0, within=10, what="the slowed LIST to start")
    await eventually(lambda: sozu.verb_counts["QueryCertificatesFromTheState"] >= 1, within=10,
                     what="a pass reading Sōzu while the LIST is slow")
    await asyncio.sleep(0.3)  # that pass has planned and applied what it would
    assert time.monotonic() - started < SLOW_LIST - 0.5, "the machine is too slow to tell"
    code, text = await readyz(health)
    assert (code, text) == (503, "not ready: not programmed yet\n")
    assert removals(sozu) == 0
    assert refused.remaining == 0

    await converged(api, sozu, within=20, what="Sōzu once every kind is listed")
    await eventually(lambda: _ready(health), within=10, what="/readyz 200")
    assert removals(sozu) == 0, {v: n for v, n in sozu.verb_counts.items() if v in REMOVE_VERBS}
    assert owned(sozu) == programmed
    assert unowned(sozu) == static
    assert _warnings(await api.events()) == []
    not_ready = [e.path for e in kube.requests if e.method == "PATCH" and _says_not_ready(e.json)]
    assert not_ready == [], "statuses written from a partial view"


async def test_listing_completed_while_a_pass_reads_sozu_changes_nothing(
    crds: Api, kube: KubeEmulator, start_sozu: StartSozu, start_operator: StartOperator
) -> None:
    """The first pass takes its snapshot of the indexes while kopf is still listing, then reads
    a large Sōzu (thousands of clusters it does not own: about a second); the listing
    completes meanwhile. What that pass plans comes from the snapshot, which lacks what was
    listed after it: it must still count as a partial view (no removal, no report, not ready),
    however complete the indexes are by the time the plan is made. (The operator's own LIST at
    start-up, which would program Sōzu before kopf lists, fails here.)"""
    api = crds
    big, _ = ConfigState.from_requests(
        [rq.AddCluster(Cluster(f"static-{n}")) for n in range(BIG_SOZU)], sozu_version=2)
    sozu = await start_sozu(initial_state=big)
    documents = [*example_documents(), *many_frontends(12)]
    await seed(sozu, documents)
    await api.create(*documents)
    static, programmed = unowned(sozu), owned(sozu)
    sozu.reset_counts()
    kube.clear_log()
    refused = refuse_start_up_listing(kube, "sozufrontends")
    slow = slow_kopf_listing(kube, "sozufrontends", times=1, seconds=0.5)
    health = free_port()
    await start_operator(sozu.socket_path, health_port=health, extra=FORCE)
    await eventually(lambda: slow.remaining == 0, within=20, what="the slowed LIST")
    assert refused.remaining == 0
    await converged(api, sozu, within=30, what="Sōzu once every kind is listed")
    await eventually(lambda: _ready(health), within=10, what="/readyz 200")
    assert removals(sozu) == 0, {v: n for v, n in sozu.verb_counts.items() if v in REMOVE_VERBS}
    assert owned(sozu) == programmed
    assert unowned(sozu) == static
    assert _warnings(await api.events()) == []
    assert sozu.verb_counts["QueryClusterById"] >= BIG_SOZU  # a whole read did happen


async def test_empty_namespace_is_a_complete_listing(
    crds: Api, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    """Nothing to watch at all (kopf then delivers no event): the operator still learns that
    its listing is complete, gets ready, and removes what it owns that no resource wants."""
    api = crds
    await seed(sozu, [frontend("old"), *example_documents()[:1]])
    assert owned(sozu).http_frontends
    health = free_port()
    await start_operator(sozu.socket_path, health_port=health)
    await eventually(lambda: _ready(health), within=15, what="/readyz 200 with nothing to watch")
    await converged(api, sozu, what="the stale owned objects to be removed")
    assert not owned(sozu).clusters


async def test_an_empty_listing_by_kopf_replaces_the_start_up_listing(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    """The operator programs Sōzu from its own LIST at start-up; every resource is deleted
    before kopf's LISTs (slowed) answer, so kopf lists nothing and no event ever comes. kopf
    still says its indexes hold their listing, which replaces the start-up one: what Sōzu
    served for the deleted resources goes at once, not at the next resync (60 s here)."""
    api = crds
    await by_hand(sozu, *foreign("manual", "manual.localhost", 7000))
    static = unowned(sozu)
    documents = [*example_documents(), *many_frontends(4)]
    await api.create(*documents)
    slowed = [slow_kopf_listing(kube, plural, times=1, seconds=SLOW_LIST)
              for plural in ("sozuclusters", "sozufrontends", "sozucertificates")]
    operator = await start_operator(sozu.socket_path, process=True, resync=60.0, extra=FORCE)
    await eventually(lambda: bool(owned(sozu).http_frontends), within=10,
                     what="Sōzu programmed from the start-up listing")
    programmed = time.monotonic()  # kopf starts after: its LISTs answer 3 s later at least
    for kind in ("SozuFrontend", "SozuCertificate", "SozuCluster"):
        await api.delete_all(kind)
    assert time.monotonic() - programmed < SLOW_LIST - 1, "the machine is too slow to tell"
    await eventually(lambda: all(rule.remaining == 0 for rule in slowed), within=10,
                     what="kopf's slowed LISTs")
    await eventually(lambda: not owned(sozu).clusters and not owned(sozu).http_frontends,
                     within=SLOW_LIST + 5, what="the deleted resources' objects to go")
    assert unowned(sozu) == static
    assert "kopf holds the initial listing of every watched kind: 0 indexed object(s)" \
        in operator.log_tail(400)
    assert operator.alive


async def test_mass_deletion_is_held_then_forced(
    crds: Api, sozu: SozuEmulator, start_operator: StartOperator
) -> None:
    api = crds
    await by_hand(sozu, *foreign("manual", "manual.localhost", 7000))
    static = unowned(sozu)
    metrics = free_port()
    operator = await start_operator(sozu.socket_path, process=True, metrics_port=metrics,
                                    debounce=0.3, resync=0.5)
    await api.create(*example_documents(), *many_frontends(10))
    await converged(api, sozu, within=20, what="the resources")
    programmed = owned(sozu)
    assert sum(map(len, (programmed.clusters, programmed.backends,
                         programmed.http_frontends))) > 10

    sozu.reset_counts()
    for kind in ("SozuFrontend", "SozuCertificate", "SozuCluster"):
        await api.delete_all(kind)
    text = await eventually(
        lambda: _metrics_if(metrics, "sozu_operator_guard_blocked", 1.0), within=10,
        what="the guard to block")
    assert metric(text, "sozu_operator_guard_blocked") == 1.0
    await asyncio.sleep(1.5)  # several resyncs: still held
    assert removals(sozu) == 0
    assert owned(sozu) == programmed
    assert metric(await metrics_text(metrics), "sozu_operator_guard_blocked") == 1.0
    log = operator.log_tail(400)
    assert "mass-deletion guard refused the plan" in log
    assert "removals are held (an operator started with --max-removal-share 1.0" in log

    # Forcing it: the operator restarted with --max-removal-share 1.0.
    assert await operator.stop() == 0
    forced = await start_operator(sozu.socket_path, process=True, metrics_port=metrics,
                                  extra=FORCE)
    await eventually(lambda: not owned(sozu).http_frontends and not owned(sozu).clusters,
                     within=20, what="the forced removals")
    await converged(api, sozu, what="an empty desired state")
    assert unowned(sozu) == static
    assert metric(await metrics_text(metrics), "sozu_operator_guard_blocked") == 0.0
    assert forced.alive


def _says_not_ready(body: object) -> bool:
    status = body.get("status") if isinstance(body, dict) else None
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return any(c.get("type") == "Ready" and c.get("status") == "False"
               for c in conditions or [] if isinstance(c, dict))


async def _ready(port: int) -> bool:
    return (await readyz(port))[0] == 200


async def _metrics_if(port: int, name: str, value: float) -> str | None:
    text = await metrics_text(port)
    return text if metric(text, name) == value else None
