"""The `sozu-operator` command line."""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from sozu_operator import __version__
from sozu_operator.applier import DEFAULT_LANES
from sozu_operator.reconcile.ownership import DEFAULT_OWNER

_DESCRIPTION = """\
Program Sōzu reverse proxies from declarative sozu.io resources (SozuCluster, SozuFrontend,
SozuCertificate). The tool reads the live state of Sōzu over its command socket, computes
the difference and sends the minimal, traffic-safe sequence of requests. It removes only what
it created (see --owner).
"""

_EPILOG = """\
examples:
  sozu-operator demo                                  try everything on the bundled emulator
  sozu-operator plan -f manifests/ --socket /run/sozu/sozu.sock
  sozu-operator plan -f manifests/ --socket S --out plan.json && \\
      sozu-operator apply --plan plan.json -f manifests/ --socket S
  sozu-operator export --socket /run/sozu/sozu.sock > adopted.yaml
"""


def _add_target_options(parser: argparse.ArgumentParser, *, offline: bool = False) -> None:
    target = parser.add_argument_group("Sōzu")
    if offline:
        source = target.add_mutually_exclusive_group(required=True)
        source.add_argument("--socket", metavar="PATH", help="Sōzu's command socket")
        source.add_argument(
            "--state-file",
            metavar="FILE",
            help="plan offline against a state file written by Sōzu's save_state",
        )
    else:
        target.add_argument("--socket", metavar="PATH", required=True, help="Sōzu's command socket")
    target.add_argument(
        "--sozu-version",
        type=int,
        choices=(1, 2),
        default=2,
        help="wire format and semantics of the Sōzu being programmed (default: 2)",
    )
    target.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each answer from Sōzu (default: 10)",
    )
    target.add_argument(
        "--owner",
        default=DEFAULT_OWNER,
        help="installation name marking the objects this tool owns in Sōzu; two installations "
        f"sharing one Sōzu need different names (default: {DEFAULT_OWNER})",
    )


def _add_guard_options(parser: argparse.ArgumentParser) -> None:
    guard = parser.add_argument_group("safety")
    guard.add_argument(
        "--max-removal-share",
        type=float,
        default=0.5,
        metavar="SHARE",
        help="refuse a plan removing more than this share of the owned objects (default: 0.5)",
    )
    guard.add_argument(
        "--force", action="store_true", help="apply even if the mass-deletion guard objects"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sozu-operator",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = commands.add_parser(
        "plan",
        help="show the requests that would bring Sōzu to the state the files describe",
        description="Compute and print the ordered requests that would make Sōzu serve what "
        "the files describe. Exit status: 0 in sync, 2 changes pending, 1 error.",
    )
    plan.add_argument(
        "-f", "--filename", action="append", required=True, metavar="FILE|DIR",
        help="YAML file or directory of sozu.io resources (repeatable)",
    )
    _add_target_options(plan, offline=True)
    _add_guard_options(plan)
    plan.add_argument("--output", choices=("text", "json"), default="text", help="output format")
    plan.add_argument(
        "--out", metavar="FILE", help="also save the plan, stamped with the live state's digest"
    )

    apply = commands.add_parser(
        "apply",
        help="apply the files (or a saved plan) to Sōzu",
        description="Apply the state the files describe, or a plan saved by `plan --out`. "
        "Phase by phase; independent additions and removals go over --connections connections "
        "side by side, everything else one request at a time. On the first failure it stops "
        "and says what was applied, what failed and what remains. Exit status: 0 applied (or "
        "nothing to do), 1 error.",
    )
    apply.add_argument(
        "-f", "--filename", action="append", metavar="FILE|DIR",
        help="YAML file or directory of sozu.io resources (repeatable); with --plan, the "
        "files the plan was made from (they supply the private keys the plan leaves out)",
    )
    apply.add_argument(
        "--plan", metavar="FILE", help="a plan saved by `plan --out`; refused if Sōzu changed"
    )
    _add_target_options(apply)
    _add_guard_options(apply)
    apply.add_argument("--quiet", action="store_true", help="print only the summary and errors")
    _add_connections_option(apply)

    export = commands.add_parser(
        "export",
        help="write what Sōzu serves as sozu.io YAML",
        description="Write the live state as sozu.io resources, for review or adoption. "
        "Certificates are written with a Secret reference, never with their private key.",
    )
    _add_target_options(export)
    export.add_argument(
        "--all", action="store_true",
        help="include objects this installation does not own (Sōzu's config, others)",
    )
    export.add_argument("--namespace", default="default", help="namespace for the resources")
    export.add_argument(
        "--include-keys", action="store_true",
        help="write private keys inline instead of Secret references (then handle the output "
        "as a secret)",
    )

    run = commands.add_parser(
        "run",
        help="run the operator: program Sōzu from the sozu.io resources in Kubernetes",
        description="Watch SozuCluster, SozuFrontend and SozuCertificate resources (and the "
        "TLS Secrets and EndpointSlices they use) and keep the Sōzu behind --socket programmed "
        "accordingly. Meant to run as a sidecar next to each Sōzu: each instance writes only "
        "its own entry of each resource's status.proxies. Credentials come from the "
        "in-cluster service account, else from KUBECONFIG.",
    )
    run.add_argument("--socket", required=True, metavar="PATH", help="Sōzu's command socket")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", metavar="NS",
        help="namespace to watch (repeatable; default: the pod's namespace from POD_NAMESPACE, "
        "else 'default')",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    run.add_argument("--class", dest="class_name", metavar="NAME",
                     help="handle only resources with this spec.className")
    run.add_argument("--default-class", action="store_true",
                     help="with --class: also handle resources that name no class")
    run.add_argument("--sozu-version", type=int, choices=(1, 2), default=2)
    run.add_argument("--owner", default=DEFAULT_OWNER,
                     help=f"installation name marking owned objects (default: {DEFAULT_OWNER})")
    run.add_argument("--pod-name", default=None,
                     help="this proxy's name in status.proxies (default: env POD_NAME, else the "
                     "host name)")
    run.add_argument("--resync", type=float, default=60.0, metavar="SECONDS",
                     help="re-read Sōzu and repair drift at least this often (default: 60)")
    run.add_argument("--debounce", type=float, default=0.2, metavar="SECONDS",
                     help="wait this long after a change for more changes (default: 0.2)")
    run.add_argument("--restart-check", type=float, default=2.0, metavar="SECONDS",
                     help="look for a restarted Sōzu this often (default: 2)")
    run.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                     help="how long to wait for each answer from Sōzu (default: 10)")
    run.add_argument("--max-removal-share", type=float, default=0.5, metavar="SHARE",
                     help="refuse passes removing more than this share of owned objects")
    run.add_argument("--health-port", type=int, default=8081,
                     help="port of /healthz and /readyz (default: 8081; 0 disables)")
    run.add_argument("--metrics-port", type=int, default=9090,
                     help="port of /metrics (default: 9090; 0 disables)")
    _add_connections_option(run)
    run.add_argument("--verbose", "-v", action="store_true", help="log at debug level")

    emulator = commands.add_parser(
        "emulator",
        help="run the bundled Sōzu command-socket emulator",
        description="Serve a stand-in for Sōzu's main process on a unix socket, with Sōzu's "
        "own state semantics and wire format, until interrupted.",
    )
    emulator.add_argument("--socket", required=True, metavar="PATH", help="socket path")
    emulator.add_argument("--sozu-version", type=int, choices=(1, 2), default=2)
    emulator.add_argument(
        "--state", metavar="FILE", help="boot from a Sōzu state file (save_state format)"
    )
    emulator.add_argument("--workers", type=int, default=2, help="emulated workers (default 2)")
    emulator.add_argument(
        "--control", action="store_true",
        help="also listen on PATH.control for fault-injection commands (tests)",
    )

    kube = commands.add_parser(
        "kube-emulator",
        help="run the bundled Kubernetes API-server emulator",
        description="Serve an emulated Kubernetes API (discovery, CRDs, list/watch, status "
        "subresource, Events…) good enough for kubectl and the operator, until interrupted.",
    )
    kube.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    kube.add_argument("--kubeconfig", metavar="PATH", help="write a kubeconfig for it here")
    kube.add_argument(
        "-f", "--filename", action="append", default=[], metavar="FILE|DIR",
        help="create these objects at start, e.g. crds/ (repeatable)",
    )

    demo = commands.add_parser(
        "demo",
        help="try the tool end to end on the bundled emulator and examples/",
        description="Start the Sōzu emulator, apply the example resources, print what was "
        "sent and the live state, re-plan to show it is in sync, and stop.",
    )
    demo.add_argument("--sozu-version", type=int, choices=(1, 2), default=2)
    demo.add_argument("-f", "--filename", action="append", metavar="FILE|DIR",
                      help="resources to apply instead of the bundled examples")
    return parser


def _add_connections_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--connections", type=int, default=DEFAULT_LANES, choices=range(1, 9), metavar="N",
        help="command-socket connections for independent steps (adding or removing clusters, "
        f"backends, routes), 1 to 8 (default {DEFAULT_LANES}); 1 sends every request in turn",
    )


# CPython's cyclic collector runs a full collection each time the surviving objects grew by a
# quarter, and each walks every tracked object: at 50k routes that was half of a cold plan's CPU.
# Our models are acyclic frozen dataclasses, so collecting less often frees the same memory.
GC_THRESHOLDS = (50_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    gc.set_threshold(*GC_THRESHOLDS)
    if args.command == "emulator":
        from sozu_operator.emulators.sozu import run_emulator

        return run_emulator(
            args.socket, args.sozu_version, args.state, args.workers, args.control
        )
    if args.command == "run":
        from sozu_operator.cli.run import run_operator_command

        return run_operator_command(args)
    if args.command == "kube-emulator":
        from sozu_operator.emulators.kube import run_kube_emulator

        return run_kube_emulator(args.port, args.kubeconfig, manifests=args.filename)
    if args.command == "demo":
        from sozu_operator.cli.demo import run_demo

        return run_demo(args)
    from sozu_operator.cli import gitops

    handlers = {"plan": gitops.run_plan, "apply": gitops.run_apply, "export": gitops.run_export}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
