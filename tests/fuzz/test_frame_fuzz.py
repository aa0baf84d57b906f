"""Hostile bytes on the command socket, in both directions, over real unix sockets.

Client side: an asyncio server answers every request with generated hostile bytes (bad
lengths, truncated frames, oversized lengths, garbage protobuf, protobuf of the wrong message
type, unknown enum values, deep nesting, trailing garbage), then hangs up or goes silent. Each
case must end in a `SozuError` subclass or a value, never another exception, within the
timeout plus a margin (0.2 s where the peer stays silent; 5 s elsewhere, so that a loaded
machine cannot turn an expected error into a timeout), and the same client object must then
complete a normal request. The expected outcome of every case is computed beforehand from the
bytes alone (`_client_oracle`, which reads them with the same `FrameReader` and `Codec`), so
the test checks the client's I/O, timeouts and connection handling, not merely "some error".
Stray bytes after a complete answer are written in the same write as the answer: answers carry
no request id, so the client can only notice strays that arrive with the answer, and a late
stray would be read as the next answer by any client (real Sōzu sends none).

Emulator side: hostile request streams (many connections, 1–4 frames each, some left open and
stuck) against a `SozuEmulator` of each version while a well-behaved client keeps applying and
querying; the emulator must never raise, must keep answering the good client correctly, and its
`ConfigState` (and every worker's) must equal what the good client applied. Sōzu 1.0 panics on
a declared length below 8 (emulated as a crash), so such streams are excluded from the 1.0 run
and checked separately for exactly that crash. A last test sends well-formed requests of every
verb with random field values, mutations included.

Everything is generated from a fixed seed; set SOZU_FUZZ_SEED to explore another one. Each test
prints its case counts (`pytest -s` shows them) and asserts the totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from sozu_operator.emulators import SozuEmulator
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import Backend, CertificateAndKey, Cluster, SocketAddress
from sozu_operator.proxy.responses import (
    CertificatesWithFingerprints,
    ClusterHashes,
    ClusterInformation,
    ClusterInformations,
    Response,
    ResponseStatus,
    RunState,
    WorkerInfo,
    WorkerInfos,
    WorkerResponses,
)
from sozu_operator.proxy.state import ConfigState
from sozu_operator.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    Codec,
    ConnectionClosed,
    FrameReader,
    FrameTooLarge,
    FrameTooShort,
    ProtocolError,
    RequestFailed,
    RequestTimeout,
    SocketRefused,
    SozuClient,
    SozuError,
    UndecodablePayload,
    UnexpectedContent,
    WireVersion,
    encode_frame,
)
from sozu_operator.wire._pb.v1 import command_pb2 as pb_v1
from sozu_operator.wire._pb.v2 import command_pb2 as pb_v2

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("SOZU_FUZZ_SEED", "20250611"))
U64 = (1 << 64) - 1
PB: dict[WireVersion, Any] = {WireVersion.V1: pb_v1, WireVersion.V2: pb_v2}
CODECS = {version: Codec(version) for version in WireVersion}

CLIENT_CASES = 10_000
CLIENT_WORKERS = 64
EMULATOR_FRAMES = 6_000  # per version
EMULATOR_VALID_REQUESTS = 1_500  # per version
V1_CRASH_CASES = 25
TIMEOUT = 0.2  # the client's answer timeout where the case is a silent peer
MARGIN = 2.0  # scheduling slack on top of it (64 clients and the server share one loop)
GOOD_TIMEOUT = 5.0  # everywhere else: an answer is due, however loaded the machine is


# --- raw protobuf ------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= U64
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, body: bytes) -> bytes:
    return tag(number, 2) + varint(len(body)) + body


def prefix(total: int) -> bytes:
    return struct.pack("<Q", total & U64)


_TEXTS = [
    b"", b"a", b"main", b"0", b"\xff\xfe", "é".encode(), "\u202e".encode(), b"\x00",
    b"\xc3", b"\xed\xa0\x80",  # truncated UTF-8, a UTF-16 surrogate: both invalid UTF-8
]
_NUMBERS = [0, 1, 2, 3, 4, 5, 7, 26, 99, 255, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1,
            2**32, 2**63, U64]


def random_bytes(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _scalar(field_: FieldDescriptor, rng: random.Random) -> bytes:
    number = field_.number
    kind = field_.type
    if kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        text = rng.choice(_TEXTS) if rng.random() < 0.7 else random_bytes(rng, rng.randint(0, 12))
        return length_delimited(number, text)
    if kind in (FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_SFIXED32,
                FieldDescriptor.TYPE_FLOAT):
        return tag(number, 5) + random_bytes(rng, 4)
    if kind in (FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64,
                FieldDescriptor.TYPE_DOUBLE):
        return tag(number, 1) + random_bytes(rng, 8)
    # varints: ints, bools, enums (known and unknown values alike)
    value = rng.choice(_NUMBERS) if rng.random() < 0.8 else rng.getrandbits(64)
    return tag(number, 0) + varint(value)


def _stray_field(rng: random.Random, number: int) -> bytes:
    """A field with a random wire type: often the wrong one for `number`, sometimes invalid."""
    wire_type = rng.choice([0, 1, 2, 5, 3, 4, 6, 7])
    match wire_type:
        case 0:
            return tag(number, 0) + varint(rng.getrandbits(64))
        case 1:
            return tag(number, 1) + random_bytes(rng, 8)
        case 2:
            body = random_bytes(rng, rng.randint(0, 10))
            declared = len(body) if rng.random() < 0.8 else len(body) + rng.randint(1, 50)
            return tag(number, 2) + varint(declared) + body
        case 5:
            return tag(number, 5) + random_bytes(rng, 4)
        case _:  # groups (deprecated, unmatched) and reserved wire types
            return tag(number, wire_type) + random_bytes(rng, rng.randint(0, 4))


def random_message(
    descriptor: Descriptor, rng: random.Random, depth: int = 0, max_fields: int = 5
) -> bytes:
    """Random but mostly well-formed bytes for `descriptor`: known fields with random values,
    unknown enum values, invalid UTF-8, nested messages, and now and then a stray field."""
    out = bytearray()
    fields = list(descriptor.fields)
    for _ in range(rng.randint(0, max_fields)):
        if not fields or rng.random() < 0.05:
            out += _stray_field(rng, rng.choice([*(f.number for f in fields), 1, 15, 16, 99]))
            continue
        chosen = rng.choice(fields)
        if chosen.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 6:
                continue
            body = random_message(chosen.message_type, rng, depth + 1, max(1, max_fields - 1))
            out += length_delimited(chosen.number, body)
        else:
            out += _scalar(chosen, rng)
    return bytes(out)


def deep_content(depth: int, leaf: bytes = b"") -> bytes:
    """A ResponseContent nested `depth` times through worker_responses (the only recursive
    path); protobuf refuses more than 100 levels."""
    content = leaf
    for _ in range(depth):
        entry = length_delimited(1, b"w") + length_delimited(2, content)  # map<string, Content>
        content = length_delimited(3, length_delimited(1, entry))  # .worker_responses.map
    return content


# --- answers a server might plausibly send ---------------------------------------------------


GOOD_ANSWER = Response.ok(content=WorkerResponses({"main": ClusterInformations(())}))


def valid_responses(rng: random.Random) -> Response:
    information = ClusterInformation(Cluster("api"))
    choices = [
        Response.ok("done"),
        Response.failure("could not dispatch request on the main process state: nope"),
        Response.processing("working"),
        GOOD_ANSWER,
        Response.ok(content=WorkerResponses({"main": ClusterInformations((information,))})),
        Response.ok(content=WorkerResponses({"0": ClusterHashes({"a": 1})})),
        Response.ok(content=WorkerInfos((WorkerInfo(0, 10, RunState.RUNNING),))),
        Response.ok(content=ClusterHashes({"a": 1, "b": 2})),
        Response.ok(
            content=CertificatesWithFingerprints({"ab": CertificateAndKey("not pem", "not key")})
        ),
    ]
    return rng.choice(choices)


# --- client side: hostile answers --------------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    version: WireVersion
    max_frame_size: int | None

    @property
    def codec(self) -> Codec:
        return CODECS[self.version]

    @property
    def pb(self) -> Any:
        return PB[self.version]

    def frame(self, response: Response) -> bytes:
        return encode_frame(self.codec.encode_response(response))


def _answer_short_prefix(rng: random.Random, ctx: Ctx) -> bytes:
    return random_bytes(rng, rng.randint(0, 7))


def _answer_declared_below_prefix(rng: random.Random, ctx: Ctx) -> bytes:
    return prefix(rng.randint(0, 7)) + random_bytes(rng, rng.randint(0, 24))


def _answer_declared_eight(rng: random.Random, ctx: Ctx) -> bytes:
    return prefix(8)  # an empty payload: every field at its default, i.e. FAILURE with no text


def _answer_declared_huge(rng: random.Random, ctx: Ctx) -> bytes:
    length = rng.choice(
        [DEFAULT_MAX_FRAME_SIZE + 1, 2**31, 2**32 + 8, 2**63, U64,
         rng.randint(DEFAULT_MAX_FRAME_SIZE + 1, U64), rng.randint(1001, 50_000)]
    )
    return prefix(length) + random_bytes(rng, rng.randint(0, 32))


def _answer_truncated(rng: random.Random, ctx: Ctx) -> bytes:
    frame = ctx.frame(valid_responses(rng))
    return frame[: rng.randint(1, len(frame) - 1)]


def _answer_overlong(rng: random.Random, ctx: Ctx) -> bytes:
    payload = ctx.codec.encode_response(valid_responses(rng))
    return prefix(8 + len(payload) + rng.randint(1, 900)) + payload


def _answer_garbage(rng: random.Random, ctx: Ctx) -> bytes:
    return encode_frame(random_bytes(rng, rng.randint(1, 80)))


def _answer_wrong_type(rng: random.Random, ctx: Ctx) -> bytes:
    types = ctx.pb.DESCRIPTOR.message_types_by_name
    name = rng.choice(
        ["Request", "WorkerRequest", "WorkerResponse", "Request", rng.choice(sorted(types))]
    )
    return encode_frame(random_message(types[name], rng))


def _answer_random_response(rng: random.Random, ctx: Ctx) -> bytes:
    descriptor = ctx.pb.DESCRIPTOR.message_types_by_name["Response"]
    return encode_frame(random_message(descriptor, rng, max_fields=6))


def _answer_unknown_enums(rng: random.Random, ctx: Ctx) -> bytes:
    payload = ctx.codec.encode_response(valid_responses(rng))
    unknown = rng.choice([3, 4, 77, 2**31, U64])
    extra = rng.choice(
        [
            tag(1, 0) + varint(unknown),  # Response.status
            # content.workers.vec[0].run_state
            length_delimited(3, length_delimited(1, length_delimited(
                1, tag(1, 0) + varint(0) + tag(2, 0) + varint(1) + tag(3, 0) + varint(unknown)
            ))),
            length_delimited(3, length_delimited(4, tag(1, 0) + varint(unknown))),  # event.kind
        ]
    )
    return encode_frame(payload + extra if rng.random() < 0.5 else extra + payload)


def _answer_mutated(rng: random.Random, ctx: Ctx) -> bytes:
    payload = bytearray(ctx.codec.encode_response(valid_responses(rng)))
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(payload) + 1)
        match rng.randrange(3):
            case 0 if payload:
                payload[min(position, len(payload) - 1)] = rng.randrange(256)
            case 1:
                payload[position:position] = random_bytes(rng, rng.randint(1, 4))
            case _:
                del payload[position : position + rng.randint(1, 4)]
    return encode_frame(bytes(payload))


def _answer_deep(rng: random.Random, ctx: Ctx) -> bytes:
    content = deep_content(rng.choice([1, 20, 99, 100, 101, 150, 400]))
    return encode_frame(tag(1, 0) + varint(0) + length_delimited(2, b"") + content)


def _answer_nested_garbage(rng: random.Random, ctx: Ctx) -> bytes:
    content_descriptor = ctx.pb.DESCRIPTOR.message_types_by_name["ResponseContent"]
    content = random_message(content_descriptor, rng, max_fields=3)
    return encode_frame(tag(1, 0) + varint(0) + length_delimited(3, content))


def _answer_big_garbage(rng: random.Random, ctx: Ctx) -> bytes:
    return encode_frame(random_bytes(rng, rng.randint(20_000, 200_000)))


def _answer_valid(rng: random.Random, ctx: Ctx) -> bytes:
    return ctx.frame(valid_responses(rng))


ANSWERS: list[tuple[Callable[[random.Random, Ctx], bytes], int]] = [
    (_answer_short_prefix, 6),
    (_answer_declared_below_prefix, 8),
    (_answer_declared_eight, 3),
    (_answer_declared_huge, 8),
    (_answer_truncated, 8),
    (_answer_overlong, 5),
    (_answer_garbage, 12),
    (_answer_wrong_type, 14),
    (_answer_random_response, 14),
    (_answer_unknown_enums, 6),
    (_answer_mutated, 10),
    (_answer_deep, 3),
    (_answer_nested_garbage, 8),
    (_answer_big_garbage, 1),
    (_answer_valid, 4),
]
_ANSWER_FUNCTIONS = [function for function, _ in ANSWERS]
_ANSWER_WEIGHTS = [weight for _, weight in ANSWERS]

Action = Literal["close", "hang"]


@dataclass(frozen=True)
class ClientCase:
    category: str
    data: bytes
    chunks: tuple[int, ...]  # split points for the server's writes
    pause: bool  # sleep a little between chunks
    action: Action  # after writing: hang up, or stay silent until the client hangs up
    typed: bool  # use the typed helper (query_cluster_by_id) rather than send()
    raise_for_failure: bool
    expected: type[SozuError] | None  # None: a value is returned
    processing: int  # PROCESSING answers before the outcome


def _client_oracle(
    data: bytes, action: Action, ctx: Ctx, *, typed: bool, raise_for_failure: bool
) -> tuple[type[SozuError] | None, int, bool]:
    """(expected error type or None, PROCESSING count, whether the stream stays in step)."""
    frames = FrameReader(ctx.max_frame_size)
    frames.feed(data)
    processing = 0
    while True:
        try:
            payload = frames.next_frame()
        except (FrameTooShort, FrameTooLarge) as error:
            return type(error), processing, False
        if payload is None:
            return (ConnectionClosed if action == "close" else RequestTimeout), processing, False
        try:
            response = ctx.codec.decode_response(payload)
        except UndecodablePayload:
            return UndecodablePayload, processing, False
        except Exception:  # a codec bug: what it should raise; the client run then reports it
            return UndecodablePayload, processing, False
        if not response.is_final:
            processing += 1
            continue
        in_step = frames.buffered == 0
        if response.status is ResponseStatus.FAILURE and (typed or raise_for_failure):
            return RequestFailed, processing, in_step
        if typed:
            content = response.content
            main = content.responses.get("main") if isinstance(content, WorkerResponses) else None
            if not isinstance(main, ClusterInformations):
                return UnexpectedContent, processing, in_step
        return None, processing, in_step


def make_client_case(rng: random.Random, ctx: Ctx) -> ClientCase:
    parts: list[bytes] = []
    for _ in range(rng.choice([0, 0, 0, 1, 2, 3])):
        parts.append(ctx.frame(Response.processing(rng.choice(["", "working", "é"]))))
    generator = rng.choices(_ANSWER_FUNCTIONS, _ANSWER_WEIGHTS)[0]
    parts.append(generator(rng, ctx))
    category = generator.__name__.removeprefix("_answer_")
    if rng.random() < 0.1:  # trailing bytes nobody asked for
        parts.append(rng.choices(_ANSWER_FUNCTIONS, _ANSWER_WEIGHTS)[0](rng, ctx))
        category += "+trailing"
    data = b"".join(parts)
    action: Action = rng.choice(["close", "hang"])
    typed = rng.random() < 0.25
    raise_for_failure = rng.random() < 0.5
    expected, processing, in_step = _client_oracle(
        data, action, ctx, typed=typed, raise_for_failure=raise_for_failure
    )
    if in_step:
        # A complete answer and nothing else: the conversation is in step, as with a real
        # Sōzu, so the server keeps the connection for the next request (hanging up right
        # after an answer is the "idle hang-up" case the client handles on its next request).
        action = "hang"
    count = max(0, min(len(data) - 1, rng.randint(0, 3)))
    splits = sorted(rng.sample(range(1, len(data)), count))
    if "trailing" in category:
        splits = []  # one write: the strays arrive with the answer (see the docstring)
    return ClientCase(
        category=category,
        data=data,
        chunks=tuple(splits),
        pause=rng.random() < 0.1,
        action=action,
        typed=typed,
        raise_for_failure=raise_for_failure,
        expected=expected,
        processing=processing,
    )


@dataclass
class ClientStats:
    cases: int = 0
    by_category: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)  # non-SozuError exceptions
    mismatches: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)  # beyond timeout + margin
    unusable: list[str] = field(default_factory=list)  # the good request afterwards failed
    slowest_overshoot: float = 0.0


class HostileServer:
    """Answers `QueryClusterById(<case id>)` with that case's bytes, `"good"` correctly."""

    def __init__(self) -> None:
        self.cases: dict[str, ClientCase] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(max_frame_size=None)
        try:
            while True:
                while (payload := frames.next_frame()) is None:
                    data = await reader.read(65536)
                    if not data:
                        return
                    frames.feed(data)
                request = CODECS[WireVersion.V2].decode_request(payload)
                assert isinstance(request, rq.QueryClusterById), request
                if request.cluster_id == "good":
                    writer.write(encode_frame(CODECS[WireVersion.V2].encode_response(GOOD_ANSWER)))
                    await writer.drain()
                    continue
                case = self.cases.pop(request.cluster_id, None)
                if case is None:  # the client gave up before we even read the request
                    return
                start = 0
                for end in (*case.chunks, len(case.data)):
                    writer.write(case.data[start:end])
                    await writer.drain()
                    start = end
                    if case.pause:
                        await asyncio.sleep(0.005)
                if case.action == "close":
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()


async def _client_worker(
    index: int, path: str, server: HostileServer, count: int, stats: ClientStats
) -> None:
    rng = random.Random(f"{SEED}-client-{index}")
    ctx = Ctx(
        version=WireVersion.V1 if index % 2 else WireVersion.V2,
        max_frame_size=(DEFAULT_MAX_FRAME_SIZE, 1000, None)[index % 3],
    )
    loop = asyncio.get_running_loop()
    # Silent peers meet a short timeout; every other case gets a long one, so that a loaded
    # machine cannot turn an expected error into a timeout. Each case's follow-up request goes
    # through the same client object that met the case.
    quick, patient = (
        SozuClient(path, version=ctx.version, timeout=timeout, max_frame_size=ctx.max_frame_size)
        for timeout in (TIMEOUT, GOOD_TIMEOUT)
    )
    try:
        for number in range(count):
            case = make_client_case(rng, ctx)
            case_id = f"case-{index}-{number}"
            server.cases[case_id] = case
            label = f"{case_id} {case.category} {case.action} {case.data[:48].hex()}"
            silent = case.expected is RequestTimeout
            client = quick if silent else patient
            outcome: type[SozuError] | None = None
            start = loop.time()
            try:
                if case.typed:
                    await client.query_cluster_by_id(case_id)
                else:
                    await client.send(
                        rq.QueryClusterById(case_id), raise_for_failure=case.raise_for_failure
                    )
            except SozuError as error:
                outcome = type(error)
            except Exception as error:  # the bug this test hunts
                stats.crashes.append(f"{label}: {type(error).__name__}: {error}")
                outcome = None
            elapsed = loop.time() - start
            server.cases.pop(case_id, None)
            stats.cases += 1
            stats.by_category[case.category.split("+")[0]] += 1
            stats.by_outcome["value" if outcome is None else outcome.__name__] += 1
            if silent:
                allowed = TIMEOUT * (1 + case.processing) + MARGIN
                stats.slowest_overshoot = max(stats.slowest_overshoot, elapsed - TIMEOUT)
            else:
                allowed = GOOD_TIMEOUT + MARGIN
            if elapsed > allowed:
                stats.hangs.append(f"{label}: {elapsed:.2f} s")
            if outcome is not case.expected:
                expected = case.expected.__name__ if case.expected else "a value"
                got = outcome.__name__ if outcome else "a value"
                stats.mismatches.append(f"{label}: expected {expected}, got {got}")
            try:
                good = await client.send(rq.QueryClusterById("good"), timeout=GOOD_TIMEOUT)
                if good != GOOD_ANSWER:
                    stats.unusable.append(f"after {label}: answer {good!r}")
            except Exception as error:
                stats.unusable.append(f"after {label}: {type(error).__name__}: {error}")
    finally:
        await quick.aclose()
        await patient.aclose()


async def test_client_survives_hostile_answers(tmp_path: Path) -> None:
    path = str(tmp_path / "hostile.sock")
    server = HostileServer()
    listening = await asyncio.start_unix_server(server.handle, path=path)
    stats = ClientStats()
    per_worker = -(-CLIENT_CASES // CLIENT_WORKERS)
    try:
        await asyncio.gather(
            *(_client_worker(i, path, server, per_worker, stats) for i in range(CLIENT_WORKERS))
        )
    finally:
        listening.close()
        await listening.wait_closed()
    print(
        f"\nclient fuzz: {stats.cases} hostile answers, {len(stats.crashes)} crashes, "
        f"{len(stats.hangs)} hangs beyond timeout+{MARGIN:g} s (slowest overshoot "
        f"{stats.slowest_overshoot:.3f} s), {len(stats.mismatches)} unexpected outcomes, "
        f"{len(stats.unusable)} unusable clients afterwards"
        f"\n  by category: {dict(sorted(stats.by_category.items()))}"
        f"\n  by outcome:  {dict(sorted(stats.by_outcome.items()))}"
    )
    assert stats.cases >= CLIENT_CASES
    assert not stats.crashes, stats.crashes[:10]
    assert not stats.hangs, stats.hangs[:10]
    assert not stats.mismatches, stats.mismatches[:10]
    assert not stats.unusable, stats.unusable[:10]
    # Every way of failing was exercised, and so was the happy path.
    for error in (ConnectionClosed, RequestTimeout, FrameTooShort, FrameTooLarge,
                  UndecodablePayload, UnexpectedContent, RequestFailed):
        assert stats.by_outcome[error.__name__] > 0, error


# --- emulator side: hostile requests ------------------------------------------------------------

# Requests whose handling changes nothing: main's state, the workers and the filesystem stay as
# they are. Hostile streams that would reach anything else are regenerated, so that the state can
# be compared exactly with what the good client applied.
_QUERY_MEMBERS = (
    "list_workers", "list_frontends", "list_listeners", "status", "query_cluster_by_id",
    "query_clusters_by_domain", "query_clusters_hashes", "query_certificates_from_the_state",
    "query_certificates_from_workers", "count_requests", "subscribe_events", "launch_worker",
    "return_listen_sockets", "soft_stop", "hard_stop", "query_metrics",
)
_SIDE_EFFECT_MEMBERS = frozenset({"save_state", "load_state", "Logging", "configure_metrics"})


def _random_request(rng: random.Random, version: WireVersion, members: tuple[str, ...]) -> bytes:
    descriptor = PB[version].DESCRIPTOR.message_types_by_name["Request"]
    available = [name for name in members if name in descriptor.fields_by_name]
    chosen = descriptor.fields_by_name[rng.choice(available)]
    if chosen.type == FieldDescriptor.TYPE_MESSAGE:
        body = random_message(chosen.message_type, rng, depth=1)
        return length_delimited(chosen.number, body)
    return _scalar(chosen, rng)


def _frame_short_prefix(rng: random.Random, version: WireVersion) -> bytes:
    return random_bytes(rng, rng.randint(1, 7))


def _frame_declared_below_prefix(rng: random.Random, version: WireVersion) -> bytes:
    return prefix(rng.randint(0, 7)) + random_bytes(rng, rng.randint(0, 16))


def _frame_declared_eight(rng: random.Random, version: WireVersion) -> bytes:
    return prefix(8)


def _frame_declared_huge(rng: random.Random, version: WireVersion) -> bytes:
    length = rng.choice([DEFAULT_MAX_FRAME_SIZE + 1, 2**32, 2**63, U64,
                         rng.randint(DEFAULT_MAX_FRAME_SIZE + 1, U64)])
    return prefix(length) + random_bytes(rng, rng.randint(0, 64))


def _frame_overlong(rng: random.Random, version: WireVersion) -> bytes:
    payload = _random_request(rng, version, _QUERY_MEMBERS)
    return prefix(8 + len(payload) + rng.randint(1, 5000)) + payload


def _frame_truncated(rng: random.Random, version: WireVersion) -> bytes:
    frame = encode_frame(CODECS[version].encode_request(rq.QueryClusterById("truncated")))
    return frame[: rng.randint(1, len(frame) - 1)]


def _frame_garbage(rng: random.Random, version: WireVersion) -> bytes:
    return encode_frame(random_bytes(rng, rng.randint(1, 80)))


def _frame_wrong_type(rng: random.Random, version: WireVersion) -> bytes:
    types = PB[version].DESCRIPTOR.message_types_by_name
    name = rng.choice(["Response", "WorkerRequest", "WorkerResponse", rng.choice(sorted(types))])
    return encode_frame(random_message(types[name], rng))


def _frame_random_query(rng: random.Random, version: WireVersion) -> bytes:
    return encode_frame(_random_request(rng, version, _QUERY_MEMBERS))


def _frame_mutated_query(rng: random.Random, version: WireVersion) -> bytes:
    request = rng.choice([
        rq.QueryClusterById("api"), rq.QueryClustersByDomain("example.com", "/"),
        rq.QueryCertificatesFromTheState(domain="example.com"), rq.ListWorkers(), rq.Status(),
    ])
    payload = bytearray(CODECS[version].encode_request(request))
    for _ in range(rng.randint(1, 3)):
        position = rng.randrange(len(payload))
        payload[position] = rng.randrange(256)
    return encode_frame(bytes(payload))


def _frame_deep(rng: random.Random, version: WireVersion) -> bytes:
    return encode_frame(deep_content(rng.choice([50, 100, 101, 300])))


def _frame_big_garbage(rng: random.Random, version: WireVersion) -> bytes:
    return encode_frame(random_bytes(rng, rng.randint(20_000, 300_000)))


FRAMES: list[tuple[Callable[[random.Random, WireVersion], bytes], int]] = [
    (_frame_short_prefix, 4),
    (_frame_declared_below_prefix, 8),
    (_frame_declared_eight, 4),
    (_frame_declared_huge, 6),
    (_frame_overlong, 6),
    (_frame_truncated, 6),
    (_frame_garbage, 14),
    (_frame_wrong_type, 14),
    (_frame_random_query, 18),
    (_frame_mutated_query, 10),
    (_frame_deep, 2),
    (_frame_big_garbage, 1),
]
_FRAME_FUNCTIONS = [function for function, _ in FRAMES]
_FRAME_WEIGHTS = [weight for _, weight in FRAMES]

Verdict = Literal["harmless", "changes state", "crashes 1.0"]


def emulator_verdict(stream: bytes, version: WireVersion) -> Verdict:
    """What the emulator could do with `stream`, read as one buffer. Conservative: a 2.x main
    parses what follows a short prefix only at its next read, which may never come, but every
    frame it could ever reach is looked at here."""
    frames = FrameReader(DEFAULT_MAX_FRAME_SIZE if version is WireVersion.V2 else None)
    frames.feed(stream)
    codec = CODECS[version]
    while True:
        try:
            payload = frames.next_frame()
        except FrameTooShort:
            if version is WireVersion.V1:
                return "crashes 1.0"
            frames.discard(8)
            continue
        except FrameTooLarge:
            return "harmless"  # never consumed: the connection is stuck for good
        if payload is None:
            return "harmless"
        try:
            member = codec.request_member(payload)
            request = None if member is None else codec.decode_request(payload)
        except UndecodablePayload:
            return "harmless"  # stuck: nothing after it is ever read
        except Exception:  # a codec bug: let the emulator meet it (WatchedEmulator reports it)
            return "harmless"
        except ProtocolError:
            request = None
        if (
            isinstance(request, (*rq.MUTATIONS, rq.SaveState, rq.LoadState))
            or member in _SIDE_EFFECT_MEMBERS
        ):
            return "changes state"


@dataclass
class EmulatorStats:
    frames: int = 0
    streams: int = 0
    good_rounds: int = 0
    regenerated: Counter[str] = field(default_factory=Counter)
    by_category: Counter[str] = field(default_factory=Counter)


def make_stream(
    rng: random.Random, version: WireVersion, stats: EmulatorStats, *, wanted: Verdict
) -> tuple[bytes, list[str]]:
    while True:
        categories = []
        parts = []
        for _ in range(rng.choice([1, 1, 2, 3, 4])):
            generator = rng.choices(_FRAME_FUNCTIONS, _FRAME_WEIGHTS)[0]
            categories.append(generator.__name__.removeprefix("_frame_"))
            parts.append(generator(rng, version))
        stream = b"".join(parts)
        verdict = emulator_verdict(stream, version)
        if verdict == wanted:
            return stream, categories
        stats.regenerated[verdict] += 1


class WatchedEmulator(SozuEmulator):
    """Records every exception escaping a client connection's handler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raised: list[str] = []

    async def _on_data(self, connection: Any, data: bytes) -> None:
        try:
            await super()._on_data(connection, data)
        except Exception as error:
            self.raised.append(f"{type(error).__name__}: {error} (after {data[:48].hex()})")
            raise


@contextlib.asynccontextmanager
async def loop_errors() -> AsyncIterator[list[str]]:
    """Whatever reaches the event loop's exception handler (e.g. a task that died)."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(str(context.get("message"))))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


async def _write_stream(
    path: str, stream: bytes, rng: random.Random
) -> asyncio.StreamWriter | None:
    try:
        _, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return None
    count = max(0, min(len(stream) - 1, rng.randint(0, 2)))
    cuts = sorted(rng.sample(range(1, len(stream)), count))
    start = 0
    with contextlib.suppress(ConnectionError):
        for end in (*cuts, len(stream)):
            writer.write(stream[start:end])
            await writer.drain()
            await asyncio.sleep(0)
            start = end
    return writer


@dataclass
class GoodClient:
    """The well-behaved client and the state its requests must have produced."""

    client: SozuClient
    reference: ConfigState
    worker_count: int
    rounds: int = 0

    async def round(self) -> None:
        number = self.rounds
        self.rounds += 1
        cluster_id = f"good-{number}"
        backend = Backend(
            cluster_id, f"{cluster_id}-0",
            SocketAddress.parse(f"10.{number // 250 % 250}.{number % 250}.1:80"),
        )
        for request in (rq.AddCluster(Cluster(cluster_id)), rq.AddBackend(backend)):
            response = await self.client.send(request)
            assert response.status is ResponseStatus.OK, response
            self.reference.dispatch(request)
        information = await self.client.query_cluster_by_id(cluster_id)
        assert information == self.reference.cluster_information(cluster_id)
        assert await self.client.query_clusters_hashes() == self.reference.cluster_hashes()
        assert len(await self.client.list_workers()) == self.worker_count


async def _hostile_batch(
    path: str, streams: list[bytes], rng: random.Random, good: GoodClient
) -> None:
    results = await asyncio.gather(
        *(_write_stream(path, stream, rng) for stream in streams), good.round()
    )
    writers = [writer for writer in results[:-1] if isinstance(writer, asyncio.StreamWriter)]
    assert len(writers) == len(streams), "the emulator refused a connection"
    # The hostile connections are still open (many of them stuck) while the good client works.
    await good.round()
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize("version", [WireVersion.V2, WireVersion.V1], ids=["2.x", "1.0"])
async def test_emulator_keeps_serving_through_hostile_frames(
    version: WireVersion, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    path = str(tmp_path_factory.mktemp("fuzz") / "sozu.sock")
    rng = random.Random(f"{SEED}-emulator-{version.name}")
    stats = EmulatorStats()
    emulator = WatchedEmulator(path, version=int(version), working_dir=tmp_path)
    async with (
        loop_errors() as errors,
        emulator,
        SozuClient(path, version=version, timeout=GOOD_TIMEOUT) as client,
    ):
        good = GoodClient(client, ConfigState(sozu_version=int(version)), emulator.worker_count)
        while stats.frames < EMULATOR_FRAMES:
            streams = []
            for _ in range(40):
                stream, categories = make_stream(rng, version, stats, wanted="harmless")
                streams.append(stream)
                stats.frames += len(categories)
                stats.by_category.update(categories)
            stats.streams += len(streams)
            await _hostile_batch(path, streams, rng, good)
        await good.round()
        assert not emulator.crashed
        assert emulator.state == good.reference
        for worker in emulator.workers:
            assert worker.state == good.reference, f"worker {worker.id} diverged"
    stats.good_rounds = good.rounds
    print(
        f"\nemulator fuzz ({version.sozu_release}): {stats.frames} hostile frames in "
        f"{stats.streams} connections, {len(emulator.raised) + len(errors)} exceptions, "
        f"{stats.good_rounds} good-client rounds all answered correctly; streams regenerated: "
        f"{dict(stats.regenerated)}\n  by category: {dict(sorted(stats.by_category.items()))}"
    )
    assert not emulator.raised, emulator.raised[:10]
    assert not errors, errors[:10]
    assert stats.frames >= EMULATOR_FRAMES


async def test_emulator_1x_short_length_crash_is_exactly_the_emulated_panic(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """The streams excluded from the 1.0 run: each makes a fresh 1.0 emulator 'panic' (every
    connection closed, the socket left behind with nobody listening), and nothing else."""
    rng = random.Random(f"{SEED}-emulator-crash")
    stats = EmulatorStats()
    directory = tmp_path_factory.mktemp("crash")
    for number in range(V1_CRASH_CASES):
        path = str(directory / f"s{number}.sock")
        stream, _ = make_stream(rng, WireVersion.V1, stats, wanted="crashes 1.0")
        emulator = WatchedEmulator(path, version=1, working_dir=tmp_path)
        async with loop_errors() as errors, emulator:
            client = await SozuClient.connect(path, version=WireVersion.V1, timeout=GOOD_TIMEOUT)
            writer = await _write_stream(path, stream, rng)
            async with asyncio.timeout(GOOD_TIMEOUT):
                while not emulator.crashed:  # noqa: ASYNC110 (the emulator has no crash event)
                    await asyncio.sleep(0.005)
            # Its connection died with main: an error on this request (ConnectionClosed) or,
            # if the hang-up was already seen, on reconnecting (SocketRefused).
            with pytest.raises((ConnectionClosed, SocketRefused)):
                await client.list_workers()
            with pytest.raises(SocketRefused):  # nobody listens on the stale socket
                await client.list_workers()  # and nobody listens on the stale socket
            await client.aclose()
            if writer is not None:
                writer.close()
        assert not emulator.raised, emulator.raised
        assert not errors, errors
    print(f"\nemulator 1.0 crash cases: {V1_CRASH_CASES} streams, each one emulated panic")


async def _one_valid_request(path: str, payload: bytes, version: WireVersion) -> bool:
    """Send one request on its own connection; True if a final answer came back."""
    reader, writer = await asyncio.open_unix_connection(path)
    frames = FrameReader(max_frame_size=None)
    try:
        writer.write(encode_frame(payload))
        await writer.drain()
        async with asyncio.timeout(0.1):
            while True:
                while (answer := frames.next_frame()) is None:
                    data = await reader.read(65536)
                    if not data:
                        return False
                    frames.feed(data)
                if CODECS[version].decode_response(answer).is_final:
                    return True
    except TimeoutError:
        return False  # silence (launch_worker, an empty request) or subscribe_events
    finally:
        writer.close()


def _without_counts(state: ConfigState) -> ConfigState:
    # Main counts the requests it refuses too; workers only ever see accepted ones.
    return dataclasses.replace(state, request_counts={})


@pytest.mark.parametrize("version", [WireVersion.V2, WireVersion.V1], ids=["2.x", "1.0"])
async def test_emulator_survives_valid_requests_with_random_fields(
    version: WireVersion, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Well-formed requests of every verb (mutations included, save/load_state excluded) with
    random field values: out-of-range enums, bad addresses, invalid UTF-8, garbage
    certificates. State may change; the emulator must answer or stay silent as Sōzu would,
    never raise, and keep main and workers agreeing on the state."""
    path = str(tmp_path_factory.mktemp("valid") / "sozu.sock")
    rng = random.Random(f"{SEED}-valid-{version.name}")
    descriptor = PB[version].DESCRIPTOR.message_types_by_name["Request"]
    members = tuple(
        name for name in descriptor.fields_by_name if name not in _SIDE_EFFECT_MEMBERS
    )
    emulator = WatchedEmulator(path, version=int(version), working_dir=tmp_path)
    answered = sent = 0
    async with loop_errors() as errors, emulator:
        while sent < EMULATOR_VALID_REQUESTS:
            payloads = [_random_request(rng, version, members) for _ in range(25)]
            results = await asyncio.gather(
                *(_one_valid_request(path, payload, version) for payload in payloads)
            )
            sent += len(payloads)
            answered += sum(results)
        assert not emulator.crashed
        async with SozuClient(path, version=version, timeout=GOOD_TIMEOUT) as client:
            assert len(await client.list_workers()) == emulator.worker_count
            await client.send(rq.AddCluster(Cluster("after-the-storm")))
            assert await client.query_cluster_by_id("after-the-storm") is not None
        for worker in emulator.workers:
            assert _without_counts(worker.state) == _without_counts(emulator.state), (
                f"worker {worker.id} diverged from main"
            )
    print(
        f"\nemulator random valid requests ({version.sozu_release}): {sent} sent, {answered} "
        f"answered, {sent - answered} silent or subscribed, "
        f"{len(emulator.raised) + len(errors)} exceptions; main now holds "
        f"{len(emulator.state.clusters)} clusters"
    )
    assert not emulator.raised, emulator.raised[:10]
    assert not errors, errors[:10]


def test_generators_cover_what_they_claim() -> None:
    """Guards against a generator silently degenerating (e.g. every 'huge' length fitting)."""
    rng = random.Random(SEED)
    ctx = Ctx(WireVersion.V2, DEFAULT_MAX_FRAME_SIZE)
    expectations: dict[Callable[[random.Random, Ctx], bytes], set[type[SozuError] | None]] = {
        _answer_declared_below_prefix: {FrameTooShort},
        _answer_declared_eight: {RequestFailed},  # status defaults to FAILURE in the .proto
        _answer_valid: {None, RequestFailed},
    }
    for generator, allowed in expectations.items():
        for _ in range(50):
            data = generator(rng, ctx)
            outcome, _, _ = _client_oracle(
                data, "close", ctx, typed=False, raise_for_failure=True
            )
            assert outcome in allowed | {ConnectionClosed}, (generator.__name__, data.hex())
    assert any(
        _client_oracle(_answer_deep(rng, ctx), "close", ctx, typed=False,
                       raise_for_failure=True)[0] is UndecodablePayload
        for _ in range(50)
    )
