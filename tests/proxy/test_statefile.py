"""The saved-state file: upstream samples, round trips, and error reporting.

The two sample files under tests/data/ are byte-exact upstream output: each was checked by
deserialising it into the Rust types prost-build generates from Sōzu's own command.proto (1.0.0
and 2.1.0, with the serde attributes of Sōzu's command/build.rs) and serialising it back with
serde_json, which gave the same bytes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    Header,
    HeaderPosition,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    ListenerType,
    LoadBalancing,
    LoadMetric,
    PathRule,
    PathRuleKind,
    ProxyProtocol,
    RedirectPolicy,
    RedirectScheme,
    RulePosition,
    SocketAddress,
    TcpFrontend,
    TcpListener,
    TlsVersion,
    pairs,
)
from sozu_operator.proxy.statefile import (
    RECORD_TERMINATOR,
    UPSTREAM_LOAD_BUFFER_BYTES,
    DroppedField,
    ParsedState,
    SkippedRecord,
    StateFileError,
    parse_state,
    render_state,
)

DATA = Path(__file__).resolve().parent.parent / "data"

# A throw-away self-signed certificate (example.com, www.example.com) and its key.
CERTIFICATE = """-----BEGIN CERTIFICATE-----
MIIBRDCB7KADAgECAgEBMAoGCCqGSM49BAMCMBYxFDASBgNVBAMMC2V4YW1wbGUu
Y29tMB4XDTI1MDEwMTAwMDAwMFoXDTQ1MDEwMTAwMDAwMFowFjEUMBIGA1UEAwwL
ZXhhbXBsZS5jb20wWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR4Yo+efujfKR8o
X2qLed/x3QjIzLa+7hoRwwh2bnwXarSHqnQpR+pAj4GYnWSdi38r8Zv4YKSRo/6/
31+qgj8voyswKTAnBgNVHREEIDAeggtleGFtcGxlLmNvbYIPd3d3LmV4YW1wbGUu
Y29tMAoGCCqGSM49BAMCA0cAMEQCIG0lZ8Vp43BKPu3EchnwtY41gvvL44GQi524
n933ikFbAiByXcge6mweQdAdgwQ9j1F0SEhMJJAup5bUq58SUuymyQ==
-----END CERTIFICATE-----
"""
PRIVATE_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgqyQjkgtcFW8WZy6c
BviDq6uOuzqJLFphFHxvSeZcK/ihRANCAAR4Yo+efujfKR8oX2qLed/x3QjIzLa+
7hoRwwh2bnwXarSHqnQpR+pAj4GYnWSdi38r8Zv4YKSRo/6/31+qgj8v
-----END PRIVATE KEY-----
"""


def addr(text: str) -> SocketAddress:
    return SocketAddress.parse(text)


def expected_sample(version: int) -> list[rq.Request]:
    """What the sample files hold, written out by hand; the 2.1 sample also sets 2.x fields.

    The order is the one Sōzu's `generate_requests` produces: listeners by address (each active
    one followed by its activation), clusters by id, HTTP frontends by key, certificates, HTTPS
    frontends, TCP frontends, backends by cluster id."""
    v2 = version == 2
    http80, http8080 = addr("0.0.0.0:80"), addr("127.0.0.1:8080")
    https443, tcp5432 = addr("[::]:443"), addr("0.0.0.0:5432")
    web = Cluster(
        "web",
        sticky_session=True,
        https_redirect=True,
        answer_503="HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    )
    root = HttpFrontend(
        http80, "example.com", cluster_id="web", tags=pairs({"owner": "team-a", "env": "prod"})
    )
    login = HttpFrontend(
        https443,
        "www.example.com",
        path=PathRule(PathRuleKind.EQUALS, "/login"),
        cluster_id="web",
        method="GET",
        position=RulePosition.POST,
        tags=pairs({"équipe": "ß"}),
    )
    if v2:
        web = Cluster(
            "web",
            sticky_session=True,
            https_redirect=True,
            answer_503=web.answer_503,
            http2=True,
            authorized_hashes=("admin:" + "ab" * 32,),
            www_authenticate="restricted",
        )
        root = HttpFrontend(
            http80,
            "example.com",
            cluster_id="web",
            tags=pairs({"owner": "team-a", "env": "prod"}),
            redirect=RedirectPolicy.PERMANENT,
            redirect_scheme=RedirectScheme.USE_HTTPS,
        )
        login = HttpFrontend(
            https443,
            "www.example.com",
            path=PathRule(PathRuleKind.EQUALS, "/login"),
            cluster_id="web",
            method="GET",
            position=RulePosition.POST,
            tags=pairs({"équipe": "ß"}),
            required_auth=True,
            headers=(
                Header(HeaderPosition.REQUEST, "X-Forwarded-Proto", "https"),
                Header(HeaderPosition.RESPONSE, "Server", ""),
            ),
        )
    return [
        rq.AddHttpListener(HttpListener(address=http80, active=True)),
        rq.ActivateListener(http80, ListenerType.HTTP),
        rq.AddHttpListener(
            HttpListener(
                address=http8080,
                public_address=addr("203.0.113.10:80"),
                expect_proxy=True,
                sticky_name="SOZU_LB",
                front_timeout=120,
                back_timeout=60,
                connect_timeout=5,
                request_timeout=20,
            )
        ),
        rq.AddHttpsListener(
            HttpsListener(
                address=https443,
                active=True,
                cipher_list=("TLS13_AES_256_GCM_SHA384", "TLS13_CHACHA20_POLY1305_SHA256"),
                signature_algorithms=("ECDSA+SHA256",),
                groups_list=("x25519", "P-256"),
            )
        ),
        rq.ActivateListener(https443, ListenerType.HTTPS),
        rq.AddTcpListener(TcpListener(address=tcp5432, active=True)),
        rq.ActivateListener(tcp5432, ListenerType.TCP),
        rq.AddCluster(
            Cluster(
                "db",
                proxy_protocol=ProxyProtocol.SEND_HEADER,
                load_balancing=LoadBalancing.LEAST_LOADED,
                load_metric=LoadMetric.CONNECTIONS,
            )
        ),
        rq.AddCluster(web),
        rq.AddHttpFrontend(
            HttpFrontend(
                http80,
                "admin.example.com",
                path=PathRule(PathRuleKind.REGEX, "^/internal/.*"),
                method="POST",
                position=RulePosition.PRE,
            )
        ),
        rq.AddHttpFrontend(root),
        rq.AddCertificate(
            https443,
            CertificateAndKey(CERTIFICATE, PRIVATE_KEY, names=("example.com", "www.example.com")),
        ),
        rq.AddHttpsFrontend(login),
        rq.AddTcpFrontend(TcpFrontend("db", tcp5432)),
        rq.AddBackend(Backend("db", "db-0", addr("10.0.0.2:5432"))),
        rq.AddBackend(
            Backend("web", "web-0", addr("10.0.0.1:8080"), sticky_id="web-0", weight=100)
        ),
        rq.AddBackend(Backend("web", "web-1", addr("[2001:db8::10]:8080"), backup=True)),
    ]


SAMPLES = [(1, "upstream-1.0-state.json"), (2, "upstream-2.1-state.json")]


def records(data: bytes) -> list[dict[str, Any]]:
    """The JSON records of a state file, for tests that edit one."""
    chunks = data.split(b"\0")
    assert chunks[-1] == b""
    return [json.loads(chunk) for chunk in chunks[:-1]]


def join(*items: dict[str, Any] | str) -> bytes:
    """A state file made of the given records (dicts are dumped compactly, strings kept)."""
    texts = [
        item if isinstance(item, str) else json.dumps(item, separators=(",", ":")) for item in items
    ]
    return b"".join(text.encode() + RECORD_TERMINATOR for text in texts)


def record(verb: str, payload: Any, record_id: str = "SAVE-0") -> dict[str, Any]:
    return {"id": record_id, "content": {"request_type": {verb: payload}}}


def sample_payload(version: int, index: int) -> tuple[str, dict[str, Any]]:
    """(verb, payload) of one record of a sample file."""
    data = (DATA / dict(SAMPLES)[version]).read_bytes()
    ((verb, payload),) = records(data)[index]["content"]["request_type"].items()
    return verb, payload


# --- the upstream samples ------------------------------------------------------------------


@pytest.mark.parametrize(("version", "name"), SAMPLES)
def test_sample_parses_to_the_expected_requests(version: int, name: str) -> None:
    parsed = parse_state((DATA / name).read_bytes(), source=name)
    assert parsed == ParsedState(tuple(expected_sample(version)))


@pytest.mark.parametrize(("version", "name"), SAMPLES)
def test_sample_re_renders_byte_identically(version: int, name: str) -> None:
    data = (DATA / name).read_bytes()
    assert render_state(parse_state(data).requests, version=version) == data  # type: ignore[arg-type]


def test_samples_differ_only_by_the_2x_keys() -> None:
    # A 1.0 file is a 2.1 file without the 2.x keys: the same requests render to the 1.0 sample.
    v1_requests = parse_state((DATA / "upstream-1.0-state.json").read_bytes()).requests
    v2_layout = render_state(v1_requests, version=2)
    for old, new in zip(
        records((DATA / "upstream-1.0-state.json").read_bytes()), records(v2_layout), strict=True
    ):
        ((verb, old_payload),) = old["content"]["request_type"].items()
        new_payload = new["content"]["request_type"][verb]
        assert list(old_payload) == [key for key in new_payload if key in old_payload]
        assert all(new_payload[key] == value for key, value in old_payload.items())


def test_sample_wire_facts() -> None:
    data = (DATA / "upstream-2.1-state.json").read_bytes()
    assert data.endswith(b"}}}}\n\0")
    assert data.count(RECORD_TERMINATOR) == len(expected_sample(2))
    # IPv6 as two u64 halves, `high` holding the first 8 bytes; non-ASCII written raw.
    assert b'"V6":{"low":16,"high":2306139568115548160}' in data
    assert '"tags":{"équipe":"ß"}'.encode() in data
    assert (
        b'"answer_503":"HTTP/1.1 503 Service Unavailable\\r\\nContent-Length: 0\\r\\n\\r\\n"'
        in data
    )


# --- tolerance of what Sōzu itself writes ----------------------------------------------------


def test_values_sozu_builders_write_for_unset_fields_are_accepted() -> None:
    # Sōzu's TOML loader and CLI fill these on listeners they build; they mean "not configured".
    verb, payload = sample_payload(2, 3)
    assert verb == "ADD_HTTPS_LISTENER"
    builder_shape = dict(payload)
    builder_shape["http_answers"] = dict.fromkeys(("answer_301", "answer_421", "answer_429"))
    builder_shape["alpn_protocols"] = ["h2", "http/1.1"]
    builder_shape["elide_x_real_ip"] = False
    builder_shape["send_x_real_ip"] = False
    builder_shape["strict_sni_binding"] = True
    builder_shape["disable_http11"] = False
    parsed = parse_state(join(record(verb, builder_shape)))
    assert parsed.requests == (expected_sample(2)[3],)


def test_older_records_with_missing_optional_and_repeated_fields_are_accepted() -> None:
    # The shape written by sozu-command-lib 1.1.1 (no 2.x keys, no `tags`), as in Sōzu's own
    # forward-compatibility test.
    cluster = {
        "cluster_id": "app-1",
        "sticky_session": False,
        "https_redirect": False,
        "proxy_protocol": None,
        "load_balancing": 0,
        "answer_503": None,
        "load_metric": 0,
    }
    backend = {
        "cluster_id": "app-1",
        "backend_id": "app-1-backend-0",
        "address": {"ip": {"inner": {"V4": 2130706433}}, "port": 8080},
    }
    parsed = parse_state(
        join(
            record("ADD_CLUSTER", cluster, "PROXY-MANAGER-1"),
            record("ADD_BACKEND", backend, "PROXY-MANAGER-2"),
        )
    )
    assert parsed.requests == (
        rq.AddCluster(Cluster("app-1", load_metric=LoadMetric.CONNECTIONS)),
        rq.AddBackend(Backend("app-1", "app-1-backend-0", addr("127.0.0.1:8080"))),
    )


def test_separators_and_tail_whitespace() -> None:
    text = json.dumps(record("REMOVE_CLUSTER", "a"))
    # Sōzu splits on \0 alone and lets JSON whitespace surround a record.
    assert parse_state(f"  {text}\0\n{text} \n\0\n\n".encode()).requests == (
        rq.RemoveCluster("a"),
        rq.RemoveCluster("a"),
    )
    assert parse_state(b"").requests == ()
    assert parse_state(b"\n  ").requests == ()


def test_ip_address_without_member_reads_as_unspecified_ipv4() -> None:
    payload = {"address": {"ip": {"inner": None}, "port": 80}, "proxy": 0, "from_scm": False}
    (request,) = parse_state(join(record("ACTIVATE_LISTENER", payload))).requests
    assert request == rq.ActivateListener(addr("0.0.0.0:80"), ListenerType.HTTP)


def test_unknown_fields_holding_nothing_are_ignored() -> None:
    payload: dict[str, Any] = {
        "cluster_id": "c",
        "backend_id": "b",
        "address": {"ip": {"inner": {"V4": 1}}, "port": 1},
    }
    payload |= {"from_the_future": None, "also_new": [], "and_this": {}}
    (request,) = parse_state(join(record("REMOVE_BACKEND", payload))).requests
    assert request == rq.RemoveBackend("c", "b", addr("0.0.0.1:1"))


# --- records and values we cannot carry ------------------------------------------------------


UDP_LISTENER = {
    "address": {"ip": {"inner": {"V4": 0}}, "port": 53},
    "public_address": None,
    "front_timeout": 30,
    "back_timeout": 30,
    "max_rx_datagram_size": 1500,
    "max_flows": 0,
    "active": True,
}
UDP_ACTIVATION = {
    "address": {"ip": {"inner": {"V4": 0}}, "port": 53},
    "proxy": 3,
    "from_scm": False,
}


def test_unmodelled_verb_is_refused_by_default() -> None:
    data = join(record("REMOVE_CLUSTER", "a"), record("ADD_UDP_LISTENER", UDP_LISTENER, "SAVE-1"))
    with pytest.raises(StateFileError) as caught:
        parse_state(data, source="saved.state")
    error = caught.value
    assert (error.source, error.index, error.record_id) == ("saved.state", 1, "SAVE-1")
    assert error.json_path == "content.request_type.ADD_UDP_LISTENER"
    message = str(error)
    assert message.startswith("saved.state: record 1 (id 'SAVE-1') at content.request_type.")
    assert "ADD_UDP_LISTENER is a Sōzu request this tool does not model" in message
    assert "ignore_unknown=True" in message


def test_unmodelled_records_are_skipped_and_reported_on_request() -> None:
    data = join(
        record("ADD_UDP_LISTENER", UDP_LISTENER, "SAVE-0"),
        record("ACTIVATE_LISTENER", UDP_ACTIVATION, "SAVE-1"),
        record("SET_HEALTH_CHECK", {"cluster_id": "a", "config": {}}, "SAVE-2"),
        record("NOT_A_VERB", {}, "SAVE-3"),
        {"id": "SAVE-4", "content": {"request_type": None}},
        record("REMOVE_CLUSTER", "a", "SAVE-5"),
    )
    parsed = parse_state(data, ignore_unknown=True)
    assert parsed.requests == (rq.RemoveCluster("a"),)
    assert [(s.index, s.record_id, s.verb) for s in parsed.skipped] == [
        (0, "SAVE-0", "ADD_UDP_LISTENER"),
        (1, "SAVE-1", "ACTIVATE_LISTENER"),
        (2, "SAVE-2", "SET_HEALTH_CHECK"),
        (3, "SAVE-3", "NOT_A_VERB"),
        (4, "SAVE-4", None),
    ]
    assert "UDP listener" in parsed.skipped[1].reason
    assert "not a request type" in parsed.skipped[3].reason
    assert isinstance(parsed.skipped[0], SkippedRecord)
    assert parsed.dropped == ()


def test_configured_unmodelled_field_is_refused_or_dropped() -> None:
    verb, payload = sample_payload(2, 0)
    payload["answers"] = {"404": "HTTP/1.1 404 Not Found\r\n\r\n"}
    payload["h2_max_concurrent_streams"] = 50
    data = join(record(verb, payload))
    with pytest.raises(StateFileError) as caught:
        parse_state(data)
    # The first one met, in field order.
    path = "content.request_type.ADD_HTTP_LISTENER.h2_max_concurrent_streams"
    assert caught.value.json_path == path
    assert "HTTP/2 tuning is not supported" in str(caught.value)

    parsed = parse_state(data, ignore_unknown=True)
    assert parsed.requests == (expected_sample(2)[0],)
    assert parsed.dropped == (
        DroppedField(
            0,
            "SAVE-0",
            "content.request_type.ADD_HTTP_LISTENER.h2_max_concurrent_streams",
            "HTTP/2 tuning is not supported by this tool",
        ),
        DroppedField(
            0,
            "SAVE-0",
            "content.request_type.ADD_HTTP_LISTENER.answers",
            "custom HTTP answers is not supported by this tool",
        ),
    )


@pytest.mark.parametrize(
    ("index", "key", "value", "path_end"),
    [
        (0, "http_answers", {"answer_404": "HTTP/1.1 404 Not Found\r\n\r\n"}, "http_answers"),
        (3, "alpn_protocols", ["h2"], "alpn_protocols"),
        (3, "hsts", {"enabled": True}, "hsts"),
        (7, "health_check", {"uri": "/health"}, "health_check"),
        (9, "hsts", {"enabled": True}, "hsts"),
        (0, "future_field", 7, "future_field"),
    ],
)
def test_each_uncarried_value_is_named(index: int, key: str, value: Any, path_end: str) -> None:
    verb, payload = sample_payload(2, index)
    payload[key] = value
    with pytest.raises(StateFileError) as caught:
        parse_state(join(record(verb, payload, f"SAVE-{index}")))
    assert caught.value.json_path == f"content.request_type.{verb}.{path_end}"
    assert caught.value.record_id == f"SAVE-{index}"


def test_dropped_fields_of_a_skipped_record_are_not_reported() -> None:
    data = join(record("ADD_UDP_FRONTEND", {"cluster_id": "u", "unknown": 1}))
    parsed = parse_state(data, ignore_unknown=True)
    assert parsed.dropped == ()
    assert len(parsed.skipped) == 1


# --- malformed files -------------------------------------------------------------------------


def failure(data: bytes) -> StateFileError:
    with pytest.raises(StateFileError) as caught:
        parse_state(data, source="s")
    return caught.value


def test_bad_json_names_the_record_and_the_byte() -> None:
    good = join(record("REMOVE_CLUSTER", "a"))
    error = failure(good + b'{"id":"SAVE-1","content":{\n\0')
    assert error.index == 1
    assert error.record_id is None
    assert str(error).startswith("s: record 1: invalid JSON (")
    assert f"at byte {len(good) + 27} of the file" in str(error)


@pytest.mark.parametrize(
    ("record_index", "mutate", "path", "reason"),
    [
        (0, lambda p: p.__setitem__("front_timeout", "60"), "front_timeout", "expected an integer"),
        (0, lambda p: p.__setitem__("front_timeout", 60.0), "front_timeout", "expected an integer"),
        (
            0,
            lambda p: p.__setitem__("front_timeout", 2**32),
            "front_timeout",
            "outside 0..4294967295",
        ),
        (0, lambda p: p.__setitem__("active", 1), "active", "expected true or false"),
        (0, lambda p: p.pop("sticky_name"), "sticky_name", "missing required field"),
        (0, lambda p: p.__setitem__("sticky_name", None), "sticky_name", "required field is null"),
        (0, lambda p: p["address"].__setitem__("port", 65536), "address.port", "0..65535"),
        (
            0,
            lambda p: p["address"]["ip"].__setitem__(
                "inner", {"V4": 1, "V6": {"low": 0, "high": 0}}
            ),
            "address.ip.inner",
            'exactly one of "V4" or "V6"',
        ),
        (
            0,
            lambda p: p["address"]["ip"]["inner"].__setitem__("V4", -1),
            "address.ip.inner.V4",
            "outside",
        ),
        (3, lambda p: p.__setitem__("versions", [4, 9]), "versions[1]", "9 is not a TlsVersion"),
        (
            3,
            lambda p: p.__setitem__("cipher_list", None),
            "cipher_list",
            "expected an array, got null",
        ),
        (
            3,
            lambda p: p.__setitem__("groups_list", ["x25519", 3]),
            "groups_list[1]",
            "expected a string",
        ),
        (
            7,
            lambda p: p.__setitem__("load_balancing", 9),
            "load_balancing",
            "not a LoadBalancing value",
        ),
        (10, lambda p: p["tags"].__setitem__("env", 1), 'tags["env"]', "expected a string"),
        (10, lambda p: p.__setitem__("tags", []), "tags", "expected an object"),
        (9, lambda p: p.__setitem__("path", "/"), "path", "expected a JSON object"),
        (9, lambda p: p["path"].__setitem__("kind", "PREFIX"), "path.kind", "expected an integer"),
        (12, lambda p: p["headers"][1].pop("val"), "headers[1].val", "missing required field"),
        (
            15,
            lambda p: p.__setitem__("load_balancing_parameters", {"weight": 2**31}),
            "load_balancing_parameters.weight",
            "outside",
        ),
        (
            11,
            lambda p: p["certificate"].__setitem__("names", "example.com"),
            "certificate.names",
            "expected an array",
        ),
    ],
)
def test_bad_field_names_record_id_and_path(
    record_index: int, mutate: Callable[[dict[str, Any]], object], path: str, reason: str
) -> None:
    verb, payload = sample_payload(2, record_index)
    mutate(payload)
    error = failure(join(record(verb, payload, f"SAVE-{record_index}")))
    assert (error.index, error.record_id) == (0, f"SAVE-{record_index}")
    assert error.json_path == f"content.request_type.{verb}.{path}"
    assert reason in error.reason
    assert str(error).startswith(f"s: record 0 (id 'SAVE-{record_index}') at content.request_type.")


@pytest.mark.parametrize(
    ("data", "index", "path", "reason"),
    [
        (b"\xff\xfe\n\0", 0, None, "not valid UTF-8 at byte 0"),
        (b'{"id":"a","id":"b"}\n\0', 0, None, 'duplicate key "id"'),
        (b'{"id":"SAVE-0","content":NaN}\n\0', 0, None, "NaN is not valid JSON"),
        (b"[1,2]\n\0", 0, None, "expected a JSON object, got an array"),
        (b'{"content":{}}\n\0', 0, "id", "missing required field"),
        (b'{"id":7,"content":{}}\n\0', 0, "id", "expected a string"),
        (b'{"id":"x"}\n\0', 0, "content", "missing required field"),
        (b'{"id":"x","content":{"request_type":{}}}\n\0', 0, "content.request_type", "exactly one"),
        (
            b'{"id":"x","content":{"request_type":{"STATUS":{},"COUNT_REQUESTS":{}}}}\n\0',
            0,
            "content.request_type",
            "exactly one",
        ),
        (
            b'{"id":"x","content":{"request_type":{"REMOVE_CLUSTER":{"id":"a"}}}}\n\0',
            0,
            "content.request_type.REMOVE_CLUSTER",
            "expected a string",
        ),
        (
            b'{"id":"x","content":{"request_type":{"REMOVE_CLUSTER":"\\ud800"}}}\n\0',
            0,
            "content.request_type.REMOVE_CLUSTER",
            "unpaired surrogate",
        ),
        (b'{"id":"x","content":{"request_type":{"STATUS":{}}}}\n\0\n\0', 1, None, "empty record"),
        (
            b'{"id":"x","content":{"request_type":{"STATUS":{}}}}\n\0{"id"',
            1,
            None,
            "not terminated",
        ),
    ],
)
def test_malformed_records(data: bytes, index: int, path: str | None, reason: str) -> None:
    error = failure(data)
    assert error.index == index
    assert error.json_path == path
    assert reason in error.reason


@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_parse_or_raise_state_file_error(data: bytes) -> None:
    with contextlib.suppress(StateFileError):
        parse_state(data)


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.just([]),
    st.just({}),
    st.lists(st.integers(0, 6), max_size=2),
    st.dictionaries(st.sampled_from(["V4", "V6", "low", "x"]), st.integers(0, 5), max_size=2),
)


def leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict) and value:
        return [p for key, item in value.items() for p in leaf_paths(item, (*prefix, key))]
    if isinstance(value, list) and value:
        return [p for index, item in enumerate(value) for p in leaf_paths(item, (*prefix, index))]
    return [prefix]


@given(st.data())
def test_any_mutated_sample_record_parses_or_raises_state_file_error(data: st.DataObject) -> None:
    sample = records((DATA / "upstream-2.1-state.json").read_bytes())
    chosen = data.draw(st.sampled_from(sample))
    target = data.draw(st.sampled_from(leaf_paths(chosen)))
    mutated = json.loads(json.dumps(chosen))
    holder = mutated
    for step in target[:-1]:
        holder = holder[step]
    holder[target[-1]] = data.draw(JSON_LEAVES)
    try:
        parse_state(join(mutated), ignore_unknown=data.draw(st.booleans()))
    except StateFileError as error:
        failed_record = error.index
    else:
        failed_record = 0
    assert failed_record == 0


# --- rendering -------------------------------------------------------------------------------


def test_render_refuses_2x_fields_for_a_10_file() -> None:
    requests = expected_sample(2)
    with pytest.raises(StateFileError) as caught:
        render_state(requests, version=1)
    assert (caught.value.index, caught.value.record_id) == (8, "SAVE-8")
    assert caught.value.json_path == "content.request_type.ADD_CLUSTER.http2"
    assert "Sōzu 2.x setting" in str(caught.value)

    maglev = rq.AddCluster(Cluster("m", load_balancing=LoadBalancing.MAGLEV))
    with pytest.raises(StateFileError, match=r"ADD_CLUSTER\.load_balancing"):
        render_state([maglev], version=1)
    assert b'"load_balancing":5' in render_state([maglev], version=2)

    redirect = rq.RemoveHttpFrontend(
        HttpFrontend(addr("0.0.0.0:80"), "h", redirect=RedirectPolicy.FORWARD)
    )
    with pytest.raises(StateFileError, match=r"REMOVE_HTTP_FRONTEND\.redirect"):
        render_state([rq.Status(), redirect], version=1)


def test_render_refuses_records_sozu_cannot_load() -> None:
    huge = rq.SaveState("x" * UPSTREAM_LOAD_BUFFER_BYTES)
    with pytest.raises(StateFileError, match="cannot read a record larger than"):
        render_state([huge])
    fitting = rq.SaveState("x" * (UPSTREAM_LOAD_BUFFER_BYTES - 100))
    assert len(render_state([fitting])) <= UPSTREAM_LOAD_BUFFER_BYTES


def test_render_rejects_unknown_version() -> None:
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        render_state([], version=3)  # type: ignore[arg-type]


def test_render_numbers_records_and_uses_verb_names() -> None:
    data = render_state(
        [
            rq.QueryCertificatesFromTheState(domain="example.com"),
            rq.QueryClusterById("web"),
            rq.ListFrontends(http=True),
            rq.DeactivateListener(addr("[::1]:80"), ListenerType.TCP, to_scm=True),
        ]
    )
    assert data == (
        b'{"id":"SAVE-0","content":{"request_type":{"QUERY_CERTIFICATES_FROM_THE_STATE":'
        b'{"domain":"example.com","fingerprint":null}}}}\n\0'
        b'{"id":"SAVE-1","content":{"request_type":{"QUERY_CLUSTER_BY_ID":"web"}}}\n\0'
        b'{"id":"SAVE-2","content":{"request_type":{"LIST_FRONTENDS":'
        b'{"http":true,"https":false,"tcp":false,"domain":null}}}}\n\0'
        b'{"id":"SAVE-3","content":{"request_type":{"DEACTIVATE_LISTENER":{"address":'
        b'{"ip":{"inner":{"V6":{"low":1,"high":0}}},"port":80},"proxy":2,"to_scm":true}}}}\n\0'
    )


def test_control_characters_use_serde_json_escapes() -> None:
    data = render_state([rq.RemoveCluster('a"\\\b\f\n\r\t\x00\x1f\x7f/é')])
    assert '"REMOVE_CLUSTER":"a\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\x7f/é"'.encode() in data


# --- round trips -----------------------------------------------------------------------------

TEXT = st.text(max_size=12)
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
ADDRESSES = st.builds(SocketAddress, st.ip_addresses(), st.integers(0, 65535))
TAGS = st.dictionaries(TEXT, TEXT, max_size=3).map(pairs)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def texts(max_size: int = 3) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(TEXT, max_size=max_size).map(tuple)


def enums(enum: Any, max_size: int = 3) -> st.SearchStrategy[Any]:
    return st.lists(st.sampled_from(enum), max_size=max_size).map(tuple)


CERTIFICATES = st.builds(
    CertificateAndKey,
    certificate=TEXT,
    key=TEXT,
    certificate_chain=texts(),
    versions=enums(TlsVersion),
    names=texts(),
)
HTTP_LISTENERS = st.builds(
    HttpListener,
    address=ADDRESSES,
    public_address=optional(ADDRESSES),
    expect_proxy=st.booleans(),
    sticky_name=TEXT,
    front_timeout=U32,
    back_timeout=U32,
    connect_timeout=U32,
    request_timeout=U32,
    active=st.booleans(),
)
HTTPS_LISTENERS = st.builds(
    HttpsListener,
    address=ADDRESSES,
    public_address=optional(ADDRESSES),
    expect_proxy=st.booleans(),
    sticky_name=TEXT,
    front_timeout=U32,
    back_timeout=U32,
    connect_timeout=U32,
    request_timeout=U32,
    active=st.booleans(),
    versions=enums(TlsVersion),
    cipher_list=texts(),
    cipher_suites=texts(),
    signature_algorithms=texts(),
    groups_list=texts(),
    certificate=optional(TEXT),
    certificate_chain=texts(),
    key=optional(TEXT),
    send_tls13_tickets=U64,
)
TCP_LISTENERS = st.builds(
    TcpListener,
    address=ADDRESSES,
    public_address=optional(ADDRESSES),
    expect_proxy=st.booleans(),
    front_timeout=U32,
    back_timeout=U32,
    connect_timeout=U32,
    active=st.booleans(),
)
TCP_FRONTENDS = st.builds(TcpFrontend, cluster_id=TEXT, address=ADDRESSES, tags=TAGS)
BACKENDS = st.builds(
    Backend,
    cluster_id=TEXT,
    backend_id=TEXT,
    address=ADDRESSES,
    sticky_id=optional(TEXT),
    weight=optional(I32),
    backup=optional(st.booleans()),
)


def clusters(version: int) -> st.SearchStrategy[Cluster]:
    balancing = list(LoadBalancing) if version == 2 else list(LoadBalancing)[:4]
    v2_fields: dict[str, st.SearchStrategy[Any]] = {}
    if version == 2:
        v2_fields = {
            "http2": optional(st.booleans()),
            "answers": TAGS,
            "https_redirect_port": optional(U32),
            "authorized_hashes": texts(),
            "www_authenticate": optional(TEXT),
            "max_connections_per_ip": optional(U64),
            "retry_after": optional(U32),
        }
    return st.builds(
        Cluster,
        cluster_id=TEXT,
        sticky_session=st.booleans(),
        https_redirect=st.booleans(),
        proxy_protocol=optional(st.sampled_from(ProxyProtocol)),
        load_balancing=st.sampled_from(balancing),
        answer_503=optional(TEXT),
        load_metric=optional(st.sampled_from(LoadMetric)),
        **v2_fields,
    )


def http_frontends(version: int) -> st.SearchStrategy[HttpFrontend]:
    v2_fields: dict[str, st.SearchStrategy[Any]] = {}
    if version == 2:
        headers = st.builds(Header, st.sampled_from(HeaderPosition), TEXT, TEXT)
        v2_fields = {
            "redirect": optional(st.sampled_from(RedirectPolicy)),
            "required_auth": optional(st.booleans()),
            "redirect_scheme": optional(st.sampled_from(RedirectScheme)),
            "redirect_template": optional(TEXT),
            "rewrite_host": optional(TEXT),
            "rewrite_path": optional(TEXT),
            "rewrite_port": optional(U32),
            "headers": st.lists(headers, max_size=2).map(tuple),
        }
    return st.builds(
        HttpFrontend,
        address=ADDRESSES,
        hostname=TEXT,
        path=st.builds(PathRule, st.sampled_from(PathRuleKind), TEXT),
        cluster_id=optional(TEXT),
        method=optional(TEXT),
        position=st.sampled_from(RulePosition),
        tags=TAGS,
        **v2_fields,
    )


def request_lists(version: int) -> st.SearchStrategy[list[rq.Request]]:
    frontends = http_frontends(version)
    listener_types = st.sampled_from(ListenerType)
    filters = (optional(TEXT), optional(TEXT))
    one = st.one_of(
        st.builds(rq.AddCluster, clusters(version)),
        st.builds(rq.RemoveCluster, TEXT),
        st.builds(rq.AddHttpFrontend, frontends),
        st.builds(rq.RemoveHttpFrontend, frontends),
        st.builds(rq.AddHttpsFrontend, frontends),
        st.builds(rq.RemoveHttpsFrontend, frontends),
        st.builds(rq.AddTcpFrontend, TCP_FRONTENDS),
        st.builds(rq.RemoveTcpFrontend, TCP_FRONTENDS),
        st.builds(rq.AddBackend, BACKENDS),
        st.builds(rq.RemoveBackend, TEXT, TEXT, ADDRESSES),
        st.builds(rq.AddCertificate, ADDRESSES, CERTIFICATES, optional(I64)),
        st.builds(rq.ReplaceCertificate, ADDRESSES, CERTIFICATES, TEXT, optional(I64)),
        st.builds(rq.RemoveCertificate, ADDRESSES, TEXT),
        st.builds(rq.AddHttpListener, HTTP_LISTENERS),
        st.builds(rq.AddHttpsListener, HTTPS_LISTENERS),
        st.builds(rq.AddTcpListener, TCP_LISTENERS),
        st.builds(rq.RemoveListener, ADDRESSES, listener_types),
        st.builds(rq.ActivateListener, ADDRESSES, listener_types, st.booleans()),
        st.builds(rq.DeactivateListener, ADDRESSES, listener_types, st.booleans()),
        st.builds(rq.ListWorkers),
        st.builds(rq.ListListeners),
        st.builds(rq.ListFrontends, st.booleans(), st.booleans(), st.booleans(), optional(TEXT)),
        st.builds(rq.Status),
        st.builds(rq.QueryClusterById, TEXT),
        st.builds(rq.QueryClustersByDomain, TEXT, optional(TEXT)),
        st.builds(rq.QueryClustersHashes),
        st.builds(rq.QueryCertificatesFromTheState, *filters),
        st.builds(rq.QueryCertificatesFromWorkers, *filters),
        st.builds(rq.CountRequests),
        st.builds(rq.SaveState, TEXT),
        st.builds(rq.LoadState, TEXT),
    )
    return st.lists(one, max_size=6)


@given(request_lists(2))
def test_round_trip_2x(requests: list[rq.Request]) -> None:
    data = render_state(requests)
    assert parse_state(data) == ParsedState(tuple(requests))
    assert data.count(RECORD_TERMINATOR) == len(requests)


@given(request_lists(1))
def test_round_trip_10(requests: list[rq.Request]) -> None:
    data = render_state(requests, version=1)
    assert parse_state(data) == ParsedState(tuple(requests))
    # Every 1.0 record is also a valid 2.x record of the same request.
    assert render_state(parse_state(render_state(requests)).requests, version=1) == data
