"""Fixtures of the end-to-end tests: an API emulator, Sōzu emulators and operators, all torn down
in the right order (operators first, then Sōzu, then the API)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.e2e_support import (
    Api,
    InProcessOperator,
    Operator,
    OperatorProcess,
    OperatorSpec,
    copy_seed,
    short_dir,
)

from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator

StartOperator = Callable[..., Awaitable[Operator]]
StartSozu = Callable[..., Awaitable[SozuEmulator]]


@pytest.fixture
def workdir() -> Iterator[Path]:
    directory = short_dir()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def kube() -> AsyncIterator[KubeEmulator]:
    emulator = KubeEmulator(bookmark_interval=5.0)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()
    assert emulator.internal_errors == [], emulator.internal_errors[0]


@pytest.fixture
async def api(kube: KubeEmulator) -> AsyncIterator[Api]:
    async with Api(kube) as client:
        yield client


@pytest.fixture
async def crds(api: Api) -> Api:
    """The API with the project's CRDs installed."""
    await api.install_crds()
    return api


@pytest.fixture
def kubeconfig(kube: KubeEmulator, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = kube.write_kubeconfig(workdir / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))  # for in-process operators
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return path


@pytest.fixture
async def start_sozu(workdir: Path) -> AsyncIterator[StartSozu]:
    """Start a Sōzu emulator (in this process, on a real unix socket) booting from the example
    state file (listeners + the unowned `status-page` cluster)."""
    started: list[SozuEmulator] = []

    async def start(name: str = "sozu", **options: Any) -> SozuEmulator:
        directory = workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        options.setdefault("state_file", copy_seed(directory))
        emulator = SozuEmulator(str(directory / "sozu.sock"), **options)
        await emulator.start()
        started.append(emulator)
        return emulator

    try:
        yield start
    finally:
        for emulator in reversed(started):
            await emulator.stop()


@pytest.fixture
async def sozu(start_sozu: StartSozu) -> SozuEmulator:
    return await start_sozu()


@pytest.fixture
async def start_operator(
    kubeconfig: Path, workdir: Path, start_sozu: StartSozu
) -> AsyncIterator[StartOperator]:
    """Start an operator: `process=True` runs `python -m sozu_operator run`, else
    `run_operator` in this event loop. Each is stopped at teardown (before the emulators);
    a process that died or needed SIGKILL fails the test, with its log."""
    started: list[Operator] = []

    async def start(socket: str, *, pod: str = "pod-a", process: bool = False,
                    **options: Any) -> Operator:
        options.setdefault("kubeconfig", kubeconfig)
        spec = OperatorSpec(socket=socket, pod=pod, **options)
        operator: Operator = (
            OperatorProcess(spec, workdir / f"operator-{pod}.log") if process
            else InProcessOperator(spec)
        )
        started.append(operator)
        return await operator.start()

    try:
        yield start
    finally:
        problems = []
        for operator in reversed(started):
            was_alive = operator.alive or operator.stopped
            code = await operator.stop()
            if isinstance(operator, OperatorProcess):  # shown by pytest when a test fails
                notable = [line for line in operator.log_tail(400).splitlines()
                           if " INFO " not in line][-25:]
                print(f"--- operator {operator.spec.pod} (exit {code}), warnings and errors ---",
                      *notable, sep="\n")
            if operator.killed:
                continue  # the test killed it on purpose
            if not was_alive or code not in (0, None):
                problems.append(f"operator {operator.spec.pod} exited with {code}:\n"
                                f"{operator.log_tail()}")
        assert not problems, "\n".join(problems)
