"""plan / apply against a running emulator process: exit codes, output, saved plans, offline
planning, and every error path naming what is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.cli.conftest import EXAMPLES, SEED, EmulatorProcess, run_cli

from sozu_operator.applier import apply_steps
from sozu_operator.cli.gitops import _print_outcome
from sozu_operator.emulators import SozuEmulator
from sozu_operator.proxy.model import Cluster
from sozu_operator.proxy.requests import AddCluster
from sozu_operator.reconcile.planner import Action, Phase, Step
from sozu_operator.wire import SozuClient

EXAMPLE_REQUESTS = 12  # certificate + 2 clusters + 4 backends + 5 routes


def _copy_examples(tmp_path: Path) -> Path:
    target = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, target, ignore=shutil.ignore_patterns("*.json"))
    return target


def test_plan_exit_codes_and_text(emulator: EmulatorProcess) -> None:
    result = run_cli("plan", "-f", str(EXAMPLES), "--socket", emulator.socket)
    assert result.returncode == 2, result.stderr
    assert f"Plan: {EXAMPLE_REQUESTS} to add, 0 to update, 0 to replace, 0 to remove" in (
        result.stdout
    )
    assert "+ cluster sozu-operator:default/web" in result.stdout
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert emulator.mutations() == 0  # planning sends nothing that changes Sōzu

    applied = run_cli("apply", "-f", str(EXAMPLES), "--socket", emulator.socket)
    assert applied.returncode == 0, applied.stderr
    assert "Sōzu now serves what the resources describe." in applied.stdout
    assert emulator.mutations() == EXAMPLE_REQUESTS

    again = run_cli("plan", "-f", str(EXAMPLES), "--socket", emulator.socket)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout
    reapplied = run_cli("apply", "-f", str(EXAMPLES), "--socket", emulator.socket)
    assert reapplied.returncode == 0
    assert emulator.mutations() == EXAMPLE_REQUESTS  # in sync: zero requests


def test_plan_json_is_stable_and_has_no_keys(emulator: EmulatorProcess) -> None:
    first = run_cli("plan", "-f", str(EXAMPLES), "--socket", emulator.socket, "--output", "json")
    second = run_cli("plan", "-f", str(EXAMPLES), "--socket", emulator.socket, "--output", "json")
    assert first.returncode == 2
    assert first.stdout == second.stdout
    document = json.loads(first.stdout)
    assert document["format"] == "sozu-operator/plan/v1"
    assert document["summary"]["requests"] == EXAMPLE_REQUESTS
    assert [s["verb"] for s in document["steps"]][:3] == [
        "AddCertificate",
        "AddCluster",
        "AddCluster",
    ]
    certificate = document["steps"][0]["request"]["ADD_CERTIFICATE"]["certificate"]
    assert certificate["key"] == "<redacted>"
    assert certificate["key_sha256"].startswith("sha256:")
    assert "PRIVATE KEY" not in first.stdout


def test_saved_plan_applies_then_is_refused_after_drift(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    made = run_cli(
        "plan", "-f", str(EXAMPLES), "--socket", emulator.socket, "--out", str(plan_file)
    )
    assert made.returncode == 2
    applied = run_cli(
        "apply", "--plan", str(plan_file), "-f", str(EXAMPLES), "--socket", emulator.socket
    )
    assert applied.returncode == 0, applied.stderr
    assert emulator.mutations() == EXAMPLE_REQUESTS

    # The plan was made for the state before; Sōzu has changed since (we applied it).
    stale = run_cli(
        "apply", "--plan", str(plan_file), "-f", str(EXAMPLES), "--socket", emulator.socket
    )
    assert stale.returncode == 1
    assert "Sōzu changed since the plan was made" in stale.stderr
    assert "nothing was applied" in stale.stderr
    assert emulator.mutations() == EXAMPLE_REQUESTS


def test_saved_plan_with_certificates_needs_the_files(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    run_cli("plan", "-f", str(EXAMPLES), "--socket", emulator.socket, "--out", str(plan_file))
    result = run_cli("apply", "--plan", str(plan_file), "--socket", emulator.socket)
    assert result.returncode == 1
    assert "private keys" in result.stderr
    assert "-f" in result.stderr
    assert emulator.mutations() == 0


def test_offline_plan_from_a_state_file() -> None:
    result = run_cli("plan", "-f", str(EXAMPLES), "--state-file", str(SEED))
    assert result.returncode == 2, result.stderr
    assert f"({EXAMPLE_REQUESTS} requests)" in result.stdout
    assert f"state file {SEED}" in result.stdout


def test_invalid_resource_is_reported_and_the_rest_is_planned(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    manifests = _copy_examples(tmp_path)
    (manifests / "broken.yaml").write_text(
        "apiVersion: sozu.io/v1alpha1\nkind: SozuCluster\nmetadata:\n  name: broken\n"
        "  namespace: default\nspec:\n  backends:\n    - address: 10.0.0.1\n"
    )
    result = run_cli("plan", "-f", str(manifests), "--socket", emulator.socket)
    assert result.returncode == 1
    assert "SozuCluster default/broken: spec.backends[0].address:" in result.stderr
    assert f"({EXAMPLE_REQUESTS} requests)" in result.stdout  # everything else still planned

    applied = run_cli("apply", "-f", str(manifests), "--socket", emulator.socket)
    assert applied.returncode == 1  # applied, but says a resource was left out
    assert "SozuCluster default/broken" in applied.stderr
    assert emulator.mutations() == EXAMPLE_REQUESTS


def test_error_paths_name_what_is_wrong(emulator: EmulatorProcess, tmp_path: Path) -> None:
    missing = run_cli("plan", "-f", str(EXAMPLES), "--socket", str(tmp_path / "nope.sock"))
    assert missing.returncode == 1
    assert str(tmp_path / "nope.sock") in missing.stderr

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("kind: SozuCluster\nmetadata: {name: x\n")
    unparsable = run_cli("plan", "-f", str(bad_yaml), "--socket", emulator.socket)
    assert unparsable.returncode == 1
    assert f"{bad_yaml}:" in unparsable.stderr

    owner = run_cli("plan", "-f", str(EXAMPLES), "--socket", emulator.socket, "--owner", "Bad!")
    assert owner.returncode == 1
    assert "--owner" in owner.stderr

    no_file = run_cli("plan", "-f", str(EXAMPLES), "--state-file", str(tmp_path / "x.json"))
    assert no_file.returncode == 1
    assert "--state-file" in no_file.stderr

    no_input = run_cli("apply", "--socket", emulator.socket)
    assert no_input.returncode == 1
    assert "-f" in no_input.stderr


def test_mass_deletion_guard(emulator: EmulatorProcess, tmp_path: Path) -> None:
    assert run_cli("apply", "-f", str(EXAMPLES), "--socket", emulator.socket).returncode == 0
    only_one = tmp_path / "one"
    only_one.mkdir()
    (only_one / "postgres.yaml").write_text(
        "apiVersion: sozu.io/v1alpha1\nkind: SozuCluster\nmetadata:\n  name: postgres\n"
        "  namespace: default\nspec:\n  loadBalancing: LEAST_LOADED\n  loadMetric: CONNECTIONS\n"
        "  backends:\n    - address: 127.0.0.1:15432\n      id: pg-primary\n"
    )  # keeps 2 of the 12 owned objects: removing 10 is over the guard's half
    before = emulator.mutations()

    refused = run_cli("apply", "-f", str(only_one), "--socket", emulator.socket)
    assert refused.returncode == 1
    assert "mass-deletion guard" in refused.stderr
    assert "nothing was applied" in refused.stderr
    assert emulator.mutations() == before

    forced = run_cli("apply", "-f", str(only_one), "--socket", emulator.socket, "--force")
    assert forced.returncode == 0, forced.stderr
    assert run_cli("plan", "-f", str(only_one), "--socket", emulator.socket).returncode == 0


def test_failure_midway_is_reported_and_a_rerun_converges(emulator: EmulatorProcess) -> None:
    emulator.control({"fail_nth_mutation": {"n": 3, "message": "disk on fire"}})
    failed = run_cli("apply", "-f", str(EXAMPLES), "--socket", emulator.socket,
                     "--connections", "1")
    assert failed.returncode == 1
    assert "FAILED at step 3" in failed.stderr
    assert "disk on fire" in failed.stderr
    assert "workers refused it" in failed.stderr  # main applied it, a worker did not
    assert "later step(s) were not sent" in failed.stderr
    assert "change(s) remain" in failed.stdout
    assert emulator.mutations() == 3

    rerun = run_cli("apply", "-f", str(EXAMPLES), "--socket", emulator.socket)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert run_cli("plan", "-f", str(EXAMPLES), "--socket", emulator.socket).returncode == 0


def test_demo_runs_on_both_wire_versions() -> None:
    for version in ("2", "1"):
        result = run_cli("demo", "--sozu-version", version)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No changes" in result.stdout
        assert "left untouched" in result.stdout


def test_export_then_plan_shows_no_change(emulator: EmulatorProcess, tmp_path: Path) -> None:
    assert run_cli("apply", "-f", str(EXAMPLES), "--socket", emulator.socket).returncode == 0
    exported = run_cli("export", "--socket", emulator.socket, "--include-keys")
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "adopted.yaml").write_text(exported.stdout)
    replanned = run_cli("plan", "-f", str(tmp_path / "adopted.yaml"), "--socket", emulator.socket)
    assert replanned.returncode == 0, replanned.stdout + replanned.stderr
    assert "No changes" in replanned.stdout

    without_keys = run_cli("export", "--socket", emulator.socket)
    assert without_keys.returncode == 0
    assert "PRIVATE KEY" not in without_keys.stdout + without_keys.stderr
    assert "secretRef" in without_keys.stdout


async def test_answer_lost_mid_apply_is_reported_as_unknown(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sōzu applied the request but the connection broke before its answer: the report must
    not claim that Sōzu did not apply it (it did), only that nobody knows."""
    socket_path = tmp_path_factory.mktemp("cut") / "sozu.sock"
    async with (
        SozuEmulator(socket_path) as sozu,
        SozuClient(socket_path, timeout=2.0) as client,
    ):
        steps = [
            Step(AddCluster(Cluster(name)), Phase.CLUSTERS, Action.ADD, f"+ cluster {name}")
            for name in ("a", "b")
        ]
        sozu.close_mid_response(2)  # the first request's final answer (after its PROCESSING)
        outcome = await apply_steps(client, steps)
        assert outcome.failure is not None
        assert outcome.failure.reached_main_state is None
        assert "a" in sozu.state.clusters  # applied all the same
    _print_outcome(outcome, quiet=False)
    stderr = capsys.readouterr().err
    assert "FAILED at step 1: + cluster a" in stderr
    assert "whether Sōzu applied it is unknown" in stderr
    assert "did not apply" not in stderr
