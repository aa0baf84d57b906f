"""Private keys never leave the data path: a certificate scenario with real keys, run through
everything that prints, logs or serialises, with every logger at DEBUG, and each output searched
for key material (`tests/security/keys.py`).

Covered: the pure pipeline (reconcile, plan text, plan JSON, reprs), the validator and builder
when the key or the certificate is malformed, invalid, expired, not yet valid or mismatched (and
when a key is pasted into the wrong field), the wire client, applier, live reader and export
against an in-process emulator (whose own logs are captured too), and the real CLI processes
(`plan` text/JSON/--out, `apply` including a failed certificate step and a refused saved plan,
`export`) against an emulator process, both at DEBUG. `export --include-keys` is the one output
that must contain the key, and does.

The operator (`sozu-operator run`, in process): its logs at DEBUG with kopf's, every status,
Event and request body it sent to the API, and its /metrics, /readyz and /healthz.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from tests.certs import make_certificate, make_key
from tests.cli.conftest import ROOT, SEED, EmulatorProcess
from tests.e2e.conftest import (
    StartOperator,
    api,
    crds,
    kube,
    kubeconfig,
    sozu,
    start_operator,
    start_sozu,
    workdir,
)
from tests.e2e.e2e_support import (
    GV,
    OPERATOR_AGENTS,
    Api,
    converged,
    eventually,
    free_port,
    http_get,
)
from tests.security.keys import (
    assert_no_key_material,
    capture_all_logs,
    contains_key_material,
    find_key_material,
)

from sozu_operator.applier import apply_steps
from sozu_operator.cli.gitops import Inputs
from sozu_operator.emulators import SozuEmulator
from sozu_operator.emulators.kube import KubeEmulator
from sozu_operator.live import LiveReader
from sozu_operator.proxy import requests as rq
from sozu_operator.proxy.model import CertificateAndKey, HttpsListener, SocketAddress
from sozu_operator.proxy.responses import CertificatesWithFingerprints, Response
from sozu_operator.proxy.state import ConfigState
from sozu_operator.proxy.statefile import parse_state
from sozu_operator.reconcile.desired import ResolutionError, build_desired
from sozu_operator.reconcile.ownership import DEFAULT_OWNER
from sozu_operator.reconcile.pipeline import Reconciliation, reconcile
from sozu_operator.reconcile.proxystate import ProxyState
from sozu_operator.reconcile.render import (
    load_plan_document,
    plan_document,
    render_text,
    state_digest,
)
from sozu_operator.resources import schema as sch
from sozu_operator.resources.export import export_documents
from sozu_operator.resources.loader import load_paths
from sozu_operator.resources.models import ResourceRef, SecretRef, TlsMaterial
from sozu_operator.resources.secrets import tls_material
from sozu_operator.resources.validate import parse_resource
from sozu_operator.wire import RequestFailed, SozuClient, WireVersion

HOST = "leak.example"
ADDRESS = "0.0.0.0:8443"  # the seed state's HTTPS listener
NOW = datetime.datetime.now(datetime.UTC)

CERT, KEY = make_certificate([HOST], days=30)  # inline in the resource
SECRET_CERT, SECRET_KEY = make_certificate([f"secret.{HOST}"], days=30)  # from a TLS Secret
OTHER_CERT, OTHER_KEY = make_certificate(["other.example"], days=30)
EXPIRED_CERT, EXPIRED_KEY = make_certificate(
    [HOST], days=30, not_before=NOW - datetime.timedelta(days=90)
)
FUTURE_CERT, FUTURE_KEY = make_certificate(
    [HOST], days=30, not_before=NOW + datetime.timedelta(days=10)
)
ENCRYPTED_KEY = make_key().private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(b"secret"),
).decode()
ALL_KEYS = (KEY, SECRET_KEY, OTHER_KEY, EXPIRED_KEY, FUTURE_KEY, ENCRYPTED_KEY)


def _resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": sch.API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _tls_secret(name: str, certificate: str, key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default"},
        "data": {
            "tls.crt": base64.b64encode(certificate.encode()).decode(),
            "tls.key": base64.b64encode(key.encode()).decode(),
        },
    }


CLUSTER = _resource(sch.CLUSTER_KIND, "web", {"backends": [{"address": "127.0.0.1:9001"}]})
FRONTEND = _resource(
    sch.FRONTEND_KIND,
    "web",
    {"cluster": "web", "protocol": "HTTPS", "address": ADDRESS, "hostname": HOST},
)
INLINE = _resource(
    sch.CERTIFICATE_KIND, "inline", {"addresses": [ADDRESS], "certificate": CERT, "key": KEY}
)
FROM_SECRET = _resource(
    sch.CERTIFICATE_KIND, "from-secret", {"addresses": [ADDRESS], "secretRef": {"name": "tls"}}
)
SECRET = _tls_secret("tls", SECRET_CERT, SECRET_KEY)
RESOURCES = [CLUSTER, FRONTEND, INLINE, FROM_SECRET]


def _resolver(secrets: list[Mapping[str, Any]]) -> Callable[[ResourceRef, SecretRef], Any]:
    by_name = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in secrets}

    def resolve(owner: ResourceRef, secret: SecretRef) -> TlsMaterial | ResolutionError:
        found = tls_material(
            by_name.get((secret.namespace, secret.name)),
            name=f"Secret {secret.namespace}/{secret.name}",
        )
        return ResolutionError(found) if isinstance(found, str) else found

    return resolve


def _seed_state() -> ConfigState:
    parsed = parse_state(SEED.read_bytes(), source=str(SEED))
    mutations = [request for request in parsed.requests if rq.is_mutation(request)]
    state, refused = ConfigState.from_requests(mutations, sozu_version=2)
    assert not refused
    return state


def _reconcile(resources: list[object], secrets: list[Mapping[str, Any]]) -> Reconciliation:
    return reconcile(
        resources,
        ProxyState.from_config_state(_seed_state()),
        owner=DEFAULT_OWNER,
        sozu_version=2,
        resolve_secret=_resolver(secrets),
    )


def _everything_printed(result: Reconciliation, live: ProxyState) -> str:
    """Every text a front end derives from a reconciliation."""
    document = plan_document(
        result.plan, owner=DEFAULT_OWNER, sozu_version=2, live_digest=state_digest(live)
    )
    return "\n".join(
        [
            render_text(result.plan, header="plan"),
            json.dumps(document, indent=2),
            *(str(problem) for problem in result.build.problems),
            *(str(note) for note in result.build.notes),
            *(f"{step.summary} {step.gap or ''}" for step in result.plan.steps),
            repr(result),
            repr(load_plan_document(json.loads(json.dumps(document)))),
        ]
    )


# The end-to-end fixtures, for the operator test at the end.
__all__ = ["api", "crds", "kube", "kubeconfig", "sozu", "start_operator", "start_sozu", "workdir"]


# --- the pure pipeline -------------------------------------------------------------------------


def test_plan_text_json_and_reprs_hold_no_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with capture_all_logs() as logs:
        result = _reconcile(copy.deepcopy(RESOURCES), [SECRET])
        live = ProxyState.from_config_state(_seed_state())
        printed = _everything_printed(result, live)
    # The scenario is meaningful: both certificates, keys included, are in the plan.
    assert not result.build.problems, result.build.problems
    added = [s.request for s in result.plan.steps if isinstance(s.request, rq.AddCertificate)]
    assert {request.certificate.key for request in added} == {KEY, SECRET_KEY}
    assert '"key_sha256": "sha256:' in printed
    assert_no_key_material(printed, *ALL_KEYS, where="plan outputs and reprs")
    assert_no_key_material(logs.text + caplog.text, *ALL_KEYS, where="logs")


def test_model_reprs_redact_keys(tmp_path: Path) -> None:
    certificate = CertificateAndKey(CERT, KEY, certificate_chain=(OTHER_CERT,), names=(HOST,))
    address = SocketAddress.parse(ADDRESS)
    listener = HttpsListener(address, certificate=CERT, key=KEY)
    parsed = parse_resource(copy.deepcopy(INLINE))
    build = build_desired(
        copy.deepcopy(RESOURCES), owner=DEFAULT_OWNER, sozu_version=2, live_listeners=None,
        resolve_secret=_resolver([SECRET]),
    )
    state = ConfigState()
    state.dispatch(rq.AddHttpsListener(listener))
    state.dispatch(rq.AddCertificate(address, certificate))
    with_key_file = tmp_path / "with-key.yaml"
    objects: list[object] = [
        certificate,
        TlsMaterial(CERT, KEY, (OTHER_CERT,)),
        listener,
        parsed,
        build,
        state,
        ProxyState.from_config_state(state),
        rq.AddCertificate(address, certificate),
        rq.ReplaceCertificate(address, certificate, "ab" * 32),
        rq.AddHttpsListener(listener),
        CertificatesWithFingerprints({"ab": certificate}),
        Response.ok(content=CertificatesWithFingerprints({"ab": certificate})),
    ]
    for item in objects:
        assert_no_key_material(repr(item), KEY, where=f"repr of {type(item).__name__}")
        assert_no_key_material(str(item), KEY, where=f"str of {type(item).__name__}")
    # The loader's results carry raw documents (inline keys, Secrets): not in their repr.
    with_key_file.write_text(yaml.safe_dump_all([INLINE, SECRET]))
    loaded = load_paths([with_key_file])
    assert len(loaded.resources) == len(loaded.foreign) == 1
    assert_no_key_material(repr(loaded), KEY, SECRET_KEY, where="repr of LoadResult")
    inputs = Inputs(loaded, [item.body for item in loaded.resources])
    assert_no_key_material(repr(inputs), KEY, SECRET_KEY, where="repr of the CLI's Inputs")


# --- malformed, invalid, expired, mismatched ----------------------------------------------------


def _with_spec(**changes: Any) -> Callable[[], list[dict[str, Any]]]:
    def make() -> list[dict[str, Any]]:
        resource = copy.deepcopy(INLINE)
        for name, value in changes.items():
            if value is None:
                del resource["spec"][name]
            else:
                resource["spec"][name] = value
        return [resource]

    return make


def _with(path: tuple[str, ...], value: Any) -> Callable[[], list[dict[str, Any]]]:
    def make() -> list[dict[str, Any]]:
        resource = copy.deepcopy(INLINE)
        target = resource
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return [resource]

    return make


def _garbled_key() -> str:
    lines = KEY.strip().splitlines()
    body = "".join(lines[1:-1])
    garbled = base64.b64encode(base64.b64decode(body)[::-1]).decode()  # valid base64, not DER
    return "\n".join([lines[0], *(garbled[i : i + 64] for i in range(0, len(garbled), 64)),
                      lines[-1]]) + "\n"


def _secret_case(**data: str) -> Callable[[], list[dict[str, Any]]]:
    def make() -> list[dict[str, Any]]:
        secret = _tls_secret("tls", SECRET_CERT, SECRET_KEY)
        secret["data"].update(data)
        return [copy.deepcopy(FROM_SECRET), secret]

    return make


# case id → (documents, the field the error must name)
CASES: dict[str, tuple[Callable[[], list[dict[str, Any]]], str]] = {
    "key-is-a-certificate": (_with_spec(key=CERT), "spec.key"),
    "key-truncated": (_with_spec(key=KEY[: len(KEY) // 2]), "spec.key"),
    "key-body-not-der": (_with_spec(key=_garbled_key()), "spec.key"),
    "key-of-another-certificate": (_with_spec(key=OTHER_KEY), "spec.key"),
    "key-encrypted": (_with_spec(key=ENCRYPTED_KEY), "spec.key"),
    "key-as-list-of-lines": (_with_spec(key=KEY.splitlines()), "spec.key"),
    "key-as-mapping": (_with_spec(key={"pem": KEY}), "spec.key"),
    "key-too-long": (_with_spec(key=KEY * 400), "spec.key"),
    "key-without-certificate": (_with_spec(certificate=None), "spec"),
    "key-with-secret-ref": (_with_spec(secretRef={"name": "tls"}), "spec"),
    "certificate-garbage": (
        _with_spec(certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        "spec.certificate",
    ),
    "certificate-and-key-swapped": (_with_spec(certificate=KEY, key=CERT), "spec.certificate"),
    "certificate-expired": (
        _with_spec(certificate=EXPIRED_CERT, key=EXPIRED_KEY), "spec.certificate"
    ),
    "certificate-not-yet-valid": (
        _with_spec(certificate=FUTURE_CERT, key=FUTURE_KEY), "spec.certificate"
    ),
    "certificate-expired-and-mismatched": (_with_spec(certificate=EXPIRED_CERT), "spec.key"),
    # A key pasted into the wrong place: the messages quote values, never this one.
    "key-in-names": (_with_spec(names=[KEY]), "spec.names[0]"),
    "key-in-addresses": (_with_spec(addresses=[KEY]), "spec.addresses[0]"),
    "key-in-chain": (_with_spec(chain=[KEY]), "spec.chain[0]"),
    "key-as-field-name": (_with(("spec", KEY), "x"), "spec["),
    "key-as-resource-name": (_with(("metadata", "name"), KEY), "metadata.name"),
    "key-as-namespace": (_with(("metadata", "namespace"), KEY), "metadata.namespace"),
    "key-as-api-version": (_with(("apiVersion",), KEY), "apiVersion"),
    "key-as-kind": (_with(("kind",), KEY), "kind"),
    "secret-key-not-base64": (_secret_case(**{"tls.key": "not base64!"}), "spec.secretRef"),
    "secret-key-is-a-certificate": (
        _secret_case(**{"tls.key": base64.b64encode(SECRET_CERT.encode()).decode()}),
        "spec.secretRef",
    ),
    "secret-key-mismatched": (
        _secret_case(**{"tls.key": base64.b64encode(OTHER_KEY.encode()).decode()}),
        "spec.secretRef",
    ),
    "secret-key-garbled": (
        _secret_case(**{"tls.key": base64.b64encode(_garbled_key().encode()).decode()}),
        "spec.secretRef",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_messages_never_echo_key_material(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    make, field_path = CASES[case]
    documents = make()
    resources = [d for d in documents if d["kind"] != "Secret"]
    secrets = [d for d in documents if d["kind"] == "Secret"] or [SECRET]
    caplog.set_level("DEBUG")
    with capture_all_logs() as logs:
        result = _reconcile([copy.deepcopy(CLUSTER), copy.deepcopy(FRONTEND), *resources], secrets)
        printed = _everything_printed(result, ProxyState.from_config_state(_seed_state()))
        single = parse_resource(copy.deepcopy(resources[0]), sozu_version=2)
    problems = [p for p in result.build.problems if p.ref.kind != sch.FRONTEND_KIND]
    assert problems, f"{case}: expected the certificate to be refused"
    assert any(p.path.startswith(field_path) for p in problems), [str(p) for p in problems]
    for problem in problems:
        assert str(problem).startswith(str(problem.ref)), problem  # kind namespace/name first
    assert not [s for s in result.plan.steps if isinstance(s.request, rq.AddCertificate)]
    texts = [printed, repr(single), *(str(e) for e in getattr(single, "errors", ()))]
    assert_no_key_material("\n".join(texts), *ALL_KEYS, where=f"messages of case {case}")
    assert_no_key_material(logs.text + caplog.text, *ALL_KEYS, where=f"logs of case {case}")


# --- client, applier, live reader, export, emulator: in process, every logger at DEBUG ----------


@pytest.fixture
def short_socket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys") / "sozu.sock"


async def test_wire_apply_export_and_emulator_logs_hold_no_key(
    short_socket: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed = _seed_state()
    caplog.set_level("DEBUG")
    with capture_all_logs() as logs:
        async with (
            SozuEmulator(short_socket, initial_state=seed, working_dir=tmp_path) as emulator,
            SozuClient(short_socket, version=WireVersion.V2, timeout=5.0) as client,
        ):
            reader = LiveReader()
            live = await reader.read(client)
            result = reconcile(
                copy.deepcopy(RESOURCES), live, owner=DEFAULT_OWNER, sozu_version=2,
                resolve_secret=_resolver([SECRET]),
            )
            outcome = await apply_steps(client, result.plan.steps)
            assert outcome.ok, outcome.failure
            after = await reader.read(client)
            # Refusals Sōzu words itself, about requests carrying keys.
            address = SocketAddress.parse(ADDRESS)
            refusals = []
            for certificate in (
                CertificateAndKey(CERT, _garbled_key()),
                CertificateAndKey(CERT, KEY[: len(KEY) // 2]),
                CertificateAndKey("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                                  KEY),
                CertificateAndKey(OTHER_CERT, ENCRYPTED_KEY),
            ):
                with pytest.raises(RequestFailed) as refused:
                    await client.send(rq.AddCertificate(address, certificate))
                refusals.append(str(refused.value))
            refusals.append(repr(outcome))
            reader_notes = "\n".join(reader.last_stats.notes)
            emulator_state = emulator.render_state()  # Sōzu's own state file: keys belong there
        exported, warnings = export_documents(
            after, owner=DEFAULT_OWNER, everything=False, namespace="default", include_keys=False
        )
        with_keys, key_warnings = export_documents(
            after, owner=DEFAULT_OWNER, everything=False, namespace="default", include_keys=True
        )
        everything, all_warnings = export_documents(
            after, owner=DEFAULT_OWNER, everything=True, namespace="default", include_keys=False
        )
    assert contains_key_material(emulator_state.decode(), KEY)  # the keys did reach Sōzu
    assert logs.from_logger("sozu_operator.wire.client"), "DEBUG capture is not working"
    outputs = {
        "Sōzu's refusals and the apply result": "\n".join(refusals),
        "live reader notes": reader_notes,
        "export": exported + "\n".join(warnings),
        "export --all": everything + "\n".join(all_warnings),
        "export --include-keys warnings": "\n".join(key_warnings),
        "logs (client, applier, emulator, workers)": logs.text + caplog.text,
    }
    for where, text in outputs.items():
        assert_no_key_material(text, *ALL_KEYS, where=where)
    assert "secretRef" in exported
    # Explicitly asked for: the keys are there, and the header says to keep the file secret.
    assert contains_key_material(with_keys, KEY)
    assert contains_key_material(with_keys, SECRET_KEY)
    assert "keep this file secret" in with_keys


# --- the CLI as real processes, every logger at DEBUG ---------------------------------------------

_DEBUG_MAIN = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,"
    " format='%(levelname)s %(name)s: %(message)s')\n"
    "from sozu_operator.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def run_debug_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _DEBUG_MAIN, *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"}, check=False,
    )


@pytest.fixture
def debug_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmulatorProcess, Path]]:
    directory = tmp_path_factory.mktemp("cli")
    log = directory / "emulator.log"
    socket = str(directory / "sozu.sock")
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", _DEBUG_MAIN, "emulator", "--socket", socket, "--control",
             "--state", str(SEED)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT,
        )
    assert process.stdout is not None
    assert "listening on" in process.stdout.readline(), log.read_text()
    try:
        yield EmulatorProcess(socket, process), log
    finally:
        process.terminate()
        process.wait(timeout=10)


def _write_manifests(directory: Path, documents: list[dict[str, Any]]) -> Path:
    directory.mkdir()
    (directory / "resources.yaml").write_text(yaml.safe_dump_all(documents))
    return directory


def test_cli_outputs_and_logs_hold_no_key(
    debug_emulator: tuple[EmulatorProcess, Path], tmp_path: Path
) -> None:
    emulator, emulator_log = debug_emulator
    manifests = _write_manifests(tmp_path / "manifests", [*RESOURCES, SECRET])
    target = ("--socket", emulator.socket)
    plan_file = tmp_path / "plan.json"
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    runs["plan"] = run_debug_cli("plan", "-f", str(manifests), *target)
    assert runs["plan"].returncode == 2, runs["plan"].stderr
    assert "certificate" in runs["plan"].stdout
    runs["plan --output json --out"] = run_debug_cli(
        "plan", "-f", str(manifests), *target, "--output", "json", "--out", str(plan_file)
    )
    assert runs["plan --output json --out"].returncode == 2
    assert '"key_sha256"' in plan_file.read_text()

    # The certificate step (the first) fails in the workers: the failure report names it.
    assert emulator.control({"fail_nth_mutation": {"n": 1, "message": "injected"}})["ok"]
    runs["apply (failing)"] = run_debug_cli("apply", "-f", str(manifests), *target)
    assert runs["apply (failing)"].returncode == 1
    assert "FAILED at step 1" in runs["apply (failing)"].stderr
    # Main took that step, so the saved plan no longer matches: refused, nothing applied.
    runs["apply --plan (refused)"] = run_debug_cli(
        "apply", "--plan", str(plan_file), "-f", str(manifests), *target
    )
    assert runs["apply --plan (refused)"].returncode == 1
    runs["apply"] = run_debug_cli("apply", "-f", str(manifests), *target)
    assert runs["apply"].returncode == 0, runs["apply"].stderr
    runs["plan (in sync)"] = run_debug_cli("plan", "-f", str(manifests), *target)
    assert runs["plan (in sync)"].returncode == 0, runs["plan (in sync)"].stdout

    runs["export"] = run_debug_cli("export", *target)
    assert runs["export"].returncode == 0, runs["export"].stderr
    assert "secretRef" in runs["export"].stdout
    runs["export --all"] = run_debug_cli("export", "--all", *target)
    with_keys = run_debug_cli("export", "--include-keys", *target)
    assert with_keys.returncode == 0
    assert contains_key_material(with_keys.stdout, KEY)  # asked for explicitly
    assert contains_key_material(with_keys.stdout, SECRET_KEY)
    assert_no_key_material(with_keys.stderr, *ALL_KEYS, where="export --include-keys stderr")

    assert "DEBUG sozu_operator.wire.client" in runs["apply"].stderr  # logging really at DEBUG
    for name, run in runs.items():
        assert_no_key_material(run.stdout, *ALL_KEYS, where=f"`{name}` stdout")
        assert_no_key_material(run.stderr, *ALL_KEYS, where=f"`{name}` stderr")
    assert_no_key_material(plan_file.read_text(), *ALL_KEYS, where="the saved plan")
    emulator.process.terminate()
    emulator.process.wait(timeout=10)
    log = emulator_log.read_text()
    assert log.startswith("DEBUG ")  # the emulator process logs at DEBUG (asyncio says so)
    assert_no_key_material(log, *ALL_KEYS, where="the emulator process's log")


# Cases whose resource cannot keep its own name in one shared file: a changed identity (kind,
# apiVersion, namespace, name) or a Secret of its own. They are covered in process above.
_NOT_IN_ONE_FILE = ("key-as-kind", "key-as-api-version", "key-as-namespace",
                    "key-as-resource-name", "secret-")


def test_cli_plan_with_broken_certificates_names_them_without_keys(tmp_path: Path) -> None:
    cases = [case for case in CASES if not case.startswith(_NOT_IN_ONE_FILE)]
    documents: list[dict[str, Any]] = [CLUSTER, FRONTEND]
    for case in cases:
        resource = CASES[case][0]()[0]
        resource["metadata"]["name"] = case
        documents.append(resource)
    manifests = _write_manifests(tmp_path / "manifests", documents)
    run = run_debug_cli("plan", "-f", str(manifests), "--state-file", str(SEED))
    assert run.returncode == 1
    for case in cases:
        assert f"SozuCertificate default/{case}:" in run.stderr, case
    assert len(cases) == 19
    assert_no_key_material(run.stdout + run.stderr, *ALL_KEYS, where="plan with broken certs")


def test_key_search_finds_what_it_must() -> None:
    """The detector itself: a key in any usual encoding is found, a hint naming the block is
    not, so the tests above cannot pass by searching badly."""
    assert contains_key_material(KEY, KEY)
    assert contains_key_material(json.dumps({"key": KEY}), KEY)
    assert contains_key_material(yaml.safe_dump({"key": KEY}, default_style="|"), KEY)
    assert contains_key_material(repr(KEY), KEY)
    assert contains_key_material(KEY.replace("\n", ""), KEY)
    assert contains_key_material(base64.b64encode(KEY.encode()).decode(), KEY)
    assert contains_key_material("-----BEGIN RSA PRIVATE KEY-----")  # any key's armour
    assert not find_key_material("no '-----BEGIN … PRIVATE KEY-----' block found", KEY)
    assert not contains_key_material(CERT, KEY)
    with pytest.raises(AssertionError, match="key fragment"):
        assert_no_key_material(f"oops {KEY.splitlines()[1]}", KEY)


# --- the operator ---------------------------------------------------------------------------------

# Broken certificates the API server lets through reach the operator; cases whose resource
# cannot keep its own name (a key as name, namespace, kind, apiVersion) cannot be created at all.
_OPERATOR_CASES = [case for case in sorted(CASES)
                   if not case.startswith(_NOT_IN_ONE_FILE[:4])]


def _operator_case(case: str) -> list[dict[str, Any]]:
    """The case's documents, named after it (its Secret too, so that cases do not collide)."""
    documents = CASES[case][0]()
    resource = next(d for d in documents if d["kind"] != "Secret")
    resource["metadata"]["name"] = case
    for secret in (d for d in documents if d["kind"] == "Secret"):
        secret["metadata"]["name"] = f"tls-{case}"
        resource["spec"]["secretRef"] = {"name": f"tls-{case}"}
    return documents


async def test_operator_status_events_and_metrics_hold_no_key(
    crds: Api, kube: KubeEmulator, sozu: SozuEmulator, start_operator: StartOperator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The operator, in this process with every logger at DEBUG (its own, kopf's, aiohttp's),
    programs an inline certificate and one from a TLS Secret, and reports on every broken
    case above that the API server accepts (mismatched keys, keys in the wrong field, a Secret
    whose key is not one…). Searched for key material: the logs; every status as stored and
    every Event; every request body the operator sent to the API; /metrics, /readyz and
    /healthz."""
    api = crds
    health, metrics = free_port(), free_port()
    accepted: list[str] = []
    caplog.set_level("DEBUG")
    with capture_all_logs() as logs:
        await api.create(copy.deepcopy(SECRET), *copy.deepcopy(RESOURCES))
        for case in _OPERATOR_CASES:
            if await _create_all(api, _operator_case(case)):
                accepted.append(case)
        operator = await start_operator(sozu.socket_path, health_port=health,
                                        metrics_port=metrics, resync=0.5)
        await converged(api, sozu, within=20, what="the valid certificates to be programmed")
        names = ["inline", "from-secret", *accepted]
        statuses = await eventually(lambda: _statuses_if_all(api, names), within=15,
                                    what="a status on every certificate")
        events = await eventually(lambda: _events_if_all(api, accepted), within=15,
                                  what="an Invalid Event for every broken certificate")
        endpoints = "\n".join([
            (await http_get(f"http://127.0.0.1:{metrics}/metrics"))[1],
            (await http_get(f"http://127.0.0.1:{health}/readyz"))[1],
            (await http_get(f"http://127.0.0.1:{health}/healthz"))[1],
        ])
        assert await operator.stop() == 0  # the shutdown (status withdrawal) logs too
    sent = "\n".join(
        f"{e.method} {e.path} {e.body.decode(errors='replace')}" for e in kube.requests
        if e.user_agent.startswith(OPERATOR_AGENTS)
    )

    # The scenario is meaningful: both keys reached Sōzu, the broken cases reached the operator
    # and were reported, and logging really was at DEBUG.
    served = sozu.render_state().decode()
    assert contains_key_material(served, KEY)
    assert contains_key_material(served, SECRET_KEY)
    assert len(accepted) >= 10, accepted  # 14 with the current CRD schema
    assert statuses["inline"]["fingerprint"]
    assert all(_ready_is(statuses[case], "False") for case in accepted)
    assert "sozu_operator_certificate_expiry_days" in endpoints
    assert logs.from_logger("sozu_operator.wire.client")
    assert logs.from_logger("kopf.")
    assert any(record.startswith("DEBUG kopf.") for record in logs.records)
    assert "PATCH" in sent
    assert "POST" in sent
    outputs = {
        "operator, kopf and emulator logs at DEBUG": logs.text + caplog.text,
        "statuses": json.dumps(statuses),
        "Events": json.dumps(events),
        "requests the operator sent to the API": sent,
        "/metrics, /readyz, /healthz": endpoints,
    }
    for where, text in outputs.items():
        assert_no_key_material(text, *ALL_KEYS, where=where)


async def _create_all(api: Api, documents: list[dict[str, Any]]) -> bool:
    """Create the documents; False (and nothing left behind) if the API refuses one."""
    created = []
    for document in documents:
        try:
            await api.create(document)
        # Refused by the CRD schema (the message is not shown). The API emulator hangs up on
        # a key used as a field name (its "unknown field" warning header would hold newlines).
        except (AssertionError, aiohttp.ClientError):
            for kind, name in created:
                await api.delete(kind, name, api_version="v1" if kind == "Secret" else GV)
            return False
        created.append((document["kind"], document["metadata"]["name"]))
    return True


def _ready_is(status: Mapping[str, Any], value: str) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == value
               for c in status.get("conditions") or [])


async def _statuses_if_all(api: Api, names: list[str]) -> dict[str, Any] | None:
    found = {o["metadata"]["name"]: o.get("status") or {}
             for o in await api.objects("SozuCertificate")}
    if all(_ready_is(found.get(name) or {}, "True") or _ready_is(found.get(name) or {}, "False")
           for name in names):
        return found
    return None


async def _events_if_all(api: Api, names: list[str]) -> list[dict[str, Any]] | None:
    events = await api.events()
    warned = {e["involvedObject"]["name"] for e in events if e.get("reason") == "Invalid"}
    return events if set(names) <= warned else None
