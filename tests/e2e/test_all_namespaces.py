"""`sozu-operator run --all-namespaces` (`-A`), as a real process driven with the real kubectl:
resources, TLS Secrets and EndpointSlices of every namespace, including one created after the
operator started, are programmed into Sōzu (read back over its command socket) and reported in
each resource's status; a deletion in one namespace removes exactly that namespace's objects;
an operator restarted against the Sōzu it programmed takes over without sending a request,
also while the API is slow to list one kind to kopf after the operator's own LIST at
start-up failed (then without logging a refused mass deletion either: the removals wait for
the listing, nobody asked for them); when that LIST succeeds, changes made while no operator
ran are programmed from it, before kopf's listing is in.

Every namespace holds the same names (`app` cluster, route, certificate; `app` Service and
`app-tls` Secret) with different contents, so that an object taken from the wrong namespace,
or a namespace left out, shows up as a wrong or missing object in Sōzu."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.certs import make_certificate
from tests.e2e import conftest
from tests.e2e.conftest import StartOperator
from tests.e2e.e2e_support import (
    CRDS,
    NS,
    OWNER,
    Json,
    Operator,
    OperatorSpec,
    eventually,
    mutations,
    refuse_start_up_listing,
    slow_kopf_listing,
)
from tests.kube.kube_support import HAVE_KUBECTL, NO_KUBECTL, Kubectl

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.live import LiveReader
from sozu_operator.proxy.certificates import fingerprint
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.wire import SozuClient, WireVersion

pytestmark = pytest.mark.skipif(not HAVE_KUBECTL, reason=NO_KUBECTL)

POD = "sozu-0"
NEXT_POD = "sozu-1"  # its successor after a rollout
RESYNC = 1.0
HTTPS = "0.0.0.0:8443"
SLOW_LIST = 3.0  # seconds: far longer than the operator's login, startup and first pass
KOPF_LIST_DELAY = 8.0  # seconds: far longer than the operator's start-up programming
EARLY = (NS, "team-a", "team-b")  # hold resources before the operator starts
LATE = "team-c"  # created, with its resources, once the operator runs
KINDS = ("SozuCluster", "SozuFrontend", "SozuCertificate")
Fact = tuple[str, ...]


class AllNamespacesSpec(OperatorSpec):
    """The e2e operator's arguments with `--all-namespaces` instead of `-n default` (argparse
    refuses both at once, as a user's `sozu-operator run -A` has no `-n`)."""

    def arguments(self) -> list[str]:
        arguments = super().arguments()
        at = arguments.index("-n")
        assert arguments[at + 1] == NS, arguments
        del arguments[at:at + 2]
        return [*arguments, "--all-namespaces"]


@pytest.fixture
def start_all_namespaces(start_operator: StartOperator,
                         monkeypatch: pytest.MonkeyPatch) -> StartOperator:
    """The `start_operator` fixture (same teardown and checks), starting `run -A` processes."""
    monkeypatch.setattr(conftest, "OperatorSpec", AllNamespacesSpec)

    async def start(socket: str, *, pod: str = POD, **options: Any) -> Operator:
        operator = await start_operator(socket, pod=pod, process=True, resync=RESYNC,
                                        **options)
        assert "--all-namespaces" in operator.spec.arguments()
        assert "-n" not in operator.spec.arguments()
        return operator

    return start


@dataclass(frozen=True)
class Tenant:
    """What one namespace holds: a Service-backed cluster, an HTTP route and a certificate
    from a TLS Secret, all named `app`; addresses, host and certificate differ per namespace."""

    namespace: str
    number: int
    certificate: str
    key: str

    @classmethod
    def make(cls, namespace: str, number: int) -> Tenant:
        certificate, key = make_certificate([f"app.{namespace}.localhost"])
        return cls(namespace, number, certificate, key)

    @property
    def host(self) -> str:
        return f"app.{self.namespace}.localhost"

    @property
    def cluster_id(self) -> str:
        return f"{OWNER}:{self.namespace}/app"

    @property
    def ips(self) -> tuple[str, str]:
        return (f"10.{self.number}.0.1", f"10.{self.number}.0.2")

    def documents(self) -> list[Json]:
        def meta(name: str, **more: Any) -> Json:
            return {"name": name, "namespace": self.namespace, **more}

        def b64(text: str) -> str:
            return base64.b64encode(text.encode()).decode()

        return [
            {"apiVersion": "v1", "kind": "Secret", "metadata": meta("app-tls"),
             "type": "kubernetes.io/tls",
             "data": {"tls.crt": b64(self.certificate), "tls.key": b64(self.key)}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": meta("app-1", labels={"kubernetes.io/service-name": "app"}),
             "addressType": "IPv4",
             "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
             "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}
                           for ip in self.ips]},
            {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuCluster", "metadata": meta("app"),
             "spec": {"service": {"name": "app", "port": "http"}}},
            {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuFrontend", "metadata": meta("app"),
             "spec": {"cluster": "app", "protocol": "HTTP", "address": "0.0.0.0:8080",
                      "hostname": self.host}},
            {"apiVersion": "sozu.io/v1alpha1", "kind": "SozuCertificate",
             "metadata": meta("app"),
             "spec": {"addresses": [HTTPS], "secretRef": {"name": "app-tls"}}},
        ]

    def facts(self) -> set[Fact]:
        """What Sōzu must serve for this namespace (see `served_facts`)."""
        return {
            ("cluster", self.cluster_id),
            *(("backend", self.cluster_id, f"{ip}:8080") for ip in self.ips),
            ("route", "0.0.0.0:8080", self.host, self.cluster_id),
            ("certificate", HTTPS, fingerprint(self.certificate)),
        }


async def served(sozu: SozuEmulator) -> ProxyState:
    """What Sōzu serves, read over its command socket with a fresh reader (no cache)."""
    async with SozuClient(sozu.socket_path, version=WireVersion.V2, timeout=5) as client:
        return await LiveReader().read(client)


def served_facts(state: ProxyState) -> set[Fact]:
    """The owned part of `state`, flattened to comparable facts."""
    facts: set[Fact] = {("cluster", c) for c in state.clusters
                        if ownership.owns_cluster(OWNER, c)}
    facts |= {("backend", b.cluster_id, str(b.address)) for b in state.backends.values()
              if ownership.owns_cluster(OWNER, b.cluster_id)}
    for routes in (state.http_frontends, state.https_frontends):
        facts |= {("route", str(f.address), f.hostname, str(f.cluster_id))
                  for f in routes.values() if ownership.owns_frontend(OWNER, f)}
    facts |= {("tcp", str(f.address), f.cluster_id) for f in state.tcp_frontends
              if ownership.owns_frontend(OWNER, f)}
    facts |= {("certificate", str(address), print_)
              for (address, print_), certificate in state.certificates.items()
              if ownership.owns_certificate(OWNER, certificate)}
    return facts


def expected(tenants: Iterable[Tenant]) -> set[Fact]:
    return set().union(*(tenant.facts() for tenant in tenants))


async def serves_exactly(sozu: SozuEmulator, wanted: set[Fact], *, what: str) -> None:
    """Wait until the owned objects Sōzu serves are exactly `wanted`."""
    last: list[set[Fact]] = [set()]

    async def check() -> bool:
        last[0] = served_facts(await served(sozu))
        return last[0] == wanted

    try:
        await eventually(check, within=15, what=what, interval=0.1)
    except AssertionError as error:
        raise AssertionError(f"{error}; missing: {sorted(wanted - last[0])}, "
                             f"extra: {sorted(last[0] - wanted)}") from None


async def sozu_resources(kubectl: Kubectl) -> list[Json]:
    """Every sozu.io resource of every namespace, as `kubectl get -A` shows them."""
    listed = json.loads((await kubectl(
        "get", "sozuclusters,sozufrontends,sozucertificates", "-A", "-o", "json")).out)
    items: list[Json] = listed["items"]
    return items


def status_problems(item: Json, tenant: Tenant, pod: str) -> list[str]:
    """Why `item`'s status does not (yet) say: programmed by `pod` (the only proxy) at its
    generation, Ready."""
    generation = item["metadata"]["generation"]
    status = item.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    problems = []
    if ((status.get("proxies") or {}).get(pod) or {}).get("programmedGeneration") != generation:
        problems.append(f"proxies: {status.get('proxies')}")
    if (conditions.get("Ready") or {}).get("status") != "True":
        problems.append(f"Ready: {conditions.get('Ready')}")
    done = conditions.get("Programmed") or {}
    if done.get("status") != "True" or done.get("observedGeneration") != generation:
        problems.append(f"Programmed: {done}")
    if status.get("proxiesProgrammed") != "1/1":
        problems.append(f"proxiesProgrammed: {status.get('proxiesProgrammed')}")
    by_kind: dict[str, dict[str, object]] = {
        "SozuCluster": {"clusterId": tenant.cluster_id, "backends": 2},
        "SozuFrontend": {"sozuKey": f"0.0.0.0:8080;{tenant.host};P"},
        "SozuCertificate": {"fingerprint": fingerprint(tenant.certificate),
                            "servedNames": [tenant.host]},
    }
    extra = by_kind[item["kind"]]
    problems += [f"{key}: {status.get(key)!r}, not {value!r}"
                 for key, value in extra.items() if status.get(key) != value]
    return problems


async def statuses_report(kubectl: Kubectl, tenants: Iterable[Tenant], *, what: str,
                          pod: str = POD) -> None:
    """Wait until `kubectl get -A` lists exactly the tenants' resources, each with a status
    saying that `pod` programmed it."""
    by_namespace = {tenant.namespace: tenant for tenant in tenants}
    wanted = {(kind, ns, "app") for kind in KINDS for ns in by_namespace}
    last: list[object] = []

    async def check() -> bool:
        items = await sozu_resources(kubectl)
        found = {(i["kind"], i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}
        problems = {f"{i['kind']} {i['metadata']['namespace']}/{i['metadata']['name']}":
                    status_problems(i, by_namespace[i["metadata"]["namespace"]], pod)
                    for i in items if i["metadata"]["namespace"] in by_namespace}
        problems = {k: v for k, v in problems.items() if v}
        last[:] = [sorted(found ^ wanted), problems]
        return found == wanted and not problems

    try:
        await eventually(check, within=15, what=what, interval=0.25)
    except AssertionError as error:
        raise AssertionError(f"{error}; listed vs wanted: {last[0]}, status: {last[1]}") \
            from None


async def create_tenants(kubectl: Kubectl, tenants: Iterable[Tenant]) -> None:
    """`kubectl create namespace` (but for `default`), then `kubectl apply` its objects."""
    for tenant in tenants:
        if tenant.namespace != NS:
            await kubectl("create", "namespace", tenant.namespace)
        await kubectl.apply(*tenant.documents())


async def warnings(kubectl: Kubectl) -> list[str]:
    """Warning Events of every namespace (an unresolved Secret or Service would be one)."""
    events = json.loads((await kubectl("get", "events", "-A", "-o", "json")).out)["items"]
    return [f"{e['involvedObject'].get('namespace')}/{e['involvedObject'].get('name')}: "
            f"{e.get('reason')}: {e.get('message')}"
            for e in events if e.get("type") == "Warning"]


def log_lines(operator: Operator, marker: str) -> list[str]:
    return [line for line in operator.log_tail(2000).splitlines() if marker in line]


async def programmed_then_stopped(kubectl: Kubectl, sozu: SozuEmulator,
                                  start: StartOperator) -> list[Tenant]:
    """The early namespaces' resources, programmed into Sōzu by an operator now stopped."""
    await kubectl("apply", "-f", str(CRDS))
    tenants = [Tenant.make(ns, number) for number, ns in enumerate(EARLY, 1)]
    await create_tenants(kubectl, tenants)
    wanted = expected(tenants)
    assert len(wanted) >= 10  # at least the mass-deletion guard's floor of owned objects
    first = await start(sozu.socket_path)
    await serves_exactly(sozu, wanted, what="the first operator to program every namespace")
    await statuses_report(kubectl, tenants, what="the first operator's statuses")
    assert await first.stop() == 0
    return tenants




async def test_all_namespaces_programs_and_reports_every_namespace(
    sozu: SozuEmulator, start_all_namespaces: StartOperator, kubeconfig: Path, workdir: Path,
) -> None:
    kubectl = Kubectl(kubeconfig, workdir / "kubectl-cache")
    await kubectl("apply", "-f", str(CRDS))
    tenants = {ns: Tenant.make(ns, number) for number, ns in enumerate((*EARLY, LATE), 1)}
    early = [tenants[ns] for ns in EARLY]
    await create_tenants(kubectl, early)
    booted = served_facts(await served(sozu))
    assert booted == set(), booted  # Sōzu boots with unowned objects only

    operator = await start_all_namespaces(sozu.socket_path)
    await serves_exactly(sozu, expected(early), what="every early namespace to be programmed")
    await statuses_report(kubectl, early, what="every early resource's status")
    assert log_lines(operator, "watching all namespaces"), operator.log_tail()

    # A namespace created while the operator runs, then its Secret, Service and resources.
    late = tenants[LATE]
    await create_tenants(kubectl, [late])
    await serves_exactly(sozu, expected([*early, late]), what=f"namespace {LATE}, created later")
    await statuses_report(kubectl, [*early, late], what=f"the status of {LATE}'s resources")

    # A change in one namespace reaches Sōzu (the late one's EndpointSlice scales up).
    scaled = {"endpoints": [{"addresses": [ip], "conditions": {"ready": True}}
                            for ip in (*late.ips, "10.4.0.3")]}
    await kubectl("patch", "endpointslice", "app-1", "-n", LATE, "--type=merge",
                  "-p", json.dumps(scaled))
    wanted = expected(tenants.values()) | {("backend", late.cluster_id, "10.4.0.3:8080")}
    await serves_exactly(sozu, wanted, what=f"the new backend in {LATE}")

    # Deleting one namespace's resources removes exactly its objects, nothing of the others.
    gone = tenants["team-a"]
    sozu.reset_counts()
    await kubectl("delete", "sozufrontends,sozuclusters,sozucertificates", "--all",
                  "-n", gone.namespace)
    wanted -= gone.facts()
    await serves_exactly(sozu, wanted, what=f"{gone.namespace}'s objects, and only them, to go")
    removed = mutations(sozu)
    assert removed == {"RemoveHttpFrontend": 1, "RemoveBackend": 2, "RemoveCluster": 1,
                       "RemoveCertificate": 1}, removed
    listed = {i["metadata"]["namespace"] for i in await sozu_resources(kubectl)}
    assert listed == {NS, "team-b", LATE}, listed

    # Settled: several resyncs later nothing more is sent, and no resource was found wanting.
    sozu.reset_counts()
    await asyncio.sleep(2.5 * RESYNC)
    assert mutations(sozu) == {}
    assert served_facts(await served(sozu)) == wanted
    assert await warnings(kubectl) == []
    assert log_lines(operator, " ERROR ") == [], operator.log_tail()
    assert log_lines(operator, "Traceback") == [], operator.log_tail()
    assert operator.alive


async def test_restart_takes_over_without_a_request(
    sozu: SozuEmulator, start_all_namespaces: StartOperator, kubeconfig: Path, workdir: Path,
) -> None:
    """A new operator (a rollout: the pod gets a new name) starting against the Sōzu its
    predecessor programmed from several namespaces sends nothing and reports everything."""
    kubectl = Kubectl(kubeconfig, workdir / "kubectl-cache")
    tenants = await programmed_then_stopped(kubectl, sozu, start_all_namespaces)
    sozu.reset_counts()
    second = await start_all_namespaces(sozu.socket_path, pod=NEXT_POD)
    await statuses_report(kubectl, tenants, what="the second operator's statuses", pod=NEXT_POD)
    await asyncio.sleep(2.5 * RESYNC)
    assert mutations(sozu) == {}
    assert served_facts(await served(sozu)) == expected(tenants)
    assert log_lines(second, " ERROR ") == [], second.log_tail()
    assert second.alive


async def test_restart_during_a_slow_listing_holds_removals_quietly(
    kube: KubeEmulator, sozu: SozuEmulator, start_all_namespaces: StartOperator,
    kubeconfig: Path, workdir: Path,
) -> None:
    """The same restart while the API is slow to list SozuClusters (every namespace's) to
    kopf, after the operator's own paged LIST at start-up failed: the first pass plans from an
    index without clusters, i.e. without almost everything Sōzu serves. Nothing may be
    removed, and nothing may be reported as a refused mass deletion: nobody asked for one, the
    view is merely incomplete."""
    kubectl = Kubectl(kubeconfig, workdir / "kubectl-cache")
    tenants = await programmed_then_stopped(kubectl, sozu, start_all_namespaces)
    sozu.reset_counts()
    refused = refuse_start_up_listing(kube, "sozuclusters")
    slow = slow_kopf_listing(kube, "sozuclusters", times=1, seconds=SLOW_LIST)
    second = await start_all_namespaces(sozu.socket_path, pod=NEXT_POD)
    started = time.monotonic()
    await eventually(lambda: slow.remaining == 0, within=10, what="the slowed LIST to start")
    await eventually(lambda: sozu.verb_counts["QueryCertificatesFromTheState"] >= 1,
                     within=10, what="a pass reading Sōzu while the LIST is slow")
    assert time.monotonic() - started < SLOW_LIST - 0.5, "the machine is too slow to tell"

    await statuses_report(kubectl, tenants, what="the second operator's statuses", pod=NEXT_POD)
    await asyncio.sleep(2.5 * RESYNC)
    assert mutations(sozu) == {}
    assert served_facts(await served(sozu)) == expected(tenants)
    assert log_lines(second, "not every watched kind is listed yet"), "no partial pass seen"
    assert refused.remaining == 0
    assert log_lines(second, "cannot list the watched objects at start-up"), second.log_tail()
    assert second.alive
    assert log_lines(second, "mass-deletion guard refused the plan") == []
    assert log_lines(second, " ERROR ") == [], second.log_tail()



async def test_restart_programs_from_its_own_listing_before_kopf_lists(
    kube: KubeEmulator, sozu: SozuEmulator, start_all_namespaces: StartOperator,
    kubeconfig: Path, workdir: Path,
) -> None:
    """While no operator ran, one namespace's resources were deleted and another namespace
    came with its own. The next operator programs both changes (removals included: a LIST of
    every kind is a complete view) from its own paged LIST at start-up, before kopf's listing,
    slowed here, is in, and repairs a Sōzu restarted meanwhile from it; statuses follow kopf's
    listing."""
    kubectl = Kubectl(kubeconfig, workdir / "kubectl-cache")
    tenants = await programmed_then_stopped(kubectl, sozu, start_all_namespaces)
    gone, late = tenants[1], Tenant.make(LATE, len(EARLY) + 1)
    await kubectl("delete", "sozufrontends,sozuclusters,sozucertificates", "--all",
                  "-n", gone.namespace)
    await create_tenants(kubectl, [late])
    wanted = expected([*tenants, late]) - gone.facts()
    sozu.reset_counts()
    slow = slow_kopf_listing(kube, "sozufrontends", times=1, seconds=KOPF_LIST_DELAY)

    second = await start_all_namespaces(sozu.socket_path, pod=NEXT_POD)
    started = time.monotonic()
    await serves_exactly(sozu, wanted, what="the changes made while no operator ran")
    # kopf sends its LIST after the start, so it answers KOPF_LIST_DELAY after it at least.
    elapsed = time.monotonic() - started
    assert elapsed < KOPF_LIST_DELAY - 1, \
        f"programmed {elapsed:.1f} s after the start, not before kopf's slowed listing"
    items = await sozu_resources(kubectl)
    assert [i for i in items if NEXT_POD in ((i.get("status") or {}).get("proxies") or {})] \
        == [], "a status written before kopf listed everything"
    assert mutations(sozu) == {"AddCluster": 1, "AddBackend": 2, "AddHttpFrontend": 1,
                               "AddCertificate": 1, "RemoveHttpFrontend": 1,
                               "RemoveBackend": 2, "RemoveCluster": 1,
                               "RemoveCertificate": 1}, mutations(sozu)
    assert log_lines(second, "programmed Sōzu from a LIST"), second.log_tail()

    # Sōzu restarts, empty, before kopf's listing is in: repaired from the operator's own.
    await sozu.restart(to="boot")
    await serves_exactly(sozu, wanted, what="the repair from the operator's own listing")
    elapsed = time.monotonic() - started
    assert elapsed < KOPF_LIST_DELAY - 0.5, \
        f"repaired {elapsed:.1f} s after the start, not before kopf's slowed listing"

    remaining = [t for t in [*tenants, late] if t is not gone]
    await statuses_report(kubectl, remaining, what="statuses, after kopf's listing", pod=NEXT_POD)
    assert slow.fired, "kopf's LIST was not the slowed one"
    sozu.reset_counts()
    await asyncio.sleep(2.5 * RESYNC)
    assert mutations(sozu) == {}
    assert served_facts(await served(sozu)) == wanted
    assert log_lines(second, " ERROR ") == [], second.log_tail()
    assert second.alive


async def test_stopped_during_its_start_up_listing_it_exits_cleanly(
    kube: KubeEmulator, sozu: SozuEmulator, start_all_namespaces: StartOperator,
    kubeconfig: Path, workdir: Path,
) -> None:
    """SIGTERM while the operator's own LIST at start-up is slow (kopf, which handles the
    signal once it runs, has not started): the operator stops at once, exit status 0, having
    sent Sōzu nothing."""
    kubectl = Kubectl(kubeconfig, workdir / "kubectl-cache")
    await kubectl("apply", "-f", str(CRDS))
    await create_tenants(kubectl, [Tenant.make(NS, 1)])
    slow = kube.slow_next(1, seconds=KOPF_LIST_DELAY, verb="list",
                          path=r"/sozuclusters\?limit=")
    operator = await start_all_namespaces(sozu.socket_path)
    await eventually(lambda: bool(slow.fired), within=10, what="the slowed start-up LIST")
    asked = time.monotonic()
    assert await operator.stop(grace=KOPF_LIST_DELAY) == 0, operator.log_tail()
    assert time.monotonic() - asked < KOPF_LIST_DELAY / 2
    assert mutations(sozu) == {}
    assert log_lines(operator, "SIGTERM during start-up: stopping"), operator.log_tail()
