"""export: live state → resources that plan to nothing, never leak keys unless asked, and
carry unowned objects only on request (as an adoption path, with a warning)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.certs import make_certificate
from tests.reconcile._world import pem_pair

from sozu_operator.cli.gitops import Inputs
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.certificates import fingerprint
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    LoadBalancing,
    PathRule,
    SocketAddress,
    TcpListener,
)
from sozu_operator.proxy.requests import is_mutation
from sozu_operator.proxy.state import ConfigState
from sozu_operator.proxy.statefile import parse_state
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.pipeline import Reconciliation, reconcile
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.resources import schema as sch
from sozu_operator.resources.export import (
    dns_name,
    dump_documents,
    export_documents,
    export_resources,
)
from sozu_operator.resources.loader import load_paths, load_text
from sozu_operator.resources.models import Parsed
from sozu_operator.resources.validate import parse_resource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
OWNER = "me"
_A = SocketAddress.parse
HTTP, HTTPS, HTTPS_2, TCP = "0.0.0.0:8080", "0.0.0.0:8443", "0.0.0.0:9443", "0.0.0.0:5432"
LISTENERS = ProxyState.build(
    listeners=[
        HttpListener(_A(HTTP)),
        HttpsListener(_A(HTTPS)),
        HttpsListener(_A(HTTPS_2)),
        TcpListener(_A(TCP)),
    ]
).listeners


# --- helpers -------------------------------------------------------------------------------------


def with_listeners(state: ProxyState) -> ProxyState:
    return dataclasses.replace(state, listeners=LISTENERS)


def build(
    resources: Iterable[object], *, owner: str = OWNER, sozu_version: int = 2
) -> ProxyState:
    """What Sōzu holds once `resources` are applied: the desired state, with the listeners."""
    empty = ProxyState(listeners=LISTENERS)
    result = reconcile(resources, empty, owner=owner, sozu_version=sozu_version)
    return with_listeners(result.desired)


def example_state() -> ProxyState:
    loaded = load_paths([EXAMPLES])
    assert loaded.ok, loaded.errors
    return build(item.body for item in loaded.resources)


def static_state() -> ProxyState:
    """Sōzu's own configuration file, as examples/sozu/state.json seeds the emulator."""
    parsed = parse_state((EXAMPLES / "sozu" / "state.json").read_bytes(), source="seed")
    state, refused = ConfigState.from_requests(
        [r for r in parsed.requests if is_mutation(r)], sozu_version=2
    )
    assert not refused
    return ProxyState.from_config_state(state)


def merged(*states: ProxyState) -> ProxyState:
    return ProxyState(
        clusters={k: v for s in states for k, v in s.clusters.items()},
        backends={k: v for s in states for k, v in s.backends.items()},
        http_frontends={k: v for s in states for k, v in s.http_frontends.items()},
        https_frontends={k: v for s in states for k, v in s.https_frontends.items()},
        tcp_frontends=frozenset(f for s in states for f in s.tcp_frontends),
        certificates={k: v for s in states for k, v in s.certificates.items()},
        listeners=LISTENERS,
    )


def export(live: ProxyState, **options: Any) -> tuple[str, list[str]]:
    arguments: dict[str, Any] = {
        "owner": OWNER, "everything": False, "namespace": "default", "include_keys": True,
    }
    arguments.update(options)
    return export_documents(live, **arguments)


def load_exported(text: str, *, sozu_version: int = 2) -> list[dict[str, Any]]:
    """The documents of an export, checked the way `plan` reads files."""
    loaded = load_text(text)
    assert loaded.ok, loaded.errors
    assert not loaded.warnings, loaded.warnings
    bodies = [dict(item.body) for item in loaded.resources]
    for body in bodies:
        parsed = parse_resource(body, sozu_version=sozu_version)
        assert isinstance(parsed, Parsed), parsed
    return bodies


def replan(
    text: str, live: ProxyState, *, sozu_version: int = 2, owner: str = OWNER
) -> Reconciliation:
    loaded = load_text(text)
    assert loaded.ok, loaded.errors
    inputs = Inputs(loaded, [item.body for item in loaded.resources])
    return reconcile(
        inputs.bodies, live, owner=owner, sozu_version=sozu_version,
        resolve_secret=inputs.secret_resolver(),
    )


def assert_round_trip(result: Reconciliation, live: ProxyState) -> None:
    assert not result.build.problems, result.build.problems
    assert not result.build.unresolved
    assert result.plan.is_empty, [step.summary for step in result.plan.steps]
    assert not result.plan.problems, result.plan.problems
    # Stronger than an empty plan: the very same objects, field for field.
    assert with_listeners(result.desired) == live


def tls_secrets(with_keys: Sequence[dict[str, Any]]) -> str:
    """kubernetes.io/tls Secrets for an export without keys, made from one with keys."""
    secrets = []
    for document in with_keys:
        if document["kind"] != sch.CERTIFICATE_KIND:
            continue
        spec, metadata = document["spec"], document["metadata"]
        crt = spec["certificate"] + "".join(spec.get("chain", []))
        secrets.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": f"{metadata['name']}-tls", "namespace": metadata["namespace"]},
            "data": {
                "tls.crt": base64.b64encode(crt.encode()).decode(),
                "tls.key": base64.b64encode(spec["key"].encode()).decode(),
            },
        })
    return yaml.safe_dump_all(secrets, explicit_start=True) if secrets else ""


def of_kind(documents: Iterable[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        f"{d['metadata']['namespace']}/{d['metadata']['name']}": d["spec"]
        for d in documents
        if d["kind"] == kind
    }


def resource(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> Any:
    return {
        "apiVersion": sch.API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# --- the examples --------------------------------------------------------------------------------


def test_examples_round_trip_with_keys() -> None:
    live = example_state()
    text, warnings = export(live)
    load_exported(text)
    assert_round_trip(replan(text, live), live)
    assert warnings == ["the output contains private keys inline: handle it as a secret"]


def test_examples_export_is_minimal() -> None:
    documents = export_resources(
        example_state(), owner=OWNER, everything=False, namespace="default", include_keys=True
    )
    clusters = of_kind(documents, sch.CLUSTER_KIND)
    assert clusters == {
        "default/postgres": {
            "loadBalancing": "LEAST_LOADED",
            "loadMetric": "CONNECTIONS",
            "backends": [{"address": "127.0.0.1:15432", "id": "pg-primary"}],
        },
        "default/web": {
            "backends": [
                {"address": "127.0.0.1:9001"},
                {"address": "127.0.0.1:9002", "weight": 100},
                {"address": "127.0.0.1:9003", "backup": True},
            ]
        },
    }
    frontends = of_kind(documents, sch.FRONTEND_KIND)
    assert sorted(frontends) == [
        "default/postgres", "default/web", "default/web-api", "default/web-health",
        "default/web-tls",
    ]
    assert frontends["default/web-api"]["tags"] == {"team": "storefront"}  # no markers
    assert frontends["default/postgres"] == {
        "cluster": "postgres", "protocol": "TCP", "address": TCP,
    }
    assert frontends["default/web-tls"] == {
        "cluster": "web", "protocol": "HTTPS", "address": HTTPS, "hostname": "example.localhost",
    }
    certificate = of_kind(documents, sch.CERTIFICATE_KIND)["default/example-localhost"]
    assert "names" not in certificate  # the same as the certificate's own names
    assert certificate["versions"] == ["TLS_V1_2", "TLS_V1_3"]


def test_output_starts_with_a_comment_and_is_deterministic() -> None:
    loaded = load_paths([EXAMPLES])
    forward = build(item.body for item in loaded.resources)
    backward = build(item.body for item in reversed(loaded.resources))
    text, _ = export(forward, include_keys=False)
    assert text.splitlines()[0].startswith("# Exported from Sōzu by sozu-operator for owner 'me'")
    assert export(backward, include_keys=False) == (text, export(forward, include_keys=False)[1])
    kinds = [d["kind"] for d in load_exported(text)]
    assert kinds == sorted(kinds, key=sch.KINDS.index)


def test_nothing_owned_gives_only_the_comment() -> None:
    text, warnings = export(static_state())
    assert text.startswith("# Exported from Sōzu")
    assert load_text(text).resources == ()
    assert warnings == []


# --- keys ----------------------------------------------------------------------------------------


def test_without_keys_no_private_key_and_secrets_replan_to_nothing() -> None:
    live = example_state()
    with_keys, _ = export(live, include_keys=True)
    text, warnings = export(live, include_keys=False)
    assert "PRIVATE KEY" not in text
    certificate = of_kind(load_exported(text), sch.CERTIFICATE_KIND)["default/example-localhost"]
    assert certificate["secretRef"] == {"name": "example-localhost-tls"}
    assert not {"certificate", "chain", "key"} & certificate.keys()

    assert_round_trip(replan(text + tls_secrets(load_exported(with_keys)), live), live)
    # Without the Secret the resource fails, and what it served is kept, not removed.
    alone = replan(text, live)
    assert alone.plan.is_empty
    (problem,) = alone.build.problems
    assert "default/example-localhost-tls" in problem.message
    assert "does not exist" in problem.message

    (secret_warning,) = warnings
    assert "default/example-localhost-tls" in secret_warning
    assert "kubernetes.io/tls" in secret_warning


def test_warnings_never_show_key_material() -> None:
    live = example_state()
    key = next(iter(live.certificates.values())).key
    key_lines = [line for line in key.splitlines() if line and "-----" not in line]
    for include_keys in (False, True):
        _, warnings = export(live, include_keys=include_keys)
        for warning in warnings:
            assert "PRIVATE KEY" not in warning
            assert not any(line in warning for line in key_lines)


def test_certificate_with_a_chain_on_two_addresses() -> None:
    pem, key = make_certificate(["chained.example.com"])
    intermediate, _ = make_certificate(["intermediate.example.com"])
    resources = [
        resource(sch.CERTIFICATE_KIND, "anything", {
            "addresses": [HTTPS_2, HTTPS],
            "certificate": pem, "key": key, "chain": [intermediate],
            "names": ["chained.example.com", "alias.example.com"],
        }),
    ]
    live = build(resources)
    assert len(live.certificates) == 2
    text, _ = export(live)
    (spec,) = of_kind(load_exported(text), sch.CERTIFICATE_KIND).values()
    assert spec["addresses"] == [HTTPS, HTTPS_2]  # one resource per fingerprint
    assert spec["names"] == ["chained.example.com", "alias.example.com"]
    assert spec["chain"] == [intermediate]
    assert_round_trip(replan(text, live), live)

    without, _ = export(live, include_keys=False)
    documents = load_exported(text)
    assert_round_trip(replan(without + tls_secrets(documents), live), live)


def test_certificate_names() -> None:
    wildcard, key = make_certificate(["*.example.com"])
    bare, bare_key = make_certificate([], common_name="Not A Hostname")
    live = merged(
        build([resource(sch.CERTIFICATE_KIND, "w", {
            "addresses": [HTTPS], "certificate": wildcard, "key": key,
        })]),
        # An unowned certificate without names (Sōzu derived none it keeps).
        ProxyState.build(certificates=[
            (_A(HTTPS), fingerprint(bare), CertificateAndKey(bare, bare_key)),
        ]),
    )
    owned = of_kind(load_exported(export(live)[0]), sch.CERTIFICATE_KIND)
    assert list(owned) == ["default/wildcard-example-com"]
    everything = of_kind(
        load_exported(export(live, everything=True)[0]), sch.CERTIFICATE_KIND
    )
    assert f"default/cert-{fingerprint(bare)[:12]}" in everything


# --- what cannot be exported ---------------------------------------------------------------------


def _owned_front(hostname: str, cluster_id: str | None, resource_ref: str) -> HttpFrontend:
    tags = ownership.frontend_tags(OWNER, resource_ref)
    return HttpFrontend(_A(HTTP), hostname, PathRule(), cluster_id, tags=tags)


def test_deny_route_is_skipped_with_a_warning() -> None:
    live = ProxyState.build(
        http_frontends=[_owned_front("deny.example.com", None, "default/deny")],
        listeners=LISTENERS.values(),
    )
    text, warnings = export(live)
    assert load_text(text).resources == ()
    assert len(warnings) == 1
    assert "deny.example.com" in warnings[0]
    assert "no cluster" in warnings[0]


def test_frontend_of_an_unowned_cluster_needs_everything() -> None:
    static = static_state()
    live = merged(
        static,
        ProxyState.build(
            http_frontends=[_owned_front("mine.example.com", "status-page", "default/mine")]
        ),
    )
    text, warnings = export(live)
    assert load_text(text).resources == ()
    assert any("'status-page' is not owned by 'me'" in w for w in warnings)

    documents = load_exported(export(live, everything=True)[0])
    mine = of_kind(documents, sch.FRONTEND_KIND)["default/mine"]
    assert mine["cluster"] == "status-page"


def test_frontends_of_one_cluster_in_two_namespaces() -> None:
    cluster_id = ownership.sozu_cluster_id(OWNER, "shared")
    live = ProxyState.build(
        clusters=[Cluster(cluster_id)],
        http_frontends=[
            _owned_front("a.example.com", cluster_id, "team-a/x"),
            _owned_front("b.example.com", cluster_id, "team-b/y"),
        ],
        listeners=LISTENERS.values(),
    )
    text, warnings = export(live, namespace="team-a")
    documents = load_exported(text)
    assert of_kind(documents, sch.CLUSTER_KIND) == {"team-a/shared": {"clusterId": "shared"}}
    assert list(of_kind(documents, sch.FRONTEND_KIND)) == ["team-a/x"]
    (warning,) = warnings
    assert "b.example.com" in warning
    assert "namespace 'team-b'" in warning


def test_values_outside_the_schema_skip_the_object_with_a_warning() -> None:
    cluster_id = ownership.sozu_cluster_id(OWNER, "default/web")
    live = ProxyState.build(
        clusters=[Cluster(cluster_id), Cluster(ownership.sozu_cluster_id(OWNER, "default/ok"))],
        backends=[Backend(cluster_id, "b", _A("10.0.0.1:80"), weight=-1)],
        http_frontends=[_owned_front("web.example.com", cluster_id, "default/web")],
        listeners=LISTENERS.values(),
    )
    text, warnings = export(live)
    documents = load_exported(text)
    assert list(of_kind(documents, sch.CLUSTER_KIND)) == ["default/ok"]
    assert of_kind(documents, sch.FRONTEND_KIND) == {}
    assert len(warnings) == 2
    assert "spec.backends[0].weight" in warnings[0]
    assert "web.example.com" in warnings[1]
    assert "was skipped" in warnings[1]


def test_bad_owner_or_namespace_is_refused() -> None:
    with pytest.raises(ValueError, match="owner"):
        export(ProxyState(), owner="Not Valid")
    with pytest.raises(ValueError, match="namespace"):
        export(ProxyState(), namespace="Not_Valid")


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status-page", "status-page"),
        ("Legacy_App.v2", "legacy-app-v2"),
        ("them:default/api", "them-default-api"),
        ("---", "fallback"),
        ("x" * 100, "x" * 54),
    ],
)
def test_dns_name(text: str, expected: str) -> None:
    assert dns_name(text, fallback="fallback") == expected


def test_custom_cluster_id_next_to_a_cluster_of_that_name() -> None:
    resources = [
        resource(sch.CLUSTER_KIND, "web", {"backends": [{"address": "10.0.0.1:80"}]}),
        resource(sch.CLUSTER_KIND, "other", {
            "clusterId": "web", "backends": [{"address": "10.0.0.2:80"}],
        }),
        resource(sch.CLUSTER_KIND, "elsewhere", {"clusterId": "default/x"}, namespace="prod"),
        resource(sch.FRONTEND_KIND, "route", {
            "cluster": "elsewhere", "address": HTTP, "hostname": "x.example.com",
        }, namespace="prod"),
    ]
    live = build(resources)
    text, warnings = export(live)
    assert warnings == []
    clusters = of_kind(load_exported(text), sch.CLUSTER_KIND)
    assert clusters["default/web"] == {"backends": [{"address": "10.0.0.1:80"}]}
    (renamed,) = [ref for ref, spec in clusters.items() if spec.get("clusterId") == "web"]
    assert renamed.startswith("default/web-")
    # Placed with its frontend, not in the namespace its id happens to spell.
    assert clusters["prod/default-x"] == {"clusterId": "default/x"}
    assert_round_trip(replan(text, live), live)


# --- YAML ----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8")))
def test_any_text_survives_the_yaml(text: str) -> None:
    document = {"apiVersion": "v1", "kind": "Text", "value": text, "map": {text: text}}
    loaded = load_text(dump_documents([document], header="a comment\nof two lines"))
    assert loaded.ok, loaded.errors
    assert [item.body for item in loaded.foreign] == [document]


def test_pem_is_written_as_a_literal_block() -> None:
    text, _ = export(example_state())
    assert "  certificate: |\n    -----BEGIN CERTIFICATE-----\n" in text


# --- everything ----------------------------------------------------------------------------------


def test_everything_includes_static_and_foreign_objects_as_an_adoption_path() -> None:
    theirs = build(
        [
            resource(sch.CLUSTER_KIND, "api", {"backends": [{"address": "10.9.9.9:80"}]}),
            resource(sch.FRONTEND_KIND, "api", {
                "cluster": "api", "address": HTTP, "hostname": "them.localhost",
            }),
        ],
        owner="them",
    )
    live = merged(example_state(), static_state(), theirs)

    own_text, _ = export(live, namespace="adopted")
    own = load_exported(own_text)
    assert "status-page" not in own_text
    # Clusters and frontends keep the namespace of their resources; certificates carry no
    # such marker and go to the namespace asked for.
    assert {(d["kind"], d["metadata"]["namespace"]) for d in own} == {
        (sch.CLUSTER_KIND, "default"), (sch.FRONTEND_KIND, "default"),
        (sch.CERTIFICATE_KIND, "adopted"),
    }

    text, warnings = export(live, everything=True, namespace="adopted")
    documents = load_exported(text)
    clusters = of_kind(documents, sch.CLUSTER_KIND)
    assert clusters["adopted/status-page"] == {
        "clusterId": "status-page",
        "backends": [{"address": "127.0.0.1:9000", "id": "status-page-0"}],
    }
    assert clusters["adopted/them-default-api"]["clusterId"] == "them-default/api"
    frontends = of_kind(documents, sch.FRONTEND_KIND)
    static_route = frontends["adopted/http-status-localhost"]
    assert static_route["cluster"] == "status-page"
    assert "tags" not in static_route
    assert frontends["adopted/http-them-localhost"]["cluster"] == "them-default-api"
    # Owned objects are written exactly as without everything.
    assert all(document in documents for document in own)

    adoption = [w for w in warnings if "owned copies" in w]
    assert len(adoption) == 1
    assert "'me:<clusterId>'" in adoption[0]
    assert "removed from Sōzu's configuration" in adoption[0]
    assert any("'them:default/api'" in w and "'them-default/api'" in w for w in warnings)

    # Applying it creates owned copies and removes nothing; the copied routes wait for the
    # originals to go.
    result = replan(text, live)
    assert not result.build.problems
    assert all(not isinstance(step.request, rq.RemoveCluster) for step in result.plan.steps)
    added = {
        step.request.cluster.cluster_id
        for step in result.plan.steps
        if isinstance(step.request, rq.AddCluster)
    }
    assert added == {"me:status-page", "me:them-default/api"}
    conflicts = {problem.key for problem in result.plan.problems}
    assert f"{HTTP};status.localhost;P/" in conflicts
    assert f"{HTTP};them.localhost;P" in conflicts


def test_everything_skips_a_copy_that_would_reuse_an_owned_cluster_id() -> None:
    live = merged(
        build([resource(sch.CLUSTER_KIND, "web", {})]),
        ProxyState.build(clusters=[Cluster("default/web")]),
    )
    text, warnings = export(live, everything=True)
    assert of_kind(load_exported(text), sch.CLUSTER_KIND) == {"default/web": {}}
    assert any("'default/web': skipped" in w and "'me:default/web'" in w for w in warnings)


# --- property: random owned states round-trip ----------------------------------------------------

NAMESPACES = ("default", "prod")
NAMES = ("web", "api", "db.main")
CLUSTER_IDS = ("shared", "Legacy_App.v2", "a/b/c", "default/web", "prod/api", "default/db.main")
HOSTS = ("example.com", "www.example.com", "*.example.com", "a.pool.test")
PATHS = (
    {"value": "/"}, {"kind": "PREFIX", "value": ""}, {"kind": "PREFIX", "value": "/api/"},
    {"kind": "EQUALS", "value": "/healthz"}, {"kind": "REGEX", "value": "^/v[0-9]+/"},
)
_text = st.text(max_size=12)
_line = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=12)


def _maybe(draw: st.DrawFn, spec: dict[str, Any], key: str, values: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        spec[key] = draw(values)


@st.composite
def cluster_specs(draw: st.DrawFn, v2: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    _maybe(draw, spec, "clusterId", st.sampled_from(CLUSTER_IDS))
    algorithms = [a.name for a in LoadBalancing if v2 or a <= LoadBalancing.POWER_OF_TWO]
    _maybe(draw, spec, "loadBalancing", st.sampled_from(algorithms))
    _maybe(draw, spec, "loadMetric", st.sampled_from(["CONNECTIONS", "REQUESTS"]))
    _maybe(draw, spec, "stickySession", st.booleans())
    _maybe(draw, spec, "httpsRedirect", st.booleans())
    _maybe(draw, spec, "proxyProtocol", st.sampled_from(["EXPECT_HEADER", "RELAY_HEADER"]))
    _maybe(draw, spec, "answer503", _text)
    backend = st.fixed_dictionaries(
        {"address": st.sampled_from(["10.0.0.1:80", "10.0.0.2:80", "[::1]:8080"])},
        optional={
            "id": st.sampled_from(["b1", "b2", "10.0.0.2:80"]),
            "weight": st.integers(0, 1000),
            "backup": st.booleans(),
            "stickyId": st.sampled_from(["s1", "s2"]),
        },
    )
    _maybe(draw, spec, "backends", st.lists(backend, max_size=3, unique_by=lambda b: b["address"]))
    if v2:
        _maybe(draw, spec, "http2", st.booleans())
        _maybe(draw, spec, "answers", st.dictionaries(st.sampled_from(["404", "503"]), _text))
        _maybe(draw, spec, "httpsRedirectPort", st.integers(1, 65535))
        _maybe(draw, spec, "authorizedHashes", st.lists(_text.filter(bool), unique=True,
                                                        max_size=2))
        _maybe(draw, spec, "wwwAuthenticate", _text)
        _maybe(draw, spec, "maxConnectionsPerIp", st.integers(0, 2**63 - 1))
        _maybe(draw, spec, "retryAfter", st.integers(0, 2**32 - 1))
    return spec


@st.composite
def frontend_specs(draw: st.DrawFn, v2: bool) -> dict[str, Any]:
    protocol = draw(st.sampled_from(["HTTP", "HTTPS", "TCP"]))
    spec: dict[str, Any] = {"cluster": draw(st.sampled_from([*NAMES, "missing"]))}
    tags = st.dictionaries(st.sampled_from(["team", "tier", "note"]), _text, max_size=2)
    _maybe(draw, spec, "tags", tags)
    if protocol == "TCP":
        return {**spec, "protocol": "TCP", "address": TCP}
    if protocol == "HTTPS" or draw(st.booleans()):
        spec["protocol"] = protocol  # HTTP is the default
    spec["address"] = HTTP if protocol == "HTTP" else draw(st.sampled_from([HTTPS, HTTPS_2]))
    spec["hostname"] = draw(st.sampled_from(HOSTS))
    _maybe(draw, spec, "path", st.sampled_from(PATHS))
    _maybe(draw, spec, "method", st.sampled_from(["GET", "POST"]))
    _maybe(draw, spec, "position", st.sampled_from(["PRE", "POST", "TREE"]))
    if v2:
        _maybe(draw, spec, "redirect", st.sampled_from(["FORWARD", "PERMANENT", "FOUND"]))
        _maybe(draw, spec, "requiredAuth", st.booleans())
        _maybe(draw, spec, "redirectScheme", st.sampled_from(["USE_SAME", "USE_HTTPS"]))
        _maybe(draw, spec, "redirectTemplate", _text)
        _maybe(draw, spec, "rewriteHost", _text)
        _maybe(draw, spec, "rewritePath", _text)
        _maybe(draw, spec, "rewritePort", st.integers(1, 65535))
        header = st.fixed_dictionaries(
            {"key": st.sampled_from(["X-A", "X-B"]), "value": _line},
            optional={"position": st.sampled_from(["REQUEST", "RESPONSE", "BOTH"])},
        )
        _maybe(draw, spec, "headers", st.lists(header, max_size=2))
    return spec


@st.composite
def certificate_specs(draw: st.DrawFn) -> dict[str, Any]:
    pem, key = pem_pair(draw(st.sampled_from(["a", "b"])))
    addresses = draw(st.lists(st.sampled_from([HTTPS, HTTPS_2]), min_size=1, unique=True))
    spec: dict[str, Any] = {"addresses": addresses, "certificate": pem, "key": key}
    _maybe(draw, spec, "chain", st.just([pem_pair("chain")[0]]))
    _maybe(draw, spec, "names", st.lists(st.sampled_from(HOSTS), min_size=1, unique=True))
    _maybe(draw, spec, "versions", st.lists(st.sampled_from(sch.TLS_VERSIONS), unique=True))
    return spec


@st.composite
def owned_worlds(draw: st.DrawFn) -> tuple[int, list[Any]]:
    """Resources of all three kinds, in two namespaces, with frequent conflicts (which the
    builder settles), and the Sōzu version they are built for."""
    sozu_version = draw(st.sampled_from([1, 2]))
    v2 = sozu_version == 2
    refs = st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(NAMES))
    found: list[Any] = []
    clusters = draw(st.lists(refs, max_size=4, unique=True))
    for namespace, name in clusters:
        found.append(resource(sch.CLUSTER_KIND, name, draw(cluster_specs(v2)), namespace))
    for namespace, name in draw(st.lists(refs, max_size=6, unique=True)):
        spec = draw(frontend_specs(v2))
        # Mostly a cluster that exists in the frontend's namespace, so that routes get built.
        here = [cluster for ns, cluster in clusters if ns == namespace]
        if here and draw(st.integers(0, 4)) > 0:
            spec["cluster"] = draw(st.sampled_from(here))
        found.append(resource(sch.FRONTEND_KIND, name, spec, namespace))
    for namespace, name in draw(st.lists(refs, max_size=3, unique=True)):
        found.append(resource(sch.CERTIFICATE_KIND, name, draw(certificate_specs()), namespace))
    return sozu_version, found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(owned_worlds())
def test_random_owned_states_round_trip(world: tuple[int, list[Any]]) -> None:
    sozu_version, resources = world
    live = build(resources, sozu_version=sozu_version)

    text, warnings = export(live, sozu_version=sozu_version)
    assert [w for w in warnings if "private keys" not in w] == []
    documents = load_exported(text, sozu_version=sozu_version)
    assert_round_trip(replan(text, live, sozu_version=sozu_version), live)

    without, _ = export(live, include_keys=False, sozu_version=sozu_version)
    assert "PRIVATE KEY" not in without
    secrets = tls_secrets(documents)
    assert_round_trip(replan(without + secrets, live, sozu_version=sozu_version), live)
