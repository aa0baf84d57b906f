from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sozu_operator.emulators import SozuEmulator
from sozu_operator.wire import SozuClient


@pytest.fixture
def socket_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths are limited to ~107 bytes; pytest's per-test tmp_path can exceed it.
    return tmp_path_factory.mktemp("sozu") / "sozu.sock"


@pytest.fixture
async def emulator(socket_path: Path, tmp_path: Path) -> AsyncIterator[SozuEmulator]:
    async with SozuEmulator(socket_path, working_dir=tmp_path) as running:
        yield running


@pytest.fixture
async def client(emulator: SozuEmulator) -> AsyncIterator[SozuClient]:
    async with SozuClient(emulator.socket_path, timeout=2.0) as connected:
        yield connected
