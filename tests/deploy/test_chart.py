"""The Helm chart, rendered offline by the Helm v4 engine embedded in helm-python-sdk: lint,
values schema (good and bad values), and what the sidecar topology needs from the objects."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from tests.deploy._support import (
    CHART,
    KUBE_MIN,
    KUBE_NEWEST,
    NAMESPACE,
    PROFILES,
    ROOT,
    container,
    flag_values,
    merged_values,
    objects,
    of_kind,
    only,
    profile_objects,
    render,
    values_schema,
)

SOCKET = "/run/sozu/sozu.sock"


# --- the engine ------------------------------------------------------------------------------


def test_the_sdk_embeds_helm_v4_and_needs_no_binary() -> None:
    assert helm.helm_sdk_version().startswith("v4.")
    # The Go library ships inside the wheel; nothing is downloaded or looked up on PATH.
    library = Path(helm.library_path)
    assert library.is_file()
    assert Path(helm.__file__).parent in library.parents


# --- lint and schema -------------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("kube_version", [KUBE_MIN, KUBE_NEWEST])
def test_lint_is_clean(profile: str, kube_version: str) -> None:
    report = helm.lint(
        CHART,
        PROFILES[profile],
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{kube_version}.0",
    )
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    # Severity 1 is INFO ("icon is recommended"); warnings and errors fail under --strict.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_values_schema_is_a_valid_draft_7_schema() -> None:
    schema = values_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["additionalProperties"] is False


def _objects_are_closed(node: Any, path: str = "") -> list[str]:
    """Paths of schema objects listing properties but leaving additionalProperties open."""
    found: list[str] = []
    if isinstance(node, dict):
        if "properties" in node and node.get("additionalProperties") is not False:
            found.append(path or "/")
        for key, value in node.items():
            found.extend(_objects_are_closed(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_objects_are_closed(value, f"{path}/{index}"))
    return found


def test_every_described_object_of_the_schema_is_closed() -> None:
    open_objects = [
        path for path in _objects_are_closed(values_schema()) if "/allOf/" not in path
    ]
    assert open_objects == []


def test_every_default_value_is_described_by_the_schema() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert set(defaults) <= set(values_schema()["properties"])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_satisfy_the_schema(profile: str) -> None:
    values = merged_values(PROFILES[profile])
    jsonschema.Draft7Validator(values_schema()).validate(values)
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(PROFILES[profile])


BAD_VALUES: dict[str, dict[str, Any]] = {
    "unknown top-level key": {"replicaCount": 3},
    "unknown nested key": {"sozu": {"listeners": {"http": {"enabled": True, "portt": 1}}}},
    "no replicas": {"replicas": 0},
    "replicas as a string": {"replicas": "3"},
    "unsupported Sōzu version": {"sozuVersion": 3},
    "unknown log level": {"sozu": {"logLevel": "loud"}},
    "unknown pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "port out of range": {"health": {"port": 70000}},
    "reserved TCP listener name": {
        "sozu": {"listeners": {"tcp": [{"name": "metrics", "port": 9000}]}}
    },
    "TCP listener name too long": {
        "sozu": {"listeners": {"tcp": [{"name": "a-very-long-port-name", "port": 9000}]}}
    },
    "invalid namespace": {"watchNamespaces": ["Team_A"]},
    "allNamespaces with watchNamespaces": {"allNamespaces": True, "watchNamespaces": ["a"]},
    "defaultClass without className": {"defaultClass": True},
    "serviceMonitor without metrics": {
        "metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}
    },
    "removal share above 1": {"maxRemovalShare": 1.5},
    "owner the operator refuses": {"owner": "Edge_Proxies"},
    "owner too long": {"owner": "a" * 41},
    "no surge (rollouts could not progress)": {"rollout": {"maxSurge": 0}},
    "unknown service type": {"service": {"type": "ExternalName"}},
    "bad resource quantity": {"resources": {"limits": {"memory": "lots"}}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_rejected_by_the_schema(case: str) -> None:
    values = BAD_VALUES[case]
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(values)
        with pytest.raises(helm.HelmValuesError):
            chart.render(values, name="x", namespace=NAMESPACE)
    merged = merged_values(values)
    assert list(jsonschema.Draft7Validator(values_schema()).iter_errors(merged)), case


TEMPLATE_FAILURES: dict[str, tuple[dict[str, Any], str]] = {
    "listener port taken twice": (
        {"sozu": {"listeners": {"tcp": [{"name": "pg", "port": 8443}]}}},
        'listener "pg" uses port 8443, already taken by "https"',
    ),
    "listener on the health port": (
        {"sozu": {"listeners": {"tcp": [{"name": "pg", "port": 8081}]}}},
        'already taken by "health"',
    ),
    "service port taken twice": (
        {"sozu": {"listeners": {"tcp": [{"name": "pg", "port": 5432, "servicePort": 443}]}}},
        'listener "pg" uses service port 443, already taken by "https"',
    ),
    "TCP listener names taken twice": (
        {"sozu": {"listeners": {"tcp": [{"name": "pg", "port": 1}, {"name": "pg", "port": 2}]}}},
        'port name "pg" is used twice',
    ),
    "metrics on the health port": ({"metrics": {"port": 8081}}, "must differ"),
    "no listener": (
        {"sozu": {"listeners": {"http": {"enabled": False}, "https": {"enabled": False}}}},
        "at least one listener",
    ),
}


@pytest.mark.parametrize("case", sorted(TEMPLATE_FAILURES))
def test_cross_field_mistakes_fail_the_render(case: str) -> None:
    values, message = TEMPLATE_FAILURES[case]
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)  # the schema alone cannot see these
        with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
            chart.render(values, name="x", namespace=NAMESPACE)


# --- the sidecar topology --------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_one_deployment_of_sozu_plus_operator_sharing_an_in_memory_socket(profile: str) -> None:
    deployment = only(profile_objects(profile), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["sozu", "operator"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["sozu-socket"]["emptyDir"]["medium"] == "Memory"
    for name in ("sozu", "operator"):
        mounts = {m["name"]: m["mountPath"] for m in container(deployment, name)["volumeMounts"]}
        assert mounts["sozu-socket"] == "/run/sozu"
    operator = container(deployment, "operator")
    assert operator["args"][:3] == ["run", "--socket", SOCKET]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_rollouts_never_remove_a_ready_proxy_first(profile: str) -> None:
    deployment = only(profile_objects(profile), "Deployment")
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["replicas"] == merged_values(PROFILES[profile])["replicas"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_probes_pod_name_and_ports_of_the_operator(profile: str) -> None:
    values = merged_values(PROFILES[profile])
    operator = container(only(profile_objects(profile), "Deployment"), "operator")
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    startup = operator["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "health"}
    assert 30 <= startup["periodSeconds"] * startup["failureThreshold"] <= 300
    assert operator["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"health": values["health"]["port"], "metrics": values["metrics"]["port"]}
    args = operator["args"]
    assert flag_values(args, "--health-port") == [str(values["health"]["port"])]
    assert flag_values(args, "--metrics-port") == [str(values["metrics"]["port"])]


def test_operator_arguments_with_default_values() -> None:
    operator = container(only(objects(), "Deployment"), "operator")
    assert operator["image"] == "sozu-operator:0.1.0"
    assert operator["args"] == [
        "run", "--socket", SOCKET, "--sozu-version", "2", "--namespace", NAMESPACE,
        "--resync", "60", "--debounce", "0.2", "--owner", "sozu-operator",
        "--max-removal-share", "0.5", "--health-port", "8081", "--metrics-port", "9090",
    ]  # fmt: skip


def test_operator_arguments_cluster_wide() -> None:
    args = container(only(profile_objects("cluster-wide"), "Deployment"), "operator")["args"]
    assert "--all-namespaces" in args
    assert "--namespace" not in args
    assert flag_values(args, "--class") == ["edge"]
    assert "--default-class" in args
    assert flag_values(args, "--sozu-version") == ["1"]
    assert flag_values(args, "--resync") == ["30"]
    assert flag_values(args, "--debounce") == ["0.5"]
    assert flag_values(args, "--owner") == ["edge-proxies"]
    assert args[-3:] == ["--restart-check", "5", "--verbose"]


def test_operator_arguments_per_namespace() -> None:
    args = container(only(profile_objects("namespaced"), "Deployment"), "operator")["args"]
    assert flag_values(args, "--namespace") == ["team-a", "team-b"]
    assert "--all-namespaces" not in args
    assert "--class" not in args
    assert "--default-class" not in args


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_operator_arguments_parse_with_the_cli(profile: str) -> None:
    from sozu_operator.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    if "run" not in getattr(commands, "choices", {}):
        pytest.skip("`sozu-operator run` does not exist yet")
    values = merged_values(PROFILES[profile])
    args = container(only(profile_objects(profile), "Deployment"), "operator")["args"]
    parsed = parser.parse_args(args)
    assert parsed.command == "run"
    assert parsed.socket == SOCKET
    if values["allNamespaces"]:
        assert parsed.all_namespaces is True
    else:
        assert parsed.namespace == (values["watchNamespaces"] or [NAMESPACE])
    assert parsed.class_name == (values.get("className") or None)
    assert parsed.default_class is values.get("defaultClass", False)
    assert parsed.sozu_version == values["sozuVersion"]
    assert parsed.owner == values["owner"]
    assert parsed.resync == values["resync"]
    assert parsed.debounce == values["debounce"]
    assert parsed.max_removal_share == values["maxRemovalShare"]
    assert parsed.health_port == values["health"]["port"]
    assert parsed.metrics_port == values["metrics"]["port"]
    assert parsed.pod_name is None  # taken from POD_NAME


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_both_containers_are_locked_down_and_share_one_uid(profile: str) -> None:
    deployment = only(profile_objects(profile), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        # Sōzu creates its socket with mode 0600: both sides must run as the same user.
        assert "runAsUser" not in sc
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_the_api_token_reaches_the_operator_only() -> None:
    deployment = only(objects(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert token_dir in {m["mountPath"] for m in container(deployment, "operator")["volumeMounts"]}
    assert token_dir not in {m["mountPath"] for m in container(deployment, "sozu")["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == "kube-api-access")
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert only(objects(), "ServiceAccount")["automountServiceAccountToken"] is False


def _pod_meets_restricted(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standard "restricted" checks relevant to this pod."""
    problems = []
    allowed_volumes = {"configMap", "emptyDir", "projected", "secret", "downwardAPI"}
    for volume in pod["volumes"]:
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            problems.append(f"volume {volume['name']}: {kinds}")
    safe_sysctls = {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
    }  # fmt: skip
    for sysctl in pod["securityContext"].get("sysctls", []):
        if sysctl["name"] not in safe_sysctls:
            problems.append(f"sysctl {sysctl['name']}")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces")
    pod_non_root = pod["securityContext"].get("runAsNonRoot") is True
    pod_seccomp = pod["securityContext"].get("seccompProfile", {}).get("type")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            problems.append(f"{c['name']}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation")
        if not (pod_non_root or sc.get("runAsNonRoot") is True):
            problems.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser") == 0 or pod["securityContext"].get("runAsUser") == 0:
            problems.append(f"{c['name']}: runAsUser 0")
        seccomp = sc.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{c['name']}: seccompProfile")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{c['name']}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{c['name']}: capabilities added")
        if any("hostPort" in p for p in c.get("ports", [])):
            problems.append(f"{c['name']}: hostPort")
    return problems


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_pod_meets_the_restricted_pod_security_standard(profile: str) -> None:
    pod = only(profile_objects(profile), "Deployment")["spec"]["template"]["spec"]
    assert _pod_meets_restricted(pod) == []


def test_low_listener_ports_use_the_unprivileged_port_sysctl_not_a_capability() -> None:
    default_pod = only(objects(), "Deployment")["spec"]["template"]["spec"]
    assert "sysctls" not in default_pod["securityContext"]
    deployment = only(profile_objects("cluster-wide"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["sysctls"] == [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
    ]
    assert "add" not in container(deployment, "sozu")["securityContext"]["capabilities"]


def _sozu_config(found: list[dict[str, Any]]) -> dict[str, Any]:
    configmap = next(obj for obj in found if obj["kind"] == "ConfigMap")
    return tomllib.loads(configmap["data"]["config.toml"])


def test_sozu_configuration_default() -> None:
    found = objects()
    config = _sozu_config(found)
    assert config["command_socket"] == SOCKET
    assert config["worker_count"] == 2
    assert config["activate_listeners"] is True
    assert config["listeners"] == [
        {"protocol": "http", "address": "0.0.0.0:8080"},
        {"protocol": "https", "address": "0.0.0.0:8443"},
    ]
    # Ports match the example resources (examples/ use 0.0.0.0:8080 and 0.0.0.0:8443).
    addresses = set()
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc["kind"] == "SozuFrontend" and doc["spec"]["protocol"] != "TCP":
                addresses.add(doc["spec"]["address"])
    assert addresses <= {listener["address"] for listener in config["listeners"]}
    deployment = only(found, "Deployment")
    sozu = container(deployment, "sozu")
    assert sozu["args"] == ["start", "--config", "/etc/sozu/config.toml"]
    assert {p["name"]: p["containerPort"] for p in sozu["ports"]} == {"http": 8080, "https": 8443}
    assert sozu["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert sozu["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}


def test_sozu_configuration_custom() -> None:
    found = profile_objects("cluster-wide")
    config = _sozu_config(found)
    assert config["max_connections"] == 20000
    assert config["listeners"] == [
        {"protocol": "http", "address": "0.0.0.0:80"},
        {"protocol": "https", "address": "0.0.0.0:443"},
        {"protocol": "tcp", "address": "0.0.0.0:5432"},
    ]
    sozu = container(only(found, "Deployment"), "sozu")
    assert sozu["image"] == "clevercloud/sozu:1.0.6"
    assert "lifecycle" not in sozu
    service = only(found, "Service", "sozu-operator")
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 80, "http"),
        ("https", 443, "https"),
        ("postgres", 15432, "postgres"),
    ]


def test_a_configuration_change_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = only(objects(values), "Deployment")
        annotation: str = deployment["spec"]["template"]["metadata"]["annotations"][
            "checksum/sozu-config"
        ]
        return annotation

    assert checksum({}) != checksum({"sozu": {"workerCount": 4}})
    assert checksum({}) == checksum({"replicas": 5})


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_resources_reach_both_containers(profile: str) -> None:
    values = merged_values(PROFILES[profile])
    deployment = only(profile_objects(profile), "Deployment")
    assert container(deployment, "operator")["resources"] == values["resources"]
    assert container(deployment, "sozu")["resources"] == values["sozu"]["resources"]


def test_pod_disruption_budget_only_with_several_replicas() -> None:
    pdb = only(objects(), "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == only(objects(), "Deployment")["spec"][
        "selector"
    ]["matchLabels"]
    assert only(profile_objects("cluster-wide"), "PodDisruptionBudget")["spec"][
        "maxUnavailable"
    ] == "34%"
    assert of_kind(profile_objects("namespaced"), "PodDisruptionBudget") == []
    disabled = objects({"podDisruptionBudget": {"enabled": False}})
    assert of_kind(disabled, "PodDisruptionBudget") == []


def test_metrics_service_and_service_monitor() -> None:
    default = objects()
    assert of_kind(default, "ServiceMonitor") == []
    metrics = only(default, "Service", "sozu-operator-metrics")
    assert metrics["spec"]["clusterIP"] == "None"
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]

    found = profile_objects("cluster-wide")
    monitor = only(found, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selected = [
        svc["metadata"]["name"]
        for svc in of_kind(found, "Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    ]
    assert selected == ["sozu-operator-metrics"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"

    namespaced = profile_objects("namespaced")
    assert [svc["metadata"]["name"] for svc in of_kind(namespaced, "Service")] == ["edge"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_services_select_the_proxy_pods(profile: str) -> None:
    found = profile_objects(profile)
    pod_labels = only(found, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for service in of_kind(found, "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["metadata"]["namespace"] == NAMESPACE


def test_names_follow_overrides_and_service_account() -> None:
    found = profile_objects("namespaced")
    deployment = only(found, "Deployment", "edge")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "proxy"
    assert only(found, "ServiceAccount")["metadata"]["name"] == "proxy"
    no_account = objects({"serviceAccount": {"create": False, "name": "existing"}})
    assert of_kind(no_account, "ServiceAccount") == []
    assert only(no_account, "Deployment")["spec"]["template"]["spec"][
        "serviceAccountName"
    ] == "existing"


def test_notes_say_what_to_apply_next() -> None:
    notes = render()["sozu-operator/templates/NOTES.txt"]
    assert "kubectl apply -f crds/" in notes
    assert "kubectl apply -f examples/" in notes
    assert "kubectl get sozuclusters,sozufrontends,sozucertificates -n sozu-system" in notes
    assert "0.0.0.0:8080" in notes
    # The examples live in "default", which the default install does not watch: say so.
    assert 'namespace "default", which this release does not watch' in notes
    watching_default = render({"watchNamespaces": ["default"]})
    assert "does not watch" not in watching_default["sozu-operator/templates/NOTES.txt"]
    cluster_wide = render(PROFILES["cluster-wide"])["sozu-operator/templates/NOTES.txt"]
    assert "watches every namespace" in cluster_wide
    assert "-A" in cluster_wide
