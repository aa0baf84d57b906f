"""The operator image's Dockerfile, checked statically (no container engine is available
where the tests run): pinned-by-digest-able base, two stages, non-root, exec-form entry
point agreeing with the chart."""

from __future__ import annotations

import json
import re

from tests.deploy._support import ROOT, container, objects, only

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _instructions() -> list[tuple[str, str]]:
    lines = []
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            lines.append((keyword.upper(), rest.strip()))
    return lines


def test_two_stages_on_the_same_slim_base() -> None:
    instructions = _instructions()
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") in instructions
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]
    assert "python:3.11-slim-bookworm@sha256:<digest>" in DOCKERFILE


def test_runtime_stage_is_non_root_with_exec_form_entry_point() -> None:
    instructions = _instructions()
    runtime = instructions[[k for k, _ in instructions].index("FROM", 2) :]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users == ["65532:65532"]
    assert not [rest for keyword, rest in runtime if keyword == "RUN"]
    entrypoint = [json.loads(rest) for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    cmd = [json.loads(rest) for keyword, rest in runtime if keyword == "CMD"]
    assert entrypoint == [["sozu-operator"]]
    assert cmd == [["run", "--socket", "/run/sozu/sozu.sock"]]


def test_the_chart_runs_the_image_as_the_image_expects() -> None:
    deployment = only(objects(), "Deployment")
    operator = container(deployment, "operator")
    assert "command" not in operator  # the image's ENTRYPOINT
    assert operator["args"][:3] == ["run", "--socket", "/run/sozu/sozu.sock"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532


def test_the_build_context_is_only_what_the_wheel_needs() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(ignore)
