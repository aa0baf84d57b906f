"""Resources → the desired proxy state of one installation (owner), with per-resource problems.

One bad resource never blocks the others: each is validated, resolved and checked on its own,
and anything wrong excludes that resource only, with a `FieldError` saying why. Rules:

* **Invalid** resources (schema, CEL, semantics, fields the target Sōzu version lacks) are
  excluded.
* **Conflicts** (two resources producing the same Sōzu identity: a cluster id, an HTTP/HTTPS
  frontend key, a TCP listener address, a certificate fingerprint on a listener; on Sōzu 1.0
  also an SNI name on a listener, because 1.0 workers evict certificates sharing a name) are
  settled by precedence: the resource created first wins, then the lowest (namespace, name);
  resources without a creation time (files given to the CLI) come after those with one.
  Creation time first so that a newly created resource can never take a route away from an
  existing one by having a smaller name (Gateway API settles route conflicts the same way).
  Resources claim their identities in precedence order, and a loser reports the winner.
* A **frontend** needs a programmed SozuCluster of the same name in its namespace, and (when
  live listeners are given) a Sōzu listener of its protocol at its address.
* A **certificate** must parse, match its key, be valid now, and sit on HTTPS listeners.
* **Backends** come from the static list or from `resolve_service`; their Sōzu ids default to
  the address, so that reordering a list changes nothing in Sōzu. Without a resolver (CLI
  mode) a service-backed cluster is kept with no backends and a note, and is listed in
  `unresolved`; likewise a certificate from a Secret without `resolve_secret` is left out with
  a note. A planner should not remove live objects on behalf of unresolved resources.

Ownership markers (reconcile/ownership.py) are applied here: cluster ids get the owner prefix,
frontends the owner and resource tags, certificates their marker name.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, TypeAlias, TypeVar

from sozu_operator.proxy import certificates as certs
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    Listener,
    ListenerType,
    PathRule,
    SocketAddress,
    TcpFrontend,
)
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.proxystate import (
    BackendKey,
    CertificateKey,
    ListenerKey,
    ProxyState,
)
from sozu_operator.resources import schema as sch
from sozu_operator.resources.models import (
    BackendSpec,
    CertificateSpec,
    ClusterSpec,
    FieldError,
    FrontendSpec,
    Invalid,
    Parsed,
    ResourceMeta,
    ResourceRef,
    SecretRef,
    ServiceRef,
    TlsMaterial,
)
from sozu_operator.resources.validate import (
    INTERNAL_ERROR,
    NO_NAME,
    parse_resource,
    resource_ref,
    version_errors,
)


@dataclass(frozen=True, slots=True)
class ResolutionError:
    """A resolver's answer when it cannot resolve a reference; `message` is shown to the user."""

    message: str


ServiceResolver: TypeAlias = Callable[
    [ResourceRef, ServiceRef], Sequence[BackendSpec] | ResolutionError
]
SecretResolver: TypeAlias = Callable[[ResourceRef, SecretRef], TlsMaterial | ResolutionError]

# The identity of each desired Sōzu object, in the same form as the ProxyState map keys.
ObjectKey: TypeAlias = (
    tuple[Literal["cluster"], str]
    | tuple[Literal["backend"], BackendKey]
    | tuple[Literal["http_frontend"], str]
    | tuple[Literal["https_frontend"], str]
    | tuple[Literal["tcp_frontend"], TcpFrontend]
    | tuple[Literal["certificate"], CertificateKey]
)


@dataclass(frozen=True)
class DesiredBuild:
    """What the resources ask for, and what became of each resource."""

    state: ProxyState
    problems: tuple[FieldError, ...]  # why resources were excluded, grouped by resource
    notes: tuple[FieldError, ...]  # informational: nothing excluded because of them
    sources: Mapping[ObjectKey, ResourceRef]  # every object of `state` → its resource
    accepted: tuple[ResourceRef, ...]  # resources fully represented in `state`
    ignored: tuple[ResourceRef, ...]  # resources of another class
    unresolved: tuple[ResourceRef, ...]  # accepted or left out only for lack of a resolver
    certificates: Mapping[ResourceRef, certs.CertificateFacts] = field(
        default_factory=lambda: MappingProxyType({})
    )
    meta: Mapping[ResourceRef, ResourceMeta] = field(default_factory=lambda: MappingProxyType({}))
    # The build depends on the clock only through certificate validity: until this moment (the
    # next not-before or not-after of a certificate seen), the same inputs give the same build.
    valid_until: datetime.datetime | None = None

    def problems_for(self, ref: ResourceRef) -> tuple[FieldError, ...]:
        return tuple(problem for problem in self.problems if problem.ref == ref)

    def notes_for(self, ref: ResourceRef) -> tuple[FieldError, ...]:
        return tuple(note for note in self.notes if note.ref == ref)


# What resources compete for: a tag ("cluster", "tcp", "certificate"…) and the Sōzu identity.
Identity: TypeAlias = tuple[object, ...]

_EPOCH = datetime.datetime.min.replace(tzinfo=datetime.UTC)
_CERTIFICATE_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----"
)
_PRECEDENCE = "created earlier, or at the same time with a lower namespace/name"


def _precedence(parsed: Parsed) -> tuple[bool, datetime.datetime, str, str]:
    created = parsed.meta.created
    return (created is None, created or _EPOCH, parsed.ref.namespace, parsed.ref.name)


def _selected(spec_class: str | None, class_name: str | None, default_class: bool) -> bool:
    if class_name is None:
        return True
    return spec_class == class_name or (spec_class is None and default_class)


def _raw_class(obj: object) -> str | None:
    """className read leniently from a raw object, before (and whatever) validation says."""
    if isinstance(obj, Parsed):
        return obj.class_name
    if not isinstance(obj, Mapping):
        return None
    spec = obj.get("spec")
    value = spec.get("className") if isinstance(spec, Mapping) else None
    return value if isinstance(value, str) else None


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_certificates(pem: str) -> list[str]:
    """Each CERTIFICATE block of a PEM bundle as its own string (Sōzu 1.0 reads only the first
    block of every chain entry, so chains are sent one certificate per entry)."""
    return [match.group(0) + "\n" for match in _CERTIFICATE_BLOCK.finditer(pem)]


T = TypeVar("T")
S = TypeVar("S", ClusterSpec, FrontendSpec, CertificateSpec)


class BuildCache:
    """The Sōzu objects each resource produced, kept from one build to the next.

    A long-running process hands the builder the same `Parsed` object for a resource that did
    not change; its clusters, backends and routes are then the very same objects as in the
    previous build, not equal copies. That saves building them, and lets the planner tell
    what moved by identity (`reconcile/incremental.py`). An entry is reused only for the same
    `Parsed` object and equal other inputs (owner, cluster id, resolved endpoints); entries of
    resources absent from a build are dropped at its end."""

    def __init__(self) -> None:
        self._kept: dict[int, tuple[Parsed, object, object]] = {}
        self._used: dict[int, tuple[Parsed, object, object]] = {}
        # The last clean build, per resource, for the next build to start from (`_rebuild`).
        self.memo: _Memo | None = None
        # Whether the next whole build records what each resource adds (it costs about a
        # quarter more): not while the builds have problems, and so could not be reused.
        self.record = True

    def product(self, parsed: Parsed, inputs: object, make: Callable[[], T]) -> T:
        entry = self._kept.get(id(parsed))
        if entry is None or entry[0] is not parsed or entry[1] != inputs:
            entry = (parsed, inputs, make())
        self._used[id(parsed)] = entry
        return entry[2]  # type: ignore[return-value]  # stored by this method with this T

    def finish(self) -> None:
        self._kept, self._used = self._used, {}

    def finish_partly(self, gone: Iterable[object]) -> None:
        """End a build that handled only some resources: entries of the others stay."""
        for obj in gone:
            self._kept.pop(id(obj), None)
        self._kept.update(self._used)
        self._used = {}

    def abandon(self) -> None:
        """Forget what an unfinished build produced."""
        self._used = {}


@dataclass(frozen=True, slots=True)
class _Contribution:
    """What one accepted resource put into a build."""

    parsed: Parsed
    volatile: bool  # redone at every build: its Service or Secret may resolve otherwise
    clusters: tuple[Cluster, ...]
    backends: tuple[Backend, ...]
    http: tuple[HttpFrontend, ...]
    https: tuple[HttpFrontend, ...]
    tcp: tuple[TcpFrontend, ...]
    certificates: tuple[tuple[SocketAddress, str, CertificateAndKey], ...]
    claims: tuple[Identity, ...]
    covered: tuple[tuple[ResourceRef, FrontendSpec], ...]  # HTTPS routes a certificate should serve
    facts: certs.CertificateFacts | None

    @property
    def ref(self) -> ResourceRef:
        return self.parsed.ref

    def source_keys(self) -> Iterable[ObjectKey]:
        """Its keys of `DesiredBuild.sources`, in the order the builder adds them."""
        keys: list[ObjectKey] = [("cluster", c.cluster_id) for c in self.clusters]
        keys += [("backend", b.identity) for b in self.backends]
        keys += [("http_frontend", f.key) for f in self.http]
        keys += [("https_frontend", f.key) for f in self.https]
        keys += [("tcp_frontend", f) for f in self.tcp]
        keys += [("certificate", (address, fp)) for address, fp, _ in self.certificates]
        return keys


@dataclass
class _Memo:
    """A clean build (no problem, nothing unresolved) kept per resource, with the builder's
    tables, for the next build to redo only what moved."""

    inputs: tuple[object, ...]  # everything besides the resources and the clock
    now: datetime.datetime
    build: DesiredBuild
    contributions: dict[ResourceRef, _Contribution]
    by_id: dict[int, _Contribution]  # id(parsed) of those not volatile
    ignored: dict[int, tuple[Parsed, ResourceRef]]  # resources of another class
    claims: dict[Identity, ResourceRef]
    cluster_ids: dict[tuple[str, str], str]
    served: dict[SocketAddress, frozenset[str]]  # names the certificates serve, per address

    def usable(self, inputs: tuple[object, ...], now: datetime.datetime) -> bool:
        until = self.build.valid_until
        return inputs == self.inputs and self.now <= now and (until is None or now < until)


class _Builder:
    def __init__(
        self,
        *,
        owner: str,
        sozu_version: int,
        live_listeners: Mapping[ListenerKey, Listener] | None,
        resolve_service: ServiceResolver | None,
        resolve_secret: SecretResolver | None,
        now: datetime.datetime,
        cache: BuildCache,
    ) -> None:
        self.cache = cache
        self.owner = owner
        self.sozu_version = sozu_version
        # A plain set: one membership test per route, 50k of them per build.
        self.live_listeners = None if live_listeners is None else set(live_listeners)
        self.resolve_service = resolve_service
        self.resolve_secret = resolve_secret
        self.now = now
        self.problems: list[FieldError] = []
        self.first_problem: dict[ResourceRef, FieldError] = {}
        self.notes: list[FieldError] = []
        self.sources: dict[ObjectKey, ResourceRef] = {}
        self.claims: dict[Identity, ResourceRef] = {}
        self.claim_log: list[Identity] = []  # every identity taken, in order
        # Filled when recording: what each accepted resource put into the build.
        self.contributions: dict[ResourceRef, _Contribution] | None = None
        self.accepted: list[ResourceRef] = []
        self.accepted_https: list[tuple[ResourceRef, FrontendSpec]] = []  # routes to cover
        self.unresolved: list[ResourceRef] = []
        self.clusters: list[Cluster] = []
        self.backends: list[Backend] = []
        self.http_frontends: list[HttpFrontend] = []
        self.https_frontends: list[HttpFrontend] = []
        self.tcp_frontends: list[TcpFrontend] = []
        self.certificates: list[tuple[SocketAddress, str, CertificateAndKey]] = []
        self.facts: dict[ResourceRef, certs.CertificateFacts] = {}
        self.served: dict[SocketAddress, list[certs.CertificateFacts]] = {}
        self.valid_until: datetime.datetime | None = None
        # (namespace, name) → Sōzu cluster id of programmed clusters, or why a cluster is not.
        self.cluster_ids: dict[tuple[str, str], str] = {}
        self.cluster_failures: dict[tuple[str, str], str] = {}

    # --- helpers ---------------------------------------------------------------------------

    def fail(self, ref: ResourceRef, path: str, message: str) -> None:
        self.add_problems([FieldError(ref, path, message)])

    def add_problems(self, problems: Iterable[FieldError]) -> None:
        for problem in problems:
            self.problems.append(problem)
            self.first_problem.setdefault(problem.ref, problem)

    def note(self, ref: ResourceRef, path: str, message: str) -> None:
        self.notes.append(FieldError(ref, path, message))

    def claim(
        self, ref: ResourceRef, identities: Sequence[Identity]
    ) -> tuple[ResourceRef, Identity] | None:
        """Take every identity for `ref`, or none: then returns the first one already held,
        with its holder."""
        for identity in identities:
            holder = self.claims.get(identity)
            if holder is not None and holder != ref:
                return holder, identity
        for identity in identities:
            self.claims[identity] = ref
        self.claim_log.extend(identities)
        return None

    def listener_missing(self, kind: ListenerType, address: SocketAddress) -> str | None:
        if self.live_listeners is None or (kind, address) in self.live_listeners:
            return None
        return f"Sōzu has no {kind.name} listener at {address}"

    def marks(self) -> tuple[int, ...]:
        """Where each output list ends now: what a resource adds starts there."""
        return (len(self.accepted), len(self.clusters), len(self.backends),
                len(self.http_frontends), len(self.https_frontends), len(self.tcp_frontends),
                len(self.certificates), len(self.claim_log), len(self.accepted_https))

    def contribution(self, parsed: Parsed, marks: tuple[int, ...]) -> _Contribution:
        """What `parsed` added since `marks`."""
        _, clusters, backends, http, https, tcp, certificates, claims, covered = marks
        spec = parsed.spec
        return _Contribution(
            parsed=parsed,
            # Resolvers may answer otherwise next time with the same resource.
            volatile=(isinstance(spec, ClusterSpec) and spec.service is not None)
            or (isinstance(spec, CertificateSpec) and spec.secret_ref is not None),
            clusters=tuple(self.clusters[clusters:]),
            backends=tuple(self.backends[backends:]),
            http=tuple(self.http_frontends[http:]),
            https=tuple(self.https_frontends[https:]),
            tcp=tuple(self.tcp_frontends[tcp:]),
            certificates=tuple(self.certificates[certificates:]),
            claims=tuple(self.claim_log[claims:]),
            covered=tuple(self.accepted_https[covered:]),
            facts=self.facts.get(parsed.ref) if isinstance(spec, CertificateSpec) else None,
        )

    # --- clusters --------------------------------------------------------------------------

    def add_cluster(self, parsed: Parsed, spec: ClusterSpec) -> None:
        ref = parsed.ref
        sozu_id = ownership.sozu_cluster_id(self.owner, spec.cluster_id)
        backends = self.cluster_backends(ref, spec)
        if backends is None:
            return
        taken = self.claim(ref, [("cluster", sozu_id)])
        if taken is not None:
            self.fail(
                ref,
                "spec.clusterId",
                f"cluster id {spec.cluster_id!r} is already used by {taken[0]}, which takes "
                f"precedence ({_PRECEDENCE})",
            )
            return
        cluster, built = self.cache.product(
            parsed, (sozu_id, tuple(backends)), lambda: _cluster_objects(sozu_id, spec, backends)
        )
        self.clusters.append(cluster)
        self.sources[("cluster", sozu_id)] = ref
        for backend in built:
            self.backends.append(backend)
            self.sources[("backend", backend.identity)] = ref
        self.cluster_ids[(ref.namespace, ref.name)] = sozu_id
        self.accepted.append(ref)

    def cluster_backends(
        self, ref: ResourceRef, spec: ClusterSpec
    ) -> Sequence[BackendSpec] | None:
        if spec.service is None:
            return spec.backends
        service = spec.service
        if self.resolve_service is None:
            self.note(
                ref,
                "spec.service",
                f"Service {service.namespace}/{service.name} is resolved only by the operator; "
                "this build has no backends for it",
            )
            self.unresolved.append(ref)
            return ()
        try:
            resolved = self.resolve_service(ref, service)
        except Exception as error:  # a resolver bug must not break the other resources
            resolved = ResolutionError(f"resolver failed: {type(error).__name__}: {error}")
        if isinstance(resolved, ResolutionError):
            self.fail(ref, "spec.service", resolved.message)
            return None
        # EndpointSlices may list an endpoint twice (several slices, dual ownership during a
        # rollout); Sōzu removes backends by address, so keep one per address.
        unique: dict[SocketAddress, BackendSpec] = {}
        for backend in resolved:
            unique.setdefault(backend.address, backend)
        return tuple(unique.values())

    # --- frontends -------------------------------------------------------------------------

    def add_frontend(self, parsed: Parsed, spec: FrontendSpec) -> None:
        ref = parsed.ref
        ok = True
        sozu_id = self.cluster_ids.get((ref.namespace, spec.cluster))
        if sozu_id is None:
            reason = self.cluster_failures.get(
                (ref.namespace, spec.cluster),
                f"there is no SozuCluster {spec.cluster!r} in namespace {ref.namespace!r}",
            )
            self.fail(ref, "spec.cluster", reason)
            ok = False
        missing = self.listener_missing(spec.protocol, spec.address)
        if missing is not None:
            self.fail(ref, "spec.address", missing)
            ok = False
        if not ok or sozu_id is None:
            return
        route = self.cache.product(
            parsed, (self.owner, sozu_id), lambda: _route(self.owner, ref, spec, sozu_id)
        )
        if isinstance(route, TcpFrontend):
            tcp = route
            taken = self.claim(ref, [("tcp", spec.address)])
            if taken is not None:
                self.fail(
                    ref,
                    "spec.address",
                    f"the TCP listener {spec.address} already routes for {taken[0]}, which "
                    f"takes precedence ({_PRECEDENCE})",
                )
                return
            self.tcp_frontends.append(tcp)
            self.sources[("tcp_frontend", tcp)] = ref
            self.accepted.append(ref)
            return
        http = route
        https = spec.protocol is ListenerType.HTTPS
        key = http.key
        taken = self.claim(ref, [(spec.protocol, key)])
        if taken is not None:
            self.fail(
                ref,
                "spec",
                f"the {spec.protocol.name} frontend {key!r} is already defined by "
                f"{taken[0]}, which takes precedence ({_PRECEDENCE})",
            )
            return
        if https:
            self.https_frontends.append(http)
            self.sources[("https_frontend", key)] = ref
            self.accepted_https.append((ref, spec))
        else:
            self.http_frontends.append(http)
            self.sources[("http_frontend", key)] = ref
        self.accepted.append(ref)

    # --- certificates ----------------------------------------------------------------------

    def material(self, ref: ResourceRef, spec: CertificateSpec) -> tuple[TlsMaterial, str] | None:
        """The PEM material and the field path its problems are reported at."""
        if spec.inline is not None:
            return spec.inline, "spec.certificate"
        secret = spec.secret_ref
        if secret is None:  # excluded by validation; kept for the type checker
            self.fail(ref, "spec", "has neither certificate nor secretRef")
            return None
        if self.resolve_secret is None:
            self.note(
                ref,
                "spec.secretRef",
                f"Secret {secret.namespace}/{secret.name} is resolved only by the operator; "
                "this build leaves the certificate out",
            )
            self.unresolved.append(ref)
            return None
        try:
            resolved = self.resolve_secret(ref, secret)
        except Exception as error:  # a resolver bug must not break the other resources
            resolved = ResolutionError(f"resolver failed: {type(error).__name__}: {error}")
        if isinstance(resolved, ResolutionError):
            self.fail(ref, "spec.secretRef", resolved.message)
            return None
        return resolved, "spec.secretRef"

    def add_certificate(self, parsed: Parsed, spec: CertificateSpec) -> None:
        ref = parsed.ref
        found = self.material(ref, spec)
        if found is None:
            return
        material, where = found
        from_secret = where == "spec.secretRef"
        # Splitting and parsing PEM and keys is the costly part, and a pure function of the
        # material: kept from build to build while the material stays the same.
        version = self.sozu_version
        read = self.cache.product(
            parsed, (material, version), lambda: _read_material(material, version)
        )
        if isinstance(read, _Unreadable):
            path = where if read.part == "certificate" or from_secret else "spec.key"
            named = from_secret and read.parsed  # the parser's words, about the Secret's file
            self.fail(ref, path, f"tls.crt: {read.message}" if named else read.message)
            return
        leaf, chain, facts = read
        for moment in (facts.not_before, facts.not_after):
            if moment >= self.now and (self.valid_until is None or moment < self.valid_until):
                self.valid_until = moment
        ok = True
        if not facts.key_matches:
            key_path = where if from_secret else "spec.key"
            self.fail(ref, key_path, "the private key does not match the certificate")
            ok = False
        if self.now < facts.not_before:
            self.fail(ref, where, f"the certificate is not valid before {_time(facts.not_before)}")
            ok = False
        if self.now > facts.not_after:
            self.fail(ref, where, f"the certificate expired at {_time(facts.not_after)}")
            ok = False
        served = spec.names or facts.names
        if not served:
            self.fail(
                ref,
                "spec.names",
                "the certificate names no host (no SAN DNS name, no CN): list its SNI names here",
            )
            ok = False
        for index, address in enumerate(spec.addresses):
            missing = self.listener_missing(ListenerType.HTTPS, address)
            if missing is not None:
                self.fail(ref, f"spec.addresses[{index}]", missing)
                ok = False
        if not ok:
            return
        identities: list[Identity] = [
            ("certificate", address, facts.fingerprint) for address in spec.addresses
        ]
        if self.sozu_version < 2:
            # Sōzu 1.0 workers evict a certificate when another one with a shared name arrives.
            identities += [
                ("sni", address, name.lower()) for address in spec.addresses for name in served
            ]
        taken = self.claim(ref, identities)
        if taken is not None:
            holder, identity = taken
            if identity[0] == "certificate":
                reason = f"the same certificate on {identity[1]}"
            else:
                reason = (
                    f"the name {identity[2]!r} on {identity[1]}, and Sōzu 1.0 evicts "
                    "certificates that share a name"
                )
            self.fail(
                ref, where, f"{holder} already serves {reason}; it takes precedence ({_PRECEDENCE})"
            )
            return
        certificate = CertificateAndKey(
            certificate=leaf,
            key=material.key,
            certificate_chain=tuple(chain),
            versions=spec.versions,
            names=(*served, ownership.certificate_marker(self.owner, facts.fingerprint)),
        )
        served_facts = replace(facts, names=tuple(served))
        for address in spec.addresses:
            self.certificates.append((address, facts.fingerprint, certificate))
            self.sources[("certificate", (address, facts.fingerprint))] = ref
            self.served.setdefault(address, []).append(served_facts)
        self.facts[ref] = served_facts
        self.accepted.append(ref)

    def note_uncovered_hostnames(self) -> None:
        """An HTTPS route whose hostname no desired certificate serves gets a note (not an
        error: the certificate may come from Sōzu's own configuration)."""
        if any(ref.kind == sch.CERTIFICATE_KIND for ref in self.unresolved):
            return  # a certificate we could not read may well cover it
        # One index per address: checking each route against every certificate there was
        # O(routes x certificates), minutes at 50k routes and 500 certificates.
        served = {
            address: certs.NameIndex(name for facts in listed for name in facts.names)
            for address, listed in self.served.items()
        }
        nothing = certs.NameIndex(())
        for ref, spec in self.accepted_https:
            hostname = spec.hostname or ""
            if not served.get(spec.address, nothing).covers(hostname):
                self.note(
                    ref,
                    "spec.hostname",
                    f"no SozuCertificate serves {hostname!r} on {spec.address}",
                )

    def result(
        self, ignored: Sequence[ResourceRef], meta: Mapping[ResourceRef, ResourceMeta]
    ) -> DesiredBuild:
        state = ProxyState.build(
            clusters=self.clusters,
            backends=self.backends,
            http_frontends=self.http_frontends,
            https_frontends=self.https_frontends,
            tcp_frontends=self.tcp_frontends,
            certificates=self.certificates,
        )
        return DesiredBuild(
            state=state,
            problems=tuple(sorted(self.problems, key=lambda p: p.ref)),
            notes=tuple(sorted(self.notes, key=lambda p: p.ref)),
            sources=MappingProxyType(dict(self.sources)),
            accepted=tuple(sorted(self.accepted)),
            ignored=tuple(sorted(ignored)),
            unresolved=tuple(sorted(set(self.unresolved))),
            certificates=MappingProxyType(dict(self.facts)),
            meta=MappingProxyType(dict(meta)),
            valid_until=self.valid_until,
        )


@dataclass(frozen=True, slots=True)
class _Unreadable:
    part: Literal["certificate", "key"]  # what the message is about
    message: str
    parsed: bool  # a parser's message (shown with the Secret's file name), not ours


def _read_material(
    material: TlsMaterial, sozu_version: int
) -> tuple[str, tuple[str, ...], certs.CertificateFacts] | _Unreadable:
    """The leaf, the chain (one certificate per entry) and the facts of TLS material."""
    blocks = split_certificates(material.certificate)
    if not blocks:
        return _Unreadable("certificate", "contains no PEM CERTIFICATE block", parsed=False)
    leaf = blocks[0]
    chain = [*blocks[1:]]
    for entry in material.chain:
        chain.extend(split_certificates(entry))
    try:
        certs.load_certificate(leaf)
    except certs.CertificateError as error:
        return _Unreadable("certificate", str(error), parsed=True)
    try:
        facts = certs.inspect(leaf, material.key, sozu_version=sozu_version)
    except certs.CertificateError as error:
        return _Unreadable("key", str(error), parsed=False)
    return leaf, tuple(chain), facts


def _cluster_objects(
    sozu_id: str, spec: ClusterSpec, backends: Sequence[BackendSpec]
) -> tuple[Cluster, tuple[Backend, ...]]:
    cluster = Cluster(
        cluster_id=sozu_id,
        sticky_session=spec.sticky_session,
        https_redirect=spec.https_redirect,
        proxy_protocol=spec.proxy_protocol,
        load_balancing=spec.load_balancing,
        answer_503=spec.answer_503,
        load_metric=spec.load_metric,
        http2=spec.http2,
        answers=spec.answers,
        https_redirect_port=spec.https_redirect_port,
        authorized_hashes=spec.authorized_hashes,
        www_authenticate=spec.www_authenticate,
        max_connections_per_ip=spec.max_connections_per_ip,
        retry_after=spec.retry_after,
    )
    return cluster, tuple(
        Backend(
            cluster_id=sozu_id,
            backend_id=item.backend_id,
            address=item.address,
            sticky_id=item.sticky_id,
            weight=item.weight,
            backup=item.backup,
        )
        for item in backends
    )


def _route(
    owner: str, ref: ResourceRef, spec: FrontendSpec, sozu_id: str
) -> HttpFrontend | TcpFrontend:
    tags = ownership.frontend_tags(owner, ref.namespaced_name, spec.tags)
    if spec.protocol is ListenerType.TCP:
        return TcpFrontend(cluster_id=sozu_id, address=spec.address, tags=tags)
    path = spec.path or PathRule()
    return HttpFrontend(
        address=spec.address,
        hostname=spec.hostname or "",
        path=PathRule(path.kind, path.value),
        cluster_id=sozu_id,
        method=spec.method,
        position=spec.position,
        tags=tags,
        redirect=spec.redirect,
        required_auth=spec.required_auth,
        redirect_scheme=spec.redirect_scheme,
        redirect_template=spec.redirect_template,
        rewrite_host=spec.rewrite_host,
        rewrite_path=spec.rewrite_path,
        rewrite_port=spec.rewrite_port,
        headers=spec.headers,
    )


def build_desired(
    resources: Iterable[object],
    *,
    owner: str,
    sozu_version: int,
    live_listeners: Mapping[ListenerKey, Listener] | None,
    resolve_service: ServiceResolver | None = None,
    resolve_secret: SecretResolver | None = None,
    class_name: str | None = None,
    default_class: bool = False,
    now: datetime.datetime | None = None,
    cache: BuildCache | None = None,
) -> DesiredBuild:
    """The desired state for `owner` from raw resource objects (or already `Parsed` ones).

    `live_listeners` None skips the listener checks (nothing known about the proxy yet).
    `class_name` None handles every resource; otherwise only resources of that className, plus
    those without one when `default_class`. Raises only for a bad `owner`.

    With a `cache` kept from the last call, a build after a clean one (no problem, nothing
    unresolved) redoes only the resources whose `Parsed` object is not the very same, and
    gives exactly what building everything gives."""
    ownership.check_owner(owner)
    moment = now or datetime.datetime.now(datetime.UTC)

    def builder() -> _Builder:
        return _Builder(
            owner=owner,
            sozu_version=sozu_version,
            live_listeners=live_listeners,
            resolve_service=resolve_service,
            resolve_secret=resolve_secret,
            now=moment,
            cache=cache or BuildCache(),
        )

    inputs = (owner, sozu_version, None if live_listeners is None else set(live_listeners),
              class_name, default_class, resolve_service is None, resolve_secret is None)
    objects = resources if isinstance(resources, Sequence) else list(resources)
    if cache is not None and cache.memo is not None and cache.memo.usable(inputs, moment):
        rebuilt = _rebuild(cache.memo, builder(), objects, moment,
                           class_name=class_name, default_class=default_class)
        if rebuilt is not None:
            return rebuilt
        cache.abandon()
    build = builder()
    if cache is not None and cache.record:
        build.contributions = {}
    selection = _Selection(class_name, default_class)
    for obj in objects:
        selection.take(obj)
    candidates, ignored = selection.candidates, selection.ignored

    # The same resource twice (two files defining it): neither definition is trusted. Refs
    # made up for garbage ("(no name)") are not identities, so they never count as repeats.
    counts = Counter(ref for ref, _ in candidates if ref.kind in sch.KINDS and ref.name != NO_NAME)
    parsed: list[Parsed] = []
    for ref, obj in candidates:
        if counts[ref] > 1:
            build.fail(ref, "", f"is defined {counts[ref]} times; no definition is used")
            continue
        checked = _parse(obj, sozu_version)
        if isinstance(checked, Invalid):
            build.add_problems(checked.errors)
        else:
            parsed.append(checked)
    meta = {p.ref: p.meta for p in parsed}
    for ref, _ in candidates:
        if counts[ref] > 1 or ref not in meta:
            _remember_cluster_failure(build, ref)

    parsed.sort(key=_precedence)
    _add_stages(build, parsed)
    build.note_uncovered_hostnames()
    build.cache.finish()
    result = build.result(ignored, meta)
    if cache is not None:
        clean = not build.problems and not build.unresolved
        recorded = build.contributions is not None
        cache.record = clean
        cache.memo = None if not clean or not recorded else _Memo(
            inputs=inputs,
            now=moment,
            build=result,
            contributions=build.contributions or {},
            by_id={id(c.parsed): c for c in (build.contributions or {}).values()
                   if not c.volatile},
            ignored=selection.ignored_parsed,
            claims=build.claims,
            cluster_ids=build.cluster_ids,
            served=_served_names(build.served),
        )
    return result


class _Selection:
    """Resources sorted into those this build handles and those of another class."""

    def __init__(self, class_name: str | None, default_class: bool) -> None:
        self.class_name, self.default_class = class_name, default_class
        self.candidates: list[tuple[ResourceRef, object]] = []
        self.ignored: list[ResourceRef] = []
        self.ignored_parsed: dict[int, tuple[Parsed, ResourceRef]] = {}  # kept for `_Memo`

    def take(self, obj: object) -> None:
        ref = obj.ref if isinstance(obj, Parsed) else resource_ref(obj)
        if _selected(_raw_class(obj), self.class_name, self.default_class):
            self.candidates.append((ref, obj))
        else:
            self.ignored.append(ref)
            if isinstance(obj, Parsed):
                self.ignored_parsed[id(obj)] = (obj, ref)


def _add_stages(builder: _Builder, parsed: Sequence[Parsed]) -> None:
    """Clusters first (frontends need them), then frontends, then certificates; each stage in
    the order of `parsed` (precedence)."""
    clusters: list[tuple[Parsed, ClusterSpec]] = []
    frontends: list[tuple[Parsed, FrontendSpec]] = []
    certificates: list[tuple[Parsed, CertificateSpec]] = []
    for item in parsed:
        match item.spec:
            case ClusterSpec() as cluster:
                clusters.append((item, cluster))
            case FrontendSpec() as frontend:
                frontends.append((item, frontend))
            case CertificateSpec() as certificate:
                certificates.append((item, certificate))
    _add_each(builder, clusters, builder.add_cluster)
    for item, _ in clusters:
        _remember_cluster_failure(builder, item.ref)
    _add_each(builder, frontends, builder.add_frontend)
    _add_each(builder, certificates, builder.add_certificate)


def _served_names(
    served: Mapping[SocketAddress, Iterable[certs.CertificateFacts]],
) -> dict[SocketAddress, frozenset[str]]:
    return {address: frozenset(name for facts in listed for name in facts.names)
            for address, listed in served.items()}


def _rebuild(
    memo: _Memo,
    builder: _Builder,
    resources: Iterable[object],
    now: datetime.datetime,
    *,
    class_name: str | None,
    default_class: bool,
) -> DesiredBuild | None:
    """The build of `resources` made from `memo`, redoing only the resources whose object is
    not the very same `Parsed` (and the volatile ones), then updating `memo`. None, with
    `memo` untouched, when that might differ from building everything: a resource defined
    twice or now invalid, any problem or unresolved reference, a SozuCluster gone or with
    another Sōzu id (its frontends would fail)."""
    by_id, ignored_before = memo.by_id, memo.ignored
    unchanged: set[int] = set()
    selection = _Selection(class_name, default_class)
    for obj in resources:
        handle = id(obj)
        kept = by_id.get(handle)
        if kept is not None and kept.parsed is obj:
            if handle in unchanged:
                return None  # the same resource twice
            unchanged.add(handle)
            continue
        skipped = ignored_before.get(handle)
        if skipped is not None and skipped[0] is obj:
            selection.ignored.append(skipped[1])
            selection.ignored_parsed[handle] = skipped
            continue
        selection.take(obj)
    changed, ignored = selection.candidates, selection.ignored
    contributions = memo.contributions
    gone = [] if len(unchanged) == len(contributions) else [
        c for c in contributions.values() if id(c.parsed) not in unchanged
    ]
    gone_refs = {c.ref for c in gone}
    redone: list[Parsed] = []
    for ref, obj in changed:
        if ref in contributions and ref not in gone_refs:
            return None  # defined twice: once unchanged, once anew
        checked = _parse(obj, builder.sozu_version)
        if isinstance(checked, Invalid):
            return None
        redone.append(checked)
    if len({p.ref for p in redone}) < len(redone):
        return None

    builder.claims = dict(memo.claims)
    builder.cluster_ids = dict(memo.cluster_ids)
    for c in gone:
        for identity in c.claims:
            del builder.claims[identity]
        if c.clusters:
            del builder.cluster_ids[(c.ref.namespace, c.ref.name)]
    builder.contributions = {}
    redone.sort(key=_precedence)
    _add_stages(builder, redone)
    if builder.problems or builder.notes or builder.unresolved:
        return None
    for c in gone:
        if c.clusters and builder.cluster_ids.get(
            (c.ref.namespace, c.ref.name)
        ) != c.clusters[0].cluster_id:
            return None
    new = builder.contributions

    before = memo.build
    state = before.state
    clusters, backends = dict(state.clusters), dict(state.backends)
    http, https = dict(state.http_frontends), dict(state.https_frontends)
    tcp, certificates = set(state.tcp_frontends), dict(state.certificates)
    sources, facts, meta = dict(before.sources), dict(before.certificates), dict(before.meta)
    for c in gone:
        for cluster in c.clusters:
            del clusters[cluster.cluster_id]
        for backend in c.backends:
            del backends[backend.identity]
        for route in c.http:
            del http[route.key]
        for route in c.https:
            del https[route.key]
        tcp.difference_update(c.tcp)
        for address, fp, _ in c.certificates:
            del certificates[(address, fp)]
        for key in c.source_keys():
            del sources[key]
        facts.pop(c.ref, None)
        del meta[c.ref]
    for c in new.values():
        clusters.update((cluster.cluster_id, cluster) for cluster in c.clusters)
        backends.update((backend.identity, backend) for backend in c.backends)
        http.update((route.key, route) for route in c.http)
        https.update((route.key, route) for route in c.https)
        tcp.update(c.tcp)
        certificates.update(((address, fp), cert) for address, fp, cert in c.certificates)
        sources.update((key, c.ref) for key in c.source_keys())
        if c.facts is not None:
            facts[c.ref] = c.facts
        meta[c.ref] = c.parsed.meta

    # The memo becomes this build's.
    for c in gone:
        del contributions[c.ref]
        by_id.pop(id(c.parsed), None)
    for ref, c in new.items():
        contributions[ref] = c
        if not c.volatile:
            by_id[id(c.parsed)] = c
    builder.cache.finish_partly(c.parsed for c in gone)

    # Notes on uncovered hostnames: each route's depends on the names served at its address.
    served: dict[SocketAddress, list[certs.CertificateFacts]] = {}
    for ref, found in facts.items():
        for address, _, _ in contributions[ref].certificates:
            served.setdefault(address, []).append(found)
    served_names = _served_names(served)
    builder.served = served
    if served_names == memo.served:
        kept_notes = [n for n in before.notes if n.ref not in gone_refs]
        builder.accepted_https = [entry for c in new.values() for entry in c.covered]
    else:
        kept_notes = []
        builder.accepted_https = [entry for c in contributions.values() for entry in c.covered]
    builder.note_uncovered_hostnames()
    notes = sorted([*kept_notes, *builder.notes], key=lambda n: n.ref)

    new_refs = set(new)
    accepted = before.accepted if new_refs == gone_refs else tuple(
        sorted((set(before.accepted) - gone_refs) | new_refs)
    )
    valid_until = None
    for found in facts.values():
        for moment in (found.not_before, found.not_after):
            if moment >= now and (valid_until is None or moment < valid_until):
                valid_until = moment
    result = DesiredBuild(
        state=ProxyState.of_tables(
            clusters=clusters, backends=backends, http_frontends=http, https_frontends=https,
            tcp_frontends=tcp, certificates=certificates,
        ),
        problems=(),
        notes=tuple(notes),
        sources=MappingProxyType(sources),
        accepted=accepted,
        ignored=tuple(sorted(ignored)),
        unresolved=(),
        certificates=MappingProxyType(facts),
        meta=MappingProxyType(meta),
        valid_until=valid_until,
    )
    memo.now, memo.build, memo.ignored = now, result, selection.ignored_parsed
    memo.claims, memo.cluster_ids, memo.served = builder.claims, builder.cluster_ids, served_names
    return result


def _parse(obj: object, sozu_version: int) -> Parsed | Invalid:
    if isinstance(obj, Parsed):
        problems = version_errors(obj, sozu_version)
        return Invalid(obj.ref, problems) if problems else obj
    return parse_resource(obj, sozu_version=sozu_version)


def _add_each(builder: _Builder, items: Iterable[tuple[Parsed, S]],
              add: Callable[[Parsed, S], None]) -> None:
    recording = builder.contributions
    for item, spec in items:
        marks = builder.marks() if recording is not None else ()
        try:
            add(item, spec)
        except Exception as error:  # isolation: one resource never breaks a batch
            builder.fail(item.ref, "", f"{INTERNAL_ERROR}: {type(error).__name__}: {error}")
            continue
        if recording is not None and len(builder.accepted) > marks[0]:
            recording[item.ref] = builder.contribution(item, marks)


def _remember_cluster_failure(builder: _Builder, ref: ResourceRef) -> None:
    """Record why a SozuCluster is not programmed, for the frontends that point at it."""
    key = (ref.namespace, ref.name)
    if ref.kind != sch.CLUSTER_KIND or key in builder.cluster_ids:
        return
    first = builder.first_problem.get(ref)
    if first is None:
        detail = ""
    elif first.path:
        detail = f": {first.path}: {first.message}"
    else:
        detail = f": {first.message}"
    builder.cluster_failures[key] = f"{ref} is not programmed{detail}"
