"""Live Sōzu state → `sozu.io/v1alpha1` resources: the `export` command, for review and adoption.

By default only the objects this installation owns are written, and applying the output again
plans nothing: every field the builder (reconcile/desired.py) turns into Sōzu state is written
back, and defaults the builder would derive anyway (backend ids, certificate names, `TREE`,
`ROUND_ROBIN`, false booleans) are left out so the YAML stays what a person would write.

Placement rules:

* An owned cluster `<owner>:<X>` goes into the namespace of the frontends routing to it (they
  must share one: a SozuFrontend names its SozuCluster within its own namespace). Without
  frontends, `X = <ns>/<name>` gives SozuCluster ns/name, anything else the given namespace.
  When ns/name is not what the builder would default to, `spec.clusterId` is X.
* With `everything`, unowned clusters (Sōzu's configuration file, other owners) go into the
  given namespace with a name derived from their id and `spec.clusterId` = that id (made valid
  when it is not: other owners' ids contain ':'). Applying them creates owned copies.
* Frontends are named by their `sozu.io/resource` tag (namespace and name); unowned ones and
  owned ones without a usable tag by their route, in the given namespace. A frontend must sit
  in its cluster's namespace; one that cannot, or routes to no cluster, is skipped.
* Certificates carry no resource marker: they go into the given namespace, one SozuCertificate
  per fingerprint listing every listener address (split only when two addresses hold it with
  different names, chain or versions), named after the first served name. The private key is
  written only with `include_keys`; otherwise the resource points at a `<name>-tls` Secret
  the user has to create.

Nothing that cannot be written validly is written: every document is checked with the same
validator `plan` uses, and anything unrepresentable is skipped with a warning. Warnings never
contain private key material.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from sozu_operator.proxy import certificates as certs
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    ListenerType,
    PathRule,
    RulePosition,
    SocketAddress,
    TcpFrontend,
    TlsVersion,
)
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.resources import schema as sch
from sozu_operator.resources.models import Invalid
from sozu_operator.resources.secrets import TLS_SECRET_TYPE
from sozu_operator.resources.validate import parse_resource

Document = dict[str, Any]

# Room for "-<8 hex>" collision suffixes and "-tls" Secret names within a DNS label.
_MAX_NAME: Final = 54
# fullmatch, not match: the schema's "$" would also accept a trailing newline in Python.
_CLUSTER_ID = re.compile(sch.CLUSTER_ID)
_DNS_LABEL = re.compile(sch.DNS_LABEL)
_DNS_SUBDOMAIN = re.compile(sch.DNS_SUBDOMAIN)
_NOT_LABEL = re.compile(r"[^a-z0-9]+")
_NOT_CLUSTER_ID = re.compile(r"[^A-Za-z0-9._/-]+")
_KIND_ORDER: Final = {kind: index for index, kind in enumerate(sch.KINDS)}


# --- names ---------------------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def dns_name(text: str, *, fallback: str) -> str:
    """A DNS-1123 label made from any text: lowercase, runs of other characters as '-'."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")[:_MAX_NAME].strip("-")
    return label or fallback


def _is_resource_name(namespace: str, name: str) -> bool:
    return (
        len(namespace) <= 63
        and _DNS_LABEL.fullmatch(namespace) is not None
        and len(name) <= 253
        and _DNS_SUBDOMAIN.fullmatch(name) is not None
    )


def _split_ref(text: str) -> tuple[str, str] | None:
    """"ns/name" → (ns, name) when both are valid resource names."""
    namespace, slash, name = text.partition("/")
    if slash and _is_resource_name(namespace, name):
        return namespace, name
    return None


class _NameBook:
    """Hands out names unique per (kind, namespace); a taken name gets a stable suffix made
    from the object's identity, so the same live state always gives the same names."""

    def __init__(self) -> None:
        self.taken: set[tuple[str, str, str]] = set()

    def claim(self, kind: str, namespace: str, wanted: str, identity: str) -> str:
        name, attempt = wanted, 0
        while (kind, namespace, name) in self.taken:
            attempt += 1
            salt = identity if attempt == 1 else f"{identity}#{attempt}"
            name = f"{wanted[:_MAX_NAME].rstrip('-.')}-{_digest(salt)}"
        self.taken.add((kind, namespace, name))
        return name


# --- what gets exported --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PendingCluster:
    sozu_id: str
    namespace: str
    cluster_id: str  # what follows the owner prefix once applied
    own_name: str | None  # the name when `<namespace>/<name>` is the cluster id, else None
    owned: bool


@dataclass(frozen=True, slots=True)
class _ClusterPlace:
    """Where a Sōzu cluster goes: its resource, and the clusterId the spec must state."""

    sozu_id: str
    namespace: str
    name: str
    cluster_id: str | None  # None: the builder's default `<namespace>/<name>` is right
    owned: bool


@dataclass(frozen=True, slots=True)
class _Route:
    kind: ListenerType
    frontend: HttpFrontend | TcpFrontend
    owned: bool

    @property
    def identity(self) -> str:
        if isinstance(self.frontend, HttpFrontend):
            return f"{self.kind.name} {self.frontend.key}"
        return f"TCP {self.frontend.address} → {self.frontend.cluster_id}"

    @property
    def sort_key(self) -> tuple[int, str, tuple[tuple[str, str], ...]]:
        return (self.kind.value, self.identity, self.frontend.tags)


def _describe_frontend(route: _Route) -> str:
    if isinstance(route.frontend, HttpFrontend):
        return f"{route.kind.name} frontend {route.frontend.key}"
    return f"TCP frontend {route.frontend.address}"


@dataclass(frozen=True, slots=True)
class _CertificateGroup:
    fingerprint: str
    certificate: CertificateAndKey
    addresses: tuple[SocketAddress, ...]
    owned: bool


class _Exporter:
    def __init__(
        self,
        live: ProxyState,
        *,
        owner: str,
        everything: bool,
        namespace: str,
        include_keys: bool,
        sozu_version: int,
    ) -> None:
        self.live = live
        self.owner = owner
        self.everything = everything
        self.namespace = namespace
        self.include_keys = include_keys
        self.sozu_version = sozu_version
        self.names = _NameBook()
        self.documents: list[Document] = []
        self.warnings: list[str] = []
        self.unowned_exported = 0
        self.clusters: dict[str, _ClusterPlace] = {}  # Sōzu id → exported resource

    def run(self) -> None:
        routes = self.routes()
        self.export_clusters(routes)
        self.export_frontends(routes)
        self.export_certificates()
        if self.unowned_exported:
            self.warnings.append(
                f"exported {self.unowned_exported} object(s) that owner {self.owner!r} does not "
                "own (Sōzu's configuration file or another owner). Applying them does not adopt "
                "the originals but creates owned copies: clusters as "
                f"'{self.owner}:<clusterId>', frontends and certificates with this owner's "
                "markers. A copied frontend or certificate conflicts with its original and is "
                "left out of the plan until the original is removed from Sōzu's configuration "
                "(or by its owner); remove the originals first, then apply"
            )
        self.documents.sort(key=_document_order)

    # --- helpers ---------------------------------------------------------------------------

    def accept(self, document: Document, what: str, *, owned: bool) -> bool:
        """Add `document` if the validator accepts it as it stands; else warn and skip it."""
        result = parse_resource(document, sozu_version=self.sozu_version)
        if isinstance(result, Invalid):
            details = "; ".join(
                # A message about the key field is never shown: it may be about key material.
                f"{error.path}: "
                + ("cannot be written" if error.path.startswith("spec.key") else error.message)
                for error in result.errors
            )
            self.warnings.append(
                f"{what}: skipped, it cannot be written as a valid {document['kind']}: {details}"
            )
            return False
        self.documents.append(document)
        if not owned:
            self.unowned_exported += 1
        return True

    def _resource(self, kind: str, namespace: str, name: str, spec: Document) -> Document:
        return {
            "apiVersion": sch.API_VERSION,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }

    # --- frontends are read first: they place owned clusters ---------------------------------

    def routes(self) -> list[_Route]:
        live = self.live
        found = [
            *(_Route(ListenerType.HTTP, f, False) for f in live.http_frontends.values()),
            *(_Route(ListenerType.HTTPS, f, False) for f in live.https_frontends.values()),
            *(_Route(ListenerType.TCP, f, False) for f in live.tcp_frontends),
        ]
        selected = []
        for route in found:
            owned = ownership.owns_frontend(self.owner, route.frontend)
            if owned or self.everything:
                selected.append(_Route(route.kind, route.frontend, owned))
        return sorted(selected, key=lambda route: route.sort_key)

    def route_ref(self, route: _Route) -> tuple[str, str] | None:
        """The (namespace, name) an owned frontend's resource tag gives, when it is usable."""
        if not route.owned:
            return None
        tag = dict(route.frontend.tags).get(ownership.RESOURCE_TAG)
        return _split_ref(tag) if tag is not None else None

    def route_namespace(self, route: _Route) -> str:
        ref = self.route_ref(route)
        return ref[0] if ref is not None else self.namespace

    # --- clusters --------------------------------------------------------------------------

    def export_clusters(self, routes: Sequence[_Route]) -> None:
        route_namespaces: dict[str, set[str]] = defaultdict(set)
        for route in routes:
            # Only owned routes place owned clusters: the builder made them from one namespace.
            if route.owned and route.frontend.cluster_id is not None:
                route_namespaces[route.frontend.cluster_id].add(self.route_namespace(route))

        pending: list[_PendingCluster] = []
        prefix = ownership.sozu_cluster_id(self.owner, "")
        for sozu_id in sorted(self.live.clusters):
            if ownership.owns_cluster(self.owner, sozu_id):
                cluster_id = sozu_id[len(prefix):]
                if len(cluster_id) > 253 or not _CLUSTER_ID.fullmatch(cluster_id):
                    self.warnings.append(
                        f"cluster {sozu_id!r}: skipped, {cluster_id!r} is not a valid clusterId"
                    )
                    continue
                natural = _split_ref(cluster_id)
                namespaces = route_namespaces.get(sozu_id, set())
                if len(namespaces) == 1:
                    namespace = next(iter(namespaces))
                else:
                    namespace = natural[0] if natural is not None else self.namespace
                own_name = natural[1] if natural is not None and natural[0] == namespace else None
                pending.append(_PendingCluster(sozu_id, namespace, cluster_id, own_name, True))
            elif self.everything:
                cluster_id = self.valid_cluster_id(sozu_id)
                pending.append(_PendingCluster(sozu_id, self.namespace, cluster_id, None, False))

        # Names the builder derives the cluster id from are claimed first: they cannot move.
        # Each clusterId is written once: the builder refuses a second resource claiming it.
        claimed = {item.cluster_id for item in pending if item.own_name is not None}
        for item in pending:
            if item.own_name is not None:
                self.names.claim(sch.CLUSTER_KIND, item.namespace, item.own_name, item.sozu_id)
        for item in pending:
            if item.own_name is not None:
                place = _ClusterPlace(
                    item.sozu_id, item.namespace, item.own_name, None, item.owned
                )
            elif item.cluster_id in claimed:
                self.warnings.append(
                    f"cluster {item.sozu_id!r}: skipped, its owned copy would have the cluster "
                    f"id {ownership.sozu_cluster_id(self.owner, item.cluster_id)!r}, which an "
                    "exported cluster already has"
                )
                continue
            else:
                claimed.add(item.cluster_id)
                wanted = dns_name(item.cluster_id, fallback=f"cluster-{_digest(item.sozu_id)}")
                name = self.names.claim(sch.CLUSTER_KIND, item.namespace, wanted, item.sozu_id)
                place = _ClusterPlace(
                    item.sozu_id, item.namespace, name, item.cluster_id, item.owned
                )
            self.export_cluster(place, self.live.clusters[item.sozu_id])

    def valid_cluster_id(self, raw: str) -> str:
        """`raw` if it can be a spec.clusterId; else a valid id made from it, with a warning."""
        if len(raw) <= 253 and _CLUSTER_ID.fullmatch(raw):
            return raw
        fixed = _NOT_CLUSTER_ID.sub("-", raw)[:253]
        fixed = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", fixed) or f"cluster-{_digest(raw)}"
        self.warnings.append(
            f"cluster {raw!r}: exported with clusterId {fixed!r}, as a clusterId may only hold "
            "letters, digits, '.', '_', '/' and '-'"
        )
        return fixed

    def export_cluster(self, place: _ClusterPlace, cluster: Cluster) -> None:
        spec = cluster_spec(cluster, cluster_id=place.cluster_id)
        backends = sorted(
            (b for b in self.live.backends.values() if b.cluster_id == place.sozu_id),
            key=lambda b: (b.address.sort_key, b.backend_id),
        )
        written: list[Document] = []
        seen: set[SocketAddress] = set()
        for backend in backends:
            if backend.address in seen:
                # A SozuCluster lists one backend per address (the builder needs that too).
                self.warnings.append(
                    f"cluster {place.sozu_id!r}: backend {backend.backend_id!r} at "
                    f"{backend.address} left out, the cluster has another backend there"
                )
                continue
            seen.add(backend.address)
            written.append(backend_item(backend))
        if written:
            spec["backends"] = written
        document = self._resource(sch.CLUSTER_KIND, place.namespace, place.name, spec)
        if self.accept(document, f"cluster {place.sozu_id!r}", owned=place.owned):
            self.clusters[place.sozu_id] = place

    # --- frontends -------------------------------------------------------------------------

    def export_frontends(self, routes: Sequence[_Route]) -> None:
        ready: list[tuple[_Route, _ClusterPlace, str, str | None]] = []
        for route in routes:
            what = _describe_frontend(route)
            cluster_id = route.frontend.cluster_id
            namespace = self.route_namespace(route)
            if cluster_id is None:
                self.warnings.append(
                    f"{what}: skipped, it routes to no cluster (a deny route), which a "
                    "SozuFrontend cannot express"
                )
                continue
            place = self.clusters.get(cluster_id)
            if place is None:
                if cluster_id not in self.live.clusters:
                    reason = "does not exist in Sōzu"
                elif self.everything or ownership.owns_cluster(self.owner, cluster_id):
                    reason = "was skipped (see above)"
                else:
                    reason = f"is not owned by {self.owner!r} (export everything to include it)"
                self.warnings.append(f"{what}: skipped, its cluster {cluster_id!r} {reason}")
                continue
            if place.namespace != namespace:
                self.warnings.append(
                    f"{what}: skipped, it belongs in namespace {namespace!r} but its cluster "
                    f"{cluster_id!r} was exported as {sch.CLUSTER_KIND} "
                    f"{place.namespace}/{place.name}, and a SozuFrontend can only name a "
                    "SozuCluster of its own namespace"
                )
                continue
            ref = self.route_ref(route)
            ready.append((route, place, namespace, ref[1] if ref is not None else None))

        # Names from resource tags first (they are what the builder will tag again).
        ready.sort(key=lambda item: (item[3] is None, item[0].sort_key))
        for route, place, namespace, tagged in ready:
            wanted = tagged or dns_name(_route_name(route), fallback="frontend")
            name = self.names.claim(sch.FRONTEND_KIND, namespace, wanted, route.identity)
            if tagged is not None and name != tagged:
                self.warnings.append(
                    f"{_describe_frontend(route)}: exported as {namespace}/{name}, as another "
                    f"frontend also carries the resource tag {namespace}/{tagged}"
                )
            spec = frontend_spec(route.kind, route.frontend, cluster=place.name)
            dropped = sorted(
                key
                for key, _ in route.frontend.tags
                if key.startswith(sch.RESERVED_TAG_PREFIX) and key not in ownership.RESERVED_TAGS
            )
            if dropped:
                self.warnings.append(
                    f"{_describe_frontend(route)}: tags {', '.join(dropped)} left out, keys "
                    f"under {sch.RESERVED_TAG_PREFIX!r} are reserved"
                )
            document = self._resource(sch.FRONTEND_KIND, namespace, name, spec)
            self.accept(document, _describe_frontend(route), owned=route.owned)

    # --- certificates ----------------------------------------------------------------------

    def certificate_groups(self) -> list[_CertificateGroup]:
        """One group per fingerprint, unless the same certificate carries different names,
        chain, versions or key at different addresses (two resources made it so)."""
        groups: dict[
            tuple[str, tuple[str, ...], tuple[str, ...], tuple[TlsVersion, ...], str],
            list[tuple[SocketAddress, CertificateAndKey, bool]],
        ] = defaultdict(list)
        for (address, fp), certificate in self.live.certificates.items():
            owned = ownership.owns_certificate(self.owner, certificate)
            if not (owned or self.everything):
                continue
            content = (
                fp,
                ownership.served_names(certificate),
                certificate.certificate_chain,
                certificate.versions,
                certificate.key,
            )
            groups[content].append((address, certificate, owned))
        found = []
        for content, members in groups.items():
            members.sort(key=lambda member: member[0].sort_key)
            found.append(
                _CertificateGroup(
                    fingerprint=content[0],
                    certificate=members[0][1],
                    addresses=tuple(address for address, _, _ in members),
                    owned=all(owned for _, _, owned in members),
                )
            )
        return sorted(
            found,
            key=lambda g: (g.fingerprint, [a.sort_key for a in g.addresses]),
        )

    def export_certificates(self) -> None:
        groups = self.certificate_groups()
        named: list[tuple[_CertificateGroup, str]] = []
        for group in groups:
            served = ownership.served_names(group.certificate)
            if served:
                first = served[0]
                prefix = "wildcard-" if first.startswith("*.") else ""
                wanted = prefix + dns_name(first, fallback=f"cert-{group.fingerprint[:12]}")
            else:
                wanted = f"cert-{group.fingerprint[:12]}"
            identity = f"{group.fingerprint} {[str(a) for a in group.addresses]}"
            name = self.names.claim(sch.CERTIFICATE_KIND, self.namespace, wanted, identity)
            named.append((group, name))
        for group, name in named:
            self.export_certificate(group, name)

    def export_certificate(self, group: _CertificateGroup, name: str) -> None:
        certificate = group.certificate
        served = ownership.served_names(certificate)
        addresses = ", ".join(str(address) for address in group.addresses)
        what = (
            f"certificate {', '.join(served) or '(no names)'} on {addresses}, "
            f"fingerprint {group.fingerprint[:16]}…"
        )
        spec: Document = {"addresses": [str(address) for address in group.addresses]}
        try:
            derived: tuple[str, ...] | None = certs.derived_names(
                certificate.certificate, sozu_version=self.sozu_version
            )
        except certs.CertificateError:
            derived = None
            self.warnings.append(
                f"{what}: its certificate cannot be parsed, so it cannot be applied again"
            )
        if served and served != derived:
            spec["names"] = list(served)
        known = dict.fromkeys(certificate.versions)  # unique, in order (the schema's is a set)
        versions = [version.name for version in known if version.name in sch.TLS_VERSIONS]
        if len(versions) != len(certificate.versions):
            ignored = sorted({v.name for v in certificate.versions} - set(versions))
            if ignored:
                self.warnings.append(
                    f"{what}: TLS versions {', '.join(ignored)} left out (a SozuCertificate "
                    f"records only {', '.join(sch.TLS_VERSIONS)}; workers use the listener's)"
                )
        if versions:
            spec["versions"] = versions
        secret = f"{name}-tls"
        if self.include_keys:
            spec["certificate"] = certificate.certificate
            if certificate.certificate_chain:
                spec["chain"] = list(certificate.certificate_chain)
            spec["key"] = certificate.key
        else:
            spec["secretRef"] = {"name": secret}
        document = self._resource(sch.CERTIFICATE_KIND, self.namespace, name, spec)
        if self.accept(document, what, owned=group.owned) and not self.include_keys:
            chain = " followed by its chain" if certificate.certificate_chain else ""
            self.warnings.append(
                f"{sch.CERTIFICATE_KIND} {self.namespace}/{name} ({what}) needs the Secret "
                f"{self.namespace}/{secret}, which is not exported: create it as a "
                f"{TLS_SECRET_TYPE} Secret (tls.crt: the certificate{chain}; tls.key: its "
                "private key) before applying, or export with --include-keys"
            )


def _route_name(route: _Route) -> str:
    front = route.frontend
    if isinstance(front, HttpFrontend):
        method = f" {front.method}" if front.method else ""
        return f"{route.kind.name} {front.hostname} {front.path.value}{method}"
    return f"tcp {front.address.port}"


def _document_order(document: Document) -> tuple[int, str, str]:
    metadata = document["metadata"]
    return (_KIND_ORDER[document["kind"]], metadata["namespace"], metadata["name"])


# --- one object → one spec -----------------------------------------------------------------------


def cluster_spec(cluster: Cluster, *, cluster_id: str | None) -> Document:
    """The SozuCluster spec (without backends) the builder turns back into `cluster`."""
    spec: Document = {}
    if cluster_id is not None:
        spec["clusterId"] = cluster_id
    if cluster.load_balancing.name != sch.DEFAULT_LOAD_BALANCING:
        spec["loadBalancing"] = cluster.load_balancing.name
    if cluster.load_metric is not None:
        spec["loadMetric"] = cluster.load_metric.name
    if cluster.sticky_session:
        spec["stickySession"] = True
    if cluster.https_redirect:
        spec["httpsRedirect"] = True
    if cluster.proxy_protocol is not None:
        spec["proxyProtocol"] = cluster.proxy_protocol.name
    if cluster.answer_503 is not None:
        spec["answer503"] = cluster.answer_503
    # Sōzu 2.x only: written only when set, so a 1.0 export stays valid for 1.0.
    if cluster.http2 is not None:
        spec["http2"] = cluster.http2
    if cluster.answers:
        spec["answers"] = dict(cluster.answers)
    if cluster.https_redirect_port is not None:
        spec["httpsRedirectPort"] = cluster.https_redirect_port
    if cluster.authorized_hashes:
        spec["authorizedHashes"] = list(cluster.authorized_hashes)
    if cluster.www_authenticate is not None:
        spec["wwwAuthenticate"] = cluster.www_authenticate
    if cluster.max_connections_per_ip is not None:
        spec["maxConnectionsPerIp"] = cluster.max_connections_per_ip
    if cluster.retry_after is not None:
        spec["retryAfter"] = cluster.retry_after
    return spec


def backend_item(backend: Backend) -> Document:
    """A backends[] entry: the address, plus only what the builder would not derive."""
    item: Document = {"address": str(backend.address)}
    if backend.backend_id != str(backend.address):
        item["id"] = backend.backend_id
    if backend.weight is not None:
        item["weight"] = backend.weight
    if backend.backup is not None:
        item["backup"] = backend.backup
    if backend.sticky_id is not None:
        item["stickyId"] = backend.sticky_id
    return item


def frontend_spec(
    kind: ListenerType, frontend: HttpFrontend | TcpFrontend, *, cluster: str
) -> Document:
    """The SozuFrontend spec the builder turns back into `frontend` (markers aside)."""
    spec: Document = {"cluster": cluster, "protocol": kind.name, "address": str(frontend.address)}
    if isinstance(frontend, HttpFrontend):
        spec["hostname"] = frontend.hostname
        if frontend.path != PathRule():
            spec["path"] = {"kind": frontend.path.kind.name, "value": frontend.path.value}
        if frontend.method is not None:
            spec["method"] = frontend.method
        if frontend.position is not RulePosition.TREE:
            spec["position"] = frontend.position.name
    tags = {
        key: value
        for key, value in frontend.tags
        if not key.startswith(sch.RESERVED_TAG_PREFIX)
    }
    if tags:
        spec["tags"] = tags
    if isinstance(frontend, HttpFrontend):
        spec.update(_frontend_v2_fields(frontend))
    return spec


def _frontend_v2_fields(frontend: HttpFrontend) -> Document:
    fields: Document = {}
    if frontend.redirect is not None:
        fields["redirect"] = frontend.redirect.name
    if frontend.required_auth is not None:
        fields["requiredAuth"] = frontend.required_auth
    if frontend.redirect_scheme is not None:
        fields["redirectScheme"] = frontend.redirect_scheme.name
    if frontend.redirect_template is not None:
        fields["redirectTemplate"] = frontend.redirect_template
    if frontend.rewrite_host is not None:
        fields["rewriteHost"] = frontend.rewrite_host
    if frontend.rewrite_path is not None:
        fields["rewritePath"] = frontend.rewrite_path
    if frontend.rewrite_port is not None:
        fields["rewritePort"] = frontend.rewrite_port
    if frontend.headers:
        fields["headers"] = [
            {"position": header.position.name, "key": header.key, "value": header.value}
            for header in frontend.headers
        ]
    return fields


# --- entry points --------------------------------------------------------------------------------


def export_resources(
    live: ProxyState,
    *,
    owner: str,
    everything: bool,
    namespace: str,
    include_keys: bool,
    sozu_version: int = 2,
    warnings: list[str] | None = None,
) -> list[Document]:
    """The resources describing `live` (see the module docstring), sorted by kind, namespace
    and name. Warnings are appended to `warnings` when given. Raises ValueError for a bad
    owner or namespace."""
    ownership.check_owner(owner)
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise ValueError(f"namespace {namespace!r} is not a DNS label of at most 63 characters")
    exporter = _Exporter(
        live,
        owner=owner,
        everything=everything,
        namespace=namespace,
        include_keys=include_keys,
        sozu_version=sozu_version,
    )
    exporter.run()
    if warnings is not None:
        warnings.extend(exporter.warnings)
    return exporter.documents


class _Dumper(yaml.SafeDumper):
    """Block style, PEM and other multi-line text as literal blocks, no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_ASCII_TEXT = re.compile(r"[\x20-\x7e\n]*")


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style: str | None = None
    if not _ASCII_TEXT.fullmatch(data):
        # PyYAML writes some characters raw outside double quotes (U+0085, U+2028, U+2029 are
        # line breaks to YAML, and reading folds them): only the escaping style keeps them.
        style = '"'
    elif "\n" in data:
        # PEM as a literal block; PyYAML falls back to double quotes when one cannot hold it
        # (trailing spaces on a line).
        style = "|"
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def dump_documents(documents: Iterable[Mapping[str, Any]], *, header: str) -> str:
    """`header` as comment lines, then the documents as multi-document YAML."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    body = yaml.dump_all(
        [dict(document) for document in documents],
        Dumper=_Dumper,
        explicit_start=True,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return comment + body


def export_documents(
    live: ProxyState,
    *,
    owner: str,
    everything: bool,
    namespace: str,
    include_keys: bool,
    sozu_version: int = 2,
) -> tuple[str, list[str]]:
    """`live` as multi-document YAML of sozu.io resources, and the warnings to show."""
    warnings: list[str] = []
    documents = export_resources(
        live,
        owner=owner,
        everything=everything,
        namespace=namespace,
        include_keys=include_keys,
        sozu_version=sozu_version,
        warnings=warnings,
    )
    scope = "every object" if everything else "the objects it owns"
    header = f"Exported from Sōzu by sozu-operator for owner {owner!r} ({scope})."
    if include_keys and any(d["kind"] == sch.CERTIFICATE_KIND for d in documents):
        header += "\nContains private keys: keep this file secret."
        warnings.append("the output contains private keys inline: handle it as a secret")
    return dump_documents(documents, header=header), warnings


__all__ = ["dns_name", "dump_documents", "export_documents", "export_resources"]
