#!/usr/bin/env python3
"""Generate the Python protobuf modules for Sōzu's command protocol.

For every wire version N in ``proto/sozu/vN/command.proto`` this runs the protoc bundled with
grpcio-tools and writes ``operator/sozu_operator/wire/_pb/vN/command_pb2.py`` and its
``command_pb2.pyi`` stub, plus the ``__init__.py`` files of the ``_pb`` packages.

Usage::

    python scripts/gen_proto.py           # (re)write the generated files
    python scripts/gen_proto.py --check   # exit 1 if the committed files are stale

The output only depends on the .proto files and on the grpcio-tools version (pinned in
pyproject.toml), so every run produces byte-identical files.

`GeneratedFiles` (the freshness check, the writing and the command line) serves the other
generators too: scripts/ is not a package, so gen_crds.py and gen_manifests.py import this file
by name.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = Path("proto")
PB_PACKAGE = "sozu_operator.wire._pb"
PB_DIR = Path("operator/sozu_operator/wire/_pb")
VERSIONS = ("v1", "v2")
PINNED_GRPCIO_TOOLS = "1.85.1"

_UPSTREAM_TAGS = {"v1": "1.0.0", "v2": "2.1.0"}

_DIFF_LINES_SHOWN = 40


# --- shared by the generators --------------------------------------------------------------


def _read_like(path: Path, content: str | bytes) -> str | bytes:
    # Text is compared as read with universal newlines, so a checkout with CRLF line ends is
    # not stale; bytes are compared exactly.
    return path.read_bytes() if isinstance(content, bytes) else path.read_text(encoding="utf-8")


def _diff_excerpt(rel: Path, current: str | bytes, generated: str | bytes) -> str:
    def lines(content: str | bytes) -> list[str]:
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        return text.splitlines()

    diff = list(
        difflib.unified_diff(
            lines(current),
            lines(generated),
            f"{rel.as_posix()} (committed)",
            f"{rel.as_posix()} (generated)",
            lineterm="",
            n=1,
        )
    )
    shown = "\n".join(line[:160] for line in diff[:_DIFF_LINES_SHOWN])
    if len(diff) > _DIFF_LINES_SHOWN:
        shown += f"\n    ... {len(diff) - _DIFF_LINES_SHOWN} more diff lines"
    return shown


class GeneratedFiles:
    """The files one generator script owns: whether they are fresh, writing them, and the
    script's command line (`--check` or write). Paths are relative to the repository root.

    (Not a dataclass: the tests load the scripts without registering them in `sys.modules`,
    where dataclasses look up string annotations.)"""

    def __init__(
        self,
        *,
        script: str,
        doc: str | None,
        generate: Callable[[Path], Mapping[Path, str | bytes]],
        owned: Iterable[str],
        check_help: str,
        stale: str,
        fresh: str,
        source: str = "generated output",
    ) -> None:
        self.script = script  # the script's name, e.g. "gen_proto", which starts every message
        self.doc = doc  # the script's docstring: its first paragraph describes the command
        self.generate = generate  # {path: content} for a repository root
        # Glob patterns, from the repository root, of where the script writes: any other file
        # they match is a stray.
        self.owned = tuple(owned)
        self.check_help = check_help
        self.stale = stale  # what `--check` says when a file is stale
        self.fresh = fresh  # what it says when none is
        self.source = source  # what a stale file "differs from"

    def _strays(self, repo_root: Path, generated: Mapping[Path, object]) -> list[Path]:
        found = {
            path.relative_to(repo_root)
            for pattern in self.owned
            for path in repo_root.glob(pattern)
            if path.is_file()
        }
        return sorted(found - set(generated))

    def find_stale(self, repo_root: Path = REPO_ROOT) -> list[str]:
        """Describe every file that differs from a fresh generation (empty: up to date)."""
        problems: list[str] = []
        generated = self.generate(repo_root)
        for rel, content in sorted(generated.items()):
            path = repo_root / rel
            if not path.is_file():
                problems.append(f"{rel.as_posix()}: missing")
                continue
            current = _read_like(path, content)
            if current != content:
                excerpt = _diff_excerpt(rel, current, content)
                problems.append(f"{rel.as_posix()}: differs from {self.source}\n{excerpt}")
        for rel in self._strays(repo_root, generated):
            problems.append(f"{rel.as_posix()}: not produced by scripts/{self.script}.py")
        return problems

    def write(self, repo_root: Path = REPO_ROOT) -> list[Path]:
        """Write the generated files; return those whose content changed."""
        changed: list[Path] = []
        generated = self.generate(repo_root)
        for rel, content in sorted(generated.items()):
            path = repo_root / rel
            if path.is_file() and _read_like(path, content) == content:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
            changed.append(rel)
        for rel in self._strays(repo_root, generated):
            print(f"{self.script}: warning: stray file {rel.as_posix()}", file=sys.stderr)
        return changed

    def main(self, argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(description=(self.doc or "").split("\n\n")[0])
        parser.add_argument("--check", action="store_true", help=self.check_help)
        args = parser.parse_args(argv)
        if args.check:
            problems = self.find_stale()
            if problems:
                print(f"{self.script}: {self.stale}:", file=sys.stderr)
                for problem in problems:
                    print(f"  {problem}", file=sys.stderr)
                return 1
            print(f"{self.script}: {self.fresh}")
            return 0
        changed = self.write()
        for rel in changed:
            print(f"{self.script}: wrote {rel.as_posix()}")
        if not changed:
            print(f"{self.script}: {self.fresh}")
        return 0


# --- the protobuf modules ------------------------------------------------------------------

_PB_INIT = '"""Modules generated by scripts/gen_proto.py from proto/sozu/*/command.proto."""\n'
_VERSION_INIT = '"""Generated code for the command protocol of Sōzu {tag} (sozu.{version})."""\n'


def _proto_file(version: str) -> Path:
    """Path of a version's .proto file, relative to the repository root."""
    return PROTO_ROOT / "sozu" / version / "command.proto"


def _header(version: str) -> str:
    return (
        f"# Generated by scripts/gen_proto.py from {_proto_file(version).as_posix()}; "
        "do not edit.\n"
    )


def _grpcio_tools_version() -> str:
    try:
        return importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _run_protoc(repo_root: Path, version: str, out_dir: Path) -> None:
    """Run grpcio-tools' protoc for one version, writing into ``out_dir``."""
    try:
        from grpc_tools import protoc  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(
            f"gen_proto: grpcio-tools is required (pip install grpcio-tools=={PINNED_GRPCIO_TOOLS})"
        ) from exc

    # The include root is `proto`, so descriptors are named `sozu/vN/command.proto` and the
    # packages `sozu.v1` / `sozu.v2` keep the two versions apart in one descriptor pool.
    args = [
        "grpc_tools.protoc",
        f"-I{repo_root / PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(repo_root / _proto_file(version)),
    ]
    status = protoc.main(args)
    if status != 0:
        raise SystemExit(f"gen_proto: protoc failed on {_proto_file(version)} (exit {status})")


def _postprocess_py(version: str, text: str) -> str:
    """Adjust protoc's module so it lives at ``sozu_operator.wire._pb.vN.command_pb2``."""
    # protoc derives the module name from the .proto path (`sozu.vN.command_pb2`) and uses it
    # as `__module__` of the generated classes; point it at the real import path instead.
    old = f"'sozu.{version}.command_pb2'"
    new = f"'{PB_PACKAGE}.{version}.command_pb2'"
    if text.count(old) != 1:
        raise SystemExit(
            f"gen_proto: expected exactly one {old} in protoc's output for {version}; "
            "the protoc output format changed, update scripts/gen_proto.py"
        )
    text = text.replace(old, new)
    # The .proto files import nothing, so there is no cross-module import to rewrite.
    if any(line.startswith(("from sozu", "import sozu")) for line in text.splitlines()):
        raise SystemExit(f"gen_proto: unexpected import of a sozu module in {version}'s output")
    return _header(version) + text


def _postprocess_pyi(version: str, text: str) -> str:
    return _header(version) + text


def generate(repo_root: Path = REPO_ROOT) -> dict[Path, bytes]:
    """Return the generated files as {path relative to the repository root: content}."""
    files: dict[Path, bytes] = {PB_DIR / "__init__.py": _PB_INIT.encode()}
    with tempfile.TemporaryDirectory(prefix="gen_proto-") as tmp:
        out_dir = Path(tmp)
        for version in VERSIONS:
            _run_protoc(repo_root, version, out_dir)
            produced = out_dir / "sozu" / version
            py = (produced / "command_pb2.py").read_text(encoding="utf-8")
            pyi = (produced / "command_pb2.pyi").read_text(encoding="utf-8")
            target = PB_DIR / version
            files[target / "__init__.py"] = _VERSION_INIT.format(
                tag=_UPSTREAM_TAGS[version], version=version
            ).encode()
            files[target / "command_pb2.py"] = _postprocess_py(version, py).encode()
            files[target / "command_pb2.pyi"] = _postprocess_pyi(version, pyi).encode()
    return files


FILES = GeneratedFiles(
    script="gen_proto",
    doc=__doc__,
    generate=generate,
    owned=(f"{PB_DIR.as_posix()}/**/*.py", f"{PB_DIR.as_posix()}/**/*.pyi"),
    check_help="do not write anything; exit 1 if the committed generated files are stale",
    stale=(
        "generated protobuf code is stale; run `python scripts/gen_proto.py` "
        f"(grpcio-tools {PINNED_GRPCIO_TOOLS}) and commit the result"
    ),
    fresh="generated protobuf code is up to date",
)
find_stale = FILES.find_stale
write = FILES.write


def main(argv: list[str] | None = None) -> int:
    tools_version = _grpcio_tools_version()
    if tools_version != PINNED_GRPCIO_TOOLS:
        print(
            f"gen_proto: warning: grpcio-tools {tools_version} is installed, the generated "
            f"files are produced with {PINNED_GRPCIO_TOOLS}; output may differ",
            file=sys.stderr,
        )
    return FILES.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
