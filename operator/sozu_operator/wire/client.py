"""Asyncio client for Sōzu's command socket.

Use it as an async context manager, which connects on entry and closes on exit::

    async with SozuClient("/run/sozu/sozu.sock", version=WireVersion.V2) as client:
        await client.send(AddCluster(Cluster("api")))
        hashes = await client.query_clusters_hashes()

or connect eagerly and close it yourself::

    client = await SozuClient.connect("/run/sozu/sozu.sock", timeout=5.0)
    try:
        workers = await client.list_workers()
    finally:
        await client.aclose()

How the conversation works, and why:

* One request at a time per client. Sōzu keeps only the last of several frames it reads at
  once and drops the others without an answer, and nothing in an answer says which request it
  belongs to, so `send` holds a lock from writing the request until the final answer is read.
  For parallelism, open several clients.
* Sōzu may answer PROCESSING any number of times before the final OK or FAILURE. The timeout
  applies to each answer and restarts at every PROCESSING, as in Sōzu's own CLI, so a long
  fan-out to many workers that keeps reporting progress does not time out.
* FAILURE raises `RequestFailed` (or is returned with `raise_for_failure=False`).
* After a timeout, a protocol error, a hang-up or a cancellation the byte stream can no longer
  be trusted (a late answer would be taken for the next one), so the connection is dropped and
  the next request opens a fresh one. The error's `connection_dropped` says so.
* Sōzu has no handshake: nothing checks that `version` matches the running Sōzu. A verb unknown
  to it is ignored silently, which shows up as a RequestTimeout.

A server for tests (the emulator) needs only `framing` and `codec`: read frames with a
`FrameReader`, decode them with `Codec.decode_request`, answer with `encode_frame(
Codec.encode_response(...))`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Final, Self, TypeVar

from sozu_operator.proxy.model import CertificateAndKey
from sozu_operator.proxy.requests import (
    CountRequests,
    ListFrontends,
    ListListeners,
    ListWorkers,
    QueryCertificatesFromTheState,
    QueryClusterById,
    QueryClustersByDomain,
    QueryClustersHashes,
    Request,
    SaveState,
    Status,
    verb_name,
)
from sozu_operator.proxy.responses import (
    CertificatesWithFingerprints,
    ClusterHashes,
    ClusterInformation,
    ClusterInformations,
    ListedFrontends,
    ListenersList,
    RequestCounts,
    Response,
    ResponseStatus,
    WorkerInfo,
    WorkerInfos,
    WorkerResponses,
)
from sozu_operator.wire.codec import Codec, WireVersion
from sozu_operator.wire.errors import (
    ConnectionClosed,
    FrameTooLarge,
    RequestFailed,
    RequestTimeout,
    SocketNotFound,
    SocketPermissionDenied,
    SocketRefused,
    SozuConnectError,
    SozuError,
    UnexpectedContent,
    UnsafeSocketPath,
)
from sozu_operator.wire.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    PREFIX_SIZE,
    FrameReader,
    encode_frame,
)

logger = logging.getLogger(__name__)

ProcessingCallback = Callable[[Response], object]
"""Called with every PROCESSING answer of a request, before waiting for the next one."""

_READ_SIZE = 65536
_Content = TypeVar("_Content")


class _UseClientDefault(Enum):
    TOKEN = "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT: Final = _UseClientDefault.TOKEN
"""Default of `send(timeout=…)`: use the client's timeout (None would mean no timeout)."""


def connect_error_for(path: str, error: OSError) -> SozuConnectError:
    """The typed error telling the user how to fix a failed connect()."""
    if isinstance(error, FileNotFoundError):
        return SocketNotFound(path)
    if isinstance(error, PermissionError):
        return SocketPermissionDenied(path)
    if isinstance(error, ConnectionRefusedError):
        return SocketRefused(path)
    return SozuConnectError(
        path, f"Cannot connect to the Sōzu command socket {path}: {error.strerror or error}"
    )


_MAX_LINKS = 40  # as Linux's MAXSYMLINKS: beyond it, connect() reports ELOOP itself


def _untrusted_link(path: str, trusted: set[int]) -> tuple[str, int] | None:
    """The first symbolic link owned by an untrusted uid that resolving `path` goes through,
    with its owner: every component of the path and, recursively, of every link target, in
    the order the kernel follows them. None if there is none, or if resolution stops at a
    missing or unreadable component (connect() then reports that)."""
    pending = [part for part in path.split("/") if part]
    current = "/" if path.startswith("/") else os.getcwd()
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = os.path.dirname(current) or "/"
            continue
        candidate = os.path.join(current, part)
        try:
            status = os.lstat(candidate)
        except OSError:
            return None
        if not stat.S_ISLNK(status.st_mode):
            current = candidate
            continue
        if status.st_uid not in trusted:
            return candidate, status.st_uid
        hops += 1
        if hops > _MAX_LINKS:
            return None
        try:
            target = os.readlink(candidate)
        except OSError:
            return None
        if target.startswith("/"):
            current = "/"
        pending[:0] = [piece for piece in target.split("/") if piece]
    return None


def check_socket_path(path: str) -> None:
    """Refuse paths that someone other than us or root could redirect.

    Sōzu's socket carries certificates with their private keys and answers we act on. If
    resolving the path goes through a symbolic link owned by another uid (a component of the
    path itself, or of a link's target, however deep), that user can repoint it at a socket of
    their own (e.g. in a shared volume or /tmp). Only links are checked: the directories
    themselves are trusted, as Sōzu trusts them when it creates the socket. Missing or
    unreadable components are left for connect() to report.
    """
    found = _untrusted_link(path, {os.geteuid(), 0})
    if found is not None:
        raise UnsafeSocketPath(*found)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISSOCK(mode):  # connect() would say "refused", which misleads
        raise SozuConnectError(
            path,
            f"{path} exists but is not a socket: check `command_socket` in Sōzu's "
            "configuration and the path given here.",
        )


@dataclass(frozen=True, slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: FrameReader

    def close(self) -> None:
        self.writer.close()


class SozuClient:
    """A connection to one Sōzu main process, opened lazily and reopened after errors.

    `timeout` (seconds, None = wait forever) bounds connecting and each answer. Frames longer
    than `max_frame_size` are refused in both directions; the default is Sōzu's default
    `max_command_buffer_size`, which Sōzu 2.x enforces on its side too.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        version: WireVersion = WireVersion.V2,
        timeout: float | None = 10.0,
        max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._path = os.fspath(path)
        self._codec = Codec(version)
        self._timeout = timeout
        self._max_frame_size = max_frame_size
        self._connection: _Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls,
        path: str | os.PathLike[str],
        *,
        version: WireVersion = WireVersion.V2,
        # The client keeps this timeout for every later request, so asyncio.timeout() around
        # the call could not replace it.
        timeout: float | None = 10.0,  # noqa: ASYNC109
        max_frame_size: int | None = DEFAULT_MAX_FRAME_SIZE,
    ) -> SozuClient:
        """A client whose connection is already open, so connect errors surface here."""
        client = cls(path, version=version, timeout=timeout, max_frame_size=max_frame_size)
        await client.open()
        return client

    def sibling(self) -> SozuClient:
        """Another client of the same Sōzu with the same settings: a second connection, for
        requests that may run side by side with this client's."""
        return SozuClient(
            self._path, version=self.version, timeout=self._timeout,
            max_frame_size=self._max_frame_size,
        )

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "idle"
        return f"<SozuClient {self._path} {self.version.name} {state}>"

    @property
    def path(self) -> str:
        return self._path

    @property
    def version(self) -> WireVersion:
        return self._codec.version

    @property
    def codec(self) -> Codec:
        return self._codec

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def open(self) -> None:
        """Open the connection now instead of on the first request (no-op if open)."""
        async with self._lock:
            await self._ensure_connection()

    async def aclose(self) -> None:
        """Close the connection; a later request would open a new one."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()

    async def wait_until_hung_up(self) -> bool:
        """Wait until Sōzu closes this client's connection (opened if there is none): its main
        process stopped (restart, crash, upgrade). True then; False if Sōzu wrote something
        instead, which it never does unasked. The connection is dropped either way. Only for
        a client that sends nothing else: the wait holds the client's lock. Raises
        SozuConnectError if no connection can be opened."""
        async with self._lock:
            connection = self._connection
            if connection is not None and (
                connection.reader.at_eof() or connection.writer.is_closing()
            ):  # it hung up already, e.g. right after its last answer
                self._drop_connection()
                return True
            connection = await self._ensure_connection()
            try:
                return not await connection.reader.read(1)
            except OSError:  # a reset is a hang-up too
                return True
            finally:
                self._drop_connection()

    # --- the one generic request -----------------------------------------------------------

    async def send(
        self,
        request: Request,
        *,
        # Restarted at every PROCESSING answer, which asyncio.timeout() around send() cannot do.
        timeout: float | _UseClientDefault | None = USE_CLIENT_DEFAULT,  # noqa: ASYNC109
        on_processing: ProcessingCallback | None = None,
        raise_for_failure: bool = True,
    ) -> Response:
        """Send `request` and return its final (OK, or FAILURE if not raised) answer."""
        verb = verb_name(request)
        payload = self._codec.encode_request(request)  # may raise UnsupportedByVersion
        frame_length = PREFIX_SIZE + len(payload)
        if self._max_frame_size is not None and frame_length > self._max_frame_size:
            raise FrameTooLarge(frame_length, self._max_frame_size, verb)
        wait = self._timeout if timeout is USE_CLIENT_DEFAULT else timeout

        async with self._lock:
            connection = await self._ensure_connection()
            try:
                response = await self._exchange(
                    connection, verb, encode_frame(payload), wait, on_processing
                )
            except SozuError as error:
                self._drop_connection()
                error.mark_connection_dropped()
                raise
            except BaseException:  # cancellation, or an error raised by on_processing
                self._drop_connection()
                raise
            if connection.frames.buffered:
                # Bytes nobody asked for would be read as the next request's answer.
                logger.warning("%s: unsolicited bytes after the final answer; reconnecting", verb)
                self._drop_connection()

        if response.status is ResponseStatus.FAILURE and raise_for_failure:
            raise RequestFailed(verb, response.message)
        return response

    # --- typed queries ---------------------------------------------------------------------

    async def list_workers(self) -> tuple[WorkerInfo, ...]:
        """Main's bookkeeping of its workers (no round trip to them)."""
        return (await self._content(ListWorkers(), WorkerInfos)).workers

    async def status(self) -> tuple[WorkerInfo, ...]:
        """Workers as seen by asking each of them; silent ones are NOT_ANSWERING."""
        return (await self._content(Status(), WorkerInfos)).workers

    async def list_listeners(self) -> ListenersList:
        return await self._content(ListListeners(), ListenersList)

    async def list_frontends(
        self,
        *,
        http: bool = False,
        https: bool = False,
        tcp: bool = False,
        domain: str | None = None,
    ) -> ListedFrontends:
        """No kind selected = every kind. `domain` is a substring match and excludes TCP.
        Sōzu 1.0.0–1.0.4 always answers FAILURE (RequestFailed) to this verb."""
        request = ListFrontends(http=http, https=https, tcp=tcp, domain=domain)
        return await self._content(request, ListedFrontends)

    async def query_cluster_by_id(self, cluster_id: str) -> ClusterInformation | None:
        """Main's view of one cluster, or None if main knows nothing about it. The result's
        `configuration` is None when only orphan frontends/backends name the cluster."""
        found = await self._main_entry(QueryClusterById(cluster_id), ClusterInformations)
        return found.clusters[0] if found.clusters else None

    async def query_clusters_by_domain(
        self, hostname: str, path: str | None = None
    ) -> tuple[ClusterInformation, ...]:
        """Clusters with an HTTP(S) frontend whose hostname (and path, if given) is equal."""
        request = QueryClustersByDomain(hostname, path)
        return (await self._main_entry(request, ClusterInformations)).clusters

    async def query_clusters_hashes(self) -> dict[str, int]:
        """cluster id → hash of main's state for it; compare over time to detect drift."""
        hashes = await self._main_entry(QueryClustersHashes(), ClusterHashes)
        return dict(hashes.hashes)

    async def query_all_clusters(self) -> dict[str, ClusterInformation]:
        """Every cluster main has a configuration for, one `query_cluster_by_id` each (Sōzu
        has no single request for this). Clusters removed meanwhile are left out."""
        clusters: dict[str, ClusterInformation] = {}
        for cluster_id in sorted(await self.query_clusters_hashes()):
            information = await self.query_cluster_by_id(cluster_id)
            if information is not None:
                clusters[cluster_id] = information
        return clusters

    async def query_certificates_from_the_state(
        self, *, domain: str | None = None, fingerprint: str | None = None
    ) -> dict[str, CertificateAndKey]:
        """fingerprint → certificate, private keys included. `domain` must equal one of a
        certificate's names; `fingerprint` is lowercase hex. Sōzu ignores `fingerprint`
        when `domain` is given."""
        request = QueryCertificatesFromTheState(domain=domain, fingerprint=fingerprint)
        found = await self._content(request, CertificatesWithFingerprints)
        return dict(found.certificates)

    async def count_requests(self) -> dict[str, int]:
        """Verb name → Sōzu's counter (which is the real count + 1, an upstream quirk)."""
        return dict((await self._content(CountRequests(), RequestCounts)).counts)

    async def save_state(self, path: str) -> str:
        """Have main write its state to `path` (a path on main's filesystem; Sōzu 2.x
        resolves a relative one against main's working directory). Returns Sōzu's message."""
        return (await self.send(SaveState(path))).message

    # --- internals -------------------------------------------------------------------------

    async def _ensure_connection(self) -> _Connection:
        connection = self._connection
        if connection is not None and (
            connection.reader.at_eof() or connection.writer.is_closing()
        ):
            # Sōzu hung up while we were idle (restart, UpgradeMain): nothing was sent on
            # this connection since, so reconnecting is safe.
            self._drop_connection()
            connection = None
        if connection is None:
            connection = await self._open_connection()
            self._connection = connection
        return connection

    async def _open_connection(self) -> _Connection:
        check_socket_path(self._path)
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_unix_connection(self._path)
        except TimeoutError:  # before OSError: TimeoutError is one of its subclasses
            raise SozuConnectError(
                self._path,
                f"Timed out after {self._timeout:g} s connecting to {self._path}: Sōzu's main "
                "process accepts no connection (stuck or overloaded?).",
            ) from None
        except OSError as error:
            raise connect_error_for(self._path, error) from error
        return _Connection(reader, writer, FrameReader(self._max_frame_size))

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    async def _exchange(
        self,
        connection: _Connection,
        verb: str,
        frame: bytes,
        wait: float | None,
        on_processing: ProcessingCallback | None,
    ) -> Response:
        try:
            async with asyncio.timeout(wait):
                connection.writer.write(frame)
                await connection.writer.drain()
        except TimeoutError:
            raise RequestTimeout(verb, _seconds(wait)) from None
        except ConnectionError:
            raise ConnectionClosed(verb, 0, None) from None
        while True:
            try:
                async with asyncio.timeout(wait):
                    response = await self._read_response(connection, verb)
            except TimeoutError:
                raise RequestTimeout(verb, _seconds(wait)) from None
            if response.is_final:
                return response
            logger.debug("%s: processing: %s", verb, response.message)
            if on_processing is not None:
                on_processing(response)

    async def _read_response(self, connection: _Connection, verb: str) -> Response:
        frames = connection.frames
        while (payload := frames.next_frame()) is None:
            try:
                data = await connection.reader.read(_READ_SIZE)
            except ConnectionError:
                data = b""
            if not data:
                raise ConnectionClosed(verb, frames.buffered, frames.declared_length)
            frames.feed(data)
        return self._codec.decode_response(payload)

    async def _content(self, request: Request, expected: type[_Content]) -> _Content:
        content = (await self.send(request)).content
        if not isinstance(content, expected):
            raise UnexpectedContent(verb_name(request), expected.__name__, content)
        return content

    async def _main_entry(self, request: Request, expected: type[_Content]) -> _Content:
        """The "main" entry of a WorkerResponses answer: main's own view of its state."""
        responses = await self._content(request, WorkerResponses)
        main = responses.responses.get("main")
        if not isinstance(main, expected):
            raise UnexpectedContent(
                verb_name(request), f"a 'main' entry with {expected.__name__}", main
            )
        return main


def _seconds(wait: float | None) -> float:
    # A timeout can only fire when one was set; this keeps the error's type a plain float.
    return float("inf") if wait is None else wait
