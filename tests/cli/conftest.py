"""The CLI end to end: real `sozu-operator` processes against an emulator process, over a real
unix socket, with the emulator's control socket for faults and counts."""

from __future__ import annotations

import json
import os
import socket as socketlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SEED = EXAMPLES / "sozu" / "state.json"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sozu_operator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


@dataclass
class EmulatorProcess:
    socket: str
    process: subprocess.Popen[str]

    def control(self, command: dict[str, Any]) -> dict[str, Any]:
        with socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(self.socket + ".control")
            conn.sendall(json.dumps(command).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        answer: dict[str, Any] = json.loads(data)
        return answer

    def verbs(self) -> dict[str, int]:
        verbs: dict[str, int] = self.control({"counts": {}})["verbs"]
        return verbs

    def mutations(self) -> int:
        return sum(
            n for verb, n in self.verbs().items() if verb.startswith(("Add", "Remove", "Replace"))
        )


def start_emulator(directory: Path, *extra: str) -> EmulatorProcess:
    socket = str(directory / "sozu.sock")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sozu_operator",
            "emulator",
            "--socket",
            socket,
            "--control",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()
    assert "listening on" in ready, process.stderr.read() if process.stderr else ready
    return EmulatorProcess(socket, process)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    started = start_emulator(tmp_path, "--state", str(SEED))
    try:
        yield started
    finally:
        started.process.terminate()
        started.process.wait(timeout=10)
