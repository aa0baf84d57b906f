"""A stand-in for Sōzu's main process on a real unix command socket.

It speaks the same frames and protobuf payloads as Sōzu 1.0 or 2.1, keeps main's
configuration state with Sōzu's semantics (`proxy.state.ConfigState`), fans mutations out to
emulated workers (`sozu_worker.EmulatedWorker`) that can refuse what main accepted, and
reproduces the rough edges a client must survive:

* framing: a declared length below 8 bytes is skipped by 2.x (the 8 bytes are dropped and the
  rest waits for the next read); Sōzu 1.0 panics there, which is emulated by closing every
  connection and the listening socket (the socket file stays behind, stale, as after a crash).
  A frame announcing more than `max_frame_size` (2.x only) or carrying bytes that are not a
  `Request` is never answered and blocks its connection for good; a frame of exactly 8 bytes
  is an empty request and is ignored. A response frame above the ceiling closes the
  connection without an answer (2.x).
* pipelining: of the frames one read delivers, only the last is handled; the others are
  dropped unanswered (they still show in `verb_counts`).
* answers: PROCESSING notes and final OK / FAILURE texts are upstream's own wording.
* silence for empty requests, unknown members (a 2.x-only verb sent to the 1.0 emulator),
  `launch_worker` and `return_listen_sockets`.

Where the emulator knowingly differs from Sōzu:

* verbs Sōzu has but the typed models do not (soft/hard stop, upgrades, reload, metrics
  queries, 2.x health checks and UDP) get one FAILURE saying the emulator does not implement
  them, so that a test fails fast instead of timing out. `Logging` and `configure_metrics`
  are counted and answered OK without any effect.
* `subscribe_events` registers the connection and, on 2.x, sends the EVENTS_SUBSCRIBED
  PROCESSING note; no later event is ever emitted.
* workers always answer, immediately; there is no worker timeout, no worker PROCESSING and no
  unanswering worker (`status` always reports RUNNING).

Fault injection for tests (`fail_nth_mutation`, `close_mid_response`, `hang`, `restart`) is
available in-process and, with `control=True`, over a JSON-lines control socket at
`<socket>.control` so that an emulator running as a separate process can be driven too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from sozu_operator.emulators.sozu_worker import EmulatedWorker, WorkerAnswer
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.responses import (
    CertificatesWithFingerprints,
    ClusterHashes,
    ClusterInformations,
    Event,
    RequestCounts,
    Response,
    ResponseContent,
    ResponseStatus,
    RunState,
    WorkerInfo,
    WorkerInfos,
    WorkerResponses,
)
from sozu_operator.proxy.state import DISPATCH_FAILURE_PREFIX, ConfigState, StateError
from sozu_operator.proxy.statefile import (
    SozuVersion,
    StateFileError,
    parse_state,
    render_state,
)
from sozu_operator.wire.codec import Codec, WireVersion
from sozu_operator.wire.errors import (
    FrameTooLarge,
    FrameTooShort,
    ProtocolError,
    UndecodablePayload,
)
from sozu_operator.wire.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    PREFIX_SIZE,
    FrameReader,
    encode_frame,
)

logger = logging.getLogger(__name__)

_READ_SIZE = 1 << 20
_FIRST_PID = 10_000
# 2.1.0 EventKind.EVENTS_SUBSCRIBED; our EventKind enum only names the 1.0 kinds.
_EVENTS_SUBSCRIBED = 26

# Upstream answer texts (bin/src/command/requests.rs, identical at 1.0.0 and 2.1.0).
PROCESSING_WORKER_REQUEST = "Processing worker request..."
APPLIED_TO_ALL_WORKERS = "Successfully applied request to all workers"
PROCESSING_QUERY_CLUSTERS = "Querying cluster..."
QUERIED_CLUSTERS = "Successfully queried clusters"
PROCESSING_STATUS = "Querying status of workers..."
COLLECTED_STATUS = "Successfully collected the status of workers"
LISTED_WORKERS = "Successfully listed workers"
LISTED_LISTENERS = "Successfully listed listeners"
LISTED_FRONTENDS = "Successfully listed frontends"
CANNOT_LIST_FRONTENDS = "main process could not list frontends"  # 1.0.0 (up to 1.0.4)
COUNTED_REQUESTS = "Successfully counted requests received by the state"
QUERIED_CERTIFICATES = "Successfully queried certificates from the state of main process"
APPLYING_STATE_FILE = "Applying state file..."

# Members Sōzu reads and then ignores without answering.
_SILENT_MEMBERS = frozenset({"launch_worker", "return_listen_sockets"})
# Members routed through main's fan-out although no typed model exists for them.
_UNMODELLED_MUTATIONS = frozenset({"Logging", "configure_metrics"})
_SNAKE_WORD = re.compile(r"(?:^|_)([a-z0-9])")

RestartTo = Literal["boot", "empty"]


def member_verb(member: str) -> str:
    """CamelCase verb name of a `request_type` member, as Sōzu's counters spell it."""
    return _SNAKE_WORD.sub(lambda match: match.group(1).upper(), member)


def _sanitize_worker_text(text: str) -> str:
    # 2.1.0 rewrites worker error texts before joining them: Unicode control characters, BOM,
    # line/paragraph separators, bidi overrides/isolates, ',' and '=' all become '?'.
    def unsafe(char: str) -> bool:
        code = ord(char)
        return (
            code < 0x20
            or 0x7F <= code <= 0x9F
            or char in ",=\ufeff\u2028\u2029"
            or 0x202A <= code <= 0x202E
            or 0x2066 <= code <= 0x2069
        )

    return "".join("?" if unsafe(char) else char for char in text)


def _remove_stale_socket(path: str) -> None:
    # Like Sōzu: whatever sits at the path (typically the socket of a crashed run) is deleted
    # before binding; the new socket is then restricted to its owner.
    if os.path.lexists(path):
        os.unlink(path)


def _io_error_text(error: OSError) -> str:
    """Rust's Display for io::Error: `<strerror> (os error <n>)`."""
    if error.errno is None:
        return str(error)
    return f"{os.strerror(error.errno)} (os error {error.errno})"


@dataclass(frozen=True, slots=True)
class _Decoded:
    """One request frame: its oneof member (None = empty/unknown) and typed request (None
    when no model exists for the member)."""

    member: str | None
    request: rq.Request | None

    @property
    def verb(self) -> str | None:
        if self.request is not None:
            return rq.verb_name(self.request)
        return None if self.member is None else member_verb(self.member)


@dataclass(frozen=True, slots=True)
class _InjectedFailure:
    message: str
    in_main: bool
    worker_indexes: frozenset[int] | None  # None = every worker


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    frames: FrameReader
    # Set once an undecodable or oversized frame sits at the head of the buffer: Sōzu never
    # consumes it, so nothing after it is ever answered on this connection.
    stuck: bool = False
    subscribed: bool = False
    closed: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    serial: int = 0  # the how-manieth connection of this emulator (1, 2, …)

    def close(self, *, abort: bool = False) -> None:
        self.closed = True
        if abort:
            # A dying process: unsent bytes are lost, the peer sees the connection go.
            self.writer.transport.abort()
        else:
            self.writer.close()


@dataclass(frozen=True, slots=True)
class BootReport:
    """What the emulator did with its boot state: requests main refused and state-file
    records it could not use. Printed on stderr by `run_emulator`."""

    refused: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


class SozuEmulator:
    """Sōzu's main process, emulated on `socket_path`.

    `version`: wire version and behaviour (1 = Sōzu 1.0.0, 2 = Sōzu 2.1.0).
    `workers`: number of emulated workers (Sōzu's default `worker_count` is 2).
    `initial_state`: the TOML-like boot configuration, as requests (replayed, refusals
    reported) or as a ready ConfigState (copied).
    `state_file`: Sōzu's `saved_state`: loaded after `initial_state` at start and at every
    restart, if the file exists then.
    `max_frame_size`: largest request frame accepted (2.x; 1.0 has no ceiling).
    `working_dir`: main's working directory, against which relative `save_state` /
    `load_state` paths are resolved (default: the current directory at construction).
    `restart_to`: state after `restart()`: "boot" (initial state + state file) or "empty".
    `control`: also serve the JSON control socket at `<socket_path>.control`.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        version: int = 2,
        workers: int = 2,
        initial_state: Sequence[rq.Mutation] | ConfigState | None = None,
        state_file: str | os.PathLike[str] | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        working_dir: str | os.PathLike[str] | None = None,
        restart_to: RestartTo = "boot",
        control: bool = False,
    ) -> None:
        if workers < 0:
            raise ValueError(f"worker count must be >= 0, not {workers}")
        self.socket_path = os.fspath(socket_path)
        self.version = WireVersion(version)
        self.codec = Codec(self.version)
        self.worker_count = workers
        self.max_frame_size: int | None = max_frame_size if self.version is WireVersion.V2 else None
        self.working_dir = Path(working_dir) if working_dir is not None else Path.cwd()
        self.state_file = Path(state_file) if state_file is not None else None
        self.restart_to: RestartTo = restart_to
        self.control_path: str | None = f"{self.socket_path}.control" if control else None
        self._initial_state = initial_state

        self.verb_counts: collections.Counter[str] = collections.Counter()
        # time.monotonic() (one clock for every process of the machine) when the last answer
        # to a mutation was written: a benchmark times a change without polling hard.
        self.last_mutation_answered: float | None = None
        # Requests read per connection, by `_Connection.serial`.
        self.requests_by_connection: collections.Counter[int] = collections.Counter()
        self._connection_serial = 0
        self.crashed = False
        self.state = ConfigState(sozu_version=int(self.version))
        self.workers: list[EmulatedWorker] = []
        self.boot_report = BootReport()
        self._next_worker_id = 0
        self._connections: set[_Connection] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._bound: dict[str, int] = {}  # path → inode, to remove only our own socket files
        self._reset_faults()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Boot the state and workers, then listen."""
        self._boot("boot")
        self._servers.append(await self._listen(self.socket_path, self._serve_client))
        if self.control_path is not None:
            self._servers.append(await self._listen(self.control_path, self._serve_control))

    async def stop(self) -> None:
        """Close every connection and listening socket and remove the socket files."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        await self._close_connections()
        for path, inode in self._bound.items():
            # Only a file that is still the socket we bound: never someone else's.
            with contextlib.suppress(OSError):
                if os.lstat(path).st_ino == inode:
                    os.unlink(path)
        self._bound.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _listen(
        self,
        path: str,
        handler: collections.abc.Callable[
            [asyncio.StreamReader, asyncio.StreamWriter], collections.abc.Awaitable[None]
        ],
    ) -> asyncio.AbstractServer:
        _remove_stale_socket(path)
        server = await asyncio.start_unix_server(handler, path=path, limit=_READ_SIZE)
        os.chmod(path, 0o600)
        self._bound[path] = os.lstat(path).st_ino
        return server

    async def _close_connections(self) -> None:
        connections = list(self._connections)
        self._connections.clear()
        current = asyncio.current_task()
        tasks = []
        for connection in connections:
            connection.close(abort=True)
            if connection.task is not None and connection.task is not current:
                tasks.append(connection.task)
        # Closing the transport ends each handler through EOF. Cancelling handler tasks
        # instead makes asyncio's stream server log the CancelledError as an error.
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()

    # --- boot and restart ------------------------------------------------------------------

    def _boot(self, mode: RestartTo) -> None:
        sozu_version = int(self.version)
        refused: list[str] = []
        problems: list[str] = []
        if mode == "empty" or self._initial_state is None:
            state = ConfigState(sozu_version=sozu_version)
        elif isinstance(self._initial_state, ConfigState):
            state = self._initial_state.copy()
            state.sozu_version = sozu_version
        else:
            state, rejected = ConfigState.from_requests(
                list(self._initial_state), sozu_version=sozu_version
            )
            refused += [f"{rq.verb_name(request)}: {error}" for request, error in rejected]
        if mode == "boot" and self.state_file is not None and self.state_file.exists():
            requests, problem, skipped = self._read_state_file(self.state_file)
            problems += skipped
            if problem is not None:
                problems.append(problem)
            for request in requests:
                try:
                    state.dispatch(request)
                except StateError as error:
                    refused.append(f"{rq.verb_name(request)}: {error}")
        self.state = state
        self.workers = [self._spawn_worker() for _ in range(self.worker_count)]
        self.boot_report = BootReport(tuple(refused), tuple(problems))

    def _spawn_worker(self) -> EmulatedWorker:
        worker_id = self._next_worker_id
        self._next_worker_id += 1
        return EmulatedWorker(
            worker_id,
            _FIRST_PID + worker_id,
            sozu_version=int(self.version),
            initial=self.state,
        )

    async def restart(self, *, to: RestartTo | None = None) -> None:
        """Emulate a restart of Sōzu's main process: every client connection is closed, the
        state goes back to `to` (default: the `restart_to` given at construction), workers
        get new ids and pids, Sōzu's request counts restart from the boot state, and every
        armed fault is cleared. The socket path stays the same. `verb_counts` is kept."""
        await self._close_connections()
        self._reset_faults()
        self._boot(to or self.restart_to)

    # --- fault injection -------------------------------------------------------------------

    def _reset_faults(self) -> None:
        self._mutations_seen = 0
        self._injected: dict[int, _InjectedFailure] = {}
        self._frames_sent = 0
        self._cut_frames: set[int] = set()
        self._hang_until: float | None = None
        self._hang_applies = False

    def fail_nth_mutation(
        self,
        n: int = 1,
        message: str = "injected failure",
        *,
        in_main: bool = False,
        workers: Collection[int] | None = None,
    ) -> None:
        """Make the `n`-th mutation from now (1 = the next one) fail.

        Default (`in_main=False`): main applies it, then the workers listed by index in
        `workers` (default: all) answer FAILURE with `message` — they update their own
        ConfigState but not their live objects, the realistic partial failure. With
        `in_main=True` main refuses it: one FAILURE with main's dispatch prefix, nothing
        changes anywhere (the request is still counted, as Sōzu counts refused requests).
        If main's real state refuses the request first, that refusal wins and the injected
        failure is used up."""
        if n < 1:
            raise ValueError(f"n counts from 1 (the next mutation), not {n}")
        indexes = None if workers is None else frozenset(workers)
        self._injected[self._mutations_seen + n] = _InjectedFailure(message, in_main, indexes)

    def close_mid_response(self, next_n: int = 1) -> None:
        """Cut the `next_n`-th response frame from now (counting every frame on every
        connection, PROCESSING included): write half of it, then close that connection.
        State changes the request made stay made."""
        if next_n < 1:
            raise ValueError(f"next_n counts from 1 (the next frame), not {next_n}")
        self._cut_frames.add(self._frames_sent + next_n)

    def hang(self, seconds: float | None = None, *, apply: bool = False) -> None:
        """Stop answering for `seconds` (None = until `unhang()` or a restart). Requests are
        still read (and counted in `verb_counts`) but get no answer at all; with `apply=True`
        mutations still change main and the workers, as when main is alive but its answers
        never arrive."""
        loop = asyncio.get_running_loop()
        self._hang_until = math.inf if seconds is None else loop.time() + seconds
        self._hang_applies = apply

    def unhang(self) -> None:
        self._hang_until = None

    @property
    def hanging(self) -> bool:
        if self._hang_until is None:
            return False
        if asyncio.get_running_loop().time() >= self._hang_until:
            self._hang_until = None
            return False
        return True

    def reset_counts(self) -> None:
        """Forget `verb_counts` and the connection counts (Sōzu's own `count_requests` is not
        affected)."""
        self.verb_counts.clear()
        self.requests_by_connection.clear()

    # --- client connections ----------------------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._connection_serial += 1
        connection = _Connection(
            reader, writer, FrameReader(self.max_frame_size), serial=self._connection_serial
        )
        connection.task = asyncio.current_task()
        self._connections.add(connection)
        try:
            while not connection.closed and not self.crashed:
                data = await reader.read(_READ_SIZE)
                if not data:
                    break  # hang-up: Sōzu closes the session; pending answers are lost
                await self._on_data(connection, data)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(connection)
            connection.close()

    async def _on_data(self, connection: _Connection, data: bytes) -> None:
        if connection.stuck:
            return  # bytes queued behind a frame Sōzu never consumes are never looked at
        connection.frames.feed(data)
        decoded: list[_Decoded] = []
        try:
            while (payload := connection.frames.next_frame()) is not None:
                item = self._decode(payload)
                if item is None:
                    connection.stuck = True
                    break
                decoded.append(item)
        except FrameTooShort as error:
            if self.version is WireVersion.V1:
                # 1.0 slices the buffer backwards and panics: main dies with every session.
                logger.error("emulated Sōzu 1.0 crash: %s", error)
                await self._crash()
                return
            # 2.x drops the 8 bytes and stops reading for now; what follows is parsed at the
            # next read, as a new batch.
            connection.frames.discard(PREFIX_SIZE)
            logger.warning("%s; skipped 8 bytes", error)
        except FrameTooLarge as error:
            logger.warning("message too large: %s", error)
            connection.stuck = True
        for item in decoded:
            if item.verb is not None:
                self.verb_counts[item.verb] += 1
            self.requests_by_connection[connection.serial] += 1
        if not decoded:
            return
        if len(decoded) > 1:
            # Sōzu keeps the last request of a read and drops the others unanswered.
            logger.error("more than one request at a time; %d dropped", len(decoded) - 1)
        await self._handle(connection, decoded[-1])

    def _decode(self, payload: bytes) -> _Decoded | None:
        """None when the payload is not a Request at all (Sōzu logs and leaves it there)."""
        try:
            member = self.codec.request_member(payload)
            request = None if member is None else self.codec.decode_request(payload)
        except UndecodablePayload as error:
            logger.warning("undecodable request: %s", error)
            return None
        except ProtocolError:
            request = None  # valid for Sōzu (e.g. a UDP listener type) but not modelled
        return _Decoded(member, request)

    async def _crash(self) -> None:
        self.crashed = True
        for server in self._servers:
            server.close()
        self._servers.clear()
        # The socket files stay: a crashed Sōzu leaves a stale socket nobody listens on.
        self._bound.clear()
        await self._close_connections()

    async def _handle(self, connection: _Connection, item: _Decoded) -> None:
        if self.hanging:
            if self._hang_applies:
                self._respond(connection, item)
            return
        # Everything that changes state happens here, before the first await, so requests
        # from all connections apply in the order they were read.
        responses = self._respond(connection, item)
        for response in responses:
            if not await self._send(connection, response):
                return
        if isinstance(item.request, rq.MUTATIONS):
            self.last_mutation_answered = time.monotonic()

    async def _send(self, connection: _Connection, response: Response) -> bool:
        if connection.closed:
            return False
        frame = encode_frame(self.codec.encode_response(response))
        if self.max_frame_size is not None and len(frame) > self.max_frame_size:
            # 2.x cannot fit the answer in its buffer: the session is closed, no reply.
            logger.error("response of %d bytes above the ceiling; closing", len(frame))
            connection.close()
            return False
        self._frames_sent += 1
        if self._frames_sent in self._cut_frames:
            self._cut_frames.discard(self._frames_sent)
            connection.writer.write(frame[: len(frame) // 2])
            with contextlib.suppress(ConnectionError):
                await connection.writer.drain()
            connection.close()
            return False
        connection.writer.write(frame)
        try:
            await connection.writer.drain()
        except ConnectionError:
            connection.close()
            return False
        return True

    # --- answers ---------------------------------------------------------------------------

    def _respond(self, connection: _Connection, item: _Decoded) -> list[Response]:
        request, member = item.request, item.member
        if member is None or member in _SILENT_MEMBERS:
            return []
        if request is None:
            return self._respond_unmodelled(connection, member)
        if isinstance(request, rq.MUTATIONS):
            return self._mutation(request)
        return self._query(request)

    def _respond_unmodelled(self, connection: _Connection, member: str) -> list[Response]:
        if member == "subscribe_events":
            connection.subscribed = True
            if self.version is WireVersion.V1:
                return []  # 1.0 says nothing until an event happens
            return [Response(ResponseStatus.PROCESSING, "main", Event(kind=_EVENTS_SUBSCRIBED))]
        if member in _UNMODELLED_MUTATIONS:
            verb = member_verb(member)
            self.state.request_counts[verb] = self.state.request_counts.get(verb, 1) + 1
            return [
                Response.processing(PROCESSING_WORKER_REQUEST),
                Response.ok(APPLIED_TO_ALL_WORKERS),
            ]
        return [Response.failure(f"the Sōzu emulator does not implement {member}")]

    def _mutation(self, request: rq.Mutation) -> list[Response]:
        self._mutations_seen += 1
        injected = self._injected.pop(self._mutations_seen, None)
        if injected is not None and injected.in_main:
            verb = rq.verb_name(request)
            self.state.request_counts[verb] = self.state.request_counts.get(verb, 1) + 1
            return [Response.failure(DISPATCH_FAILURE_PREFIX + injected.message)]
        try:
            self.state.dispatch(request)
        except StateError as error:
            return [Response.failure(DISPATCH_FAILURE_PREFIX + str(error))]
        answers: list[tuple[EmulatedWorker, WorkerAnswer]] = []
        for index, worker in enumerate(self.workers):
            if injected is not None and (
                injected.worker_indexes is None or index in injected.worker_indexes
            ):
                worker.apply(request, live=False)
                answers.append((worker, WorkerAnswer.failure(injected.message)))
            else:
                answers.append((worker, worker.apply(request)))
        return [Response.processing(PROCESSING_WORKER_REQUEST), self._fan_out_result(answers)]

    def _fan_out_result(self, answers: list[tuple[EmulatedWorker, WorkerAnswer]]) -> Response:
        if all(answer.ok for _, answer in answers):
            return Response.ok(APPLIED_TO_ALL_WORKERS)
        parts = []
        for worker, answer in answers:
            if answer.ok:
                parts.append(f"{worker.id}: OK")
            else:
                text = answer.message
                if self.version is WireVersion.V2:
                    text = _sanitize_worker_text(text)
                parts.append(f"{worker.id}: {text}")
        return Response.failure(", ".join(parts))

    def _worker_infos(self) -> WorkerInfos:
        return WorkerInfos(tuple(WorkerInfo(w.id, w.pid, RunState.RUNNING) for w in self.workers))

    def _query(self, request: rq.Request) -> list[Response]:
        state = self.state
        match request:
            case rq.ListWorkers():
                return [Response.ok(LISTED_WORKERS, self._worker_infos())]
            case rq.Status():
                return [
                    Response.processing(PROCESSING_STATUS),
                    Response.ok(COLLECTED_STATUS, self._worker_infos()),
                ]
            case rq.ListListeners():
                return [Response.ok(LISTED_LISTENERS, state.list_listeners())]
            case rq.ListFrontends():
                if self.version is WireVersion.V1:
                    # 1.0.0's main has no branch for this query.
                    return [Response.failure(CANNOT_LIST_FRONTENDS)]
                return [Response.ok(LISTED_FRONTENDS, state.list_frontends(request))]
            case rq.CountRequests():
                return [Response.ok(COUNTED_REQUESTS, RequestCounts(dict(state.request_counts)))]
            case rq.QueryCertificatesFromTheState(domain, fingerprint_hex):
                found = state.certificates_matching(domain=domain, fingerprint_hex=fingerprint_hex)
                return [Response.ok(QUERIED_CERTIFICATES, CertificatesWithFingerprints(found))]
            case rq.SaveState(path):
                return [self._save_state(path)]
            case rq.LoadState(path):
                return self._load_state(path)
            case (
                rq.QueryClustersHashes()
                | rq.QueryClusterById()
                | rq.QueryClustersByDomain()
                | rq.QueryCertificatesFromWorkers()
            ):
                return [
                    Response.processing(PROCESSING_QUERY_CLUSTERS),
                    Response.ok(QUERIED_CLUSTERS, self._scatter_query(request)),
                ]
        return [Response.failure(f"the Sōzu emulator does not implement {request!r}")]

    def _scatter_query(
        self,
        request: rq.QueryClustersHashes
        | rq.QueryClusterById
        | rq.QueryClustersByDomain
        | rq.QueryCertificatesFromWorkers,
    ) -> WorkerResponses:
        responses: dict[str, ResponseContent] = {}
        for worker in self.workers:
            answer = worker.query(request)
            # Failed workers and answers without content simply do not appear.
            if answer.ok and answer.content is not None:
                responses[str(worker.id)] = answer.content
        main = self._main_view(request)
        if main is not None:
            responses["main"] = main
        return WorkerResponses(dict(sorted(responses.items())))

    def _main_view(self, request: rq.Query) -> ResponseContent | None:
        state = self.state
        match request:
            case rq.QueryClustersHashes():
                return ClusterHashes(state.cluster_hashes())
            case rq.QueryClusterById(cluster_id):
                information = state.cluster_information(cluster_id)
                return ClusterInformations(() if information is None else (information,))
            case rq.QueryClustersByDomain(hostname, path):
                ids = sorted(state.cluster_ids_by_domain(hostname, path))
                infos = (state.cluster_information(cluster_id) for cluster_id in ids)
                return ClusterInformations(tuple(i for i in infos if i is not None))
        return None  # query_certificates_from_workers has no "main" entry

    # --- state file ------------------------------------------------------------------------

    def _resolve(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.working_dir / candidate

    def _save_state(self, path: str) -> Response:
        target = self._resolve(path)
        # 2.1.0 resolves the path itself and reports the absolute one; 1.0.0 hands the text
        # to the OS (relative to its working directory) and echoes it unchanged.
        shown = str(target) if self.version is WireVersion.V2 else path
        requests = self.state.generate_requests()
        try:
            data = render_state(requests, version=self._file_version)
        except StateFileError as error:
            return Response.failure(f"Failed writing state to file: {error}")
        try:
            target.write_bytes(data)
        except OSError as error:
            return Response.failure(f"Cannot create file at path {shown}: {_io_error_text(error)}")
        return Response.ok(f"Saved {len(requests)} config messages to {shown}")

    def _read_state_file(self, path: Path) -> tuple[list[rq.Mutation], str | None, list[str]]:
        """(mutations in file order, parse error if any, notes about skipped records). On a
        parse error the records before the bad one are returned, as Sōzu applies them."""
        data = path.read_bytes()
        source = str(path)
        try:
            parsed = parse_state(data, source=source, ignore_unknown=True)
            problem = None
        except StateFileError as error:
            problem = f"saved state parse error: {error}"
            cut = 0
            for _ in range(error.index or 0):
                cut = data.index(b"\0", cut) + 1
            parsed = parse_state(data[:cut], source=source, ignore_unknown=True)
        notes = [f"{source}: record {skip.index} skipped: {skip.reason}" for skip in parsed.skipped]
        notes += [
            f"{source}: record {drop.index}: {drop.json_path} dropped: {drop.reason}"
            for drop in parsed.dropped
        ]
        mutations = [request for request in parsed.requests if isinstance(request, rq.MUTATIONS)]
        return mutations, problem, notes

    def _load_state(self, path: str) -> list[Response]:
        target = self._resolve(path)
        try:
            with target.open("rb"):
                pass
        except FileNotFoundError:
            return [Response.failure(f"Cannot find file at path {path}")]
        except OSError as error:
            return [Response.failure(f"Cannot open file at path {path}: {_io_error_text(error)}")]
        responses = [Response.processing(f"Parsing state file from {path}...")]
        try:
            requests, problem, _ = self._read_state_file(target)
        except OSError as error:
            return [
                *responses,
                Response.failure(f"Error reading the saved state file: {_io_error_text(error)}"),
            ]
        ok = errors = 0
        for request in requests:
            try:
                self.state.dispatch(request)
            except StateError:
                continue  # records main refuses are skipped silently and not counted
            for worker in self.workers:
                if worker.apply(request).ok:
                    ok += 1
                else:
                    errors += 1
        if problem is not None:
            return [*responses, Response.failure(problem)]
        responses.append(Response.processing(APPLYING_STATE_FILE))
        if errors:
            responses.append(Response.failure(f"loading state: {ok} ok messages, {errors} errors"))
        else:
            responses.append(
                Response.ok(
                    f"Successfully loaded state from path {path}, {ok} ok messages, {errors} errors"
                )
            )
        return responses

    def render_state(self) -> bytes:
        """Main's current state in Sōzu's state-file format (what `save_state` writes)."""
        return render_state(self.state.generate_requests(), version=self._file_version)

    @property
    def _file_version(self) -> SozuVersion:
        return 1 if self.version is WireVersion.V1 else 2

    # --- control channel -------------------------------------------------------------------

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await reader.readline()
            try:
                answer = await self._control(json.loads(line))
            except (ValueError, TypeError, KeyError) as error:
                answer = {"ok": False, "error": str(error)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def _control(self, command: object) -> dict[str, object]:
        """One control command: a JSON object with a single key naming the action."""
        if not isinstance(command, dict) or len(command) != 1:
            raise ValueError('expected one JSON object with a single key, e.g. {"restart":{}}')
        ((action, arguments),) = command.items()
        if not isinstance(arguments, dict):
            raise TypeError(f"the arguments of {action!r} must be a JSON object")
        match action:
            case "restart":
                to = arguments.get("to")
                if to not in (None, "boot", "empty"):
                    raise ValueError(f'restart "to" must be "boot" or "empty", not {to!r}')
                await self.restart(to=to)
                return {"ok": True, "workers": [[w.id, w.pid] for w in self.workers]}
            case "fail_nth_mutation":
                self.fail_nth_mutation(
                    int(arguments.get("n", 1)),
                    str(arguments.get("message", "injected failure")),
                    in_main=bool(arguments.get("in_main", False)),
                    workers=arguments.get("workers"),
                )
            case "close_mid_response":
                self.close_mid_response(int(arguments.get("next_n", 1)))
            case "hang":
                seconds = arguments.get("seconds")
                if seconds is not None and float(seconds) <= 0:
                    self.unhang()
                else:
                    self.hang(
                        None if seconds is None else float(seconds),
                        apply=bool(arguments.get("apply", False)),
                    )
            case "counts":
                return {
                    "ok": True,
                    "verbs": dict(self.verb_counts),
                    "request_counts": dict(self.state.request_counts),
                    "last_mutation_answered": self.last_mutation_answered,
                }
            case "reset_counts":
                self.reset_counts()
            case "state":
                return {"ok": True, "state": self.render_state().decode()}
            case _:
                raise ValueError(f"unknown control command {action!r}")
        return {"ok": True}


def _version_label(version: WireVersion) -> str:
    return "2.x" if version is WireVersion.V2 else "1.0"


async def serve(
    socket: str,
    *,
    version: int = 2,
    state: str | None = None,
    workers: int = 2,
    control: bool = False,
) -> int:
    """Run an emulator until SIGINT/SIGTERM (exit status 0) or an emulated 1.0 crash (101,
    Rust's panic status; the stale socket file is left behind like a crashed Sōzu's)."""
    emulator = SozuEmulator(
        socket, version=version, workers=workers, state_file=state, control=control
    )
    await emulator.start()
    for line in (*emulator.boot_report.refused, *emulator.boot_report.problems):
        print(f"sozu emulator: boot state: {line}", file=sys.stderr)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    extra = f"; control socket {emulator.control_path}" if control else ""
    print(
        f"Sōzu {_version_label(emulator.version)} emulator listening on {emulator.socket_path} "
        f"({workers} workers){extra}",
        flush=True,
    )
    try:
        while not stopping.is_set() and not emulator.crashed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await stopping.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        crashed = emulator.crashed
        await emulator.stop()
    if crashed:
        print(
            "sozu emulator: emulated Sōzu 1.0 panic (frame shorter than its prefix)",
            file=sys.stderr,
        )
        return 101
    return 0


def run_emulator(
    socket: str,
    version: int = 2,
    state: str | None = None,
    workers: int = 2,
    control: bool = False,
) -> int:
    """Entry point for `sozu-operator emulator`; returns the process exit status."""
    try:
        return asyncio.run(
            serve(socket, version=version, state=state, workers=workers, control=control)
        )
    except OSError as error:
        print(f"sozu emulator: {error}", file=sys.stderr)
        return 1
    except StateFileError as error:
        print(f"sozu emulator: {error}", file=sys.stderr)
        return 1


__all__ = [
    "BootReport",
    "SozuEmulator",
    "member_verb",
    "run_emulator",
    "serve",
]
