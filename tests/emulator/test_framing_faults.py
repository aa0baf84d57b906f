"""Framing edge cases, version differences and every fault-injection switch of the emulator.

Raw frames are used wherever the project's client would hide the behaviour (it never
pipelines, never sends malformed frames and cannot send verbs it does not model)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.emulator.support import (
    HTTP_ADDRESS,
    SILENCE,
    RawConnection,
    add_listener,
    address,
    apply_all,
    exchange,
)

from sozu_operator.emulators import SozuEmulator
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import Cluster, HttpListener, ListenerType
from sozu_operator.proxy.responses import Event, Response, ResponseStatus
from sozu_operator.proxy.statefile import parse_state
from sozu_operator.wire import (
    Codec,
    ConnectionClosed,
    RequestFailed,
    RequestTimeout,
    SozuClient,
    WireVersion,
    encode_frame,
)

ROOT = Path(__file__).resolve().parents[2]
DISPATCH = "could not dispatch request on the main process state: "

# Hand-encoded Request payloads for members the typed models do not cover.
SUBSCRIBE_EVENTS = b"\x52\x00"  # field 10, empty message
LAUNCH_WORKER = b"\x3a\x00"  # field 7, empty string
SOFT_STOP = b"\xba\x02\x00"  # field 39, empty message
LOGGING_INFO = b"\xd2\x02\x04info"  # field 42 ("Logging"), "info"
UPDATE_HTTP_LISTENER = b"\xfa\x02\x00"  # field 47, 2.1-only
TRUNCATED = b"\x0a\x05ab"  # field 1 announces 5 bytes, carries 2: not protobuf


def raw_frame(payload: bytes) -> bytes:
    return encode_frame(payload)


def request_frame(request: rq.Request, version: WireVersion = WireVersion.V2) -> bytes:
    return encode_frame(Codec(version).encode_request(request))


# --- framing -------------------------------------------------------------------------------


async def test_pipelined_frames_only_the_last_is_handled(emulator: SozuEmulator) -> None:
    async with RawConnection.open(emulator.socket_path) as raw:
        await raw.send(rq.AddCluster(Cluster("first")), rq.AddCluster(Cluster("second")))
        answer = await raw.read_exchange()
        assert answer.ok
        await raw.assert_silent()  # the first request is never answered ...
    assert list(emulator.state.clusters) == ["second"]  # ... nor applied
    assert emulator.verb_counts["AddCluster"] == 2  # but it was received


async def test_undecodable_payload_is_never_answered_and_blocks_the_connection(
    emulator: SozuEmulator,
) -> None:
    async with RawConnection.open(emulator.socket_path) as stuck:
        await stuck.write(raw_frame(TRUNCATED))
        await stuck.assert_silent()
        await stuck.write(request_frame(rq.ListWorkers()))
        await stuck.assert_silent()  # stuck behind the bad frame for good
        # Other connections are served meanwhile.
        async with RawConnection.open(emulator.socket_path) as other:
            await other.send(rq.ListWorkers())
            assert (await other.read_exchange()).ok


async def test_invalid_utf8_in_a_string_is_undecodable(emulator: SozuEmulator) -> None:
    async with RawConnection.open(emulator.socket_path) as raw:
        await raw.write(raw_frame(b"\x72\x02\xff\xfe"))  # remove_cluster with non-UTF-8 id
        await raw.assert_silent()
        await raw.send(rq.ListWorkers())
        await raw.assert_silent()


async def test_length_below_prefix_is_skipped_on_2x(emulator: SozuEmulator) -> None:
    async with RawConnection.open(emulator.socket_path) as raw:
        await raw.write(struct.pack("<Q", 3))
        await raw.assert_silent()
        await raw.send(rq.ListWorkers())
        assert (await raw.read_exchange()).ok


async def test_frames_after_a_short_prefix_wait_for_the_next_read(
    emulator: SozuEmulator,
) -> None:
    # 2.x stops parsing the batch after dropping the 8 bytes; the rest is parsed with the
    # next bytes that arrive, as one batch (so only the last of them is answered).
    async with RawConnection.open(emulator.socket_path) as raw:
        await raw.write(struct.pack("<Q", 0) + request_frame(rq.AddCluster(Cluster("a"))))
        await raw.assert_silent()
        await raw.send(rq.ListWorkers())
        answer = await raw.read_exchange()
        assert answer.message == "Successfully listed workers"
        await raw.assert_silent()
    assert emulator.state.clusters == {}


async def test_empty_request_is_ignored(emulator: SozuEmulator) -> None:
    async with RawConnection.open(emulator.socket_path) as raw:
        await raw.write(struct.pack("<Q", 8))
        await raw.assert_silent()
        await raw.send(rq.ListWorkers())
        assert (await raw.read_exchange()).ok


async def test_frame_above_the_ceiling_is_never_answered_on_2x(emulator: SozuEmulator) -> None:
    async with RawConnection.open(emulator.socket_path) as raw:
        await raw.write(struct.pack("<Q", 2_000_001) + b"\x00" * 16)
        await raw.assert_silent()
        await raw.send(rq.ListWorkers())
        await raw.assert_silent()


async def test_1x_has_no_frame_ceiling(socket_path: Path) -> None:
    huge = "c" * 2_100_000
    async with (
        SozuEmulator(socket_path, version=1, workers=1) as emulator,
        SozuClient(socket_path, version=WireVersion.V1, timeout=5.0, max_frame_size=None) as client,
    ):
        await apply_all(client, rq.AddCluster(Cluster(huge)))
        assert list(emulator.state.clusters) == [huge]


async def test_1x_short_length_kills_main(socket_path: Path) -> None:
    emulator = SozuEmulator(socket_path, version=1)
    await emulator.start()
    try:
        async with RawConnection.open(socket_path, WireVersion.V1) as bystander:
            async with RawConnection.open(socket_path, WireVersion.V1) as culprit:
                await culprit.write(struct.pack("<Q", 3))
                assert await culprit.read_until_closed() == b""
            assert await bystander.read_until_closed() == b""
        assert emulator.crashed
        # The socket file stays, with nobody listening: what a crashed Sōzu leaves.
        assert stat.S_ISSOCK(os.lstat(socket_path).st_mode)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_unix_connection(os.fspath(socket_path))
    finally:
        await emulator.stop()


async def test_response_above_the_ceiling_closes_the_connection(socket_path: Path) -> None:
    async with (
        SozuEmulator(socket_path, max_frame_size=200) as emulator,
        SozuClient(socket_path, timeout=2.0) as client,
    ):
        for port in range(8000, 8004):
            await apply_all(client, add_listener(ListenerType.HTTP, address(f"127.0.0.1:{port}")))
        with pytest.raises(ConnectionClosed) as closed:
            await client.list_listeners()
        assert closed.value.received == 0
        assert len(emulator.state.http_listeners) == 4


async def test_connections_are_served_concurrently_one_state(emulator: SozuEmulator) -> None:
    async with (
        RawConnection.open(emulator.socket_path) as first,
        RawConnection.open(emulator.socket_path) as second,
    ):
        # Both requests are written before either answer is read.
        await first.send(add_listener(ListenerType.HTTP, HTTP_ADDRESS))
        await second.send(add_listener(ListenerType.HTTP, HTTP_ADDRESS))
        answers = [await first.read_exchange(), await second.read_exchange()]
    assert sorted(answer.ok for answer in answers) == [False, True]
    (refused,) = [answer for answer in answers if not answer.ok]
    assert refused.message.endswith("HttpListener '127.0.0.1:8080' already exists")


async def test_mutation_answers_processing_then_ok_as_raw_frames(emulator: SozuEmulator) -> None:
    async with RawConnection.open(emulator.socket_path) as raw:
        await raw.send(rq.AddCluster(Cluster("a")))
        processing = await raw.reader.readexactly(8 + 4 + len("Processing worker request..."))
        assert processing == (
            struct.pack("<Q", 40) + b"\x08\x01\x12\x1c" + b"Processing worker request..."
        )
        final = await raw.read()
        assert final == Response(ResponseStatus.OK, "Successfully applied request to all workers")


# --- versions and unmodelled members -------------------------------------------------------


async def test_1x_list_frontends_always_fails(socket_path: Path) -> None:
    async with (
        SozuEmulator(socket_path, version=1),
        SozuClient(socket_path, version=WireVersion.V1, timeout=2.0) as client,
    ):
        with pytest.raises(RequestFailed) as failed:
            await client.list_frontends()
        assert failed.value.message == "main process could not list frontends"


async def test_2x_only_verb_is_silence_on_1x(socket_path: Path) -> None:
    async with (
        SozuEmulator(socket_path, version=1),
        RawConnection.open(socket_path, WireVersion.V1) as raw,
    ):
        await raw.write(raw_frame(UPDATE_HTTP_LISTENER))
        await raw.assert_silent()
        await raw.send(rq.ListWorkers())  # the connection is not stuck
        assert (await raw.read_exchange()).ok


async def test_subscribe_events(socket_path: Path) -> None:
    async with SozuEmulator(socket_path) as emulator, RawConnection.open(socket_path) as raw:
        await raw.write(raw_frame(SUBSCRIBE_EVENTS))
        note = await raw.read()
        assert note == Response(ResponseStatus.PROCESSING, "main", Event(kind=26))
        await raw.assert_silent()  # never a final answer
        assert emulator.verb_counts["SubscribeEvents"] == 1
    v1_path = socket_path.with_name("v1.sock")
    async with SozuEmulator(v1_path, version=1), RawConnection.open(v1_path, WireVersion.V1) as raw:
        await raw.write(raw_frame(SUBSCRIBE_EVENTS))
        await raw.assert_silent()


async def test_unimplemented_and_silent_members(emulator: SozuEmulator) -> None:
    async with RawConnection.open(emulator.socket_path) as raw:
        await raw.write(raw_frame(LAUNCH_WORKER))
        await raw.assert_silent()
        await raw.write(raw_frame(SOFT_STOP))
        refused = await raw.read_exchange()
        assert refused.final == Response.failure("the Sōzu emulator does not implement soft_stop")
        await raw.write(raw_frame(LOGGING_INFO))
        logging_answer = await raw.read_exchange()
        assert logging_answer.ok
        assert [r.status for r in logging_answer.responses] == [
            ResponseStatus.PROCESSING,
            ResponseStatus.OK,
        ]
    assert emulator.state.request_counts == {"Logging": 2}


async def test_verb_counts_cover_every_received_request(
    client: SozuClient, emulator: SozuEmulator
) -> None:
    await client.list_workers()
    await client.count_requests()
    await exchange(client, rq.RemoveCluster("ghost"))
    assert emulator.verb_counts == {"ListWorkers": 1, "CountRequests": 1, "RemoveCluster": 1}
    emulator.reset_counts()
    assert emulator.verb_counts == {}
    assert await client.count_requests() == {"RemoveCluster": 2}  # Sōzu's own: untouched


# --- fault injection -----------------------------------------------------------------------


async def test_fail_nth_mutation_in_workers(client: SozuClient, emulator: SozuEmulator) -> None:
    emulator.fail_nth_mutation(2, "boom")
    await apply_all(client, rq.AddCluster(Cluster("a")))
    await client.list_workers()  # queries do not count
    failed = await exchange(client, rq.AddCluster(Cluster("b")))
    assert failed.processing
    assert failed.message == "0: boom, 1: boom"
    assert sorted(emulator.state.clusters) == ["a", "b"]  # main changed
    assert all("b" in w.state.clusters for w in emulator.workers)  # worker states too
    emulator.fail_nth_mutation(1, "only one", workers=[1])
    partial = await exchange(client, rq.AddCluster(Cluster("c")))
    assert partial.message == "0: OK, 1: only one"
    assert (await exchange(client, rq.AddCluster(Cluster("d")))).ok  # used up


async def test_fail_nth_mutation_in_main(client: SozuClient, emulator: SozuEmulator) -> None:
    emulator.fail_nth_mutation(1, "main says no", in_main=True)
    refused = await exchange(client, rq.AddCluster(Cluster("a")))
    assert refused.responses == [Response.failure(DISPATCH + "main says no")]
    assert emulator.state.clusters == {}
    assert all(w.state.clusters == {} for w in emulator.workers)


@pytest.mark.parametrize(
    ("version", "expected"),
    [(2, "0: bad?text?here?now"), (1, "0: bad,text=here\nnow")],
)
async def test_worker_texts_are_sanitized_on_2x_only(
    socket_path: Path, version: int, expected: str
) -> None:
    async with (
        SozuEmulator(socket_path, version=version, workers=1) as emulator,
        SozuClient(socket_path, version=emulator.version, timeout=2.0) as client,
    ):
        emulator.fail_nth_mutation(1, "bad,text=here\nnow")
        assert (await exchange(client, rq.AddCluster(Cluster("a")))).message == expected


async def test_close_mid_response(client: SozuClient, emulator: SozuEmulator) -> None:
    emulator.close_mid_response()  # the PROCESSING note of the next request
    with pytest.raises(ConnectionClosed) as first:
        await client.send(rq.AddCluster(Cluster("a")))
    assert 0 < first.value.received < 8 or first.value.expected is not None
    assert "a" in emulator.state.clusters  # applied all the same
    emulator.close_mid_response(2)  # the final answer after the PROCESSING note
    notes: list[Response] = []
    with pytest.raises(ConnectionClosed):
        await client.send(rq.AddCluster(Cluster("b")), on_processing=notes.append)
    assert [n.message for n in notes] == ["Processing worker request..."]
    assert (await exchange(client, rq.AddCluster(Cluster("c")))).ok  # a fresh connection


async def test_hang_swallows_requests_until_lifted(
    client: SozuClient, emulator: SozuEmulator
) -> None:
    emulator.hang()
    with pytest.raises(RequestTimeout):
        await client.send(rq.AddCluster(Cluster("a")), timeout=SILENCE)
    assert emulator.state.clusters == {}
    assert emulator.verb_counts["AddCluster"] == 1  # read, not answered
    emulator.unhang()
    assert (await exchange(client, rq.AddCluster(Cluster("b")))).ok


async def test_hang_for_a_while_then_answers(client: SozuClient, emulator: SozuEmulator) -> None:
    emulator.hang(0.2)
    with pytest.raises(RequestTimeout):
        await client.send(rq.ListWorkers(), timeout=0.1)
    await asyncio.sleep(0.15)
    assert (await exchange(client, rq.ListWorkers())).ok


async def test_hang_with_apply_changes_state_without_answering(
    client: SozuClient, emulator: SozuEmulator
) -> None:
    emulator.hang(apply=True)
    with pytest.raises(RequestTimeout):
        await client.send(rq.AddCluster(Cluster("a")), timeout=SILENCE)
    assert "a" in emulator.state.clusters
    assert all("a" in w.state.clusters for w in emulator.workers)


@pytest.fixture
async def booted(socket_path: Path, tmp_path: Path) -> AsyncIterator[SozuEmulator]:
    boot: list[rq.Mutation] = [
        rq.AddHttpListener(HttpListener(HTTP_ADDRESS)),
        rq.AddCluster(Cluster("boot")),
        rq.AddCluster(Cluster("boot")),  # upsert: accepted, counted
    ]
    async with SozuEmulator(socket_path, initial_state=boot, working_dir=tmp_path) as emulator:
        yield emulator


async def test_restart_returns_to_the_boot_state(booted: SozuEmulator) -> None:
    async with SozuClient(booted.socket_path, timeout=2.0) as client:
        before = await client.list_workers()
        await apply_all(client, rq.AddCluster(Cluster("runtime")))
        async with RawConnection.open(booted.socket_path) as idle:
            await idle.send(rq.ListWorkers())
            await idle.read_exchange()  # the emulator has surely accepted this one now
            booted.hang()  # faults do not survive a restart
            await booted.restart()
            assert await idle.read_until_closed() == b""
    async with SozuClient(booted.socket_path, timeout=2.0) as client:
        assert list(booted.state.clusters) == ["boot"]
        after = await client.list_workers()
        assert [w.id for w in before] == [0, 1]
        assert [w.id for w in after] == [2, 3]
        assert {w.pid for w in after}.isdisjoint({w.pid for w in before})
        assert await client.count_requests() == {"AddHttpListener": 2, "AddCluster": 3}
        await booted.restart(to="empty")
    async with SozuClient(booted.socket_path, timeout=2.0) as client:
        assert await client.query_clusters_hashes() == {}
        assert await client.count_requests() == {}


async def test_restart_drops_connections_the_client_then_reconnects(
    client: SozuClient, emulator: SozuEmulator
) -> None:
    await apply_all(client, rq.AddCluster(Cluster("a")))
    await emulator.restart()
    await asyncio.sleep(0.05)  # let the hang-up reach the client's idle connection
    assert await client.query_clusters_hashes() == {}


# --- control channel and process entry point -----------------------------------------------


async def control(path: str, command: dict[str, object]) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(json.dumps(command).encode() + b"\n")
        await writer.drain()
        answer: dict[str, object] = json.loads(await reader.readline())
        return answer
    finally:
        writer.close()


async def test_control_socket(socket_path: Path) -> None:
    async with (
        SozuEmulator(socket_path, control=True) as emulator,
        SozuClient(socket_path, timeout=2.0) as client,
    ):
        control_path = f"{socket_path}.control"
        assert emulator.control_path == control_path
        assert stat.S_IMODE(os.stat(control_path).st_mode) == 0o600

        assert await control(control_path, {"fail_nth_mutation": {"n": 1, "message": "x"}}) == {
            "ok": True
        }
        assert (await control(control_path, {"counts": {}}))["last_mutation_answered"] is None
        sent = time.monotonic()
        assert (await exchange(client, rq.AddCluster(Cluster("a")))).message == "0: x, 1: x"
        answered = time.monotonic()

        counts = await control(control_path, {"counts": {}})
        stamp = counts.pop("last_mutation_answered")
        assert isinstance(stamp, float)
        assert sent <= stamp <= answered
        assert counts == {
            "ok": True,
            "verbs": {"AddCluster": 1},
            "request_counts": {"AddCluster": 2},
        }

        state = await control(control_path, {"state": {}})
        assert isinstance(state["state"], str)
        parsed = parse_state(state["state"].encode())
        assert list(parsed.requests) == [rq.AddCluster(Cluster("a"))]

        assert (await control(control_path, {"hang": {"seconds": None}}))["ok"] is True
        with pytest.raises(RequestTimeout):
            await client.send(rq.ListWorkers(), timeout=SILENCE)
        assert (await control(control_path, {"hang": {"seconds": 0}}))["ok"] is True
        assert (await exchange(client, rq.ListWorkers())).ok

        restarted = await control(control_path, {"restart": {}})
        assert restarted == {"ok": True, "workers": [[2, 10_002], [3, 10_003]]}
        assert emulator.state.clusters == {}

        bad = await control(control_path, {"explode": {}})
        assert bad == {"ok": False, "error": "unknown control command 'explode'"}
        assert (await control(control_path, {"reset_counts": {}}))["ok"] is True
        assert emulator.verb_counts == {}


async def test_socket_files_permissions_stale_socket_and_cleanup(socket_path: Path) -> None:
    await asyncio.to_thread(socket_path.write_text, "stale leftover")
    async with SozuEmulator(socket_path) as emulator:
        mode = os.stat(socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        async with SozuClient(socket_path, timeout=2.0) as client:
            assert isinstance(await client.status(), tuple)
        assert emulator.workers
    assert not _exists(socket_path)


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _spawn(*arguments: str) -> subprocess.Popen[str]:
    code = (
        "import sys; from sozu_operator.emulators import run_emulator; "
        f"sys.exit(run_emulator({', '.join(arguments)}))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


async def _ready_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout=10)


async def test_run_emulator_serves_until_sigterm(socket_path: Path) -> None:
    process = _spawn(repr(str(socket_path)), "control=True")
    try:
        line = await _ready_line(process)
        assert line.startswith(f"Sōzu 2.x emulator listening on {socket_path} (2 workers)")
        async with SozuClient(socket_path, timeout=2.0) as client:
            workers = await client.list_workers()
            assert [w.id for w in workers] == [0, 1]
        assert (await control(f"{socket_path}.control", {"counts": {}}))["ok"] is True
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 10) == 0
        assert not _exists(socket_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_run_emulator_1x_crash_exits_101(socket_path: Path) -> None:
    process = _spawn(repr(str(socket_path)), "version=1", "workers=1")
    try:
        line = await _ready_line(process)
        assert line.startswith("Sōzu 1.0 emulator listening on")
        async with RawConnection.open(socket_path, WireVersion.V1) as raw:
            await raw.write(struct.pack("<Q", 0))
            await raw.read_until_closed()
        assert await asyncio.to_thread(process.wait, 10) == 101
        assert _exists(socket_path)  # stale, as after a real crash
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
