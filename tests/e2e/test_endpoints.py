"""The operator process's HTTP endpoints: /healthz, /readyz (the readiness gate) and /metrics.
Started before its Sōzu exists, it waits, says why it is not ready, and does not crash; once
the Sōzu socket appears it programs it and turns ready."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
from tests.e2e.conftest import StartOperator, StartSozu
from tests.e2e.e2e_support import (
    Api,
    converged,
    eventually,
    example_documents,
    free_port,
    http_get,
)

from sozu_operator.emulators.kube import KubeEmulator


async def _get(url: str) -> tuple[int, str] | None:
    try:
        return await http_get(url)
    except aiohttp.ClientConnectionError:
        return None  # not listening yet


async def test_not_ready_until_sozu_appears_then_ready_with_metrics(
    crds: Api, kube: KubeEmulator, workdir: Path, start_sozu: StartSozu,
    start_operator: StartOperator,
) -> None:
    api = crds
    socket = workdir / "sozu" / "sozu.sock"  # where start_sozu() will create it
    health, metrics = free_port(), free_port()
    operator = await start_operator(str(socket), process=True, health_port=health,
                                    metrics_port=metrics)
    await api.create(*example_documents())
    base, metrics_url = f"http://127.0.0.1:{health}", f"http://127.0.0.1:{metrics}/metrics"

    code, text = await eventually(lambda: _get(f"{base}/readyz"), within=15,
                                  what="/readyz to answer")
    assert code == 503
    assert text.startswith("not ready: ")
    # The reason names the socket once a pass has tried it.
    code, text = await eventually(
        lambda: _reason(base, str(socket)), within=5, what="/readyz to name the socket")
    assert code == 503
    assert await http_get(f"{base}/healthz") == (200, "ok\n")
    await asyncio.sleep(1.0)
    assert operator.alive
    assert (await http_get(f"{base}/readyz"))[0] == 503

    sozu = await start_sozu()
    appeared = time.monotonic()
    await eventually(lambda: _ready(base), within=20, what="/readyz 200 once Sōzu is up",
                     interval=0.02)
    print(f"\nSōzu socket appeared → /readyz 200 after {time.monotonic() - appeared:.2f} s "
          "(the retry backoff of a failed pass decides)")
    await converged(api, sozu, what="the examples to be programmed")
    assert await http_get(f"{base}/healthz") == (200, "ok\n")

    code, exposition = await http_get(metrics_url)
    assert code == 200
    lines = exposition.splitlines()
    assert 'sozu_operator_requests_total{verb="AddCluster"} 2.0' in lines
    assert 'sozu_operator_requests_total{verb="AddHttpFrontend"} 3.0' in lines
    assert any(line.startswith("sozu_operator_reconcile_errors_total ") and
               float(line.split()[1]) >= 1 for line in lines), "the failed passes"
    for family in ("sozu_operator_reconcile_duration_seconds_count",
                   "sozu_operator_last_success_timestamp_seconds",
                   'sozu_operator_resources{kind="SozuFrontend",state="ready"} 5.0',
                   "sozu_operator_certificate_expiry_days",
                   "sozu_operator_guard_blocked 0.0",
                   "sozu_operator_drift_repairs_total 0.0"):
        assert any(line.startswith(family) for line in lines), family
    assert operator.alive


async def _reason(base: str, socket: str) -> tuple[int, str] | None:
    code, text = await http_get(f"{base}/readyz")
    return (code, text) if socket in text else None


async def _ready(base: str) -> bool:
    code, _ = await http_get(f"{base}/readyz")
    return code == 200
