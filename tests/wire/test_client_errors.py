"""The client against small, deliberately misbehaving peers on real unix sockets.

Each test starts an asyncio unix server whose handler plays one scripted conversation; nothing
about the socket is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sozu_operator.proxy.model import CertificateAndKey, Cluster, SocketAddress
from sozu_operator.proxy.requests import (
    AddCertificate,
    AddCluster,
    ListWorkers,
    QueryClusterById,
    QueryClustersHashes,
    RemoveCluster,
    Request,
)
from sozu_operator.proxy.responses import (
    ClusterHashes,
    ClusterInformation,
    ClusterInformations,
    Response,
    ResponseContent,
    ResponseStatus,
    RunState,
    WorkerInfo,
    WorkerInfos,
    WorkerResponses,
)
from sozu_operator.wire import (
    Codec,
    ConnectionClosed,
    FrameReader,
    FrameTooLarge,
    FrameTooShort,
    ProtocolError,
    RequestFailed,
    RequestTimeout,
    SocketNotFound,
    SocketPermissionDenied,
    SocketRefused,
    SozuClient,
    SozuConnectError,
    UndecodablePayload,
    UnexpectedContent,
    UnsafeSocketPath,
    UnsupportedByVersion,
    WireVersion,
    encode_frame,
)
from sozu_operator.wire.client import connect_error_for

CODEC = Codec(WireVersion.V2)
IS_ROOT = os.geteuid() == 0


def frame_of(response: Response) -> bytes:
    return encode_frame(CODEC.encode_response(response))


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """Read one request frame the way Sōzu does (length prefix, then the rest)."""
    prefix = await reader.readexactly(8)
    payload = await reader.readexactly(int.from_bytes(prefix, "little") - 8)
    return CODEC.decode_request(payload)


@dataclass
class Peer:
    """What a scripted server saw: one entry per connection, the requests read on it."""

    connections: list[list[Request | None]] = field(default_factory=list)

    @property
    def requests(self) -> list[Request | None]:
        return [request for connection in self.connections for request in connection]


Script = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, list[Request | None]], Awaitable[None]
]


@contextlib.asynccontextmanager
async def serving(path: Path, script: Script) -> AsyncIterator[Peer]:
    peer = Peer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen: list[Request | None] = []
        peer.connections.append(seen)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await script(reader, writer, seen)
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        yield peer
    finally:
        server.close()
        await server.wait_closed()


def answering(*answers: bytes, pause: float = 0.0) -> Script:
    """For every request, write `answers` in order (sleeping `pause` before each)."""

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        while True:
            seen.append(await read_request(reader))
            for answer in answers:
                await asyncio.sleep(pause)
                writer.write(answer)
                await writer.drain()

    return script


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "sozu.sock"


# --- the normal conversation ---------------------------------------------------------------


async def test_processing_then_ok_returns_ok(socket_path: Path) -> None:
    notes: list[Response] = []
    script = answering(frame_of(Response.processing("working")), frame_of(Response.ok("done")))
    async with serving(socket_path, script) as peer, SozuClient(socket_path) as client:
        response = await client.send(RemoveCluster("a"), on_processing=notes.append)
    assert response == Response.ok("done")
    assert notes == [Response.processing("working")]
    assert peer.requests == [RemoveCluster("a")]


async def test_processing_restarts_the_timeout(socket_path: Path) -> None:
    # Four answers 0.15 s apart: 0.6 s in all, but never 0.3 s of silence.
    notes = [frame_of(Response.processing(str(index))) for index in range(3)]
    script = answering(*notes, frame_of(Response.ok()), pause=0.15)
    async with serving(socket_path, script), SozuClient(socket_path, timeout=0.3) as client:
        assert (await client.send(RemoveCluster("a"))).status is ResponseStatus.OK


async def test_requests_on_one_client_never_overlap(socket_path: Path) -> None:
    # Sōzu drops all but the last of frames read together, so a second request must wait.
    early_bytes: list[int] = []

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        frames = FrameReader()
        while True:
            while (payload := frames.next_frame()) is None:
                chunk = await reader.read(4096)
                if not chunk:
                    return
                frames.feed(chunk)
            seen.append(CODEC.decode_request(payload))
            # Anything arriving before we answer would be a pipelined request.
            with contextlib.suppress(TimeoutError):
                chunk = await asyncio.wait_for(reader.read(4096), 0.05)
                frames.feed(chunk)
            early_bytes.append(frames.buffered)
            writer.write(frame_of(Response.ok()))
            await writer.drain()

    async with serving(socket_path, script) as peer, SozuClient(socket_path) as client:
        await asyncio.gather(*(client.send(RemoveCluster(str(n))) for n in range(5)))
    assert early_bytes == [0] * 5
    assert sorted(map(repr, peer.requests)) == sorted(repr(RemoveCluster(str(n))) for n in range(5))
    assert len(peer.connections) == 1


async def test_failure_raises_request_failed_with_sozu_message(socket_path: Path) -> None:
    text = "could not dispatch request on the main process state: Cluster 'a' already exists"
    script = answering(frame_of(Response.failure(text)))
    async with serving(socket_path, script) as peer, SozuClient(socket_path) as client:
        with pytest.raises(RequestFailed, match="Sōzu refused AddCluster") as caught:
            await client.send(AddCluster(Cluster("a")))
        assert caught.value.message == text
        assert caught.value.verb == "AddCluster"
        assert caught.value.already_exists
        assert not caught.value.not_found
        # A refusal leaves the conversation in step: same connection, next request fine.
        response = await client.send(RemoveCluster("a"), raise_for_failure=False)
        assert response == Response.failure(text)
    assert len(peer.connections) == 1


# --- errors that desynchronise the stream --------------------------------------------------


async def test_timeout_then_next_request_uses_a_fresh_connection(socket_path: Path) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        seen.append(await read_request(reader))
        if len(peer.connections) == 1:
            await reader.read()  # never answer; wait for the client to give up
            return
        writer.write(frame_of(Response.ok("second")))
        await writer.drain()
        await reader.read()

    async with serving(socket_path, script) as peer:
        async with SozuClient(socket_path, timeout=0.2) as client:
            with pytest.raises(RequestTimeout, match=r"No answer to RemoveCluster within 0\.2 s"):
                await client.send(RemoveCluster("a"))
            assert not client.is_connected
            response = await client.send(RemoveCluster("b"))
        assert response == Response.ok("second")
        assert peer.connections == [[RemoveCluster("a")], [RemoveCluster("b")]]


async def test_timeout_error_says_the_connection_was_dropped(socket_path: Path) -> None:
    async with serving(socket_path, answering()), SozuClient(socket_path, timeout=0.05) as client:
        with pytest.raises(RequestTimeout) as caught:
            await client.send(RemoveCluster("a"))
    assert caught.value.connection_dropped
    assert "the next request opens a new one" in str(caught.value)
    assert (caught.value.verb, caught.value.timeout) == ("RemoveCluster", 0.05)


async def test_per_request_timeout_overrides_the_client_default(socket_path: Path) -> None:
    script = answering(frame_of(Response.ok()), pause=0.2)
    async with serving(socket_path, script), SozuClient(socket_path, timeout=0.05) as client:
        assert (await client.send(RemoveCluster("a"), timeout=None)).status is ResponseStatus.OK


async def test_peer_closing_mid_frame_reports_byte_counts(socket_path: Path) -> None:
    whole = frame_of(Response.ok("ten chars!"))
    assert len(whole) == 22

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        seen.append(await read_request(reader))
        writer.write(whole[:12])
        await writer.drain()

    async with serving(socket_path, script), SozuClient(socket_path) as client:
        with pytest.raises(ConnectionClosed, match="12 of 22 bytes read") as caught:
            await client.send(RemoveCluster("a"))
    assert (caught.value.received, caught.value.expected) == (12, 22)
    assert caught.value.connection_dropped


async def test_peer_closing_inside_the_prefix(socket_path: Path) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        seen.append(await read_request(reader))
        writer.write(b"\x1a\x00\x00")

    async with serving(socket_path, script), SozuClient(socket_path) as client:
        with pytest.raises(ConnectionClosed, match=r"length prefix \(3 of 8 bytes read\)"):
            await client.send(RemoveCluster("a"))


async def test_peer_closing_without_answer(socket_path: Path) -> None:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        seen.append(await read_request(reader))

    async with serving(socket_path, script), SozuClient(socket_path) as client:
        with pytest.raises(ConnectionClosed, match="before sending any answer") as caught:
            await client.send(RemoveCluster("a"))
    assert caught.value.received == 0


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        ((7).to_bytes(8, "little"), FrameTooShort, "length of 7 bytes"),
        ((5000).to_bytes(8, "little"), FrameTooLarge, "5000 bytes, above the ceiling of 1000"),
        (encode_frame(b"\xff\xff\xff"), UndecodablePayload, "ff ff ff"),
    ],
    ids=["short-length", "over-ceiling", "garbage-payload"],
)
async def test_protocol_errors_drop_the_connection(
    socket_path: Path, answer: bytes, error: type[ProtocolError], text: str
) -> None:
    script = answering(answer)
    async with (
        serving(socket_path, script) as peer,
        SozuClient(socket_path, max_frame_size=1000) as client,
    ):
        with pytest.raises(error, match=text) as caught:
            await client.send(RemoveCluster("a"))
        assert isinstance(caught.value, ProtocolError)
        assert caught.value.connection_dropped
        assert not client.is_connected
        with pytest.raises(error):
            await client.send(RemoveCluster("b"))
    assert len(peer.connections) == 2


async def test_unsolicited_bytes_after_the_answer_force_a_reconnect(socket_path: Path) -> None:
    script = answering(frame_of(Response.ok()) + frame_of(Response.ok("stray")))
    async with serving(socket_path, script) as peer, SozuClient(socket_path) as client:
        assert await client.send(RemoveCluster("a")) == Response.ok()
        assert await client.send(RemoveCluster("b")) == Response.ok()
    assert len(peer.connections) == 2


async def test_cancellation_drops_the_connection(socket_path: Path) -> None:
    async with serving(socket_path, answering()), SozuClient(socket_path) as client:
        task = asyncio.create_task(client.send(RemoveCluster("a")))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client.is_connected


async def test_reconnects_after_an_idle_hang_up(socket_path: Path) -> None:
    # Sōzu restarted (or UpgradeMain) between two requests: nothing was lost, so retry quietly.
    async def answer_once_then_hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        seen.append(await read_request(reader))
        writer.write(frame_of(Response.ok()))
        await writer.drain()

    async with (
        serving(socket_path, answer_once_then_hang_up) as peer,
        SozuClient(socket_path) as client,
    ):
        await client.send(RemoveCluster("a"))
        await asyncio.sleep(0.05)  # let the hang-up reach the client
        await client.send(RemoveCluster("b"))
    assert peer.connections == [[RemoveCluster("a")], [RemoveCluster("b")]]


async def test_waits_until_sozu_hangs_up_and_then_reconnects(socket_path: Path) -> None:
    # The operator keeps one idle connection to learn at once that Sōzu's main process stopped.
    hang_up = asyncio.Event()

    async def hang_up_when_told(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        await hang_up.wait()

    async with (
        serving(socket_path, hang_up_when_told) as peer,
        SozuClient(socket_path) as client,
    ):
        waiting = asyncio.create_task(client.wait_until_hung_up())
        await asyncio.sleep(0.1)
        assert not waiting.done()  # nothing arrives on an idle connection
        hang_up.set()
        async with asyncio.timeout(5):
            assert await waiting is True
        assert not client.is_connected
        hang_up.clear()
        waiting = asyncio.create_task(client.wait_until_hung_up())  # a new connection
        await asyncio.sleep(0.1)
        hang_up.set()
        async with asyncio.timeout(5):
            assert await waiting is True
    assert len(peer.connections) == 2


async def test_a_hang_up_right_after_an_answer_is_not_missed(socket_path: Path) -> None:
    # The end of the stream came with the last answer: the client must report it, not quietly
    # open a new connection to a Sōzu that may have lost everything.
    async def answer_then_hang_up(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        seen.append(await read_request(reader))
        writer.write(frame_of(Response.ok(content=WorkerInfos(()))))
        await writer.drain()

    async with (
        serving(socket_path, answer_then_hang_up) as peer,
        SozuClient(socket_path) as client,
    ):
        await client.list_workers()
        await asyncio.sleep(0.05)  # the hang-up reaches the client
        async with asyncio.timeout(5):
            assert await client.wait_until_hung_up() is True
    assert len(peer.connections) == 1


async def test_bytes_nobody_asked_for_are_not_a_hang_up(socket_path: Path) -> None:
    async def write_unasked(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        writer.write(frame_of(Response.ok()))
        await writer.drain()
        await asyncio.sleep(5)

    async with serving(socket_path, write_unasked), SozuClient(socket_path) as client:
        async with asyncio.timeout(5):
            assert await client.wait_until_hung_up() is False
        assert not client.is_connected


# --- refused before anything is sent -------------------------------------------------------


async def test_oversized_request_is_refused_locally(socket_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\n" + "A" * 500 + "\n-----END CERTIFICATE-----\n"
    request = AddCertificate(SocketAddress.parse("0.0.0.0:443"), CertificateAndKey(pem, "key"))
    async with (
        serving(socket_path, answering(frame_of(Response.ok()))) as peer,
        SozuClient(socket_path, max_frame_size=200) as client,
    ):
        with pytest.raises(FrameTooLarge, match="Refusing to send AddCertificate") as caught:
            await client.send(request)
        assert caught.value.declared_length > 500
        assert client.is_connected  # nothing was written, the stream is still in step
        assert await client.send(RemoveCluster("a")) == Response.ok()
    assert peer.requests == [RemoveCluster("a")]


async def test_field_unknown_to_the_version_is_refused_locally(socket_path: Path) -> None:
    client = SozuClient(socket_path, version=WireVersion.V1)
    with pytest.raises(UnsupportedByVersion, match=r"Cluster\.http2"):
        await client.send(AddCluster(Cluster("a", http2=True)))
    assert not client.is_connected  # not even connected: the socket does not exist


# --- connecting ----------------------------------------------------------------------------


async def test_missing_socket(socket_path: Path) -> None:
    with pytest.raises(SocketNotFound, match="No Sōzu command socket at") as caught:
        await SozuClient.connect(socket_path)
    assert caught.value.path == str(socket_path)


async def test_nobody_listening(socket_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound_only:
        bound_only.bind(str(socket_path))  # a socket file, but no listen(): like a dead Sōzu
        with pytest.raises(SocketRefused, match="no process listens"):
            await SozuClient.connect(socket_path)


@pytest.fixture
def regular_file(tmp_path: Path) -> Path:
    path = tmp_path / "not-a-socket"
    path.write_text("")
    return path


async def test_regular_file_is_not_a_socket(regular_file: Path) -> None:
    with pytest.raises(SozuConnectError, match="exists but is not a socket"):
        await SozuClient.connect(regular_file)


@pytest.mark.skipif(IS_ROOT, reason="root bypasses file permissions")
async def test_permission_denied_for_real(socket_path: Path) -> None:
    async with serving(socket_path, answering()):
        os.chmod(socket_path, 0)
        with pytest.raises(SocketPermissionDenied, match="mode 0600"):
            await SozuClient.connect(socket_path)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file"), SocketNotFound),
        (PermissionError(errno.EACCES, "Permission denied"), SocketPermissionDenied),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), SocketRefused),
        (OSError(errno.ENAMETOOLONG, "File name too long"), SozuConnectError),
    ],
)
def test_connect_errors_map_to_typed_errors(
    error: OSError, expected: type[SozuConnectError]
) -> None:
    mapped = connect_error_for("/run/sozu.sock", error)
    assert type(mapped) is expected
    assert "/run/sozu.sock" in str(mapped)


def test_permission_error_explains_the_fix() -> None:
    text = str(connect_error_for("/run/sozu.sock", PermissionError(errno.EACCES, "denied")))
    assert "same uid as Sōzu" in text
    assert "volume" in text


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a symlink to another uid")
async def test_symlink_owned_by_another_uid_is_refused(tmp_path: Path, socket_path: Path) -> None:
    link = tmp_path / "link.sock"
    link.symlink_to(socket_path)
    os.lchown(link, 65534, 65534)
    async with serving(socket_path, answering(frame_of(Response.ok()))) as peer:
        with pytest.raises(UnsafeSocketPath, match="owned by uid 65534") as caught:
            await SozuClient.connect(link)
        assert caught.value.owner_uid == 65534
    assert peer.connections == []


@pytest.mark.skipif(not IS_ROOT, reason="only root can give a symlink to another uid")
async def test_symlinked_directory_owned_by_another_uid_is_refused(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    linked_dir = tmp_path / "linked"
    linked_dir.symlink_to(real_dir)
    os.lchown(linked_dir, 65534, 65534)
    async with serving(real_dir / "s.sock", answering()):
        with pytest.raises(UnsafeSocketPath, match=re.escape(str(linked_dir))):
            await SozuClient.connect(linked_dir / "s.sock")


async def test_symlink_owned_by_us_is_followed(tmp_path: Path, socket_path: Path) -> None:
    link = tmp_path / "link.sock"
    link.symlink_to(socket_path)
    async with (
        serving(socket_path, answering(frame_of(Response.ok()))),
        SozuClient(link) as client,
    ):
        assert await client.send(RemoveCluster("a")) == Response.ok()


# --- typed helpers -------------------------------------------------------------------------


def main_entry(content: ResponseContent) -> bytes:
    return frame_of(Response.ok(content=WorkerResponses({"main": content, "0": content})))


async def test_typed_helpers_read_main_entries(socket_path: Path) -> None:
    information = ClusterInformation(Cluster("api"))

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        while True:
            request = await read_request(reader)
            seen.append(request)
            writer.write(frame_of(Response.processing("asking workers")))
            if isinstance(request, QueryClustersHashes):
                writer.write(main_entry(ClusterHashes({"api": 1, "gone": 2})))
            elif request == QueryClusterById("api"):
                writer.write(main_entry(ClusterInformations((information,))))
            else:
                writer.write(main_entry(ClusterInformations()))
            await writer.drain()

    async with serving(socket_path, script), SozuClient(socket_path) as client:
        assert await client.query_clusters_hashes() == {"api": 1, "gone": 2}
        assert await client.query_cluster_by_id("gone") is None
        assert await client.query_all_clusters() == {"api": information}


async def test_list_workers_returns_the_worker_tuple(socket_path: Path) -> None:
    workers = (WorkerInfo(0, 41), WorkerInfo(1, 42, RunState.NOT_ANSWERING))
    script = answering(frame_of(Response.ok(content=WorkerInfos(workers))))
    async with serving(socket_path, script) as peer, SozuClient(socket_path) as client:
        assert await client.list_workers() == workers
    assert peer.requests == [ListWorkers()]


def one_answer_per_request(*answers: bytes) -> Script:
    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        for answer in answers:
            seen.append(await read_request(reader))
            writer.write(answer)
            await writer.drain()
        await reader.read()

    return script


async def test_unexpected_content_keeps_the_connection(socket_path: Path) -> None:
    script = one_answer_per_request(
        frame_of(Response.ok(content=ClusterHashes({}))),
        frame_of(Response.ok(content=WorkerResponses({"0": ClusterHashes({})}))),
        frame_of(Response.ok()),
    )
    async with serving(socket_path, script) as peer, SozuClient(socket_path) as client:
        with pytest.raises(UnexpectedContent, match="ClusterHashes where WorkerInfos"):
            await client.list_workers()
        with pytest.raises(UnexpectedContent, match="no content where a 'main' entry"):
            await client.query_clusters_hashes()
        assert client.is_connected
        with pytest.raises(UnexpectedContent, match="no content where ListenersList"):
            await client.list_listeners()
    assert len(peer.connections) == 1


async def test_frames_the_client_writes_are_exact(socket_path: Path) -> None:
    received = bytearray()

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: list[Request | None]
    ) -> None:
        frames = FrameReader()
        while (payload := frames.next_frame()) is None:
            chunk = await reader.read(1024)
            if not chunk:
                return
            received.extend(chunk)
            frames.feed(chunk)
        seen.append(CODEC.decode_request(payload))
        writer.write(frame_of(Response.ok()))
        await writer.drain()
        await reader.read()

    async with serving(socket_path, script), SozuClient(socket_path) as client:
        await client.send(RemoveCluster("a"))
    assert bytes(received) == bytes.fromhex("0b00000000000000 720161")
