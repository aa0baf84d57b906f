"""build_desired: markers, attribution, and per-resource exclusion that never spreads."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import pytest
from tests.certs import make_certificate

from sozu_operator.proxy import certificates as certs
from sozu_operator.proxy.model import (
    HttpListener,
    HttpsListener,
    LoadBalancing,
    SocketAddress,
    TcpListener,
)
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.desired import (
    DesiredBuild,
    ResolutionError,
    build_desired,
    split_certificates,
)
from sozu_operator.resources import schema as sch
from sozu_operator.resources.models import (
    BackendSpec,
    Parsed,
    ResourceRef,
    SecretRef,
    ServiceRef,
    TlsMaterial,
)
from sozu_operator.resources.validate import parse_resource

OWNER = "test"
NOW = datetime.datetime(2030, 6, 1, tzinfo=datetime.UTC)
HTTP = SocketAddress.parse("0.0.0.0:8080")
HTTPS = SocketAddress.parse("0.0.0.0:8443")
TCP = SocketAddress.parse("0.0.0.0:5432")
LISTENERS = {
    (listener.kind, listener.address): listener
    for listener in (HttpListener(HTTP), HttpsListener(HTTPS), TcpListener(TCP))
}


def _cert(names: Sequence[str], *, days: int = 365, start: datetime.datetime | None = None,
          common_name: str | None = None) -> tuple[str, str]:
    return make_certificate(list(names), days=days,
                            not_before=start or NOW - datetime.timedelta(days=1),
                            common_name=common_name)


CERT, KEY = _cert(["example.com", "www.example.com"])


def obj(kind: str, name: str, spec: dict[str, Any], *, namespace: str = "default",
        created: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if created is not None:
        metadata["creationTimestamp"] = created
    return {"apiVersion": sch.API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def cluster(name: str = "web", **spec: Any) -> dict[str, Any]:
    namespace = spec.pop("namespace", "default")
    created = spec.pop("created", None)
    spec.setdefault("backends", [{"address": "10.0.0.1:80"}])
    return obj(sch.CLUSTER_KIND, name, spec, namespace=namespace, created=created)


def frontend(name: str = "web", **spec: Any) -> dict[str, Any]:
    namespace = spec.pop("namespace", "default")
    created = spec.pop("created", None)
    base = {"cluster": "web", "address": str(HTTP), "hostname": "example.com"}
    return obj(sch.FRONTEND_KIND, name, {**base, **spec}, namespace=namespace, created=created)


def certificate(name: str = "tls", **spec: Any) -> dict[str, Any]:
    namespace = spec.pop("namespace", "default")
    created = spec.pop("created", None)
    base: dict[str, Any] = {"addresses": [str(HTTPS)], "certificate": CERT, "key": KEY}
    return obj(sch.CERTIFICATE_KIND, name, {**base, **spec}, namespace=namespace, created=created)


def build(resources: Sequence[object], **kwargs: Any) -> DesiredBuild:
    kwargs.setdefault("owner", OWNER)
    kwargs.setdefault("sozu_version", 2)
    kwargs.setdefault("live_listeners", LISTENERS)
    kwargs.setdefault("now", NOW)
    return build_desired(resources, **kwargs)


def ref(kind: str, name: str, namespace: str = "default") -> ResourceRef:
    return ResourceRef(kind, namespace, name)


def problems(result: DesiredBuild, kind: str, name: str, namespace: str = "default"
             ) -> dict[str, str]:
    return {p.path: p.message for p in result.problems_for(ref(kind, name, namespace))}


CL, FE, CE = sch.CLUSTER_KIND, sch.FRONTEND_KIND, sch.CERTIFICATE_KIND


# --- markers and attribution ----------------------------------------------------------------


def test_markers_applied() -> None:
    tcp = frontend("db", protocol="TCP", address=str(TCP))
    del tcp["spec"]["hostname"]
    result = build([
        cluster(),
        frontend(tags={"team": "a"}),
        frontend("tls", protocol="HTTPS", address=str(HTTPS)),
        tcp,
        certificate(),
    ])
    assert result.problems == ()
    state = result.state
    assert list(state.clusters) == ["test:default/web"]
    (http,) = state.http_frontends.values()
    assert http.cluster_id == "test:default/web"
    assert dict(http.tags) == {
        "team": "a", ownership.OWNER_TAG: OWNER, ownership.RESOURCE_TAG: "default/web"
    }
    assert ownership.owns_frontend(OWNER, http)
    (tcp_frontend,) = state.tcp_frontends
    assert dict(tcp_frontend.tags)[ownership.RESOURCE_TAG] == "default/db"
    (cert,) = state.certificates.values()
    fingerprint = certs.fingerprint(CERT)
    assert cert.names == (
        "example.com", "www.example.com", ownership.certificate_marker(OWNER, fingerprint)
    )
    assert ownership.owns_certificate(OWNER, cert)
    assert ownership.served_names(cert) == ("example.com", "www.example.com")
    (backend,) = state.backends.values()
    assert backend.cluster_id == "test:default/web"
    assert backend.backend_id == "10.0.0.1:80"


def test_every_object_is_attributed() -> None:
    tcp = frontend("db", protocol="TCP", address=str(TCP))
    del tcp["spec"]["hostname"]
    result = build([cluster(), frontend(), frontend("tls", protocol="HTTPS",
                                                    address=str(HTTPS)), tcp, certificate()])
    state, sources = result.state, result.sources
    assert sources[("cluster", "test:default/web")] == ref(CL, "web")
    for backend in state.backends:
        assert sources[("backend", backend)] == ref(CL, "web")
    for http in state.http_frontends:
        assert sources[("http_frontend", http)] == ref(FE, "web")
    for https in state.https_frontends:
        assert sources[("https_frontend", https)] == ref(FE, "tls")
    for tcp_frontend in state.tcp_frontends:
        assert sources[("tcp_frontend", tcp_frontend)] == ref(FE, "db")
    for certificate_key in state.certificates:
        assert sources[("certificate", certificate_key)] == ref(CE, "tls")
    assert len(sources) == state.object_count
    assert result.certificates[ref(CE, "tls")].fingerprint == certs.fingerprint(CERT)


def test_state_is_accepted_by_sozu_state_machine() -> None:
    result = build([cluster(), frontend(), frontend("b", path={"value": "/b"}), certificate()])
    replay = result.state.to_config_state(sozu_version=2)
    assert set(replay.http_frontends) == set(result.state.http_frontends)


def test_backend_ids_do_not_depend_on_order() -> None:
    addresses = [{"address": f"10.0.0.{i}:80"} for i in range(1, 5)]
    first = build([cluster(backends=addresses)]).state
    second = build([cluster(backends=list(reversed(addresses)))]).state
    assert first.backends == second.backends


def test_parsed_resources_are_accepted_as_input() -> None:
    parsed = parse_resource(cluster())
    assert isinstance(parsed, Parsed)
    result = build([parsed, frontend()])
    assert result.problems == ()
    assert len(result.accepted) == 2


# --- conflicts ---------------------------------------------------------------------------------


def test_same_frontend_twice_lowest_name_wins() -> None:
    result = build([cluster(), frontend("b"), frontend("a")])
    assert ref(FE, "a") in result.accepted
    message = problems(result, FE, "b")["spec"]
    assert "SozuFrontend default/a" in message
    assert "0.0.0.0:8080;example.com;P" in message
    assert len(result.state.http_frontends) == 1


def test_conflict_across_namespaces_by_namespace_then_name() -> None:
    result = build([
        cluster(namespace="zeta"), frontend("a", namespace="zeta"),
        cluster(namespace="alpha"), frontend("z", namespace="alpha"),
    ])
    assert ref(FE, "z", "alpha") in result.accepted
    assert "SozuFrontend alpha/z" in problems(result, FE, "a", "zeta")["spec"]


def test_older_resource_wins_whatever_its_name() -> None:
    result = build([
        cluster(),
        frontend("a", created="2024-02-01T00:00:00Z"),
        frontend("z", created="2024-01-01T00:00:00Z"),
    ])
    assert ref(FE, "z") in result.accepted
    assert "created earlier" in problems(result, FE, "a")["spec"]


def test_resources_with_a_creation_time_win_over_files() -> None:
    result = build([cluster(), frontend("a"), frontend("z", created="2024-01-01T00:00:00Z")])
    assert ref(FE, "z") in result.accepted


def test_conflicts_respect_method_and_path() -> None:
    result = build([
        cluster(), frontend("a"), frontend("b", method="GET"), frontend("c", path={"value": "/x"}),
        frontend("d", protocol="HTTPS", address=str(HTTPS)),
    ])
    assert result.problems == ()


def test_cluster_id_conflict() -> None:
    result = build([cluster("a", clusterId="shared"), cluster("b", clusterId="shared")])
    assert "SozuCluster default/a" in problems(result, CL, "b")["spec.clusterId"]
    assert list(result.state.clusters) == ["test:shared"]


def test_frontend_of_a_losing_cluster_reports_why() -> None:
    result = build([cluster("a", clusterId="shared"), cluster("web", clusterId="shared"),
                    frontend()])
    message = problems(result, FE, "web")["spec.cluster"]
    assert "SozuCluster default/web is not programmed" in message
    assert "spec.clusterId" in message


def test_tcp_listener_taken_once() -> None:
    first = frontend("a", protocol="TCP", address=str(TCP))
    second = frontend("b", protocol="TCP", address=str(TCP))
    for item in (first, second):
        del item["spec"]["hostname"]
    result = build([cluster(), first, second])
    assert "SozuFrontend default/a" in problems(result, FE, "b")["spec.address"]
    assert len(result.state.tcp_frontends) == 1


def test_invalid_resource_does_not_win_a_conflict() -> None:
    result = build([cluster(), frontend("a", method="get"), frontend("b")])
    assert ref(FE, "b") in result.accepted
    assert "spec.method" in problems(result, FE, "a")


def test_same_resource_defined_twice_is_excluded() -> None:
    result = build([cluster(), frontend(), frontend(path={"value": "/other"})])
    assert "is defined 2 times" in problems(result, FE, "web")[""]
    assert result.state.http_frontends == {}
    assert ref(CL, "web") in result.accepted


# --- references and listeners ------------------------------------------------------------------


def test_missing_cluster() -> None:
    result = build([frontend(cluster="nope")])
    assert problems(result, FE, "web") == {
        "spec.cluster": "there is no SozuCluster 'nope' in namespace 'default'"
    }


def test_cluster_in_another_namespace_does_not_count() -> None:
    result = build([cluster(namespace="other"), frontend()])
    assert "no SozuCluster 'web' in namespace 'default'" in problems(result, FE, "web")[
        "spec.cluster"]


def test_frontend_of_an_invalid_cluster() -> None:
    result = build([cluster(loadBalancing="FASTEST"), frontend()])
    message = problems(result, FE, "web")["spec.cluster"]
    assert message.startswith("SozuCluster default/web is not programmed: spec.loadBalancing")


def test_missing_listener() -> None:
    result = build([cluster(), frontend(address="0.0.0.0:9999")])
    assert problems(result, FE, "web") == {
        "spec.address": "Sōzu has no HTTP listener at 0.0.0.0:9999"
    }


def test_listener_of_the_wrong_protocol() -> None:
    result = build([cluster(), frontend(protocol="HTTPS")])  # 8080 is an HTTP listener
    assert problems(result, FE, "web")["spec.address"] == (
        "Sōzu has no HTTPS listener at 0.0.0.0:8080"
    )


def test_unknown_listeners_skip_the_check() -> None:
    result = build([cluster(), frontend(address="0.0.0.0:9999")], live_listeners=None)
    assert result.problems == ()


def test_sozu_1_target_refuses_2x_cluster_and_its_frontends() -> None:
    result = build([cluster(http2=True), frontend(), cluster("ok"), frontend("ok", cluster="ok",
                                                                             hostname="ok.com")],
                   sozu_version=1)
    assert problems(result, CL, "web")["spec.http2"].startswith("only Sōzu 2.x")
    message = problems(result, FE, "web")["spec.cluster"]
    assert "SozuCluster default/web is not programmed: spec.http2" in message
    assert {ref(CL, "ok"), ref(FE, "ok")} <= set(result.accepted)


def test_sozu_1_target_refuses_2x_frontend_fields() -> None:
    result = build([cluster(), frontend(rewriteHost="x")], sozu_version=1)
    assert "spec.rewriteHost" in problems(result, FE, "web")
    assert build([cluster(), frontend(rewriteHost="x")], sozu_version=2).problems == ()
    assert build([cluster(loadBalancing="MAGLEV")], sozu_version=2).state.clusters[
        "test:default/web"].load_balancing is LoadBalancing.MAGLEV


# --- certificates ------------------------------------------------------------------------------


def test_expired_certificate() -> None:
    cert, key = _cert(["old.com"], days=10, start=NOW - datetime.timedelta(days=30))
    result = build([certificate(certificate=cert, key=key)])
    assert "expired at" in problems(result, CE, "tls")["spec.certificate"]
    assert result.state.certificates == {}


def test_not_yet_valid_certificate() -> None:
    cert, key = _cert(["new.com"], start=NOW + datetime.timedelta(days=2))
    result = build([certificate(certificate=cert, key=key)])
    assert "not valid before" in problems(result, CE, "tls")["spec.certificate"]


def test_key_mismatch() -> None:
    _, other_key = _cert(["example.com"])
    result = build([certificate(key=other_key)])
    assert problems(result, CE, "tls") == {
        "spec.key": "the private key does not match the certificate"
    }


def test_unreadable_key_and_certificate() -> None:
    bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    result = build([certificate(certificate=bad)])
    assert "not a valid PEM X.509 certificate" in problems(result, CE, "tls")["spec.certificate"]
    bad_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    result = build([certificate(key=bad_key)])
    assert "private key cannot be read" in problems(result, CE, "tls")["spec.key"]


def test_certificate_needs_an_https_listener() -> None:
    result = build([certificate(addresses=[str(HTTPS), str(HTTP)])])
    assert problems(result, CE, "tls") == {
        "spec.addresses[1]": "Sōzu has no HTTPS listener at 0.0.0.0:8080"
    }


def test_explicit_names_replace_derived_ones() -> None:
    result = build([certificate(names=["example.com"])])
    (cert,) = result.state.certificates.values()
    assert ownership.served_names(cert) == ("example.com",)


def test_derived_names_follow_the_target_version() -> None:
    cert, key = _cert(["a.example.com"], common_name="cn.example.com")
    v1 = build([certificate(certificate=cert, key=key)], sozu_version=1).state.certificates
    v2 = build([certificate(certificate=cert, key=key)], sozu_version=2).state.certificates
    assert ownership.served_names(next(iter(v1.values()))) == ("cn.example.com", "a.example.com")
    assert ownership.served_names(next(iter(v2.values()))) == ("a.example.com",)


def test_chain_is_split_one_certificate_per_entry() -> None:
    intermediate, _ = _cert(["ca.example"])
    root, _ = _cert(["root.example"])
    result = build([certificate(certificate=CERT + intermediate, chain=[root + intermediate])])
    (cert,) = result.state.certificates.values()
    assert cert.certificate.strip() == CERT.strip()
    assert [c.strip() for c in cert.certificate_chain] == [
        intermediate.strip(), root.strip(), intermediate.strip()
    ]
    assert split_certificates("no pem here") == []


def test_same_certificate_twice_on_one_listener() -> None:
    result = build([certificate("a"), certificate("b")])
    message = problems(result, CE, "b")["spec.certificate"]
    expected = "SozuCertificate default/a already serves the same certificate on 0.0.0.0:8443"
    assert expected in message


def test_shared_names_conflict_only_on_sozu_1() -> None:
    other, other_key = _cert(["www.example.com"])
    resources = [certificate("a"), certificate("b", certificate=other, key=other_key)]
    assert build(resources, sozu_version=2).problems == ()
    result = build(resources, sozu_version=1)
    message = problems(result, CE, "b")["spec.certificate"]
    assert "'www.example.com'" in message
    assert "evicts" in message


def test_certificate_on_two_listeners() -> None:
    second = SocketAddress.parse("[::]:8443")
    listeners = {**LISTENERS, (HttpsListener(second).kind, second): HttpsListener(second)}
    result = build([certificate(addresses=[str(HTTPS), str(second)])], live_listeners=listeners)
    assert {address for address, _ in result.state.certificates} == {HTTPS, second}


def test_https_route_without_a_certificate_gets_a_note() -> None:
    result = build([cluster(), frontend(protocol="HTTPS", address=str(HTTPS),
                                        hostname="other.com"), certificate()])
    assert result.problems == ()
    (note,) = result.notes
    assert note.path == "spec.hostname"
    assert "no SozuCertificate serves 'other.com' on 0.0.0.0:8443" in note.message
    covered = build([cluster(), frontend(protocol="HTTPS", address=str(HTTPS),
                                         hostname="www.example.com"), certificate()])
    assert covered.notes == ()


# --- resolvers ---------------------------------------------------------------------------------


def service_cluster(**spec: Any) -> dict[str, Any]:
    return cluster(backends=[], service={"name": "web", "port": "http"}, **spec)


def test_service_without_resolver_is_a_note() -> None:
    result = build([service_cluster(), frontend()])
    assert result.problems == ()
    assert [n.path for n in result.notes] == ["spec.service"]
    assert "resolved only by the operator" in result.notes[0].message
    assert result.unresolved == (ref(CL, "web"),)
    assert "test:default/web" in result.state.clusters
    assert result.state.backends == {}
    assert ref(FE, "web") in result.accepted


def test_service_resolver() -> None:
    seen: list[tuple[ResourceRef, ServiceRef]] = []

    def resolve(owner: ResourceRef, service: ServiceRef) -> list[BackendSpec]:
        seen.append((owner, service))
        return [
            BackendSpec(SocketAddress.parse("10.1.0.2:8080")),
            BackendSpec(SocketAddress.parse("10.1.0.1:8080")),
            BackendSpec(SocketAddress.parse("10.1.0.2:8080"), weight=5),  # listed twice
        ]

    result = build([service_cluster()], resolve_service=resolve)
    assert seen == [(ref(CL, "web"), ServiceRef("web", "http", "default"))]
    assert sorted(b.backend_id for b in result.state.backends.values()) == [
        "10.1.0.1:8080", "10.1.0.2:8080"
    ]
    assert result.unresolved == ()


def test_service_resolution_error_excludes_the_cluster() -> None:
    def resolve(owner: ResourceRef, service: ServiceRef) -> ResolutionError:
        return ResolutionError("Service default/web not found")

    result = build([service_cluster(), frontend()], resolve_service=resolve)
    assert problems(result, CL, "web") == {"spec.service": "Service default/web not found"}
    assert "Service default/web not found" in problems(result, FE, "web")["spec.cluster"]


def test_a_crashing_resolver_is_contained() -> None:
    def resolve(owner: ResourceRef, service: ServiceRef) -> list[BackendSpec]:
        raise RuntimeError("boom")

    result = build([service_cluster(), cluster("other")], resolve_service=resolve)
    assert "resolver failed: RuntimeError: boom" in problems(result, CL, "web")["spec.service"]
    assert ref(CL, "other") in result.accepted


def secret_certificate() -> dict[str, Any]:
    return certificate(certificate=None, key=None, secretRef={"name": "web-tls"})


def _without_nones(item: dict[str, Any]) -> dict[str, Any]:
    item["spec"] = {k: v for k, v in item["spec"].items() if v is not None}
    return item


def test_secret_without_resolver_is_a_note() -> None:
    result = build([_without_nones(secret_certificate())])
    assert result.problems == ()
    assert [n.path for n in result.notes] == ["spec.secretRef"]
    assert result.unresolved == (ref(CE, "tls"),)
    assert result.state.certificates == {}


def test_secret_resolver() -> None:
    def resolve(owner: ResourceRef, secret: SecretRef) -> TlsMaterial:
        assert secret == SecretRef("web-tls", "default")
        return TlsMaterial(certificate=CERT, key=KEY)

    result = build([_without_nones(secret_certificate())], resolve_secret=resolve)
    assert result.problems == ()
    assert len(result.state.certificates) == 1


def test_secret_errors_are_reported_at_secret_ref() -> None:
    def missing(owner: ResourceRef, secret: SecretRef) -> ResolutionError:
        return ResolutionError("Secret default/web-tls not found")

    result = build([_without_nones(secret_certificate())], resolve_secret=missing)
    assert problems(result, CE, "tls") == {"spec.secretRef": "Secret default/web-tls not found"}

    _, other_key = _cert(["x.com"])

    def mismatched(owner: ResourceRef, secret: SecretRef) -> TlsMaterial:
        return TlsMaterial(certificate=CERT, key=other_key)

    result = build([_without_nones(secret_certificate())], resolve_secret=mismatched)
    assert problems(result, CE, "tls") == {
        "spec.secretRef": "the private key does not match the certificate"
    }


# --- classes and isolation ----------------------------------------------------------------------


def test_class_selection() -> None:
    resources = [cluster("a", className="edge"), cluster("b", className="internal"),
                 cluster("c")]
    everything = build(resources)
    assert len(everything.accepted) == 3
    edge = build(resources, class_name="edge")
    assert edge.accepted == (ref(CL, "a"),)
    assert edge.ignored == (ref(CL, "b"), ref(CL, "c"))
    default = build(resources, class_name="edge", default_class=True)
    assert default.accepted == (ref(CL, "a"), ref(CL, "c"))


def test_invalid_resources_of_another_class_are_not_reported() -> None:
    result = build([cluster(className="other", loadBalancing="FASTEST")], class_name="edge")
    assert result.problems == ()
    assert result.ignored == (ref(CL, "web"),)


def test_garbage_never_blocks_valid_resources() -> None:
    garbage: list[object] = [None, 3, "x", [], {}, {"kind": "SozuFrontend"},
                             {"apiVersion": sch.API_VERSION, "kind": CE, "metadata": {"name": "g"},
                              "spec": {"addresses": "all"}}]
    alone = build([cluster(), frontend(), certificate()])
    mixed = build([*garbage, cluster(), frontend(), certificate()])
    assert mixed.state == alone.state
    assert set(alone.accepted) <= set(mixed.accepted)
    assert len({p.ref for p in mixed.problems}) >= 3


def test_bad_owner_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="owner"):
        build([], owner="Not Valid")
