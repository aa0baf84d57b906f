"""`sozu-operator demo`: the whole GitOps path on the bundled emulator, in one command.

It starts the Sōzu emulator from a state file that plays the part of Sōzu's own configuration
(listeners and one route nobody here owns), plans and applies the example resources over the
real unix socket, prints every request and the resulting live state, and plans again to show
that nothing is left to do and that the configuration's own route was never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from sozu_operator.applier import apply_steps
from sozu_operator.cli.gitops import CliError, load_inputs
from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.emulators.sozu import SozuEmulator
from sozu_operator.kube.operator import Endpoints, run_operator
from sozu_operator.kube.reconciler import OperatorConfig
from sozu_operator.live import LiveReader
from sozu_operator.proxy.requests import verb_name
from sozu_operator.reconcile import ownership
from sozu_operator.reconcile.pipeline import reconcile
from sozu_operator.reconcile.planner import Step
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.reconcile.render import render_text
from sozu_operator.wire import SozuClient, WireVersion

OWNER = ownership.DEFAULT_OWNER


def examples_dir() -> Path:
    """The repository's examples/ (the demo runs from a clone)."""
    return Path(__file__).resolve().parents[3] / "examples"


def live_table(live: ProxyState, *, owner: str, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in ("kind", "Sōzu identity", "details", "owner"):
        table.add_column(column)

    def who(mine: bool) -> str:
        return owner if mine else "(Sōzu configuration)"

    for cluster_id, cluster in sorted(live.clusters.items()):
        table.add_row(
            "cluster", cluster_id, cluster.load_balancing.name.lower(),
            who(ownership.owns_cluster(owner, cluster_id)),
        )
    for (cluster_id, backend_id, address), backend in sorted(
        live.backends.items(), key=lambda item: (item[0][0], item[0][1], item[0][2].sort_key)
    ):
        details = f"{address}" + (f" weight {backend.weight}" if backend.weight else "")
        details += " backup" if backend.backup else ""
        table.add_row(
            "backend", f"{cluster_id} / {backend_id}", details,
            who(ownership.owns_cluster(owner, cluster_id)),
        )
    for label, frontends in (("http", live.http_frontends), ("https", live.https_frontends)):
        for key, frontend in sorted(frontends.items()):
            table.add_row(
                f"{label} route", key, f"→ {frontend.cluster_id or '(deny)'}",
                who(ownership.owns_frontend(owner, frontend)),
            )
    for tcp in sorted(live.tcp_frontends, key=lambda f: (f.address.sort_key, f.cluster_id)):
        table.add_row(
            "tcp route", str(tcp.address), f"→ {tcp.cluster_id}",
            who(ownership.owns_frontend(owner, tcp)),
        )
    for (address, fingerprint), certificate in sorted(
        live.certificates.items(), key=lambda item: (item[0][0].sort_key, item[0][1])
    ):
        table.add_row(
            "certificate", f"{address} {fingerprint[:16]}…",
            ", ".join(ownership.served_names(certificate)),
            who(ownership.owns_certificate(owner, certificate)),
        )
    return table


async def _demo(args: argparse.Namespace, console: Console) -> int:
    version = WireVersion(args.sozu_version)
    examples = examples_dir()
    paths = args.filename or [str(examples)]
    inputs = load_inputs(paths)
    with tempfile.TemporaryDirectory(prefix="sozu-demo-") as workdir:
        socket = str(Path(workdir) / "sozu.sock")
        emulator = SozuEmulator(
            socket, version=int(version), state_file=str(examples / "sozu" / "state.json")
        )
        async with emulator, SozuClient(socket, version=version, timeout=10) as client:
            console.rule(f"Sōzu {version.sozu_release} emulator on {socket}")
            reader = LiveReader()
            live = await reader.read(client)
            console.print(live_table(live, owner=OWNER, title="Live state before"))

            result = reconcile(
                inputs.bodies, live, owner=OWNER, sozu_version=int(version),
                resolve_secret=inputs.secret_resolver(),
            )
            for problem in result.build.problems:
                console.print(f"[red]error[/red]: {problem}")
            console.rule("Plan")
            console.print(render_text(result.plan), markup=False, highlight=False)

            console.rule("Applying, one request at a time")

            def show(done: int, total: int, step: Step) -> None:
                console.print(
                    f"  [{done:>2}/{total}] {verb_name(step.request):<22} {step.summary}",
                    markup=False, highlight=False,
                )

            outcome = await apply_steps(client, result.plan.steps, on_step=show)
            if outcome.failure is not None:
                console.print(f"[red]FAILED[/red]: {outcome.failure.message}")
                return 1
            console.print(
                f"Applied {len(outcome.applied)} requests in {outcome.seconds * 1000:.0f} ms."
            )

            after = await reader.read(client)
            console.print(live_table(after, owner=OWNER, title="Live state after"))
            again = reconcile(
                inputs.bodies, after, owner=OWNER, sozu_version=int(version),
                resolve_secret=inputs.secret_resolver(),
            )
            console.rule("Plan again")
            console.print(render_text(again.plan), markup=False, highlight=False)
            untouched = all(
                after.clusters.get(cluster_id) == cluster
                for cluster_id, cluster in live.clusters.items()
                if not ownership.owns_cluster(OWNER, cluster_id)
            )
            console.print(
                "Sōzu's own configuration was left untouched."
                if untouched
                else "[red]Sōzu's own configuration changed![/red]"
            )
            counts = dict(sorted(emulator.verb_counts.items()))
            console.print(f"Requests the emulator received, by verb: {counts}")
            ok = again.plan.is_empty and untouched and not result.build.problems
        return 0 if await _operator_demo(console, version, examples) and ok else 1


async def _kubectl_get(kube: KubeEmulator, kubeconfig: Path, kinds: str) -> str:
    """`kubectl get` output: the real kubectl when installed, else the same Table answer the
    API emulator gives kubectl, laid out the same way."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        process = await asyncio.create_subprocess_exec(
            kubectl, "--kubeconfig", str(kubeconfig), "get", kinds, "-n", "default",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        return f"$ kubectl get {kinds}\n" + output.decode()
    lines = [f"(kubectl is not installed; the API's Table answer for: kubectl get {kinds})"]
    async with kube.session() as session:
        for plural in kinds.split(","):
            async with session.get(
                f"/apis/sozu.io/v1alpha1/namespaces/default/{plural}",
                headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            ) as response:
                table = await response.json()
            columns = [c["name"].upper() for c in table.get("columnDefinitions", [])
                       if c.get("priority", 0) == 0]
            rows = [[str(cell) for cell in row["cells"][: len(columns)]]
                    for row in table.get("rows", [])]
            widths = [max(len(x) for x in [col, *(r[i] for r in rows)]) for i, col in
                      enumerate(columns)]
            for row in [columns, *rows]:
                lines.append("   ".join(cell.ljust(w) for cell, w in zip(row, widths,
                                                                          strict=False)))
            lines.append("")
    return "\n".join(lines)


async def _operator_demo(console: Console, version: WireVersion, examples: Path) -> bool:
    """The operator path: the API-server emulator holds the CRDs and the examples, the real
    operator (kopf) programs a second emulated Sōzu, and kubectl shows the status."""
    console.rule("Operator path: Kubernetes API emulator + sozu-operator run")
    with tempfile.TemporaryDirectory(prefix="sozu-demo-op-") as workdir:
        folder = Path(workdir)
        socket = str(folder / "sozu.sock")
        async with (
            KubeEmulator() as kube,
            SozuEmulator(
                socket, version=int(version), state_file=str(examples / "sozu" / "state.json")
            ) as sozu,
        ):
            kubeconfig = kube.write_kubeconfig(folder / "kubeconfig")
            for document in _kube_documents(examples):
                await kube.create(document)
            console.print(f"API emulator at {kube.url}: CRDs and examples/ created.")
            os.environ["KUBECONFIG"] = str(kubeconfig)
            stop = asyncio.Event()
            config = OperatorConfig(
                socket=socket, pod_name="sozu-demo-0", sozu_version=int(version),
                resync=5, debounce=0.05,
            )
            started = time.perf_counter()
            operator = asyncio.create_task(
                run_operator(config, namespaces=["default"], clusterwide=False,
                             endpoints=Endpoints(None, None), stop_flag=stop)
            )
            try:
                programmed = await _wait_programmed(kube, sozu, deadline=30)
                elapsed = time.perf_counter() - started
                console.print(
                    f"Operator started and programmed Sōzu in {elapsed:.2f} s "
                    f"({len(sozu.state.http_frontends)} HTTP routes now live)."
                    if programmed else "[red]The operator did not program Sōzu in 30 s.[/red]"
                )
                console.print(
                    await _kubectl_get(kube, kubeconfig,
                                       "sozuclusters,sozufrontends,sozucertificates"),
                    markup=False, highlight=False,
                )
            finally:
                stop.set()
                await asyncio.wait_for(operator, 30)
            return programmed


def _kube_documents(examples: Path) -> list[dict[str, Any]]:
    """The CRDs, then the example resources, as `kubectl apply -f crds/ -f examples/` sends."""
    files = [*sorted((examples.parent / "crds").glob("*.yaml")), *sorted(examples.glob("*.yaml"))]
    return [doc for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]


async def _wait_programmed(kube: KubeEmulator, sozu: SozuEmulator, *, deadline: float) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        frontends = [
            kube.get_object("sozu.io/v1alpha1", "SozuFrontend", name, "default")
            for name in ("web", "web-api", "web-health", "web-tls", "postgres")
        ]
        done = all(
            f is not None and (f.get("status") or {}).get("proxiesProgrammed") == "1/1"
            for f in frontends
        )
        if done:
            return True
        await asyncio.sleep(0.1)
    return False


def run_demo(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:  # a log or a pipe: do not squeeze tables into 80 columns
        console = Console(width=160)
    try:
        return asyncio.run(_demo(args, console))
    except CliError as error:
        console.print(f"[red]error[/red]: {error}")
        return 1
