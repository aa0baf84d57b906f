"""The chart ships the CRDs in its crds/ directory as byte-identical copies of crds/, both
written by scripts/gen_crds.py, whose --check covers both."""

from __future__ import annotations

import shutil
from pathlib import Path

import helm_python as helm
from tests.deploy._support import CHART, CHART_CRDS, CRDS, ROOT, script


def test_chart_crds_equal_repo_crds_byte_for_byte() -> None:
    repo = {p.name: p.read_bytes() for p in CRDS.iterdir()}
    chart = {p.name: p.read_bytes() for p in CHART_CRDS.iterdir()}
    assert sorted(repo) == ["sozucertificates.yaml", "sozuclusters.yaml", "sozufrontends.yaml"]
    assert chart == repo


def test_helm_sees_the_three_crds() -> None:
    with helm.Chart.load(CHART) as chart:
        crds = chart.crds
    assert sorted(Path(crd["filename"]).name for crd in crds) == sorted(
        p.name for p in CRDS.iterdir()
    )


def test_gen_crds_check_covers_the_chart_copies(tmp_path: Path) -> None:
    gen_crds = script("gen_crds")
    for rel in ("crds", "helm/sozu-operator/crds"):
        shutil.copytree(ROOT / rel, tmp_path / rel)
    assert gen_crds.find_stale(tmp_path) == []
    stale = tmp_path / "helm/sozu-operator/crds/sozuclusters.yaml"
    stale.write_text(stale.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    (tmp_path / "helm/sozu-operator/crds/extra.yaml").write_text("{}\n", encoding="utf-8")
    problems = gen_crds.find_stale(tmp_path)
    assert len(problems) == 2
    assert problems[0].startswith("helm/sozu-operator/crds/sozuclusters.yaml: differs")
    assert problems[1] == (
        "helm/sozu-operator/crds/extra.yaml: not produced by scripts/gen_crds.py"
    )
    gen_crds.write(tmp_path)
    problems = gen_crds.find_stale(tmp_path)
    assert problems == ["helm/sozu-operator/crds/extra.yaml: not produced by scripts/gen_crds.py"]
