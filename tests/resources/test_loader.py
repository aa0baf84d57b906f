"""Loading resources from YAML files and directories for the CLI."""

from __future__ import annotations

from pathlib import Path

from sozu_operator.resources.loader import Source, load_paths, load_text, yaml_files

CLUSTER = """\
apiVersion: sozu.io/v1alpha1
kind: SozuCluster
metadata:
  name: {name}
  creationTimestamp: 2024-01-01T00:00:00Z
spec: {{}}
"""


def test_multi_document_file_with_empty_documents(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text("---\n" + CLUSTER.format(name="a") + "---\n---\n# only a comment\n---\n"
                    + CLUSTER.format(name="b"))
    result = load_paths([path])
    assert result.ok
    assert [r.body["metadata"]["name"] for r in result.resources] == ["a", "b"]
    assert [r.source for r in result.resources] == [Source(str(path), 0), Source(str(path), 3)]
    assert str(result.resources[1].source) == f"{path}, document 4"


def test_timestamps_stay_strings() -> None:
    (loaded,) = load_text(CLUSTER.format(name="a")).resources
    assert loaded.body["metadata"]["creationTimestamp"] == "2024-01-01T00:00:00Z"


def test_list_items() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        "- " + CLUSTER.format(name=name).replace("\n", "\n  ").rstrip() + "\n"
        for name in ("a", "b")
    )
    result = load_text(text, source="list.yaml")
    assert result.ok, result.errors
    assert [str(r.source) for r in result.resources] == [
        "list.yaml, document 1, item 1", "list.yaml, document 1, item 2"
    ]


def test_foreign_kinds_are_ignored_with_a_warning() -> None:
    result = load_text("apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\n---\n"
                       + CLUSTER.format(name="a"), source="app.yaml")
    assert result.ok
    assert len(result.resources) == 1
    assert [f.body["kind"] for f in result.foreign] == ["Secret"]
    (warning,) = result.warnings
    assert str(warning) == "app.yaml, document 1: ignored: Secret (v1) is not a sozu.io kind"


def test_other_versions_of_our_group_go_to_the_validator() -> None:
    result = load_text("apiVersion: sozu.io/v2\nkind: SozuCluster\nspec: {}\n")
    assert len(result.resources) == 1


def test_documents_that_are_not_objects() -> None:
    result = load_text("- a\n- b\n---\nkind: SozuCluster\n---\njust text\n", source="x.yaml")
    assert [str(e) for e in result.errors] == [
        "x.yaml, document 1: is not a Kubernetes object (a mapping)",
        "x.yaml, document 2: is not a Kubernetes object: needs apiVersion and kind",
        "x.yaml, document 3: is not a Kubernetes object (a mapping)",
    ]


def test_yaml_error_names_file_and_line() -> None:
    text = CLUSTER.format(name="a") + "---\napiVersion: sozu.io/v1alpha1\nkind: [unclosed\n"
    result = load_text(text, source="broken.yaml")
    assert not result.ok
    (error,) = result.errors
    assert str(error).startswith("broken.yaml:10: invalid YAML")
    assert len(result.resources) == 1  # documents before the error are kept


def test_duplicate_keys_are_an_error() -> None:
    result = load_text("apiVersion: v1\nkind: A\nkind: B\n", source="dup.yaml")
    (error,) = result.errors
    assert "dup.yaml:3:" in str(error)
    assert "duplicate key 'kind'" in str(error)


def test_directories_are_walked_sorted_and_recursively(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "b" / "z.yml").write_text(CLUSTER.format(name="z"))
    (tmp_path / "a.yaml").write_text(CLUSTER.format(name="a"))
    (tmp_path / "c.yaml").write_text(CLUSTER.format(name="c"))
    (tmp_path / "notes.txt").write_text("not yaml")
    (tmp_path / ".git" / "x.yaml").write_text(": broken")
    (tmp_path / ".hidden.yaml").write_text(": broken")
    result = load_paths([tmp_path, tmp_path / "a.yaml"])  # a.yaml named twice: read once
    assert result.ok, result.errors
    assert [r.body["metadata"]["name"] for r in result.resources] == ["a", "z", "c"]


def test_explicit_file_of_any_extension(tmp_path: Path) -> None:
    path = tmp_path / "resources.txt"
    path.write_text(CLUSTER.format(name="a"))
    files, problems = yaml_files([path])
    assert files == [path]
    assert problems == []


def test_missing_paths_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    result = load_paths([tmp_path / "nope", tmp_path / "empty", tmp_path / "latin1.yaml"])
    messages = [str(e) for e in result.errors]
    assert messages[0].endswith("nope: no such file or directory")
    assert messages[1].endswith("empty: no *.yaml or *.yml file in this directory")
    assert "latin1.yaml: cannot be read" in messages[2]
