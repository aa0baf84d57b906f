"""Byte-exact frames (the worked examples of the protocol notes, §1.2) and the frame reader."""

from __future__ import annotations

import ipaddress

import pytest

from sozu_operator.proxy.model import Backend, Cluster, SocketAddress
from sozu_operator.proxy.requests import AddBackend, AddCluster, RemoveCluster
from sozu_operator.proxy.responses import Response
from sozu_operator.wire import (
    Codec,
    FrameReader,
    FrameTooLarge,
    FrameTooShort,
    ProtocolError,
    WireVersion,
    encode_frame,
)


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


BOTH_VERSIONS = pytest.mark.parametrize("version", list(WireVersion), ids=lambda v: v.name)

# SocketAddress messages as they appear inside add_backend's `address` field (key 1A).
GOLDEN_ADDRESSES = {
    "127.0.0.1:8080": "0A 05 0D 01 00 00 7F 10 90 3F",
    "[::1]:443": "0A 06 12 04 08 01 10 00 10 BB 03",
    "[2001:db8::1]:443": "0A 0E 12 0C 08 01 10 80 80 80 80 80 B7 C3 80 20 10 BB 03",
}


@BOTH_VERSIONS
def test_remove_cluster_frame(version: WireVersion) -> None:
    frame = encode_frame(Codec(version).encode_request(RemoveCluster("a")))
    assert frame == hex_bytes("0B 00 00 00 00 00 00 00 72 01 61")


@BOTH_VERSIONS
def test_add_cluster_frame_writes_every_required_field(version: WireVersion) -> None:
    frame = encode_frame(Codec(version).encode_request(AddCluster(Cluster("a"))))
    assert frame == hex_bytes("13 00 00 00 00 00 00 00 6A 09 0A 01 61 10 00 18 00 28 00")


@BOTH_VERSIONS
@pytest.mark.parametrize("address", list(GOLDEN_ADDRESSES))
def test_add_backend_frame_and_address_encoding(version: WireVersion, address: str) -> None:
    request = AddBackend(Backend("a", "a-0", SocketAddress.parse(address)))
    address_bytes = hex_bytes(GOLDEN_ADDRESSES[address])
    body = hex_bytes("0A 01 61 12 03 61 2D 30 1A") + bytes([len(address_bytes)]) + address_bytes
    payload = hex_bytes("C2 01") + bytes([len(body)]) + body

    frame = encode_frame(Codec(version).encode_request(request))

    assert frame == (8 + len(payload)).to_bytes(8, "little") + payload
    assert Codec(version).decode_request(payload) == request


@BOTH_VERSIONS
def test_add_backend_ipv4_frame_literally(version: WireVersion) -> None:
    request = AddBackend(Backend("a", "a-0", SocketAddress.parse("127.0.0.1:8080")))
    assert encode_frame(Codec(version).encode_request(request)) == hex_bytes(
        "1F 00 00 00 00 00 00 00 C2 01 14 0A 01 61 12 03 61 2D 30 1A 0A"
        "0A 05 0D 01 00 00 7F 10 90 3F"
    )


@BOTH_VERSIONS
def test_ipv6_high_holds_the_first_eight_address_bytes(version: WireVersion) -> None:
    # 2001:db8::1 → high = 0x20010DB800000000, low = 1 (the opposite of upstream's comments).
    address = SocketAddress(ipaddress.IPv6Address("2001:db8::1"), 443)
    payload = Codec(version).encode_request(AddBackend(Backend("a", "a-0", address)))
    uint128 = hex_bytes("08 01 10 80 80 80 80 80 B7 C3 80 20")
    assert uint128 in payload


@BOTH_VERSIONS
def test_ok_response_payload(version: WireVersion) -> None:
    assert Codec(version).encode_response(Response.ok()) == hex_bytes("08 00 12 00")
    assert Codec(version).decode_response(hex_bytes("08 00 12 00")) == Response.ok()


# --- FrameReader ---------------------------------------------------------------------------


def test_reader_reassembles_a_frame_fed_byte_by_byte() -> None:
    frame = encode_frame(b"hello")
    reader = FrameReader()
    for index, byte in enumerate(frame):
        assert reader.next_frame() is None
        assert reader.buffered == index
        reader.feed(bytes([byte]))
    assert reader.next_frame() == b"hello"
    assert reader.buffered == 0
    assert reader.next_frame() is None


def test_reader_reports_the_declared_length_once_the_prefix_is_complete() -> None:
    reader = FrameReader()
    reader.feed(encode_frame(b"0123456789")[:5])
    assert reader.declared_length is None
    reader.feed(encode_frame(b"0123456789")[5:12])
    assert reader.declared_length == 18
    assert reader.buffered == 12


def test_reader_splits_several_frames_from_one_feed() -> None:
    reader = FrameReader()
    reader.feed(encode_frame(b"one") + encode_frame(b"") + encode_frame(b"three") + b"\x09")
    assert list(reader.frames()) == [b"one", b"", b"three"]
    assert reader.buffered == 1


def test_reader_rejects_a_length_shorter_than_the_prefix() -> None:
    reader = FrameReader()
    reader.feed((7).to_bytes(8, "little") + encode_frame(b"next"))
    with pytest.raises(FrameTooShort, match="length of 7 bytes") as caught:
        reader.next_frame()
    assert caught.value.declared_length == 7
    assert isinstance(caught.value, ProtocolError)
    # The bad prefix stays until the caller drops it, then the stream can resynchronise.
    with pytest.raises(FrameTooShort):
        reader.next_frame()
    reader.discard(8)
    assert reader.next_frame() == b"next"


def test_reader_rejects_an_oversized_length_before_the_payload_arrives() -> None:
    reader = FrameReader(max_frame_size=100)
    reader.feed((101).to_bytes(8, "little"))
    with pytest.raises(FrameTooLarge, match="101 bytes, above the ceiling of 100") as caught:
        reader.next_frame()
    assert (caught.value.declared_length, caught.value.max_frame_size) == (101, 100)


def test_reader_accepts_a_frame_of_exactly_the_ceiling() -> None:
    reader = FrameReader(max_frame_size=20)
    reader.feed(encode_frame(b"x" * 12))
    assert reader.next_frame() == b"x" * 12


def test_reader_default_ceiling_is_sozu_max_command_buffer_size() -> None:
    reader = FrameReader()
    assert reader.max_frame_size == 2_000_000
    reader.feed((2_000_001).to_bytes(8, "little"))
    with pytest.raises(FrameTooLarge):
        reader.next_frame()


def test_reader_without_ceiling_accepts_any_length() -> None:
    reader = FrameReader(max_frame_size=None)
    reader.feed((10**9).to_bytes(8, "little"))
    assert reader.next_frame() is None
    assert reader.declared_length == 10**9


def test_reader_refuses_a_ceiling_below_the_prefix_size() -> None:
    with pytest.raises(ValueError, match="8-byte prefix"):
        FrameReader(max_frame_size=7)
