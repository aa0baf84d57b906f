"""The emulator's state file handling: `save_state`, `load_state`, and booting from Sōzu's
`saved_state` file, with the upstream sample files from tests/data."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.certs import make_certificate
from tests.emulator.support import (
    BACKEND_ADDRESS,
    HTTP_ADDRESS,
    HTTPS_ADDRESS,
    TCP_ADDRESS,
    apply_all,
    exchange,
)

from sozu_operator.emulators import SozuEmulator
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import (
    Backend,
    CertificateAndKey,
    Cluster,
    HttpFrontend,
    HttpListener,
    HttpsListener,
    ListenerType,
    PathRule,
    TcpFrontend,
    TcpListener,
)
from sozu_operator.proxy.responses import ResponseStatus
from sozu_operator.wire import SozuClient, WireVersion

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLES = {1: DATA / "upstream-1.0-state.json", 2: DATA / "upstream-2.1-state.json"}


def configuration() -> list[rq.Mutation]:
    cert_pem, key_pem = make_certificate(["example.com", "www.example.com"])
    return [
        rq.AddHttpListener(HttpListener(HTTP_ADDRESS)),
        rq.ActivateListener(HTTP_ADDRESS, ListenerType.HTTP),
        rq.AddHttpsListener(HttpsListener(HTTPS_ADDRESS)),
        rq.AddTcpListener(TcpListener(TCP_ADDRESS)),
        rq.AddCluster(Cluster("web", sticky_session=True)),
        rq.AddCluster(Cluster("db")),
        rq.AddHttpFrontend(HttpFrontend(HTTP_ADDRESS, "example.com", PathRule(), "web")),
        rq.AddCertificate(HTTPS_ADDRESS, CertificateAndKey(cert_pem, key_pem)),
        rq.AddHttpsFrontend(HttpFrontend(HTTPS_ADDRESS, "example.com", cluster_id="web")),
        rq.AddTcpFrontend(TcpFrontend("db", TCP_ADDRESS, tags=(("team", "data"),))),
        rq.AddBackend(Backend("web", "web-0", BACKEND_ADDRESS, weight=10)),
        rq.AddBackend(Backend("db", "db-0", BACKEND_ADDRESS, backup=True)),
    ]


def _read(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("version", [1, 2])
async def test_save_state_then_boot_from_it_gives_the_same_state(
    tmp_path: Path, version: int
) -> None:
    first_socket, second_socket = tmp_path / "a.sock", tmp_path / "b.sock"
    wire = WireVersion(version)
    async with SozuEmulator(first_socket, version=version, working_dir=tmp_path) as first:
        async with SozuClient(first_socket, version=wire, timeout=2.0) as client:
            await apply_all(client, *configuration())
            saved = await exchange(client, rq.SaveState("saved.state"))
        assert saved.processing == []
        # 2.x reports the path it resolved against main's working directory; 1.0 echoes it.
        shown = str(tmp_path / "saved.state") if version == 2 else "saved.state"
        assert saved.message == f"Saved 12 config messages to {shown}"
        expected = first.state.generate_requests()

    async with SozuEmulator(
        second_socket, version=version, state_file=tmp_path / "saved.state"
    ) as second:
        assert second.boot_report.refused == ()
        assert second.boot_report.problems == ()
        assert second.state.generate_requests() == expected
        async with SozuClient(second_socket, version=wire, timeout=2.0) as client:
            listeners = await client.list_listeners()
            assert [listener.active for listener in listeners.http] == [True]
            (certificate,) = (await client.query_certificates_from_the_state()).values()
            assert certificate.names == ("example.com", "www.example.com")
            info = await client.query_cluster_by_id("web")
            assert info is not None
            assert [b.weight for b in info.backends] == [10]
        # Workers were fed the same state: their live objects accept it all.
        assert all(w.state.generate_requests() == expected for w in second.workers)


@pytest.mark.parametrize("version", [1, 2])
async def test_upstream_sample_loads_and_saves_back_byte_for_byte(
    tmp_path: Path, version: int
) -> None:
    sample = SAMPLES[version]
    socket = tmp_path / "sozu.sock"
    async with SozuEmulator(socket, version=version, working_dir=tmp_path) as emulator:
        async with SozuClient(socket, version=WireVersion(version), timeout=2.0) as client:
            loaded = await exchange(client, rq.LoadState(str(sample)))
            assert [r.message for r in loaded.processing] == [
                f"Parsing state file from {sample}...",
                "Applying state file...",
            ]
            assert loaded.message == (
                f"Successfully loaded state from path {sample}, 34 ok messages, 0 errors"
            )
            await apply_all(client, rq.SaveState("again.state"))
        assert len(emulator.state.certificates) == 1
    assert await asyncio.to_thread(_read, tmp_path / "again.state") == await asyncio.to_thread(
        _read, sample
    )


async def test_a_1x_file_loads_into_2x(tmp_path: Path) -> None:
    async with SozuEmulator(tmp_path / "s.sock", state_file=SAMPLES[1]) as emulator:
        assert emulator.boot_report == type(emulator.boot_report)()
        assert sorted(emulator.state.clusters) == ["db", "web"]
        assert len(emulator.state.https_frontends) == 1


async def test_load_state_skips_what_main_refuses_and_counts_worker_answers(
    client: SozuClient, emulator: SozuEmulator, tmp_path: Path
) -> None:
    await apply_all(client, *configuration(), rq.SaveState("s.state"))
    # Loading the same file again: listeners and frontends already exist and are skipped;
    # the 6 upserts (activation, 2 clusters, certificate, 2 backends) reach both workers.
    again = await exchange(client, rq.LoadState("s.state"))
    assert again.message == "Successfully loaded state from path s.state, 12 ok messages, 0 errors"
    assert emulator.state.request_counts["AddHttpListener"] == 3  # refused, still counted


async def test_load_state_reports_worker_failures(
    client: SozuClient, emulator: SozuEmulator, tmp_path: Path
) -> None:
    # A frontend without its listener: main accepts it, workers refuse it.
    await apply_all(client, rq.AddCluster(Cluster("web")))
    await exchange(
        client, rq.AddHttpFrontend(HttpFrontend(HTTP_ADDRESS, "example.com", cluster_id="web"))
    )
    await apply_all(client, rq.SaveState("s.state"))
    await emulator.restart(to="empty")
    result = await exchange(client, rq.LoadState("s.state"))
    assert result.final.status is ResponseStatus.FAILURE
    assert result.message == "loading state: 2 ok messages, 2 errors"


async def test_load_state_missing_file(client: SozuClient) -> None:
    result = await exchange(client, rq.LoadState("nowhere.state"))
    assert result.responses[0].status is ResponseStatus.FAILURE
    assert result.message == "Cannot find file at path nowhere.state"


async def test_load_state_parse_error_keeps_earlier_records(
    client: SozuClient, emulator: SozuEmulator, tmp_path: Path
) -> None:
    await apply_all(client, rq.AddCluster(Cluster("a")), rq.SaveState("good.state"))
    await emulator.restart(to="empty")
    good = await asyncio.to_thread(_read, tmp_path / "good.state")
    broken = tmp_path / "broken.state"
    await asyncio.to_thread(broken.write_bytes, good + b'{"id":"SAVE-1","content":nope}\n\0')
    result = await exchange(client, rq.LoadState(str(broken)))
    assert [r.message for r in result.processing] == [f"Parsing state file from {broken}..."]
    assert result.final.status is ResponseStatus.FAILURE
    assert result.message.startswith("saved state parse error: ")
    assert list(emulator.state.clusters) == ["a"]


async def test_save_state_failure(client: SozuClient, tmp_path: Path) -> None:
    result = await exchange(client, rq.SaveState("missing-dir/s.state"))
    assert result.message == (
        f"Cannot create file at path {tmp_path / 'missing-dir/s.state'}: "
        "No such file or directory (os error 2)"
    )


async def test_boot_skips_file_records_main_refuses(tmp_path: Path) -> None:
    state_file = tmp_path / "saved.state"
    async with (
        SozuEmulator(tmp_path / "a.sock", working_dir=tmp_path) as first,
        SozuClient(first.socket_path, timeout=2.0) as client,
    ):
        await apply_all(client, *configuration()[:3], rq.SaveState(str(state_file)))
    # The boot configuration already holds the HTTP listener: the file's copy is refused.
    boot = [rq.AddHttpListener(HttpListener(HTTP_ADDRESS))]
    async with SozuEmulator(
        tmp_path / "b.sock", initial_state=boot, state_file=state_file
    ) as second:
        assert second.boot_report.refused == (
            "AddHttpListener: HttpListener '127.0.0.1:8080' already exists",
        )
        assert len(second.state.https_listeners) == 1
        assert second.state.http_listeners[HTTP_ADDRESS].active


async def test_restart_reloads_the_saved_state_file(tmp_path: Path) -> None:
    state_file = tmp_path / "saved.state"
    async with SozuEmulator(tmp_path / "s.sock", state_file=state_file) as emulator:
        async with SozuClient(emulator.socket_path, timeout=2.0) as client:
            await apply_all(client, rq.AddCluster(Cluster("kept")), rq.SaveState(str(state_file)))
            await apply_all(client, rq.AddCluster(Cluster("lost")))
        await emulator.restart()
        assert list(emulator.state.clusters) == ["kept"]
