"""Sōzu's command socket: framing, protobuf codec per wire version, asyncio client, errors.

Typical use::

    from sozu_operator.wire import SozuClient, WireVersion

    async with SozuClient("/run/sozu/sozu.sock", version=WireVersion.V2) as client:
        listeners = await client.list_listeners()
"""

from sozu_operator.wire.client import USE_CLIENT_DEFAULT, ProcessingCallback, SozuClient
from sozu_operator.wire.codec import Codec, WireVersion
from sozu_operator.wire.errors import (
    ConnectionClosed,
    FrameTooLarge,
    FrameTooShort,
    ProtocolError,
    RequestFailed,
    RequestTimeout,
    SocketNotFound,
    SocketPermissionDenied,
    SocketRefused,
    SozuConnectError,
    SozuError,
    UndecodablePayload,
    UnexpectedContent,
    UnsafeSocketPath,
    UnsupportedByVersion,
)
from sozu_operator.wire.framing import DEFAULT_MAX_FRAME_SIZE, FrameReader, encode_frame

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "USE_CLIENT_DEFAULT",
    "Codec",
    "ConnectionClosed",
    "FrameReader",
    "FrameTooLarge",
    "FrameTooShort",
    "ProcessingCallback",
    "ProtocolError",
    "RequestFailed",
    "RequestTimeout",
    "SocketNotFound",
    "SocketPermissionDenied",
    "SocketRefused",
    "SozuClient",
    "SozuConnectError",
    "SozuError",
    "UndecodablePayload",
    "UnexpectedContent",
    "UnsafeSocketPath",
    "UnsupportedByVersion",
    "WireVersion",
    "encode_frame",
]
