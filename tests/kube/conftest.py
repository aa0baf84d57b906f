"""Fixtures for the Kubernetes API emulator tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.kube.kube_support import HAVE_KUBECTL, NO_KUBECTL, WIDGET_CRD, Kubectl

from sozu_operator.emulators.kube import KubeEmulator


@pytest.fixture
async def emulator() -> AsyncIterator[KubeEmulator]:
    emu = KubeEmulator(bookmark_interval=0.3)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()
    assert emu.internal_errors == [], emu.internal_errors[0]


@pytest.fixture
async def widgets(emulator: KubeEmulator) -> KubeEmulator:
    await emulator.create(WIDGET_CRD)
    return emulator


@pytest.fixture
def kubectl(emulator: KubeEmulator, tmp_path: Path) -> Kubectl:
    if not HAVE_KUBECTL:
        pytest.skip(NO_KUBECTL)
    return Kubectl(emulator.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "cache")
