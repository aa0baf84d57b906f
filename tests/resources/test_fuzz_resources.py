"""Thousands of malformed resources through parse_resource and build_desired: no unhandled
exception, every error names its resource and field, and valid resources in the same batch
come out exactly as they would alone."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.certs import make_certificate
from tests.security.keys import assert_no_key_material

from sozu_operator.proxy.model import (
    HttpListener,
    HttpsListener,
    SocketAddress,
    TcpListener,
)
from sozu_operator.reconcile.desired import DesiredBuild, ResolutionError, build_desired
from sozu_operator.resources import schema as sch
from sozu_operator.resources.models import (
    BackendSpec,
    Invalid,
    Parsed,
    ResourceRef,
    SecretRef,
    ServiceRef,
    TlsMaterial,
)
from sozu_operator.resources.validate import INTERNAL_ERROR, parse_resource, resource_ref

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
_START = NOW - datetime.timedelta(days=1)
STABLE_CERT, STABLE_KEY = make_certificate(["stable.example"], days=365, not_before=_START)
FUZZ_CERT, FUZZ_KEY = make_certificate(["fuzz.example"], days=365, not_before=_START)
SECRET_CERT, SECRET_KEY = make_certificate(["secret.fuzz.example"], days=365, not_before=_START)
FUZZ_KEYS = (STABLE_KEY, FUZZ_KEY, SECRET_KEY)
LISTENERS = {
    (listener.kind, listener.address): listener
    for listener in (
        HttpListener(SocketAddress.parse("0.0.0.0:8080")),
        HttpsListener(SocketAddress.parse("0.0.0.0:8443")),
        TcpListener(SocketAddress.parse("0.0.0.0:5432")),
        TcpListener(SocketAddress.parse("0.0.0.0:6432")),
    )
}


def _resource(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": sch.API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# Valid resources in namespace "stable": the batch members that garbage must not disturb.
STABLE = [
    _resource(sch.CLUSTER_KIND, "web", "stable", {"backends": [{"address": "10.9.0.1:80"}]}),
    _resource(sch.CLUSTER_KIND, "db", "stable", {"backends": [{"address": "10.9.0.2:5432"}]}),
    _resource(sch.FRONTEND_KIND, "web", "stable",
              {"cluster": "web", "address": "0.0.0.0:8080", "hostname": "stable.example"}),
    _resource(sch.FRONTEND_KIND, "tls", "stable",
              {"cluster": "web", "protocol": "HTTPS", "address": "0.0.0.0:8443",
               "hostname": "stable.example"}),
    _resource(sch.FRONTEND_KIND, "db", "stable",
              {"cluster": "db", "protocol": "TCP", "address": "0.0.0.0:5432"}),
    _resource(sch.CERTIFICATE_KIND, "tls", "stable",
              {"addresses": ["0.0.0.0:8443"], "certificate": STABLE_CERT, "key": STABLE_KEY}),
]

# Valid resources in namespace "fuzz", to be mutated into garbage (their identities never
# collide with the stable ones, so a mutant cannot legitimately win a conflict against them).
SEEDS = [
    _resource(sch.CLUSTER_KIND, "web", "fuzz", {
        "backends": [{"address": "10.0.0.1:80", "weight": 3, "backup": False, "stickyId": "a"},
                     {"address": "[::1]:80", "id": "v6"}],
        "loadBalancing": "POWER_OF_TWO", "loadMetric": "REQUESTS", "stickySession": True,
        "answers": {"503": "down"}, "http2": True, "retryAfter": 5,
    }),
    _resource(sch.CLUSTER_KIND, "svc", "fuzz",
              {"service": {"name": "web", "port": "http"}, "className": "edge"}),
    _resource(sch.FRONTEND_KIND, "web", "fuzz", {
        "cluster": "web", "address": "0.0.0.0:8080", "hostname": "fuzz.example",
        "path": {"kind": "REGEX", "value": "^/api"}, "method": "GET", "position": "PRE",
        "tags": {"team": "a"}, "headers": [{"key": "X-A", "value": "1"}], "rewritePort": 81,
    }),
    _resource(sch.FRONTEND_KIND, "db", "fuzz",
              {"cluster": "svc", "protocol": "TCP", "address": "0.0.0.0:6432"}),
    _resource(sch.CERTIFICATE_KIND, "tls", "fuzz", {
        "addresses": ["0.0.0.0:8443"], "certificate": FUZZ_CERT, "key": FUZZ_KEY,
        "names": ["fuzz.example"], "versions": ["TLS_V1_2"], "chain": [FUZZ_CERT],
    }),
    _resource(sch.CERTIFICATE_KIND, "secret", "fuzz",
              {"addresses": ["0.0.0.0:8443"], "secretRef": {"name": "tls"}}),
]


def _field_names() -> list[str]:
    names = {"apiVersion", "kind", "metadata", "spec", "name", "namespace", "creationTimestamp",
             "generation", "items"}
    stack = [sch.kind_info(kind).spec for kind in sch.KINDS]
    while stack:
        node = stack.pop()
        for name, child in node.get("properties", {}).items():
            names.add(name)
            stack.append(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                stack.append(node[key])
    return sorted(names)


FIELD_NAMES = _field_names()
INTERESTING = [
    "", " ", "TCP", "HTTPS", "REGEX", "EQUALS", "TREE", "MAGLEV", "TLS_V1_0", "sozu.io/owner",
    "0.0.0.0:8080", "0.0.0.0:8443", "0.0.0.0:9", "[::]:8443", "[::1]:0", "1.2.3.4:65536",
    "256.0.0.1:80", "[fe80::1%eth0]:80", "*.fuzz.example", "a..b", "(", "(?=x)", "\\1", "/",
    "web", "svc", "GET", "get", "x" * 300, "\u0663", "2024-01-01T00:00:00Z", "yesterday",
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", FUZZ_CERT, FUZZ_KEY,
    STABLE_KEY, 0, -1, 1, 65535, 65536, 2**63, 2**70, 1.5, 80.0, True, False, None, [], {},
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    # Copies: a mutant may edit the value in place, and the pool must stay as it is.
    st.sampled_from(INTERESTING).map(copy.deepcopy),
    st.binary(max_size=4),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8), st.integers(0, 3))
garbage = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=12,
)

replacement = st.one_of(garbage, st.sampled_from(INTERESTING).map(copy.deepcopy))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@st.composite
def mutants(draw: st.DrawFn) -> Any:
    """A valid seed with one to four random edits: replace, delete or add a value anywhere."""
    value: Any = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(_paths(value))))
        if not path:
            return draw(garbage)
        parent = value
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[last] = draw(replacement)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][draw(keys)] = draw(replacement)
        elif isinstance(parent[last], list):
            parent[last].append(draw(replacement))
    return value


malformed = st.one_of(garbage, mutants(), mutants())


def _check_errors(obj: object, ref: ResourceRef, result: Invalid) -> None:
    assert result.errors, "an Invalid always says why"
    for error in result.errors:
        assert error.ref == ref
        assert INTERNAL_ERROR not in error.message, error
        assert str(error).startswith(f"{ref.kind} {ref.namespace}/{ref.name}")
        if isinstance(obj, Mapping) and "keys must be strings" not in error.message:
            # Only a non-string key of the object itself has no field to name.
            assert error.path, f"error without a field path: {error}"
        assert error.message
        # INTERESTING puts private keys into any field: no message may quote one.
        assert_no_key_material(str(error), *FUZZ_KEYS, where="a validation error")


# 1200: about 5 % of mutants stay valid, and the bar is 1 000 malformed resources.
@settings(max_examples=1200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(malformed, st.sampled_from([None, 1, 2]))
def test_parse_resource_never_raises(obj: object, sozu_version: int | None) -> None:
    result = parse_resource(obj, sozu_version=sozu_version)
    ref = resource_ref(obj)
    assert result.ref == ref
    if isinstance(result, Invalid):
        _check_errors(obj, ref, result)
    else:
        assert isinstance(result, Parsed)
        assert ref.kind in sch.KINDS


def _resolve_service(owner: ResourceRef, service: ServiceRef) -> Any:
    if service.name == "web":
        return [BackendSpec(SocketAddress.parse("10.0.5.1:80"))]
    return ResolutionError(f"Service {service.namespace}/{service.name} not found")


def _resolve_secret(owner: ResourceRef, secret: SecretRef) -> Any:
    if secret.name == "tls":
        return TlsMaterial(SECRET_CERT, SECRET_KEY)
    raise LookupError(secret.name)  # a crashing resolver must be contained too


def _stable_part(build: DesiredBuild) -> dict[Any, ResourceRef]:
    return {key: ref for key, ref in build.sources.items() if ref.namespace == "stable"}


def _build(resources: list[object], sozu_version: int) -> DesiredBuild:
    return build_desired(
        resources,
        owner="fuzz",
        sozu_version=sozu_version,
        live_listeners=LISTENERS,
        resolve_service=_resolve_service,
        resolve_secret=_resolve_secret,
        now=NOW,
    )


_ALONE = {version: _build(list(STABLE), version) for version in (1, 2)}


# 400 batches of up to 8 (3.5 malformed on average): over 1 000 through the builder.
@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(malformed.filter(lambda o: resource_ref(o).namespace != "stable"), max_size=8),
    st.sampled_from([1, 2]),
    st.randoms(use_true_random=False),
)
def test_build_desired_isolates_malformed_resources(
    batch: list[object], sozu_version: int, random: Any
) -> None:
    resources: list[object] = [*batch, *copy.deepcopy(STABLE)]
    random.shuffle(resources)
    build = _build(resources, sozu_version)
    alone = _ALONE[sozu_version]

    stable_refs = {resource_ref(item) for item in STABLE}
    assert not [p for p in build.problems if p.ref in stable_refs]
    assert stable_refs <= set(build.accepted)
    assert _stable_part(build) == _stable_part(alone)
    for key, ref in _stable_part(build).items():
        kind, identity = key
        if kind == "tcp_frontend":
            assert identity in build.state.tcp_frontends
        else:
            assert _table(build, kind)[identity] == _table(alone, kind)[identity], (ref, key)

    for problem in build.problems:
        assert INTERNAL_ERROR not in problem.message, problem
        assert_no_key_material(str(problem), *FUZZ_KEYS, where="a build problem")
        assert str(problem).startswith(f"{problem.ref.kind} {problem.ref.namespace}/")
        assert (
            problem.path
            or problem.message.startswith(("is defined", "keys must be strings"))
            or problem.ref.kind == "(unknown kind)"  # not even an object
        ), problem


def _table(build: DesiredBuild, kind: str) -> Mapping[Any, Any]:
    tables: dict[str, Mapping[Any, Any]] = {
        "cluster": build.state.clusters,
        "backend": build.state.backends,
        "http_frontend": build.state.http_frontends,
        "https_frontend": build.state.https_frontends,
        "certificate": build.state.certificates,
    }
    return tables[kind]


def test_seeds_and_stable_resources_are_valid() -> None:
    # Mutants start from valid resources, so the builder's later stages see real traffic.
    for item in [*SEEDS, *STABLE]:
        assert isinstance(parse_resource(item), Parsed), item
    build = _build([*SEEDS, *STABLE], 2)
    assert build.problems == ()
    assert len(build.accepted) == len(SEEDS) + len(STABLE)
