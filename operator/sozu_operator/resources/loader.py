"""Resource objects from YAML files, for the CLI (the operator gets them from the API server).

* Paths may be files or directories; directories are searched recursively for `*.yaml` and
  `*.yml`, in sorted order, skipping hidden entries (`.git`…). A file named explicitly is read
  whatever its extension.
* Files may hold several documents; empty documents are skipped; `kind: List` documents
  contribute their `items`.
* Documents of the `sozu.io` group are returned as resources. Other Kubernetes objects
  (Namespaces, Secrets, Deployments…) are **ignored with a warning** rather than refused, so
  the CLI can be pointed at a directory that also holds the rest of an application; they are
  kept in `foreign` for callers that want them (e.g. to resolve Secrets).
* Every resource keeps its `Source` (file, document index, list item) for messages.
* YAML follows Kubernetes' reading: timestamps stay strings, and a key repeated in one mapping
  is an error (PyYAML would silently keep the last value).
* A YAML error names the file and line. Documents before the error are kept, the rest of
  that file is lost: callers applying changes must treat any load error as fatal, or objects
  from the lost documents would be removed from the proxies.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sozu_operator.resources import schema as sch

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a document came from; `document` and `item` count from 0, shown from 1."""

    path: str
    document: int
    item: int | None = None

    def __str__(self) -> str:
        text = f"{self.path}, document {self.document + 1}"
        return text if self.item is None else f"{text}, item {self.item + 1}"


@dataclass(frozen=True, slots=True)
class Loaded:
    # Raw documents hold inline private keys and Secrets: never in a repr (logs, tracebacks).
    body: Mapping[str, Any] = field(repr=False)
    source: Source


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """An error (nothing usable) or a warning (something skipped on purpose)."""

    path: str
    message: str
    line: int | None = None  # 1-based
    document: int | None = None  # 0-based

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.document is not None and self.line is None:
            where += f", document {self.document + 1}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class LoadResult:
    resources: tuple[Loaded, ...]
    foreign: tuple[Loaded, ...]
    errors: tuple[LoadProblem, ...]
    warnings: tuple[LoadProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


class _KubeLoader(yaml.SafeLoader):
    """SafeLoader reading YAML as Kubernetes does for our purposes (see module docstring)."""


# Timestamps stay strings: the validator parses creationTimestamp itself, and a datetime object
# is not JSON.
_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _KubeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in result
        except TypeError:  # an unhashable key (a list): let PyYAML report it
            duplicate = False
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


def _no_unhashable_keys(loader: _KubeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    try:
        return _construct_mapping(loader, node)
    except TypeError as error:
        mark = node.start_mark
        raise yaml.constructor.ConstructorError(
            "while constructing a mapping", mark, f"invalid key: {error}", mark
        ) from None


_KubeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_unhashable_keys)


def _yaml_error(path: str, error: yaml.YAMLError) -> LoadProblem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    text = " ".join(str(part) for part in (context, problem) if part) or str(error)
    return LoadProblem(path, f"invalid YAML: {text}", line=line)


class _Collector:
    def __init__(self) -> None:
        self.resources: list[Loaded] = []
        self.foreign: list[Loaded] = []
        self.errors: list[LoadProblem] = []
        self.warnings: list[LoadProblem] = []

    def document(self, path: str, index: int, document: object) -> None:
        if document is None:
            return  # an empty document ("---" twice, or a comment-only file)
        if not isinstance(document, Mapping):
            self.errors.append(
                LoadProblem(path, "is not a Kubernetes object (a mapping)", document=index)
            )
            return
        if document.get("kind") == "List" and document.get("apiVersion") == "v1":
            items = document.get("items")
            if not isinstance(items, list):
                self.errors.append(LoadProblem(path, "a List needs items: [...]", document=index))
                return
            for position, item in enumerate(items):
                self.object(Source(path, index, position), item)
            return
        self.object(Source(path, index), document)

    def object(self, source: Source, body: object) -> None:
        if not isinstance(body, Mapping):
            self.errors.append(LoadProblem(str(source), "is not a Kubernetes object (a mapping)"))
            return
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            self.errors.append(
                LoadProblem(str(source), "is not a Kubernetes object: needs apiVersion and kind")
            )
            return
        if api_version.split("/", 1)[0] == sch.GROUP:
            # Wrong versions and unknown kinds of our group are the validator's to report.
            self.resources.append(Loaded(body, source))
            return
        self.foreign.append(Loaded(body, source))
        self.warnings.append(
            LoadProblem(str(source), f"ignored: {kind} ({api_version}) is not a {sch.GROUP} kind")
        )

    def text(self, text: str, path: str) -> None:
        index = -1
        try:
            for index, document in enumerate(yaml.load_all(text, Loader=_KubeLoader)):
                self.document(path, index, document)
        except yaml.YAMLError as error:
            problem = _yaml_error(path, error)
            self.errors.append(problem)
        except RecursionError:
            self.errors.append(
                LoadProblem(path, f"YAML nested too deeply (after document {index + 1})")
            )

    def result(self) -> LoadResult:
        return LoadResult(
            tuple(self.resources), tuple(self.foreign), tuple(self.errors), tuple(self.warnings)
        )


def load_text(text: str, *, source: str = "<text>") -> LoadResult:
    """Load resources from YAML text; `source` names it in messages."""
    collector = _Collector()
    collector.text(text, source)
    return collector.result()


def yaml_files(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[LoadProblem]]:
    """Every file to read for `paths`, in order, each once; and the paths that do not exist."""
    files: list[Path] = []
    problems: list[LoadProblem] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(_walk(path))
            if not found:
                problems.append(LoadProblem(str(path), "no *.yaml or *.yml file in this directory"))
        elif path.is_file():
            found = [path]
        else:
            problems.append(LoadProblem(str(path), "no such file or directory"))
            continue
        for file in found:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(file)
    return files, problems


def _walk(directory: Path) -> Iterator[Path]:
    for entry in directory.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(entry)
        elif entry.is_file() and entry.name.endswith(YAML_SUFFIXES):
            yield entry


def load_paths(paths: Iterable[str | os.PathLike[str]]) -> LoadResult:
    """Load resources from files and directories (see the module docstring for the rules)."""
    collector = _Collector()
    files, problems = yaml_files(paths)
    collector.errors.extend(problems)
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            collector.errors.append(LoadProblem(str(file), f"cannot be read: {error}"))
            continue
        collector.text(text, str(file))
    return collector.result()
