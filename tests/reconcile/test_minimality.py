"""The minimality table: our plan's request count against Sōzu's own diff, per scenario.

The same table is in docs/planning.md ("Minimality"); `test_docs_table_is_current` keeps the
two in step (regenerate it with `PYTHONPATH=operator .venv/bin/python -m
tests.reconcile.test_minimality`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import pytest
from tests.reconcile._world import (
    OWNER,
    Spec,
    backend,
    certificate,
    cluster,
    front,
    secure,
    web,
)

from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import LoadBalancing, ProxyProtocol
from sozu_operator.reconcile.planner import plan
from sozu_operator.reconcile.simulate import simulate
from sozu_operator.reconcile.upstream_diff import UPSTREAM_TAG, upstream_diff

DOCS = Path(__file__).resolve().parents[2] / "docs" / "planning.md"


class Scenario(NamedTuple):
    name: str
    live: Spec
    want: Spec
    ours: int
    upstream: int
    strictly_fewer: bool = False


def _with_api(spec: Spec) -> Spec:
    return spec.but(
        clusters=[*spec.clusters, cluster("api")],
        backends=[*spec.backends, backend("api", "api-0", "10.0.1.1:80")],
        fronts=[*spec.fronts, front("api.example.com", target="api")],
    )


WEB = web()
FIRST, SECOND = WEB.backends
SCENARIOS = [
    Scenario("no change", WEB, WEB, 0, 0),
    Scenario(
        "single backend change (backup flag)",
        WEB, WEB.but(backends=[FIRST, dataclasses.replace(SECOND, backup=True)]), 1, 2, True,
    ),
    Scenario(
        "backend weight change",
        WEB, WEB.but(backends=[dataclasses.replace(FIRST, weight=50), SECOND]), 1, 2, True,
    ),
    Scenario(
        "cluster option change",
        WEB,
        WEB.but(clusters=[cluster("web", load_balancing=LoadBalancing.RANDOM,
                                  proxy_protocol=ProxyProtocol.SEND_HEADER)]),
        1, 1,
    ),
    Scenario(
        "certificate rotation",
        WEB, WEB.but(certificates=[certificate(["example.com"], label="b")]), 1, 2, True,
    ),
    Scenario(
        "route retarget (same host and path, other cluster)",
        _with_api(WEB),
        _with_api(WEB.but(fronts=[front("example.com", target="api"), secure("example.com")])),
        2, 2,
    ),
    Scenario(
        "route path change",
        WEB, WEB.but(fronts=[front("example.com", "/v2"), secure("example.com")]), 2, 2,
    ),
    Scenario("new route (with its cluster and backend)", WEB, _with_api(WEB), 3, 3),
    Scenario("route removal (with its cluster and backend)", _with_api(WEB), WEB, 3, 3),
    Scenario(
        "pod replaced by one reusing its address",
        WEB.but(backends=[backend("web", "web-x2k4p", "10.0.0.1:8080"), SECOND]),
        WEB.but(backends=[backend("web", "web-abcde", "10.0.0.1:8080"), SECOND]),
        2, 2,
    ),
]


def _row(scenario: Scenario) -> tuple[list[str], list[str], bool]:
    live = scenario.live.live()
    ours = plan(scenario.want.desired(), live, owner=OWNER)
    assert simulate(ours, live).ok
    # Upstream's diff compares whole states: the scenarios hold only owned objects, and
    # listeners (never managed here) are left out of its count.
    theirs = upstream_diff(scenario.live.desired(), scenario.want.desired())
    return [rq.verb_name(step.request) for step in ours.steps], theirs, bool(ours.gaps)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_minimality(scenario: Scenario) -> None:
    ours, theirs, _ = _row(scenario)
    assert (len(ours), len(theirs)) == (scenario.ours, scenario.upstream)
    assert len(ours) <= len(theirs)
    if scenario.strictly_fewer:
        assert len(ours) < len(theirs)


def render_table() -> str:
    lines = [
        f"| Scenario | Our plan | Sōzu {UPSTREAM_TAG} `ConfigState::diff` | Flagged gap |",
        "|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        ours, theirs, gap = _row(scenario)
        lines.append(
            f"| {scenario.name} | {_cell(ours)} | {_cell(theirs)} | {'yes' if gap else 'no'} |"
        )
    return "\n".join(lines)


def _cell(verbs: list[str]) -> str:
    return f"**{len(verbs)}**" + (f": {', '.join(verbs)}" if verbs else "")


def test_docs_table_is_current() -> None:
    assert render_table() in DOCS.read_text(encoding="utf-8"), (
        "docs/planning.md's minimality table is stale; regenerate it with "
        "`PYTHONPATH=operator .venv/bin/python -m tests.reconcile.test_minimality`"
    )


def test_upstream_model_counts_listeners_when_asked() -> None:
    # Desired holds no listener: upstream's diff would remove all three.
    assert upstream_diff(WEB.live(), WEB.desired(), listeners=True) == ["RemoveListener"] * 3
    assert upstream_diff(WEB.live(), WEB.live(), listeners=True) == []
    assert upstream_diff(WEB.desired(), WEB.live(), listeners=True) == [
        "AddTcpListener", "AddHttpListener", "AddHttpsListener",
    ]


def test_upstream_model_pairs_repeated_backend_ids_in_order() -> None:
    first = backend("web", "b", "10.0.0.1:1")
    two_addresses = Spec(backends=(first, backend("web", "b", "10.0.0.2:1")))
    moved = Spec(backends=(first, backend("web", "b", "10.0.0.3:1")))
    assert upstream_diff(two_addresses.desired(), moved.desired()) == [
        "RemoveBackend", "AddBackend",
    ]


def test_upstream_model_ignores_names_change_under_one_fingerprint() -> None:
    renamed = WEB.but(certificates=[certificate(["example.com", "www.example.com"])])
    assert upstream_diff(WEB.desired(), renamed.desired()) == []


if __name__ == "__main__":
    print(render_table())
