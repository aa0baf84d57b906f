"""Frames of the command socket, without any I/O.

A frame is an 8-byte little-endian length followed by one protobuf payload. The length counts
the whole frame, prefix included. The client and the emulator both feed raw socket bytes into a
`FrameReader` and take whole payloads out, so the rules live in exactly one place.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from sozu_operator.wire.errors import FrameTooLarge, FrameTooShort

PREFIX_SIZE = 8
# Sōzu's default `max_command_buffer_size`: the largest frame a 2.x main process accepts.
DEFAULT_MAX_FRAME_SIZE = 2_000_000

_PREFIX = struct.Struct("<Q")


def encode_frame(payload: bytes) -> bytes:
    """Prefix `payload` with the total frame length."""
    return _PREFIX.pack(PREFIX_SIZE + len(payload)) + payload


class FrameReader:
    """Accumulates bytes and hands out complete payloads in arrival order.

    `max_frame_size` bounds the declared length (prefix included); None accepts any length,
    like Sōzu 1.0's main process. A bad length prefix raises FrameTooShort / FrameTooLarge and
    stays in the buffer, so every later call raises again until the caller `discard`s it:
    recovering or giving up is the caller's decision (Sōzu 2.x skips the 8 bytes).
    """

    def __init__(self, max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size is not None and max_frame_size < PREFIX_SIZE:
            raise ValueError(f"max_frame_size {max_frame_size} cannot hold the 8-byte prefix")
        self._max_frame_size = max_frame_size
        self._buffer = bytearray()

    @property
    def max_frame_size(self) -> int | None:
        return self._max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return len(self._buffer)

    @property
    def declared_length(self) -> int | None:
        """Total length announced by the frame being assembled, once its prefix is complete."""
        if len(self._buffer) < PREFIX_SIZE:
            return None
        (length,) = _PREFIX.unpack_from(self._buffer)
        return int(length)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next complete payload, or None if more bytes are needed."""
        length = self.declared_length
        if length is None:
            return None
        if length < PREFIX_SIZE:
            raise FrameTooShort(length)
        # Checked before the payload arrives so that a huge announced length is refused without
        # buffering it, as Sōzu 2.x does.
        if self._max_frame_size is not None and length > self._max_frame_size:
            raise FrameTooLarge(length, self._max_frame_size)
        if len(self._buffer) < length:
            return None
        payload = bytes(self._buffer[PREFIX_SIZE:length])
        del self._buffer[:length]
        return payload

    def frames(self) -> Iterator[bytes]:
        """Every complete payload currently buffered."""
        while (payload := self.next_frame()) is not None:
            yield payload

    def discard(self, count: int) -> None:
        """Drop `count` buffered bytes (e.g. a bad prefix) to try to resynchronise."""
        del self._buffer[:count]
