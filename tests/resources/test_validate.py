"""parse_resource: every field error names its resource and its path, and valid specs parse to
the typed models with the schema's defaults."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from tests.certs import make_certificate

from sozu_operator.proxy.model import (
    Header,
    HeaderPosition,
    ListenerType,
    LoadBalancing,
    PathRuleKind,
    RulePosition,
    SocketAddress,
    TlsVersion,
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
    PathSpec,
    ResourceRef,
    SecretRef,
    ServiceRef,
)
from sozu_operator.resources.validate import (
    INTERNAL_ERROR,
    format_path,
    parse_resource,
    resource_ref,
)

CERT, KEY = make_certificate(["example.com"])
DROP = object()  # a spec value meaning "remove this key"


def _obj(kind: str, base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    for key, value in changes.items():
        if value is DROP:
            spec.pop(key, None)
        else:
            spec[key] = value
    return {
        "apiVersion": sch.API_VERSION,
        "kind": kind,
        "metadata": {"name": "web", "namespace": "default"},
        "spec": spec,
    }


def cluster(**changes: Any) -> dict[str, Any]:
    return _obj(sch.CLUSTER_KIND, {"backends": [{"address": "10.0.0.1:80"}]}, changes)


def frontend(**changes: Any) -> dict[str, Any]:
    base = {"cluster": "web", "address": "0.0.0.0:8080", "hostname": "example.com"}
    return _obj(sch.FRONTEND_KIND, base, changes)


def tcp_frontend(**changes: Any) -> dict[str, Any]:
    base = {"cluster": "db", "protocol": "TCP", "address": "0.0.0.0:5432"}
    return _obj(sch.FRONTEND_KIND, base, changes)


def certificate(**changes: Any) -> dict[str, Any]:
    base = {"addresses": ["0.0.0.0:8443"], "certificate": CERT, "key": KEY}
    return _obj(sch.CERTIFICATE_KIND, base, changes)


def errors(obj: object, *, sozu_version: int | None = None) -> dict[str, list[str]]:
    result = parse_resource(obj, sozu_version=sozu_version)
    assert isinstance(result, Invalid), f"expected errors, got {result}"
    found: dict[str, list[str]] = {}
    for error in result.errors:
        assert error.ref == result.ref
        assert INTERNAL_ERROR not in error.message
        found.setdefault(error.path, []).append(error.message)
    return found


def parsed(obj: object, *, sozu_version: int | None = None) -> Parsed:
    result = parse_resource(obj, sozu_version=sozu_version)
    assert isinstance(result, Parsed), "\n".join(map(str, getattr(result, "errors", ())))
    return result


# (object, path, fragment of the message at that path)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # --- SozuCluster
    ("no port", cluster(backends=[{"address": "10.0.0.1:80"}, {"address": "10.0.0.1"}]),
     "spec.backends[1].address", "'10.0.0.1' is not an address of the form IP:PORT"),
    ("hostname as backend", cluster(backends=[{"address": "db.local:5432"}]),
     "spec.backends[0].address", "does not start with an IP address"),
    ("unbracketed ipv6", cluster(backends=[{"address": "::1:80"}]),
     "spec.backends[0].address", "must be written in brackets"),
    ("port zero", cluster(backends=[{"address": "10.0.0.1:0"}]),
     "spec.backends[0].address", "port 0"),
    ("port too big", cluster(backends=[{"address": "10.0.0.1:70000"}]),
     "spec.backends[0].address", "70000"),
    ("same address twice", cluster(backends=[{"address": "10.0.0.1:80"}] * 2),
     "spec.backends[1].address", "duplicates spec.backends[0]"),
    ("same address spelled twice",
     cluster(backends=[{"address": "[::1]:80"}, {"address": "[0:0::1]:80"}]),
     "spec.backends[1].address", "written differently"),
    ("missing address", cluster(backends=[{"weight": 1}]),
     "spec.backends[0].address", "is required"),
    ("negative weight", cluster(backends=[{"address": "10.0.0.1:80", "weight": -1}]),
     "spec.backends[0].weight", "at least 0"),
    ("weight as text", cluster(backends=[{"address": "10.0.0.1:80", "weight": "10"}]),
     "spec.backends[0].weight", "must be an integer, got a string"),
    ("same explicit id",
     cluster(backends=[{"address": "10.0.0.1:80", "id": "a"},
                       {"address": "10.0.0.2:80", "id": "a"}]),
     "spec.backends[1].id", "is also used by spec.backends[0]"),
    ("id equal to another derived id",
     cluster(backends=[{"address": "10.0.0.1:80"},
                       {"address": "10.0.0.2:80", "id": "10.0.0.1:80"}]),
     "spec.backends[1].id", "is also used by"),
    ("sticky id with a space", cluster(backends=[{"address": "10.0.0.1:80", "stickyId": "a b"}]),
     "spec.backends[0].stickyId", "is not a sticky id"),
    ("backends not a list", cluster(backends={"address": "10.0.0.1:80"}),
     "spec.backends", "must be a list"),
    ("unknown field", cluster(backend=[]), "spec.backend", "unknown field"),
    ("unknown backend field", cluster(backends=[{"address": "10.0.0.1:80", "wieght": 1}]),
     "spec.backends[0].wieght", "unknown field"),
    ("bad algorithm", cluster(loadBalancing="FASTEST"),
     "spec.loadBalancing", "'FASTEST' is not one of ROUND_ROBIN"),
    ("bad metric", cluster(loadMetric="cpu"), "spec.loadMetric", "is not one of"),
    ("bad proxy protocol", cluster(proxyProtocol=True), "spec.proxyProtocol", "must be a string"),
    ("sticky as text", cluster(stickySession="yes"),
     "spec.stickySession", "must be a boolean, got a string"),
    ("cluster id with a space", cluster(clusterId="my cluster"),
     "spec.clusterId", "is not a cluster id"),
    ("cluster id empty", cluster(clusterId=""), "spec.clusterId", "is not a cluster id"),
    ("service and backends", cluster(service={"name": "web", "port": 80}),
     "spec.service", "set either backends or service, not both"),
    ("service port zero", cluster(backends=DROP, service={"name": "web", "port": 0}),
     "spec.service.port", "between 1 and 65535"),
    ("service port name uppercase", cluster(backends=DROP, service={"name": "web", "port": "HTTP"}),
     "spec.service.port", "is not a port name"),
    ("service port name too long",
     cluster(backends=DROP, service={"name": "web", "port": "a" * 16}),
     "spec.service.port", "at most 15"),
    ("service port boolean", cluster(backends=DROP, service={"name": "web", "port": True}),
     "spec.service.port", "must be an integer or a string"),
    ("service without name", cluster(backends=DROP, service={"port": 80}),
     "spec.service.name", "is required"),
    ("service bad namespace",
     cluster(backends=DROP, service={"name": "web", "port": 80, "namespace": "Prod"}),
     "spec.service.namespace", "is not a DNS label"),
    ("redirect port zero", cluster(httpsRedirectPort=0), "spec.httpsRedirectPort", "at least 1"),
    ("retry after negative", cluster(retryAfter=-5), "spec.retryAfter", "at least 0"),
    ("class name uppercase", cluster(className="Fleet"), "spec.className", "DNS subdomain"),
    # --- SozuFrontend
    ("no cluster", frontend(cluster=DROP), "spec.cluster", "is required"),
    ("no address", frontend(address=DROP), "spec.address", "is required"),
    ("bad address", frontend(address="0.0.0.0"), "spec.address", "is not an address"),
    ("bad protocol", frontend(protocol="UDP"), "spec.protocol", "is not one of HTTP, HTTPS, TCP"),
    ("uppercase hostname", frontend(hostname="Example.com"), "spec.hostname", "lowercase DNS"),
    ("hostname with port", frontend(hostname="example.com:80"), "spec.hostname", "DNS name"),
    ("hostname label too long", frontend(hostname="a" * 64 + ".com"),
     "spec.hostname", "longer than 63"),
    ("wildcard in the middle", frontend(hostname="a.*.com"), "spec.hostname", "DNS name"),
    ("http without hostname", frontend(hostname=DROP),
     "spec.hostname", "HTTP and HTTPS frontends need a hostname"),
    ("tcp with hostname", tcp_frontend(hostname="example.com"),
     "spec.hostname", "TCP frontends have no hostname"),
    ("tcp with path", tcp_frontend(path={"value": "/"}), "spec.path", "TCP frontends have no path"),
    ("tcp with method", tcp_frontend(method="GET"), "spec.method", "TCP frontends have no method"),
    ("tcp with position", tcp_frontend(position="PRE"),
     "spec.position", "TCP frontends have no position"),
    ("tcp with a 2.x field", tcp_frontend(rewritePort=80),
     "spec.rewritePort", "TCP frontends have no rewritePort"),
    ("regex does not compile", frontend(path={"kind": "REGEX", "value": "(unclosed"}),
     "spec.path.value", "is not a valid regex"),
    ("regex with look-ahead", frontend(path={"kind": "REGEX", "value": "/a(?=b)"}),
     "spec.path.value", "no look-around"),
    ("regex with backreference", frontend(path={"kind": "REGEX", "value": r"/(a)\1"}),
     "spec.path.value", "backreferences"),
    ("prefix without slash", frontend(path={"value": "api"}),
     "spec.path.value", "starts with '/'"),
    ("equals without slash", frontend(path={"kind": "EQUALS", "value": "api"}),
     "spec.path.value", "starts with '/'"),
    ("path without value", frontend(path={"kind": "PREFIX"}), "spec.path.value", "is required"),
    ("bad path kind", frontend(path={"kind": "GLOB", "value": "/"}),
     "spec.path.kind", "is not one of PREFIX, REGEX, EQUALS"),
    ("lowercase method", frontend(method="get"), "spec.method", "uppercase HTTP method"),
    ("bad position", frontend(position="MIDDLE"), "spec.position", "is not one of PRE, POST, TREE"),
    ("reserved tag", frontend(tags={"sozu.io/owner": "me"}),
     "spec.tags", "reserved for ownership markers"),
    ("other reserved tag", frontend(tags={"sozu.io/anything": "x"}), "spec.tags", "reserved"),
    ("tag value not text", frontend(tags={"team-a": 1}),
     "spec.tags['team-a']", "must be a string"),
    ("too many tags", frontend(tags={f"k{i}": "v" for i in range(40)}),
     "spec.tags", "more than 32 entries"),
    ("header name with space", frontend(headers=[{"key": "X Bad", "value": "1"}]),
     "spec.headers[0].key", "HTTP header name"),
    ("header value with newline", frontend(headers=[{"key": "X-A", "value": "1\r\nX-B: 2"}]),
     "spec.headers[0].value", "single line"),
    ("rewrite port too big", frontend(rewritePort=70000), "spec.rewritePort", "at most 65535"),
    ("bad redirect", frontend(redirect="MOVED"), "spec.redirect", "is not one of FORWARD"),
    ("cluster name uppercase", frontend(cluster="Web"), "spec.cluster", "DNS subdomain"),
    # --- SozuCertificate
    ("neither inline nor secret", certificate(certificate=DROP, key=DROP),
     "spec", "set exactly one of certificate (inline PEM) or secretRef"),
    ("inline and secret", certificate(secretRef={"name": "tls"}), "spec", "exactly one"),
    ("inline without key", certificate(key=DROP), "spec.key", "key is required"),
    ("secret with key", certificate(certificate=DROP, secretRef={"name": "tls"}),
     "spec.key", "not allowed with secretRef"),
    ("secret with chain", certificate(certificate=DROP, key=DROP, secretRef={"name": "tls"},
                                      chain=[CERT]),
     "spec.chain", "inline certificate only"),
    ("certificate not PEM", certificate(certificate="MIIB..."),
     "spec.certificate", "does not look like PEM"),
    ("key given as certificate", certificate(key=CERT), "spec.key", "PRIVATE KEY"),
    ("chain entry not PEM", certificate(chain=[CERT, "garbage"]),
     "spec.chain[1]", "does not look like PEM"),
    ("no addresses", certificate(addresses=[]), "spec.addresses", "at least 1 item"),
    ("addresses missing", certificate(addresses=DROP), "spec.addresses", "is required"),
    ("bad listener address", certificate(addresses=["0.0.0.0:8443", "0.0.0.0"]),
     "spec.addresses[1]", "is not an address"),
    ("same listener twice", certificate(addresses=["0.0.0.0:8443", "0.0.0.0:8443"]),
     "spec.addresses[1]", "duplicates spec.addresses[0]"),
    ("bad SNI name", certificate(names=["example.com", "under_score.com"]),
     "spec.names[1]", "lowercase DNS name"),
    ("SNI name twice", certificate(names=["example.com", "example.com"]),
     "spec.names[1]", "duplicates"),
    ("old TLS version", certificate(versions=["TLS_V1_0"]),
     "spec.versions[0]", "is not one of TLS_V1_2, TLS_V1_3"),
    ("bad secret name", certificate(certificate=DROP, key=DROP, secretRef={"name": "TLS!"}),
     "spec.secretRef.name", "DNS subdomain"),
    ("secret without name", certificate(certificate=DROP, key=DROP, secretRef={}),
     "spec.secretRef.name", "is required"),
]


@pytest.mark.parametrize(("obj", "path", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_field_error(obj: dict[str, Any], path: str, fragment: str) -> None:
    found = errors(obj)
    assert path in found, f"no error at {path}; got {found}"
    assert any(fragment in message for message in found[path]), found[path]


def test_error_text_names_resource_path_and_value() -> None:
    result = parse_resource(cluster(backends=[{"address": "10.0.0.2:80"},
                                              {"address": "10.0.0.1"}]))
    assert isinstance(result, Invalid)
    (error,) = result.errors
    assert str(error).startswith(
        "SozuCluster default/web: spec.backends[1].address: "
        "'10.0.0.1' is not an address of the form IP:PORT"
    )


def test_one_message_per_problem() -> None:
    # The schema's pattern error and the semantic one describe the same fault: keep one.
    found = errors(frontend(address="nowhere"))
    assert len(found["spec.address"]) == 1


def test_all_errors_reported_at_once() -> None:
    found = errors(frontend(cluster=DROP, address="x", method="get", position="UP"))
    assert {"spec.cluster", "spec.address", "spec.method", "spec.position"} <= set(found)


# --- object level ---------------------------------------------------------------------------


def test_wrong_api_version() -> None:
    obj = cluster()
    obj["apiVersion"] = "v1"
    assert "must be sozu.io/v1alpha1" in errors(obj)["apiVersion"][0]


def test_unserved_version_of_our_group() -> None:
    obj = cluster()
    obj["apiVersion"] = "sozu.io/v1"
    assert "is not served" in errors(obj)["apiVersion"][0]


def test_unknown_kind() -> None:
    obj = cluster()
    obj["kind"] = "SozuListener"
    assert "is not one of SozuCluster" in errors(obj)["kind"][0]


@pytest.mark.parametrize(
    ("metadata", "path", "fragment"),
    [
        ({"namespace": "default"}, "metadata.name", "is required"),
        ({"name": "Web"}, "metadata.name", "DNS subdomain"),
        ({"name": 3}, "metadata.name", "must be a string"),
        ({"name": "web", "namespace": "a.b"}, "metadata.namespace", "DNS label"),
        ({"name": "web", "generation": -1}, "metadata.generation", "non-negative"),
        ({"name": "web", "creationTimestamp": "yesterday"}, "metadata.creationTimestamp",
         "RFC 3339"),
        ({"name": "web", "creationTimestamp": "2024-01-01T00:00:00"},
         "metadata.creationTimestamp", "RFC 3339"),  # no zone: not RFC 3339
    ],
)
def test_metadata_errors(metadata: dict[str, Any], path: str, fragment: str) -> None:
    obj = cluster()
    obj["metadata"] = metadata
    found = errors(obj)
    assert any(fragment in message for message in found[path]), found


def test_missing_metadata_and_spec() -> None:
    found = errors({"apiVersion": sch.API_VERSION, "kind": sch.FRONTEND_KIND})
    assert found["metadata"] == ["is required"]
    assert found["spec"] == ["is required"]


def test_not_an_object() -> None:
    result = parse_resource(["SozuCluster"])
    assert isinstance(result, Invalid)
    assert str(result.errors[0]).startswith("(unknown kind) default/(no name): must be an object")


def test_values_that_are_not_json() -> None:
    obj = cluster()
    obj["spec"]["backends"][0]["weight"] = math.nan
    obj["spec"][3] = "int key"
    obj["spec"]["answer503"] = b"bytes"
    found = errors(obj)
    assert "not a finite number" in found["spec.backends[0].weight"][0]
    assert "keys must be strings" in found["spec"][0]
    assert "unsupported value of type bytes" in found["spec.answer503"][0]


def test_deep_nesting_is_refused_not_crashed() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    found = errors(cluster(answers={"503": deep}))
    assert any("nested more than" in m for ms in found.values() for m in ms)


def test_resource_ref_of_garbage() -> None:
    assert resource_ref(None) == ResourceRef("(unknown kind)", "default", "(no name)")
    ref = resource_ref({"kind": "SozuFrontend", "metadata": {"name": "a", "namespace": 5}})
    assert str(ref) == "SozuFrontend (invalid namespace)/a"


def test_format_path() -> None:
    assert format_path(("spec", "backends", 1, "address")) == "spec.backends[1].address"
    assert format_path(("spec", "tags", "sozu.io/owner")) == "spec.tags['sozu.io/owner']"


def test_field_error_without_path() -> None:
    ref = ResourceRef("SozuFrontend", "default", "web")
    assert str(FieldError(ref, "", "is defined 2 times")) == "SozuFrontend default/web: is " \
        "defined 2 times"
    assert str(ref) == "SozuFrontend default/web"


# --- Sōzu 1.0 targets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        (cluster(http2=True), "spec.http2"),
        (cluster(answers={"503": "down"}), "spec.answers"),
        (cluster(httpsRedirectPort=8443), "spec.httpsRedirectPort"),
        (cluster(authorizedHashes=["abc"]), "spec.authorizedHashes"),
        (cluster(wwwAuthenticate="realm"), "spec.wwwAuthenticate"),
        (cluster(maxConnectionsPerIp=10), "spec.maxConnectionsPerIp"),
        (cluster(retryAfter=10), "spec.retryAfter"),
        (cluster(loadBalancing="MAGLEV"), "spec.loadBalancing"),
        (cluster(loadBalancing="HRW"), "spec.loadBalancing"),
        (frontend(redirect="PERMANENT"), "spec.redirect"),
        (frontend(requiredAuth=True), "spec.requiredAuth"),
        (frontend(redirectScheme="USE_HTTPS"), "spec.redirectScheme"),
        (frontend(redirectTemplate="https://x/"), "spec.redirectTemplate"),
        (frontend(rewriteHost="x"), "spec.rewriteHost"),
        (frontend(rewritePath="/x"), "spec.rewritePath"),
        (frontend(rewritePort=81), "spec.rewritePort"),
        (frontend(headers=[{"key": "X-A", "value": "1"}]), "spec.headers"),
    ],
)
def test_v2_only_fields_refused_for_sozu_1(obj: dict[str, Any], path: str) -> None:
    found = errors(obj, sozu_version=1)
    assert list(found) == [path]
    assert "Sōzu 2.x" in found[path][0]
    assert "Sōzu 1.x" in found[path][0]
    parsed(obj, sozu_version=2)
    parsed(obj)  # no target given: version-independent validation only


def test_v1_fields_fine_on_sozu_1() -> None:
    parsed(cluster(loadBalancing="POWER_OF_TWO", loadMetric="REQUESTS"), sozu_version=1)
    parsed(certificate(), sozu_version=1)


# --- successful parses ---------------------------------------------------------------------


def test_cluster_spec() -> None:
    obj = cluster(
        backends=[
            {"address": "10.0.0.2:8080", "weight": 10, "backup": True, "stickyId": "b"},
            {"address": "[::1]:80", "id": "local"},
        ],
        stickySession=True,
        loadMetric="REQUESTS",
        proxyProtocol="SEND_HEADER",
        answer503="HTTP/1.1 503 Busy\r\n\r\n",
        className="edge",
    )
    obj["metadata"].update(generation=3, uid="u-1", creationTimestamp="2024-05-01T10:00:00Z")
    result = parsed(obj)
    spec = result.spec
    assert isinstance(spec, ClusterSpec)
    assert spec.cluster_id == "default/web"
    assert spec.load_balancing is LoadBalancing.ROUND_ROBIN
    assert spec.sticky_session is True
    assert spec.class_name == "edge"
    assert spec.backends == (
        BackendSpec(SocketAddress.parse("10.0.0.2:8080"), None, 10, True, "b"),
        BackendSpec(SocketAddress.parse("[::1]:80"), "local"),
    )
    assert [b.backend_id for b in spec.backends] == ["10.0.0.2:8080", "local"]
    assert result.meta.generation == 3
    assert result.meta.created is not None
    assert result.meta.created.year == 2024


def test_cluster_service_defaults_to_own_namespace() -> None:
    obj = cluster(backends=DROP, service={"name": "web", "port": "http"}, clusterId="shop")
    obj["metadata"]["namespace"] = "prod"
    spec = parsed(obj).spec
    assert isinstance(spec, ClusterSpec)
    assert spec.service == ServiceRef("web", "http", "prod")
    assert spec.cluster_id == "shop"
    assert spec.backends == ()


def test_frontend_defaults() -> None:
    result = parsed(frontend())
    assert result.ref == ResourceRef("SozuFrontend", "default", "web")
    assert result.spec == FrontendSpec(
        cluster="web",
        address=SocketAddress.parse("0.0.0.0:8080"),
        protocol=ListenerType.HTTP,
        hostname="example.com",
        path=PathSpec(PathRuleKind.PREFIX, ""),
        position=RulePosition.TREE,
    )


def test_frontend_full() -> None:
    spec = parsed(
        frontend(
            protocol="HTTPS",
            hostname="*.example.com",
            path={"kind": "REGEX", "value": "^/api/v[0-9]+/"},
            method="PATCH",
            position="PRE",
            tags={"team": "a", "app.kubernetes.io/name": "x"},
            headers=[{"key": "X-Frame-Options", "value": "DENY", "position": "RESPONSE"}],
        )
    ).spec
    assert isinstance(spec, FrontendSpec)
    assert spec.protocol is ListenerType.HTTPS
    assert spec.path == PathSpec(PathRuleKind.REGEX, "^/api/v[0-9]+/")
    assert spec.tags == (("app.kubernetes.io/name", "x"), ("team", "a"))
    assert spec.headers == (Header(HeaderPosition.RESPONSE, "X-Frame-Options", "DENY"),)


def test_tcp_frontend() -> None:
    spec = parsed(tcp_frontend(tags={"db": "main"})).spec
    assert isinstance(spec, FrontendSpec)
    assert spec.protocol is ListenerType.TCP
    assert spec.hostname is None
    assert spec.path is None


def test_certificate_inline_and_secret() -> None:
    spec = parsed(certificate(names=["example.com"], versions=["TLS_V1_3"], chain=[CERT])).spec
    assert isinstance(spec, CertificateSpec)
    assert spec.inline is not None
    assert spec.inline.key == KEY
    assert spec.inline.chain == (CERT,)
    assert spec.versions == (TlsVersion.TLS_V1_3,)
    assert "KEY" not in repr(spec.inline)  # never print keys

    obj = certificate(certificate=DROP, key=DROP, secretRef={"name": "web-tls"})
    obj["metadata"]["namespace"] = "shop"
    spec = parsed(obj).spec
    assert isinstance(spec, CertificateSpec)
    assert spec.secret_ref == SecretRef("web-tls", "shop")
    assert spec.inline is None


def test_namespace_defaults_to_default() -> None:
    obj = frontend()
    del obj["metadata"]["namespace"]
    assert parsed(obj).ref.namespace == "default"


def test_integral_floats_count_as_integers() -> None:
    spec = parsed(cluster(backends=[{"address": "10.0.0.1:80", "weight": 5.0}])).spec
    assert isinstance(spec, ClusterSpec)
    assert spec.backends[0].weight == 5


def test_status_is_ignored() -> None:
    obj = cluster()
    obj["status"] = {"anything": ["goes"]}
    parsed(obj)


def test_parse_does_not_mutate_its_input() -> None:
    obj = frontend(tags={"a": "b"})
    before = copy.deepcopy(obj)
    parse_resource(obj)
    assert obj == before


def test_messages_stay_short_for_huge_values() -> None:
    huge = "a" * 100_000
    found = errors(frontend(address=huge, hostname=huge, cluster=huge))
    assert all(len(message) <= 300 for messages in found.values() for message in messages)
    assert any("at most 253 characters" in m for m in found["spec.hostname"])
    assert any("longer than 63" in m for m in found["spec.hostname"])
