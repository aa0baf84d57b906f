"""Shared helpers for the emulator tests: addresses, listeners, and a raw-frame connection for
the behaviours the client deliberately hides (pipelining, bad frames, silence)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    HttpListener,
    HttpsListener,
    ListenerType,
    SocketAddress,
    TcpListener,
)
from sozu_operator.proxy.responses import Response, ResponseStatus
from sozu_operator.wire import Codec, FrameReader, SozuClient, WireVersion, encode_frame

HTTP_ADDRESS = SocketAddress.parse("127.0.0.1:8080")
HTTPS_ADDRESS = SocketAddress.parse("127.0.0.1:8443")
TCP_ADDRESS = SocketAddress.parse("127.0.0.1:9000")
BACKEND_ADDRESS = SocketAddress.parse("10.0.0.1:80")

# Short enough that tests stay fast, long enough for a loaded CI machine to answer.
ANSWER_TIMEOUT = 2.0
SILENCE = 0.3


def address(text: str) -> SocketAddress:
    return SocketAddress.parse(text)


def add_listener(kind: ListenerType, at: SocketAddress) -> rq.Mutation:
    if kind is ListenerType.HTTP:
        return rq.AddHttpListener(HttpListener(at))
    if kind is ListenerType.HTTPS:
        return rq.AddHttpsListener(HttpsListener(at))
    return rq.AddTcpListener(TcpListener(at))


@dataclass
class Exchange:
    """Every answer to one request, PROCESSING notes included."""

    responses: list[Response] = field(default_factory=list)

    @property
    def final(self) -> Response:
        return self.responses[-1]

    @property
    def processing(self) -> list[Response]:
        return [r for r in self.responses if r.status is ResponseStatus.PROCESSING]

    @property
    def ok(self) -> bool:
        return self.final.status is ResponseStatus.OK

    @property
    def message(self) -> str:
        return self.final.message


async def exchange(client: SozuClient, request: rq.Request) -> Exchange:
    """Send through the project's client and keep the PROCESSING notes too."""
    result = Exchange()
    final = await client.send(
        request, on_processing=result.responses.append, raise_for_failure=False
    )
    result.responses.append(final)
    return result


async def apply_all(client: SozuClient, *requests: rq.Request) -> None:
    """Send requests that must all succeed."""
    for request in requests:
        result = await exchange(client, request)
        assert result.ok, f"{rq.verb_name(request)} failed: {result.message}"


class RawConnection:
    """A bare command-socket connection: write any bytes, read decoded frames."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        version: WireVersion,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.codec = Codec(version)
        self.frames = FrameReader(max_frame_size=None)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, path: str | os.PathLike[str], version: WireVersion = WireVersion.V2
    ) -> AsyncIterator[RawConnection]:
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        connection = cls(reader, writer, version)
        try:
            yield connection
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, *requests: rq.Request) -> None:
        """All requests in ONE write, so that they arrive in one read (pipelining)."""
        await self.write(b"".join(encode_frame(self.codec.encode_request(r)) for r in requests))

    async def read(self, timeout: float = ANSWER_TIMEOUT) -> Response:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while (payload := self.frames.next_frame()) is None:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError(f"closed with {self.frames.buffered} bytes of a frame")
                self.frames.feed(data)
        return self.codec.decode_response(payload)

    async def read_exchange(self, timeout: float = ANSWER_TIMEOUT) -> Exchange:  # noqa: ASYNC109
        result = Exchange()
        while True:
            response = await self.read(timeout)
            result.responses.append(response)
            if response.is_final:
                return result

    async def assert_silent(self, seconds: float = SILENCE) -> None:
        """Nothing at all arrives (and the connection stays open) for `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                data = await self.reader.read(65536)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence, got {data!r}")

    async def read_until_closed(self, timeout: float = ANSWER_TIMEOUT) -> bytes:  # noqa: ASYNC109
        """Everything that arrives before the server closes the connection."""
        received = bytearray()
        async with asyncio.timeout(timeout):
            while data := await self.reader.read(65536):
                received += data
        return bytes(received)
