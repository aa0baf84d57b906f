"""Run every benchmark and write docs/benchmarks.md, docs/benchmarks.json and docs/img/*.png.

    .venv/bin/python bench/run.py [--quick] [--out docs/benchmarks.md]

Every figure is measured in this one run next to its reference, so it reads as a ratio even on
a busy machine. `--quick` runs everything at small scale (at most 1k frontends) in well under
a minute; it is what `tests/bench/test_bench_quick.py` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
for _path in (str(_REPO / "operator"), str(_REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench import churn, cold_start, growth, report, resync, single_change  # noqa: E402
from bench.common import SKIP_OPERATOR_ENV, Json, as_the_cli_runs, machine  # noqa: E402
from bench.emulator import EmulatorProcess  # noqa: E402
from bench.workload import CertificatePool, Workload, groups_for  # noqa: E402


@dataclass(frozen=True)
class Scale:
    sizes: tuple[int, ...]  # frontends, cold start, planning and growth
    resync_size: int  # the no-op resync runs on this programmed size
    change_size: int  # the single-change latencies run on this programmed size
    kept_changes: int  # per kind, kept-state path
    cli_changes: int  # per kind, CLI path
    raw_requests: int  # trivial round trips per reference measurement
    churn_frontends: int
    churn_events: int
    repeats: int


FULL = Scale(
    sizes=(1_000, 10_000, 50_000),
    resync_size=50_000,
    change_size=10_000,
    kept_changes=50,
    cli_changes=17,
    raw_requests=4_000,
    churn_frontends=2_000,
    churn_events=300,
    repeats=3,
)
QUICK = Scale(
    sizes=(200, 1_000),
    resync_size=1_000,
    change_size=1_000,
    kept_changes=10,
    cli_changes=4,
    raw_requests=1_000,
    churn_frontends=500,
    churn_events=40,
    repeats=2,
)
CHURN_SEED = 20_240_501


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def planning_in_subprocess(frontends: int, repeats: int) -> Json:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO), str(_REPO / "operator")])
    completed = subprocess.run(
        [sys.executable, "-m", "bench.planning", "--frontends", str(frontends),
         "--repeats", str(repeats)],
        cwd=_REPO, env=env, capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"planning at {frontends} failed:\n{completed.stderr}")
    result: Json = json.loads(completed.stdout)
    return result


async def measure(scale: Scale) -> Json:
    pool = CertificatePool()
    pool.warm(groups_for(max(scale.sizes)))
    per_size: dict[int, Json] = {size: {"frontends": size} for size in scale.sizes}
    results: Json = {}

    for size in scale.sizes:
        _log(f"planning at {size} frontends (own process)")
        per_size[size]["planning"] = planning_in_subprocess(size, scale.repeats)

    async with EmulatorProcess() as emulator:
        for size in scale.sizes:
            workload = Workload.build(size, pool)
            _log(f"cold start at {size} frontends")
            with as_the_cli_runs():
                per_size[size]["cold_start"] = await cold_start.run(
                    emulator, workload, raw_count=scale.raw_requests
                )
            if size == scale.resync_size:
                _log(f"no-op resync at {size} frontends")
                results["resync"] = await resync.run(emulator, workload, repeats=scale.repeats)
            if size == scale.change_size:
                _log(f"single changes at {size} frontends")
                results["single_change"] = await single_change.run(
                    emulator, workload, kept_changes=scale.kept_changes,
                    cli_changes=scale.cli_changes,
                )
            del workload
        _log(f"churn trace: {scale.churn_events} events on {scale.churn_frontends} frontends")
        results["churn"] = await churn.run(
            emulator, Workload.build(scale.churn_frontends, pool),
            events=scale.churn_events, seed=CHURN_SEED,
        )
    results["sizes"] = list(scale.sizes)
    results["per_size"] = {str(size): per_size[size] for size in scale.sizes}
    results["growth"] = growth.compute(list(scale.sizes), per_size)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small scale (<= 1k), < 60 s")
    parser.add_argument("--skip-operator", action="store_true",
                        help="do not run the operator hooks (bench/operator_hooks.py)")
    parser.add_argument("--out", default=str(_REPO / "docs" / "benchmarks.md"),
                        help="Markdown report; the JSON and the PNGs go next to it")
    args = parser.parse_args(argv)
    out = Path(args.out)
    scale = QUICK if args.quick else FULL
    command = ".venv/bin/python bench/run.py" + (" --quick" if args.quick else "")
    if args.skip_operator:
        command += " --skip-operator"
        os.environ[SKIP_OPERATOR_ENV] = "1"
    if args.out != parser.get_default("out"):
        command += f" --out {shlex.quote(args.out)}"
    started = time.perf_counter()
    facts = machine()
    results = asyncio.run(measure(scale))
    results = {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "machine": facts,
        "duration_seconds": time.perf_counter() - started,
        **results,
    }
    paths = report.write(results, out)
    _log("wrote " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
