"""The Sōzu stand-in for the benchmarks: the bundled emulator, run as its own process.

A separate process, like a real Sōzu: the client under test and the emulator each get a core
(the benchmark machine has two), and the emulator's work never shows up in the client's CPU
time. It is started with `python -m sozu_operator emulator --socket S --control --state F`,
where F holds the listeners Sōzu's own configuration file would give: each restart, like a
real one, boots back to those listeners. It is reset between scenarios through its JSON
control socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.workload import listener_requests
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.statefile import render_state
from sozu_operator.wire import SozuClient

MUTATING_VERBS = frozenset(cls.__name__ for cls in rq.MUTATIONS)
_REPO = Path(__file__).resolve().parents[1]


class EmulatorProcess:
    """`async with EmulatorProcess() as emulator:` starts it and stops it (SIGTERM)."""

    def __init__(self, *, workers: int = 2) -> None:
        self.workers = workers
        self._dir = tempfile.TemporaryDirectory(prefix="sozu-bench-")
        self.socket = os.path.join(self._dir.name, "sozu.sock")
        self.control = f"{self.socket}.control"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def __aenter__(self) -> Self:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_REPO / "operator"), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        boot_state = Path(self._dir.name) / "boot-state.json"
        boot_state.write_bytes(render_state(listener_requests()))
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sozu_operator", "emulator",
            "--socket", self.socket, "--control", "--workers", str(self.workers),
            "--state", str(boot_state),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 30
        while not self._listening():
            if self._process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the Sōzu emulator did not start")
            await asyncio.sleep(0.05)
        return self

    def _listening(self) -> bool:
        return os.path.exists(self.socket) and os.path.exists(self.control)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                async with asyncio.timeout(30):
                    await self._process.wait()
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._dir.cleanup()

    async def command(self, action: str, **arguments: Any) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(self.control, limit=1 << 30)
        try:
            writer.write(json.dumps({action: arguments}).encode() + b"\n")
            await writer.drain()
            answer: dict[str, Any] = json.loads(await reader.readline())
        finally:
            writer.close()
        if not answer.get("ok"):
            raise RuntimeError(f"emulator control {action}: {answer}")
        return answer

    async def reset(self) -> None:
        """Back to an empty Sōzu with only the configuration file's listeners, counts zeroed."""
        await self.restart()
        await self.command("reset_counts")

    async def restart(self) -> None:
        """Restart Sōzu's main process: every command connection closed, back to the
        configuration file's listeners, new worker pids."""
        await self.command("restart", to="boot")

    async def verbs(self) -> dict[str, int]:
        """Requests the emulator received since the last reset, by verb."""
        answer = await self.command("counts")
        verbs: dict[str, int] = answer["verbs"]
        return verbs

    def client(self) -> SozuClient:
        """A client as the CLI makes it (default frame ceiling), with a generous timeout."""
        return SozuClient(self.socket, timeout=120.0)

    def cpu_seconds(self) -> float:
        """User + system CPU time the emulator process used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


def mutations_in(verbs: dict[str, int]) -> int:
    return sum(count for verb, count in verbs.items() if verb in MUTATING_VERBS)
