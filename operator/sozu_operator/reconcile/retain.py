"""Keep serving what a broken resource used to program.

A resource that exists but cannot be built this time (a typo, a missing Secret, an expired
certificate) must not make the proxy drop what it served from that resource's last good
version: only deleting the resource should. So the owned live objects attributable to failed
resources are carried over into the desired state unchanged, and the planner leaves them be.

Attribution uses the ownership markers: cluster ids (`<owner>:<namespace>/<name>` by default,
or the clusterId the resource asked for), the `sozu.io/resource` tag of frontends. Certificates
carry no resource marker, so while any SozuCertificate is failing no owned certificate is
removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.resources.models import ResourceRef


@dataclass(frozen=True)
class FailedResource:
    ref: ResourceRef
    # spec.clusterId as written, when the resource is a SozuCluster that set one.
    cluster_id: str | None = None


@dataclass(frozen=True)
class Retention:
    state: ProxyState
    retained: Mapping[ResourceRef, int]  # failed resource → live objects kept for it


def retain_failed(
    desired: ProxyState, live: ProxyState, failed: Iterable[FailedResource], *, owner: str
) -> Retention:
    clusters = dict(desired.clusters)
    backends = dict(desired.backends)
    http = dict(desired.http_frontends)
    https = dict(desired.https_frontends)
    tcp = set(desired.tcp_frontends)
    certificates = dict(desired.certificates)
    retained: dict[ResourceRef, int] = {}

    def keep(ref: ResourceRef) -> None:
        retained[ref] = retained.get(ref, 0) + 1

    tcp_keys = {(f.cluster_id, f.address) for f in tcp}
    for failure in failed:
        ref = failure.ref
        if ref.kind == "SozuCluster":
            ids = {ownership.sozu_cluster_id(owner, ref.namespaced_name)}
            if failure.cluster_id:
                ids.add(ownership.sozu_cluster_id(owner, failure.cluster_id))
            for cluster_id in ids:
                if cluster_id in live.clusters and cluster_id not in clusters:
                    clusters[cluster_id] = live.clusters[cluster_id]
                    keep(ref)
                # Also for a cluster that was built but whose Service could not be resolved:
                # its endpoints stay as they are until they can be read again.
                for backend_key, backend in live.backends.items():
                    if backend.cluster_id == cluster_id and backend_key not in backends:
                        backends[backend_key] = backend
                        keep(ref)
        elif ref.kind == "SozuFrontend":
            tag = (ownership.RESOURCE_TAG, ref.namespaced_name)
            for table, target in ((live.http_frontends, http), (live.https_frontends, https)):
                for key, frontend in table.items():
                    mine = ownership.owns_frontend(owner, frontend) and tag in frontend.tags
                    if mine and key not in target:
                        target[key] = frontend
                        keep(ref)
            for front in live.tcp_frontends:
                mine = ownership.owns_frontend(owner, front) and tag in front.tags
                if mine and (front.cluster_id, front.address) not in tcp_keys:
                    tcp.add(front)
                    keep(ref)
        elif ref.kind == "SozuCertificate":
            for certificate_key, certificate in live.certificates.items():
                mine = ownership.owns_certificate(owner, certificate)
                if mine and certificate_key not in certificates:
                    certificates[certificate_key] = certificate
                    keep(ref)
    state = ProxyState.of_tables(
        clusters=clusters, backends=backends, http_frontends=http, https_frontends=https,
        tcp_frontends=tcp, certificates=certificates, listeners=desired.listeners,
    )
    return Retention(state, MappingProxyType(retained))
