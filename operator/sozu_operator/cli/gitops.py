"""`plan`, `apply` and `export`: the GitOps edge. Files in, plan out, requests to the socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sozu_operator.applier import ApplyResult, StepFailure, apply_steps
from sozu_operator.live import LiveReader
from sozu_operator.proxy.requests import is_mutation
from sozu_operator.proxy.state import ConfigState
from sozu_operator.proxy.statefile import StateFileError, parse_state
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.desired import ResolutionError, SecretResolver
from sozu_operator.reconcile.pipeline import Reconciliation, reconcile
from sozu_operator.reconcile.planner import PlanOptions, Step
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.reconcile.render import (
    NO_CHANGES,
    PlanFileError,
    load_plan_document,
    plan_document,
    render_text,
    restore_keys,
    state_digest,
)
from sozu_operator.resources.loader import LoadResult, load_paths
from sozu_operator.resources.models import ResourceRef, SecretRef, TlsMaterial
from sozu_operator.resources.secrets import tls_material
from sozu_operator.wire import SozuClient, SozuError, WireVersion

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


class CliError(Exception):
    """An error already phrased for the user; the command prints it and exits 1."""


def _err(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)


def _client(args: argparse.Namespace) -> SozuClient:
    return SozuClient(args.socket, version=WireVersion(args.sozu_version), timeout=args.timeout)


def _check_owner(args: argparse.Namespace) -> None:
    try:
        ownership.check_owner(args.owner)
    except ValueError as error:
        raise CliError(f"--owner: {error}") from None


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    loaded: LoadResult
    bodies: list[object] = field(repr=False)  # raw documents, private keys included

    def secret_resolver(self) -> SecretResolver:
        """Resolves SozuCertificate secretRefs from `kubernetes.io/tls` Secrets in the same
        files, so a GitOps directory can keep certificates as Secrets (sealed upstream)."""
        secrets: dict[tuple[str, str], dict[str, Any]] = {}
        for loaded in self.loaded.foreign:
            body = loaded.body
            if body.get("kind") == "Secret" and body.get("apiVersion") == "v1":
                metadata = body.get("metadata") or {}
                key = (str(metadata.get("namespace") or "default"), str(metadata.get("name")))
                secrets[key] = dict(body)

        def resolve(ref: ResourceRef, secret: SecretRef) -> TlsMaterial | ResolutionError:
            found = tls_material(
                secrets.get((secret.namespace, secret.name)),
                name=f"Secret {secret.namespace}/{secret.name} (in the given files)",
            )
            return ResolutionError(found) if isinstance(found, str) else found

        return resolve


def load_inputs(paths: Sequence[str]) -> Inputs:
    loaded = load_paths(paths)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if loaded.errors:
        raise CliError("\n".join(str(e) for e in loaded.errors))
    return Inputs(loaded, [item.body for item in loaded.resources])


def read_state_file(args: argparse.Namespace) -> tuple[ProxyState, list[str]]:
    path = Path(args.state_file)
    try:
        parsed = parse_state(path.read_bytes(), source=str(path))
    except OSError as error:
        raise CliError(f"--state-file {path}: {error.strerror}") from None
    except StateFileError as error:
        raise CliError(str(error)) from None
    mutations = [r for r in parsed.requests if is_mutation(r)]
    state, refused = ConfigState.from_requests(mutations, sozu_version=args.sozu_version)
    notes = [f"state file record refused like Sōzu would: {error}" for _, error in refused]
    return ProxyState.from_config_state(state), notes


async def read_socket(args: argparse.Namespace) -> tuple[ProxyState, list[str]]:
    reader = LiveReader()
    try:
        async with _client(args) as client:
            live = await reader.read(client)
    except SozuError as error:
        raise CliError(str(error)) from None
    return live, reader.last_stats.notes


def read_live(args: argparse.Namespace) -> tuple[ProxyState, list[str]]:
    if getattr(args, "state_file", None):
        return read_state_file(args)
    return asyncio.run(read_socket(args))


def _compute(args: argparse.Namespace, inputs: Inputs, live: ProxyState) -> Reconciliation:
    options = PlanOptions(max_removal_share=args.max_removal_share, force=args.force)
    return reconcile(
        inputs.bodies,
        live,
        owner=args.owner,
        sozu_version=args.sozu_version,
        options=options,
        resolve_secret=inputs.secret_resolver(),
    )


def _report_resources(result: Reconciliation, out: TextIO) -> bool:
    """Print resource problems and notes; True if any resource was left out."""
    for problem in result.build.problems:
        print(f"error: {problem}", file=out)
    for note in result.build.notes:
        print(f"note: {note}", file=out)
    for ref, count in sorted(result.retention.retained.items()):
        print(f"note: {ref}: kept the {count} live object(s) it programmed before", file=out)
    return bool(result.build.problems) or bool(result.plan.problems)


def _target(args: argparse.Namespace) -> str:
    return f"state file {args.state_file}" if getattr(args, "state_file", None) else args.socket


# --- plan --------------------------------------------------------------------------------------


def run_plan(args: argparse.Namespace) -> int:
    try:
        _check_owner(args)
        inputs = load_inputs(args.filename)
        live, notes = read_live(args)
    except CliError as error:
        _err(str(error))
        return EXIT_ERROR
    result = _compute(args, inputs, live)
    digest = state_digest(live)
    document = plan_document(
        result.plan,
        owner=args.owner,
        sozu_version=args.sozu_version,
        live_digest=digest,
        target=_target(args),
    )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    had_errors = _report_resources(result, sys.stderr)
    if args.output == "json":
        json.dump(document, sys.stdout, indent=2, sort_keys=False)
        print()
    else:
        header = (
            f"Plan for owner {args.owner!r} against {_target(args)} "
            f"(Sōzu {args.sozu_version}.x, live state {digest[:19]}…)"
        )
        print(render_text(result.plan, header=header))
    if args.out:
        Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
        print(f"Saved the plan to {args.out}.", file=sys.stderr)
    if had_errors or not result.plan.guard.allowed:
        return EXIT_ERROR
    return EXIT_OK if result.plan.is_empty else EXIT_CHANGES


# --- apply -------------------------------------------------------------------------------------


async def _apply(args: argparse.Namespace, plan_document_: dict[str, Any] | None) -> int:
    inputs = load_inputs(args.filename) if args.filename else None
    live, notes = await read_socket(args)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    digest = state_digest(live)
    had_errors = False
    if plan_document_ is not None:
        try:
            saved = load_plan_document(plan_document_)
        except PlanFileError as error:
            raise CliError(f"--plan {args.plan}: {error}") from None
        if saved.owner != args.owner or saved.sozu_version != args.sozu_version:
            raise CliError(
                f"--plan {args.plan} was made for owner {saved.owner!r} and Sōzu "
                f"{saved.sozu_version}.x, not {args.owner!r} and {args.sozu_version}.x"
            )
        if saved.live_digest != digest:
            raise CliError(
                f"Sōzu changed since the plan was made (plan: {saved.live_digest[:19]}…, "
                f"now: {digest[:19]}…); nothing was applied. Run plan again."
            )
        certificates = []
        if saved.key_digests:
            if inputs is None:
                raise CliError(
                    f"the plan has {len(saved.key_digests)} certificate step(s) whose private "
                    "keys it leaves out; give the -f files the plan was made from"
                )
            built = _compute(args, inputs, live)
            certificates = list(built.build.state.certificates.values())
        try:
            steps = restore_keys(saved, certificates)
        except PlanFileError as error:
            raise CliError(str(error)) from None
        guard = plan_document_.get("guard") or {}
        if not guard.get("allowed", True) and not args.force:
            raise CliError(f"the saved plan was refused by the mass-deletion guard: "
                           f"{guard.get('reason')}; nothing was applied (use --force)")
    else:
        if inputs is None:
            raise CliError("give -f FILE|DIR (the resources to apply) or --plan FILE")
        result = _compute(args, inputs, live)
        had_errors = _report_resources(result, sys.stderr)
        if not result.plan.guard.allowed:
            print(render_text(result.plan))
            raise CliError(
                f"refused by the mass-deletion guard: {result.plan.guard.reason}; "
                "nothing was applied (use --force if this is intended)"
            )
        steps = result.plan.steps
    if not steps:
        print(NO_CHANGES)
        return EXIT_ERROR if had_errors else EXIT_OK

    async with _client(args) as client:
        outcome = await _send_with_progress(
            client, steps, quiet=args.quiet, lanes=args.connections
        )
        after = await LiveReader().read(client)
    _print_outcome(outcome, quiet=args.quiet)
    if inputs is not None:
        remaining = _compute(args, inputs, after).plan
        if remaining.is_empty:
            print("Sōzu now serves what the resources describe.")
        else:
            print(f"{len(remaining.steps)} change(s) remain; run apply again once the cause "
                  "is fixed:")
            print(render_text(remaining))
    return EXIT_ERROR if (outcome.failure or had_errors) else EXIT_OK


async def _send_with_progress(
    client: SozuClient, steps: Sequence[Step], *, quiet: bool, lanes: int = 1
) -> ApplyResult:
    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        def line(done: int, total: int, step: Step) -> None:
            if not quiet:
                print(f"[{done}/{total}] {step.summary}")

        return await apply_steps(client, steps, on_step=line, lanes=lanes)
    with Progress(
        TextColumn("applying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f} req/s"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("apply", total=len(steps), rate=0.0)

        def advance(done: int, total: int, step: Step) -> None:
            elapsed = progress.tasks[0].elapsed or 0.0
            progress.update(task, completed=done, rate=done / elapsed if elapsed else 0.0)

        return await apply_steps(client, steps, on_step=advance, lanes=lanes)


def _failure_state(failure: StepFailure) -> str:
    if failure.reached_main_state is None:
        return (
            "No final answer came, so whether Sōzu applied it is unknown; what remains is "
            "read from Sōzu again (plan again to see it)"
        )
    if failure.reached_main_state:
        return "Sōzu's main process accepted it, but workers refused it"
    return "Sōzu did not apply it"


def _print_outcome(outcome: ApplyResult, *, quiet: bool) -> None:
    applied = len(outcome.applied)
    print(
        f"Applied {applied} request(s) in {outcome.seconds:.2f} s "
        f"({outcome.rate:.0f} requests/s)."
    )
    failure = outcome.failure
    if failure is None:
        return
    for failed in (failure, *outcome.more_failures):
        print(f"FAILED at step {failed.index + 1}: {failed.step.summary}", file=sys.stderr)
        print(f"  Sōzu said: {failed.message}", file=sys.stderr)
        print(f"  {_failure_state(failed)}.", file=sys.stderr)
    if outcome.not_attempted:
        print(f"  {len(outcome.not_attempted)} later step(s) were not sent:", file=sys.stderr)
        if not quiet:
            for step in outcome.not_attempted:
                print(f"    {step.summary}", file=sys.stderr)


def run_apply(args: argparse.Namespace) -> int:
    try:
        _check_owner(args)
        document = None
        if args.plan:
            try:
                document = json.loads(Path(args.plan).read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise CliError(f"--plan {args.plan}: {error}") from None
        return asyncio.run(_apply(args, document))
    except CliError as error:
        _err(str(error))
        return EXIT_ERROR
    except SozuError as error:
        _err(str(error))
        return EXIT_ERROR


# --- export ------------------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    try:
        _check_owner(args)
        live, notes = read_live(args)
    except CliError as error:
        _err(str(error))
        return EXIT_ERROR
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    from sozu_operator.resources.export import export_documents

    text, warnings = export_documents(
        live,
        owner=args.owner,
        everything=args.all,
        namespace=args.namespace,
        include_keys=args.include_keys,
        sozu_version=args.sozu_version,
    )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stdout.write(text)
    return EXIT_OK


__all__ = ["run_apply", "run_export", "run_plan"]
