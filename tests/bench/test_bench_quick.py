"""`bench/run.py --quick` end to end: every section is in the JSON, and the correctness
checks hold (no mutation on a no-op resync, never more requests than Sōzu's own diff).
Timings are machine-dependent and deliberately not asserted."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("matplotlib", reason="bench extra not installed (pip install -e '.[bench]')")

from bench import run

pytestmark = pytest.mark.slow

SECTIONS = ("machine", "command", "sizes", "per_size", "resync", "single_change", "churn",
            "growth", "images")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    assert run.main(["--quick", "--out", str(out)]) == 0
    assert out.read_text().startswith("# Benchmarks")
    for image in ("cold-start", "resync", "single-change", "planning", "churn", "growth"):
        assert (out.parent / "img" / f"bench-{image}.png").stat().st_size > 0
    data: dict[str, Any] = json.loads(out.with_suffix(".json").read_text())
    return data


def test_every_section_is_there(results: dict[str, Any]) -> None:
    for section in SECTIONS:
        assert section in results, section
    per_size = results["per_size"]
    assert isinstance(per_size, dict)
    for size in results["sizes"]:
        assert {"cold_start", "planning"} <= set(per_size[str(size)])


def test_cold_start_programs_exactly_the_plan(results: dict[str, Any]) -> None:
    for entry in results["per_size"].values():
        cold = entry["cold_start"]
        assert cold["mutations_seen_by_emulator"] == cold["requests"] > 0
        assert cold["reference"]["raw_round_trip_rate"] > 0
        operator = cold["operator"]
        assert operator["status"] in ("pending", "measured")
        if operator["status"] == "measured":  # a restarted Sōzu gets the same additions
            restart = operator["sozu_restart"]
            assert restart["requests_by_verb"] == operator["details"]["requests_by_verb"]
            assert restart["seconds"] > 0


def test_no_op_resync_sends_no_mutation_and_skips_clusters(results: dict[str, Any]) -> None:
    resync = results["resync"]
    assert resync["mutating_requests"] == 0
    assert resync["reread"]["clusters_queried"] == 0
    assert resync["reread"]["requests"] < resync["reference_first_read"]["requests"]


def test_single_changes_are_minimal(results: dict[str, Any]) -> None:
    single = results["single_change"]
    for path in ("cli", "kept"):
        for kind in ("backend", "route", "certificate"):
            assert single["paths"][path][kind]["changes"] > 0


def test_churn_never_sends_more_than_upstream(results: dict[str, Any]) -> None:
    churn = results["churn"]
    assert churn["never_more"] is True
    assert churn["strictly_fewer_where_required"] is True
    assert churn["simulator_violations"] == 0
    for event in churn["trace"]:
        assert event["ours"] <= event["upstream"]


def test_growth_covers_the_sizes(results: dict[str, Any]) -> None:
    growth = results["growth"]
    assert growth["metrics"]
