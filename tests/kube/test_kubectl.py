"""The real kubectl against the emulator: what a user (or `kubectl apply -f crds/`) does."""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml
from tests.certs import make_certificate
from tests.kube.kube_support import HAVE_KUBECTL, NO_KUBECTL, WIDGET_CRD, Kubectl, widget

from sozu_operator.emulators.kube import KubeEmulator

ROOT = Path(__file__).resolve().parents[2]


def _rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.strip().splitlines()]


async def test_crd_apply_serves_the_resource_with_printer_columns(
    emulator: KubeEmulator, kubectl: Kubectl
) -> None:
    result = await kubectl.apply(WIDGET_CRD)
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.example.sozu.io created" \
        in result.out
    await kubectl.apply(widget("w1", "green", 3, {"tier": "front"}),
                        widget("w2", "red", 20, {"tier": "back"}))

    table = _rows((await kubectl("get", "widgets")).out)
    assert table[0] == ["NAME", "COLOR", "SIZE", "READY", "AGE"]
    assert [row[:3] for row in table[1:]] == [["w1", "green", "3"], ["w2", "red", "20"]]
    # Short name and category resolve through discovery too.
    assert "w1" in (await kubectl("get", "wd")).out
    assert "w2" in (await kubectl("get", "sozu-test")).out

    # The status subresource: printer columns see what was written through it.
    await kubectl("patch", "widget", "w1", "--subresource=status", "--type=merge", "-p",
                  '{"status": {"conditions": [{"type": "Ready", "status": "True"}]}}')
    rows = {row[0]: row for row in _rows((await kubectl("get", "wd")).out)[1:]}
    assert rows["w1"][3] == "True"
    assert emulator.get_object("example.sozu.io/v1", "Widget", "w1", "default") is not None


async def test_reapply_bumps_generation_only_on_change(kubectl: Kubectl) -> None:
    await kubectl.apply(WIDGET_CRD)
    await kubectl.apply(widget("w1"))
    first = yaml.safe_load((await kubectl("get", "widget", "w1", "-o", "yaml")).out)
    assert first["metadata"]["generation"] == 1
    assert first["spec"] == {"color": "green", "size": 3}
    assert "kubectl.kubernetes.io/last-applied-configuration" in first["metadata"]["annotations"]
    assert first["metadata"]["uid"]
    assert first["metadata"]["creationTimestamp"]

    assert "unchanged" in (await kubectl.apply(widget("w1"))).out
    same = yaml.safe_load((await kubectl("get", "widget", "w1", "-o", "yaml")).out)
    assert same["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert same["metadata"]["generation"] == 1

    assert "configured" in (await kubectl.apply(widget("w1", size=4))).out
    changed = yaml.safe_load((await kubectl("get", "widget", "w1", "-o", "json")).out)
    assert changed["metadata"]["generation"] == 2
    assert changed["spec"]["size"] == 4
    assert int(changed["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])

    # A label change is metadata only: a new resourceVersion, the same generation.
    await kubectl("label", "widget", "w1", "tier=front")
    labelled = yaml.safe_load((await kubectl("get", "widget", "w1", "-o", "json")).out)
    assert labelled["metadata"]["generation"] == 2
    assert labelled["metadata"]["labels"] == {"tier": "front"}

    # Defaults apply to what kubectl leaves out; removed fields are removed (merge patch).
    await kubectl.apply(widget("w1", size=None))
    defaulted = yaml.safe_load((await kubectl("get", "widget", "w1", "-o", "yaml")).out)
    assert defaulted["spec"] == {"color": "green", "size": 1}

    assert 'widget.example.sozu.io "w1" deleted' in (await kubectl("delete", "widget", "w1")).out
    gone = await kubectl("get", "widget", "w1", check=False)
    assert gone.code != 0
    assert 'widgets.example.sozu.io "w1" not found' in gone.err


async def test_invalid_custom_resources_are_rejected_naming_the_field(kubectl: Kubectl) -> None:
    await kubectl.apply(WIDGET_CRD)

    bad = await kubectl.apply(widget("bad", "purple", 0), check=False)
    assert bad.code != 0
    assert 'spec.color: Unsupported value: "purple"' in bad.err
    assert "spec.size: Invalid value: 0" in bad.err

    rule = await kubectl.apply(widget("big", "green", 20), check=False)
    assert rule.code != 0
    assert "only red widgets may be bigger than 10" in rule.err

    unknown = widget("extra")
    unknown["spec"]["shape"] = "round"
    strict = await kubectl.apply(unknown, check=False)
    assert strict.code != 0
    assert 'unknown field "spec.shape"' in strict.err
    # With --validate=warn the server warns (kubectl prints it) and prunes the field.
    lax = await kubectl("apply", "--validate=warn", "-f", "-", stdin=yaml.safe_dump(unknown))
    assert 'unknown field "spec.shape"' in lax.err
    stored = yaml.safe_load((await kubectl("get", "widget", "extra", "-o", "yaml")).out)
    assert "shape" not in stored["spec"]

    missing = widget("nocolor")
    del missing["spec"]["color"]
    required = await kubectl.apply(missing, check=False)
    assert required.code != 0
    assert "spec.color: Required value" in required.err

    bad_crd = copy.deepcopy(WIDGET_CRD)
    bad_crd["metadata"]["name"] = "gadgets.nodots"
    bad_crd["spec"]["group"] = "nodots"
    bad_crd["spec"]["names"] = {"plural": "gadgets", "kind": "Gadget"}
    refused = await kubectl.apply(bad_crd, check=False)
    assert refused.code != 0
    assert "should be a domain with at least one dot" in refused.err


async def test_namespaces_secrets_and_selectors(kubectl: Kubectl, tmp_path: Path) -> None:
    assert "namespace/team-a created" in (await kubectl("create", "namespace", "team-a")).out
    namespaces = [row[0] for row in _rows((await kubectl("get", "namespaces")).out)[1:]]
    assert "team-a" in namespaces
    assert "default" in namespaces

    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_pem, key_pem = make_certificate(["www.example.com"])
    cert.write_text(cert_pem)
    key.write_text(key_pem)
    await kubectl("-n", "team-a", "create", "secret", "tls", "site", f"--cert={cert}",
                  f"--key={key}")
    await kubectl.apply({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "team-a", "labels": {"app": "sozu"}},
        "type": "Opaque", "stringData": {"user": "admin"},
    }, {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "other", "namespace": "team-a", "labels": {"app": "web"}},
        "data": {"x": base64.b64encode(b"y").decode()},
    })

    tls_only = _rows((await kubectl("-n", "team-a", "get", "secrets",
                                    "--field-selector", "type=kubernetes.io/tls")).out)
    assert tls_only[0][:3] == ["NAME", "TYPE", "DATA"]
    assert [row[:3] for row in tls_only[1:]] == [["site", "kubernetes.io/tls", "2"]]
    labelled = _rows((await kubectl("-n", "team-a", "get", "secrets", "-l", "app=sozu",
                                    "-o", "name")).out)
    assert labelled == [["secret/creds"]]
    not_web = _rows((await kubectl("-n", "team-a", "get", "secrets", "-l", "app,app!=web",
                                   "-o", "name")).out)
    assert not_web == [["secret/creds"]]
    user = (await kubectl("-n", "team-a", "get", "secret", "creds",
                          "-o", "jsonpath={.data.user}")).out
    assert base64.b64decode(user) == b"admin"

    await kubectl("delete", "namespace", "team-a")
    assert "No resources found" in (await kubectl("-n", "team-a", "get", "secrets")).err
    assert "team-a" not in (await kubectl("get", "namespaces")).out


async def test_project_crds_and_examples_apply(kubectl: Kubectl) -> None:
    files = sorted((ROOT / "crds").glob("*.yaml"))
    if not files:
        pytest.skip("no crds/*.yaml in the repository yet")
    plurals = {}
    for path in files:
        assert "created" in (await kubectl("apply", "-f", str(path))).out
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                plurals[document["spec"]["names"]["kind"]] = document["spec"]["names"]["plural"]
    names = (await kubectl("get", "crd", "-o", "name")).out.split()
    assert all(f"customresourcedefinition.apiextensions.k8s.io/{plural}." in " ".join(names)
               for plural in plurals.values())

    # The repository's examples are valid against its own CRDs (schema and CEL rules).
    examples = [doc for path in sorted((ROOT / "examples").glob("*.yaml"))
                for doc in yaml.safe_load_all(path.read_text())
                if doc and doc.get("kind") in plurals]
    if not examples:
        return
    result = await kubectl.apply(*examples)
    assert result.out.count(" created") == len(examples)
    for kind in {doc["kind"] for doc in examples}:
        listed = _rows((await kubectl("get", plurals[kind], "-A")).out)
        assert listed[0][:2] == ["NAMESPACE", "NAME"]
        assert len(listed) - 1 == sum(1 for doc in examples if doc["kind"] == kind)

    # And a CEL rule of theirs holds: a TCP frontend refuses HTTP-only fields.
    frontend = next((doc for doc in examples if doc["kind"] == "SozuFrontend"
                     and doc["spec"].get("hostname")), None)
    if frontend is not None:
        broken = copy.deepcopy(frontend)
        broken["metadata"]["name"] = "broken"
        broken["spec"]["protocol"] = "TCP"
        refused = await kubectl.apply(broken, check=False)
        assert refused.code != 0
        assert 'The SozuFrontend "broken" is invalid' in refused.err


async def test_kubectl_sends_the_token_over_tls(tmp_path: Path) -> None:
    if not HAVE_KUBECTL:
        pytest.skip(NO_KUBECTL)
    async with KubeEmulator(tls=True) as emulator:
        kubectl = Kubectl(emulator.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path / "c")
        await kubectl("get", "namespaces")
        assert all(r.authenticated for r in emulator.requests if r.path != "/version")
        emulator.api.token = "rotated"
        refused = await kubectl("get", "namespaces", check=False)
        assert refused.code != 0
        assert "Unauthorized" in refused.err + refused.out


async def test_standalone_process_serves_until_sigterm(tmp_path: Path) -> None:
    if not HAVE_KUBECTL:
        pytest.skip(NO_KUBECTL)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "widgets.yaml").write_text(yaml.safe_dump(WIDGET_CRD))
    kubeconfig = tmp_path / "kubeconfig"
    script = ("import sys; from sozu_operator.emulators.kube import run_kube_emulator; "
              "sys.exit(run_kube_emulator(0, sys.argv[1], manifests=[sys.argv[2]]))")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(kubeconfig), str(manifests),
        env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        assert banner.startswith("Kubernetes API emulator listening on http://127.0.0.1:")
        kubectl = Kubectl(kubeconfig, tmp_path / "cache")
        assert "widgets" in (await kubectl("api-resources", "--api-group=example.sozu.io")).out
        await kubectl.apply(widget("w1"))
        assert "w1" in (await kubectl("get", "widgets")).out
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 10)
    assert code == 0
