"""Every model survives encoding and decoding in each wire version; 1.0 refuses 2.x fields; the
decoder is as lenient as Sōzu's and fails only on bytes that are not a message."""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests import strategies

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    Cluster,
    Header,
    HeaderPosition,
    HttpFrontend,
    ListenerType,
    LoadBalancing,
    RedirectPolicy,
    RedirectScheme,
    SocketAddress,
)
from sozu_operator.proxy.responses import (
    ClusterInformation,
    ClusterInformations,
    Event,
    RequestCounts,
    Response,
    ResponseStatus,
    WorkerResponses,
)
from sozu_operator.wire import (
    Codec,
    ProtocolError,
    UndecodablePayload,
    UnsupportedByVersion,
    WireVersion,
)

ROUND_TRIPS = settings(max_examples=200, deadline=None)
V1, V2 = Codec(WireVersion.V1), Codec(WireVersion.V2)


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# --- round trips ---------------------------------------------------------------------------


@ROUND_TRIPS
@given(strategies.requests(WireVersion.V1))
def test_v1_requests_round_trip(request: rq.Request) -> None:
    assert V1.decode_request(V1.encode_request(request)) == request


@ROUND_TRIPS
@given(strategies.requests(WireVersion.V2))
def test_v2_requests_round_trip(request: rq.Request) -> None:
    assert V2.decode_request(V2.encode_request(request)) == request


@ROUND_TRIPS
@given(strategies.responses(WireVersion.V1))
def test_v1_responses_round_trip(response: Response) -> None:
    assert V1.decode_response(V1.encode_response(response)) == response


@ROUND_TRIPS
@given(strategies.responses(WireVersion.V2))
def test_v2_responses_round_trip(response: Response) -> None:
    assert V2.decode_response(V2.encode_response(response)) == response


@settings(max_examples=100, deadline=None)
@given(strategies.requests(WireVersion.V1))
def test_v1_requests_read_identically_by_both_versions(request: rq.Request) -> None:
    # 2.x only adds fields and verbs, so whatever 1.0 can say means the same to 2.x.
    payload = V1.encode_request(request)
    assert V2.encode_request(request) == payload
    assert V2.decode_request(payload) == request


@settings(max_examples=100, deadline=None)
@given(strategies.clusters(WireVersion.V2))
def test_v1_decoder_drops_2x_fields_like_sozu_1_0(cluster: Cluster) -> None:
    if cluster.load_balancing > LoadBalancing.POWER_OF_TWO:
        cluster = replace(cluster, load_balancing=LoadBalancing.ROUND_ROBIN)
    decoded = V1.decode_request(V2.encode_request(rq.AddCluster(cluster)))
    assert decoded == rq.AddCluster(
        Cluster(
            cluster.cluster_id,
            cluster.sticky_session,
            cluster.https_redirect,
            cluster.proxy_protocol,
            cluster.load_balancing,
            cluster.answer_503,
            cluster.load_metric,
        )
    )


# --- 1.0 refuses 2.x fields ----------------------------------------------------------------

ADDRESS = SocketAddress(ipaddress.IPv4Address("127.0.0.1"), 8080)
FRONTEND = HttpFrontend(ADDRESS, "example.com")

CLUSTER_2X_FIELDS: dict[str, Any] = {
    "http2": True,
    "answers": (("503", "busy"),),
    "https_redirect_port": 8443,
    "authorized_hashes": ("user:abcd",),
    "www_authenticate": "realm",
    "max_connections_per_ip": 10,
    "retry_after": 5,
}
FRONTEND_2X_FIELDS: dict[str, Any] = {
    "redirect": RedirectPolicy.FORWARD,
    "required_auth": False,
    "redirect_scheme": RedirectScheme.USE_HTTPS,
    "redirect_template": "https://%HOST%",
    "rewrite_host": "a",
    "rewrite_path": "/b",
    "rewrite_port": 1,
    "headers": (Header(HeaderPosition.REQUEST, "x", "y"),),
}


@pytest.mark.parametrize(("field", "value"), CLUSTER_2X_FIELDS.items())
def test_v1_refuses_2x_cluster_fields(field: str, value: Any) -> None:
    cluster = replace(Cluster("a"), **{field: value})
    with pytest.raises(UnsupportedByVersion, match=rf"Cluster\.{field} is not known to Sōzu 1\.0"):
        V1.encode_request(rq.AddCluster(cluster))
    assert V2.decode_request(V2.encode_request(rq.AddCluster(cluster))) == rq.AddCluster(cluster)


@pytest.mark.parametrize("algorithm", [LoadBalancing.HRW, LoadBalancing.MAGLEV])
def test_v1_refuses_2x_load_balancing_algorithms(algorithm: LoadBalancing) -> None:
    with pytest.raises(UnsupportedByVersion, match=f"load_balancing = {algorithm.name}") as error:
        V1.encode_request(rq.AddCluster(Cluster("a", load_balancing=algorithm)))
    assert error.value.version == "1.0"


@pytest.mark.parametrize(("field", "value"), FRONTEND_2X_FIELDS.items())
def test_v1_refuses_2x_frontend_fields(field: str, value: Any) -> None:
    frontend = replace(FRONTEND, **{field: value})
    for request in (rq.AddHttpFrontend(frontend), rq.RemoveHttpsFrontend(frontend)):
        with pytest.raises(UnsupportedByVersion, match=rf"HttpFrontend\.{field}") as error:
            V1.encode_request(request)
        assert error.value.field == f"HttpFrontend.{field}"


def test_v1_refuses_2x_fields_inside_responses() -> None:
    information = ClusterInformation(Cluster("a", http2=True))
    with pytest.raises(UnsupportedByVersion, match=r"Cluster\.http2"):
        V1.encode_response(Response.ok(content=ClusterInformations((information,))))
    with pytest.raises(UnsupportedByVersion, match=r"Event\.kind = 26"):
        V1.encode_response(Response(ResponseStatus.PROCESSING, "main", Event(kind=26)))


# --- lenient decoding, like Sōzu's ---------------------------------------------------------


@pytest.mark.parametrize("codec", [V1, V2], ids=["V1", "V2"])
def test_port_is_truncated_to_16_bits(codec: Codec) -> None:
    # activate_listener {address {ip {v4 127.0.0.1}, port 65616}, proxy HTTP, from_scm false}
    address = hex_bytes("0A 05 0D 01 00 00 7F 10 D0 80 04")
    body = hex_bytes("0A") + bytes([len(address)]) + address + hex_bytes("10 00 18 00")
    payload = hex_bytes("F2 01") + bytes([len(body)]) + body
    decoded = codec.decode_request(payload)
    assert decoded == rq.ActivateListener(SocketAddress.parse("127.0.0.1:80"), ListenerType.HTTP)


@pytest.mark.parametrize("codec", [V1, V2], ids=["V1", "V2"])
def test_absent_required_fields_take_their_defaults(codec: Codec) -> None:
    # add_backend {} : no cluster, no id, no address at all.
    assert codec.decode_request(hex_bytes("C2 01 00")) == rq.AddBackend(
        Backend("", "", SocketAddress(ipaddress.IPv4Address("0.0.0.0"), 0))
    )
    # An empty Response is a FAILURE (the proto default) with an empty message.
    assert codec.decode_response(b"") == Response(ResponseStatus.FAILURE, "")


@pytest.mark.parametrize("codec", [V1, V2], ids=["V1", "V2"])
def test_requests_sozu_ignores_decode_to_none(codec: Codec) -> None:
    assert codec.decode_request(b"") is None
    assert codec.request_member(b"") is None
    # soft_stop (39): a real verb the models do not cover.
    assert codec.decode_request(hex_bytes("BA 02 00")) is None
    assert codec.request_member(hex_bytes("BA 02 00")) == "soft_stop"


def test_2x_only_verb_is_an_empty_request_for_v1() -> None:
    set_max_connections_per_ip = hex_bytes("90 03 05")  # field 50, varint 5
    assert V1.request_member(set_max_connections_per_ip) is None
    assert V2.request_member(set_max_connections_per_ip) == "set_max_connections_per_ip"
    assert V1.decode_request(set_max_connections_per_ip) is None


def test_udp_listener_type_is_refused_by_name() -> None:
    # remove_listener {address 0.0.0.0:0, proxy UDP}
    payload = hex_bytes("EA 01 08 0A 04 0A 00 10 00 10 03")
    with pytest.raises(ProtocolError, match="listener type 3"):
        V2.decode_request(payload)


@pytest.mark.parametrize("codec", [V1, V2], ids=["V1", "V2"])
def test_unmodelled_content_decodes_to_none(codec: Codec) -> None:
    # Response {OK, "", content {metrics {}}}
    assert codec.decode_response(hex_bytes("08 00 12 00 1A 02 12 00")) == Response.ok()
    # worker_responses {map {"0": metrics {}}, {"main": request_counts {}}}
    entries = hex_bytes("0A 07 0A 01 30 12 02 12 00") + hex_bytes(
        "0A 0A 0A 04 6D 61 69 6E 12 02 6A 00"
    )
    content = hex_bytes("1A") + bytes([len(entries)]) + entries
    payload = hex_bytes("08 00 12 00 1A") + bytes([len(content)]) + content
    decoded = codec.decode_response(payload)
    assert decoded.content == WorkerResponses({"main": RequestCounts({})})


@pytest.mark.parametrize("codec", [V1, V2], ids=["V1", "V2"])
@pytest.mark.parametrize(
    "payload",
    [hex_bytes("FF FF FF"), hex_bytes("72 05 61"), hex_bytes("0A")],
    ids=["bad-key", "truncated-string", "truncated-key"],
)
def test_garbage_is_undecodable(codec: Codec, payload: bytes) -> None:
    with pytest.raises(UndecodablePayload, match="Cannot decode a") as error:
        codec.decode_request(payload)
    assert error.value.payload == payload
    with pytest.raises(UndecodablePayload, match=r"as sozu\.v.\.Response"):
        codec.decode_response(payload)


@pytest.mark.parametrize("codec", [V1, V2], ids=["V1", "V2"])
def test_text_that_is_not_utf8_is_undecodable(codec: Codec) -> None:
    # Sōzu (prost) refuses it; the Python runtime would hand over bytes instead.
    with pytest.raises(UndecodablePayload, match="remove_cluster is not valid UTF-8"):
        codec.decode_request(hex_bytes("72 02 FF FE"))
    with pytest.raises(UndecodablePayload, match="message is not valid UTF-8"):
        codec.decode_response(hex_bytes("08 02 12 01 FF"))


@given(st.binary(max_size=64))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_decode_or_raise_protocol_error(payload: bytes) -> None:
    for codec in (V1, V2):
        for decode in (codec.decode_request, codec.decode_response):
            with contextlib.suppress(ProtocolError):
                decode(payload)
