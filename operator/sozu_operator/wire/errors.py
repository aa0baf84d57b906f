"""Everything that can go wrong while talking to Sōzu's command socket.

    SozuError
    ├── SozuConnectError            the socket could not be opened
    │   ├── SocketNotFound          no file at the path
    │   ├── SocketPermissionDenied  the file exists but we may not connect to it
    │   ├── SocketRefused           the file exists but nobody listens on it
    │   └── UnsafeSocketPath        the path is a symlink someone else could redirect
    ├── ConnectionClosed            Sōzu hung up, possibly in the middle of a frame
    ├── RequestTimeout              no answer (or no progress note) in time
    ├── ProtocolError               the bytes do not follow the protocol
    │   ├── FrameTooShort           declared length smaller than the 8-byte prefix
    │   ├── FrameTooLarge           declared length above the configured ceiling
    │   ├── UndecodablePayload      the payload is not a valid protobuf message
    │   └── UnexpectedContent       an answer whose content does not fit the request
    ├── RequestFailed               Sōzu answered FAILURE
    └── UnsupportedByVersion        the selected Sōzu version has no such verb or field

Errors that leave the byte stream in an unknown state (ConnectionClosed, RequestTimeout,
FrameTooShort, FrameTooLarge, UndecodablePayload) make the client drop its connection; their
`connection_dropped` attribute says so and the message ends with a sentence about it.
"""

from __future__ import annotations

_DROPPED_NOTE = "The connection was closed; the next request opens a new one."


class SozuError(Exception):
    """Base class of every error raised by the wire layer."""

    connection_dropped: bool = False

    def mark_connection_dropped(self) -> None:
        """Record that the client threw away its connection because of this error."""
        if not self.connection_dropped:
            self.connection_dropped = True
            self.args = (f"{self.args[0]} {_DROPPED_NOTE}", *self.args[1:]) if self.args else ()


# --- connecting ----------------------------------------------------------------------------


class SozuConnectError(SozuError):
    """The command socket could not be opened."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class SocketNotFound(SozuConnectError):
    def __init__(self, path: str) -> None:
        super().__init__(
            path,
            f"No Sōzu command socket at {path}: is Sōzu running, and does `command_socket` in "
            "its configuration point there (a relative path is taken from the configuration "
            "file's directory)? In Kubernetes, check that the volume holding the socket is "
            "mounted in this container too.",
        )


class SocketPermissionDenied(SozuConnectError):
    def __init__(self, path: str) -> None:
        super().__init__(
            path,
            f"Permission denied on the Sōzu command socket {path}: Sōzu makes the socket "
            "readable and writable by its owner only (mode 0600), so run this program with the "
            "same uid as Sōzu (or as root), and check that every directory on the path is "
            "searchable by that uid (in Kubernetes: runAsUser / fsGroup of the shared volume).",
        )


class SocketRefused(SozuConnectError):
    def __init__(self, path: str) -> None:
        super().__init__(
            path,
            f"Connection refused on {path}: the socket file exists but no process listens on "
            "it. Sōzu probably stopped or crashed and left a stale socket; it replaces the file "
            "when it starts again.",
        )


class UnsafeSocketPath(SozuConnectError):
    def __init__(self, path: str, owner_uid: int) -> None:
        super().__init__(
            path,
            f"Refusing to connect through {path}: it is a symbolic link owned by uid "
            f"{owner_uid}, neither us nor root. Whoever owns the link can point it at a socket "
            "of their own and receive our certificates and private keys. Use the real socket "
            "path, or have the link owned by our uid or root.",
        )
        self.owner_uid = owner_uid


# --- conversation --------------------------------------------------------------------------


class ConnectionClosed(SozuError):
    """Sōzu closed the connection. `received` of `expected` bytes of the frame being read had
    arrived (`expected` is None when even the 8-byte length prefix was incomplete)."""

    def __init__(self, verb: str, received: int, expected: int | None) -> None:
        if received == 0:
            detail = "before sending any answer"
        elif expected is None:
            detail = f"in the middle of a frame's length prefix ({received} of 8 bytes read)"
        else:
            detail = f"in the middle of a frame ({received} of {expected} bytes read)"
        super().__init__(f"Sōzu closed the connection {detail} while we waited for {verb}.")
        self.verb = verb
        self.received = received
        self.expected = expected


class RequestTimeout(SozuError):
    def __init__(self, verb: str, timeout: float) -> None:
        super().__init__(
            f"No answer to {verb} within {timeout:g} s (the wait restarts after every "
            "PROCESSING note). Sōzu may be overloaded, or this Sōzu version does not know the "
            "verb and ignores it silently."
        )
        self.verb = verb
        self.timeout = timeout


class ProtocolError(SozuError):
    """The bytes exchanged do not follow the command-socket protocol."""


class FrameTooShort(ProtocolError):
    def __init__(self, declared_length: int) -> None:
        super().__init__(
            f"Frame declares a length of {declared_length} bytes, shorter than its own "
            "8-byte length prefix."
        )
        self.declared_length = declared_length


class FrameTooLarge(ProtocolError):
    def __init__(self, declared_length: int, max_frame_size: int, verb: str | None = None) -> None:
        if verb is None:
            text = (
                f"Frame declares a length of {declared_length} bytes, above the ceiling of "
                f"{max_frame_size} bytes."
            )
        else:
            text = (
                f"Refusing to send {verb}: its frame would be {declared_length} bytes, above "
                f"the ceiling of {max_frame_size} bytes (Sōzu's max_command_buffer_size); "
                "nothing was sent."
            )
        super().__init__(text)
        self.declared_length = declared_length
        self.max_frame_size = max_frame_size
        self.verb = verb


class UndecodablePayload(ProtocolError):
    def __init__(self, message_type: str, payload: bytes, reason: str) -> None:
        preview = payload[:32].hex(" ")
        more = " …" if len(payload) > 32 else ""
        super().__init__(
            f"Cannot decode a {len(payload)}-byte payload as {message_type} ({reason}); "
            f"it starts with: {preview}{more}"
        )
        self.message_type = message_type
        self.payload = payload


class UnexpectedContent(ProtocolError):
    def __init__(self, verb: str, expected: str, got: object) -> None:
        got_text = "no content" if got is None else type(got).__name__
        super().__init__(f"Sōzu answered {verb} with {got_text} where {expected} was expected.")
        self.verb = verb


# --- answers and local refusals ------------------------------------------------------------


class RequestFailed(SozuError):
    """Sōzu answered FAILURE. `message` is Sōzu's own text, untouched."""

    def __init__(self, verb: str, message: str) -> None:
        super().__init__(f"Sōzu refused {verb}: {message}")
        self.verb = verb
        self.message = message

    # Sōzu's sentences are not a stable interface; only these key words are worth matching.
    @property
    def already_exists(self) -> bool:
        return "already exists" in self.message

    @property
    def not_found(self) -> bool:
        return "Did not find" in self.message


class UnsupportedByVersion(SozuError):
    """Raised before anything is sent: the request uses a verb or a field (`field`, e.g.
    "Cluster.http2") that the selected Sōzu wire version (`version`, e.g. "1.0") lacks."""

    def __init__(self, field: str, version: str, *, kind: str = "field") -> None:
        advice = "leave it unset" if kind == "field" else "do not send it"
        super().__init__(
            f"{field} is not known to Sōzu {version} (it is a {kind} of newer versions); "
            f"{advice}, or select the wire version of the Sōzu actually running."
        )
        self.field = field
        self.version = version
