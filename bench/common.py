"""Small shared pieces: timers, GC accounting, percentiles, machine facts."""

from __future__ import annotations

import contextlib
import datetime
import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Json = dict[str, Any]

# `bench/run.py --skip-operator` sets this (inherited by the planning subprocesses): the
# operator hooks are not called and their sections say so.
SKIP_OPERATOR_ENV = "SOZU_BENCH_SKIP_OPERATOR"
OPERATOR_SKIPPED: Json = {"status": "skipped"}


def operator_skipped() -> bool:
    return os.environ.get(SKIP_OPERATOR_ENV) == "1"


@dataclass
class GcClock:
    """Wall time spent in the cyclic garbage collector while installed."""

    seconds: float = 0.0
    collections: int = 0
    _started: float = field(default=0.0, repr=False)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


@contextlib.contextmanager
def as_the_cli_runs() -> Iterator[None]:
    """The collector's thresholds `sozu-operator` sets at start (every command, the operator
    included), for code measured in this process as the CLI or the operator runs it."""
    from sozu_operator.cli import GC_THRESHOLDS

    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@contextlib.contextmanager
def gc_clock() -> Iterator[GcClock]:
    clock = GcClock()
    gc.callbacks.append(clock._callback)
    try:
        yield clock
    finally:
        gc.callbacks.remove(clock._callback)


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0
    gc: float = 0.0


@contextlib.contextmanager
def timed() -> Iterator[Timing]:
    """Wall and CPU (process_time) seconds of the block, and how much of it was GC."""
    result = Timing()
    with gc_clock() as clock:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield result
        finally:
            result.wall = time.perf_counter() - wall
            result.cpu = time.process_time() - cpu
            result.gc = clock.seconds


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def best_of(count: int, run: Callable[[], float]) -> list[float]:
    return [run() for _ in range(count)]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> Json:
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    load = "unknown"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory": memory,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_at_start": load,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def growth_exponent(sizes: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of log(value) over log(size): 1.0 is linear, 2.0 quadratic."""
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if v > 0]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    if den == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / den
