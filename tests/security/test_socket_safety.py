"""The command socket: whom the client trusts on the way to it, and how refusals read.

tests/wire/test_client_errors.py already covers, on real sockets: a symlink (or a symlinked
directory) owned by another uid is refused, a symlink owned by us is followed, a socket we may
not open gives SocketPermissionDenied (only when not root), and every connect error names the
path; tests/emulator/test_framing_faults.py checks that the emulator's socket is 0600. This file
adds what those cannot show:

* running as root, the permission errors of an unprivileged client for real (a child process
  with another uid): the socket's mode, a directory it cannot search, the CLI's message;
* an unprivileged client follows a symlink owned by root or by itself, not by a third uid;
* a symlink swapped in for the socket while a client is connected is refused when the client
  reconnects, and the impostor never sees a connection;
* symlinks reached *through* other links (a chain, a relative target, `..` after a link) are
  checked too;
* the emulator's sockets are 0600 even under a permissive umask.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sozu_operator.cli import main
from sozu_operator.emulators import SozuEmulator
from sozu_operator.proxy.model import Cluster
from sozu_operator.proxy.requests import AddCluster
from sozu_operator.wire import SozuClient, SozuError, UnsafeSocketPath

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: other uids, lchown")
NOBODY = 65534
STRANGER = 65533

def _probe(path: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        try:
            async with SozuClient(path, timeout=5.0) as client:
                return {"ok": True, "workers": len(await client.list_workers())}
        except SozuError as error:
            return {"ok": False, "error": type(error).__name__, "message": str(error)}

    return asyncio.run(probe())


def _cli(*args: str) -> dict[str, Any]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return {"code": code, "stderr": stderr.getvalue()}


_PRELOAD = ("sozu_operator.cli.gitops", "sozu_operator.resources.export", "colorsys")


async def as_user(uid: int, function: Callable[..., dict[str, Any]], *args: str) -> Any:
    """`function(*args)` in a forked child running as `uid` (no supplementary groups), its
    JSON-able result sent back through a pipe. A fork rather than a new interpreter: the
    interpreter may sit where other uids cannot read it (e.g. under /root)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            for module in _PRELOAD:  # lazily imported modules, while we may still read them
                importlib.import_module(module)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            data = json.dumps(function(*args)).encode()
        except BaseException as error:
            data = json.dumps({"crash": f"{type(error).__name__}: {error}"}).encode()
        with os.fdopen(write_end, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write_end)

    def collect() -> bytes:
        with os.fdopen(read_end, "rb") as source:
            received = source.read()
        os.waitpid(pid, 0)
        return received

    # In a thread: the in-process emulator must keep serving while the child talks to it.
    return json.loads(await asyncio.wait_for(asyncio.to_thread(collect), 60))


async def probe_as(uid: int, path: str | Path) -> dict[str, Any]:
    answer: dict[str, Any] = await as_user(uid, _probe, str(path))
    assert "crash" not in answer, answer
    return answer


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every uid can search (pytest's tmp_path is 0700 under root's base)."""
    directory = Path(tempfile.mkdtemp(prefix="sozu-sock-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def emulator_at(path: Path) -> AsyncIterator[SozuEmulator]:
    async with SozuEmulator(path, working_dir=path.parent) as emulator:
        yield emulator


@contextlib.asynccontextmanager
async def impostor(path: Path) -> AsyncIterator[list[int]]:
    """A server that only counts the connections it gets: someone else's socket."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_unix_server(handle, path=str(path))
    try:
        yield connections
    finally:
        server.close()
        await server.wait_closed()


def owned_link(link: Path, target: str | Path, uid: int) -> Path:
    link.symlink_to(target)
    os.lchown(link, uid, uid)
    return link


# --- permission errors, for real -----------------------------------------------------------------


@needs_root
async def test_unprivileged_client_is_told_why_and_how_to_fix(shared_dir: Path) -> None:
    path = shared_dir / "sozu.sock"
    async with emulator_at(path):
        status = os.lstat(path)
        assert stat.S_IMODE(status.st_mode) == 0o600
        assert status.st_uid == os.geteuid()
        answer = await probe_as(NOBODY, path)
        cli = await as_user(NOBODY, _cli, "export", "--socket", str(path))
    assert answer["error"] == "SocketPermissionDenied", answer
    message = answer["message"]
    assert str(path) in message
    assert "mode 0600" in message
    assert "same uid as Sōzu (or as root)" in message
    assert "runAsUser / fsGroup" in message
    # The CLI prints the same explanation, as one error line, and fails.
    assert cli.get("code") == 1, cli
    assert cli["stderr"].startswith(
        f"error: Permission denied on the Sōzu command socket {path}:"
    ), cli
    assert cli["stderr"].count("\n") == 1, cli


@needs_root
async def test_unsearchable_directory_is_explained(shared_dir: Path) -> None:
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    path = private / "sozu.sock"
    async with emulator_at(path):
        answer = await probe_as(NOBODY, path)
    assert answer["error"] == "SocketPermissionDenied", answer
    assert str(path) in answer["message"]
    assert "every directory on the path is searchable" in answer["message"]


# --- which links an unprivileged client follows --------------------------------------------------


@needs_root
async def test_unprivileged_client_follows_links_of_root_and_its_own_only(
    shared_dir: Path,
) -> None:
    path = shared_dir / "sozu.sock"
    async with emulator_at(path) as emulator:
        path.chmod(0o666)  # so that the unprivileged client may connect at all
        by_root = owned_link(shared_dir / "by-root.sock", path, 0)
        by_itself = owned_link(shared_dir / "by-nobody.sock", path, NOBODY)
        by_stranger = owned_link(shared_dir / "by-stranger.sock", path, STRANGER)
        assert await probe_as(NOBODY, by_root) == {"ok": True, "workers": emulator.worker_count}
        assert await probe_as(NOBODY, by_itself) == {"ok": True, "workers": emulator.worker_count}
        refused = await probe_as(NOBODY, by_stranger)
    assert refused["error"] == "UnsafeSocketPath", refused
    assert f"{by_stranger}: it is a symbolic link owned by uid {STRANGER}" in refused["message"]
    assert "Use the real socket path" in refused["message"]


# --- a link swapped in for the socket ------------------------------------------------------------


@needs_root
async def test_symlink_swapped_in_for_the_socket_is_refused_on_reconnect(
    shared_dir: Path,
) -> None:
    path = shared_dir / "sozu.sock"
    decoy = shared_dir / "decoy.sock"
    emulator = SozuEmulator(path, working_dir=shared_dir)
    await emulator.start()
    client = await SozuClient.connect(path, timeout=2.0)
    try:
        await client.send(AddCluster(Cluster("before")))
        # Sōzu stops (its socket is gone, our connection closed); before it comes back,
        # another user puts a link to their own socket where Sōzu's socket was.
        await emulator.stop()
        async with impostor(decoy) as connections:
            owned_link(path, decoy, NOBODY)
            await asyncio.sleep(0.05)  # let the hang-up reach the client
            with pytest.raises(UnsafeSocketPath, match=f"owned by uid {NOBODY}") as caught:
                await client.send(AddCluster(Cluster("after")))
            assert caught.value.path == str(path)
            assert connections == []
    finally:
        await client.aclose()
        await emulator.stop()


@needs_root
@pytest.mark.parametrize(
    "layout",
    ["chain", "relative-target-through-directory-link", "dot-dot-after-link"],
)
async def test_links_reached_through_other_links_are_checked(
    shared_dir: Path, layout: str
) -> None:
    real_dir = shared_dir / "real"
    real_dir.mkdir()
    socket_path = real_dir / "sozu.sock"
    async with impostor(socket_path) as connections:
        if layout == "chain":
            # root's link → a stranger's link → the socket
            theirs = owned_link(shared_dir / "theirs.sock", socket_path, STRANGER)
            entry = owned_link(shared_dir / "entry.sock", theirs.name, 0)
            culprit = theirs
        elif layout == "relative-target-through-directory-link":
            # root's link → "dir/sozu.sock", where dir is a stranger's link to a directory
            culprit = owned_link(shared_dir / "dir", real_dir, STRANGER)
            entry = owned_link(shared_dir / "entry.sock", "dir/sozu.sock", 0)
        else:
            # ".." after a stranger's link leaves wherever that link points to
            culprit = owned_link(shared_dir / "dir", real_dir / "sub", STRANGER)
            (real_dir / "sub").mkdir()
            entry = shared_dir / "dir" / ".." / "sozu.sock"
        with pytest.raises(UnsafeSocketPath) as caught:
            await SozuClient.connect(entry, timeout=2.0)
        assert caught.value.path == str(culprit)
        assert caught.value.owner_uid == STRANGER
        assert connections == []


# --- the emulator's own sockets ------------------------------------------------------------------


async def test_emulator_sockets_are_0600_under_a_permissive_umask(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = tmp_path_factory.mktemp("umask") / "sozu.sock"
    previous = os.umask(0)
    try:
        async with SozuEmulator(path, control=True, working_dir=path.parent) as emulator:
            assert emulator.control_path is not None
            for socket_file in (path, Path(emulator.control_path)):
                mode = os.lstat(socket_file).st_mode
                assert stat.S_ISSOCK(mode)
                assert stat.S_IMODE(mode) == 0o600, (socket_file, oct(mode))
    finally:
        os.umask(previous)
