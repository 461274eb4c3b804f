"""Kubernetes manifests: schema-valid, kustomize-buildable, hardened, and wired together.

Two forms: the default target (deploy/kubernetes, the standalone exporter) and the sidecar
Component added to a user's own Rocket.Chat Deployment (tests/deploy/fixtures), built the way
the README tells users to.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .generated import DASHBOARD_CONFIGMAP, PROMETHEUS_RULE, render, render_dashboard
from .support import (
    DASHBOARD,
    KUBECTL,
    KUBERNETES,
    KUBERNETES_VALIDATE,
    PROMTOOL,
    REPO,
    RULES,
    find_tool,
    load_yaml,
    run_tool,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
USER_DEPLOYMENT = FIXTURES / "rocketchat-deployment.yaml"
FORMS = ("standalone", "sidecar")
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
EXPORTER_CONTAINER = "livechat-exporter"
RECOMMENDED = {
    "app.kubernetes.io/name": "rocketchat-livechat-exporter",
    "app.kubernetes.io/part-of": "rocketchat",
    "app.kubernetes.io/managed-by": "kustomize",
}
# Oldest Kubernetes minor still in common use, and the validator's newest.
KUBERNETES_VERSIONS = ("1.29.0", None)


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = find_tool(*KUBECTL)
    output = run_tool([kubectl, "kustomize", str(directory)])
    return [doc for doc in yaml.safe_load_all(output) if doc]


def _user_kustomization(where: Path, kubernetes: Path = KUBERNETES) -> Path:
    """A user's kustomization: their Rocket.Chat Deployment, our base and the sidecar Component."""
    where.mkdir(parents=True, exist_ok=True)
    shutil.copy(USER_DEPLOYMENT, where / "rocketchat.yaml")
    relative = Path(os.path.relpath(kubernetes, where))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["rocketchat.yaml", str(relative / "base")],
        "components": [str(relative / "sidecar")],
    }
    (where / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return where


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    user = _user_kustomization(tmp_path_factory.mktemp("user"))
    return {"standalone": _kustomize(KUBERNETES), "sidecar": _kustomize(user)}


def _by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def _exporter_pod(documents: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod template, exporter container) of the Deployment that runs the exporter."""
    for deployment in _by_kind(documents, "Deployment"):
        template = deployment["spec"]["template"]
        for container in template["spec"]["containers"]:
            if container["name"] == EXPORTER_CONTAINER:
                return template, container
    raise AssertionError("no Deployment runs the exporter container")


def _config_map(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (config_map,) = [d for d in _by_kind(documents, "ConfigMap") if "config.yaml" in d["data"]]
    return config_map


# ---------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "newest")
@pytest.mark.parametrize("form", FORMS)
def test_kubernetes_validate_strict_on_built_in_kinds(
    built: dict[str, list[dict[str, Any]]], form: str, version: str | None, tmp_path: Path
) -> None:
    validator = find_tool(*KUBERNETES_VALIDATE)
    documents = [doc for doc in built[form] if doc["kind"] not in CUSTOM_KINDS]
    assert len(documents) >= 3
    files = []
    for number, document in enumerate(documents):
        files.append(tmp_path / f"{number}-{document['kind']}.yaml")
        files[-1].write_text(yaml.safe_dump(document), encoding="utf-8")
    version_flag = ["--kubernetes-version", version] if version else []
    output = run_tool([validator, "--strict", "--no-warn", *version_flag, *map(str, files)])
    assert "error" not in output.lower(), output


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The validator really is strict: the check above would catch a misspelt field."""
    validator = find_tool(*KUBERNETES_VALIDATE)
    deployment = load_yaml(KUBERNETES / "standalone" / "deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment), encoding="utf-8")
    with pytest.raises(AssertionError):
        run_tool([validator, "--strict", str(broken)])


# ---------------------------------------------------------------------------- what each form builds


def test_default_target_creates_only_the_exporters_own_objects(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    documents = built["standalone"]
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Service",
        "ServiceMonitor",
    ]
    for document in documents:
        name = document["metadata"]["name"]
        assert name.startswith("rocketchat-livechat-exporter"), f"{document['kind']} {name}"
    _, container = _exporter_pod(documents)
    assert container["image"] == "rocketchat-livechat-exporter:0.1.0"


def test_sidecar_component_adds_the_exporter_to_the_users_deployment_and_nothing_else(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    user = load_yaml(USER_DEPLOYMENT)
    documents = built["sidecar"]
    (deployment,) = _by_kind(documents, "Deployment")
    assert deployment["metadata"]["name"] == user["metadata"]["name"]
    assert deployment["spec"]["selector"] == user["spec"]["selector"]
    assert deployment["spec"]["replicas"] == user["spec"]["replicas"]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["rocketchat", EXPORTER_CONTAINER]
    assert containers[0] == user["spec"]["template"]["spec"]["containers"][0]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert user["spec"]["template"]["metadata"]["labels"].items() <= labels.items()
    _, container = _exporter_pod(documents)
    assert container["image"] == "rocketchat-livechat-exporter:0.1.0"
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "PodMonitor", "PrometheusRule"]


def test_sidecar_component_targets_a_deployment_by_name(tmp_path: Path) -> None:
    """Another Deployment of the user's (here: renamed) is left alone."""
    other = load_yaml(USER_DEPLOYMENT)
    other["metadata"]["name"] = "mongodb-backup"
    user = _user_kustomization(tmp_path / "user")
    (user / "other.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    kustomization = load_yaml(user / "kustomization.yaml")
    kustomization["resources"].append("other.yaml")
    (user / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    deployments = {d["metadata"]["name"]: d for d in _by_kind(_kustomize(user), "Deployment")}
    assert deployments["mongodb-backup"] == other
    containers = deployments["rocketchat"]["spec"]["template"]["spec"]["containers"]
    assert EXPORTER_CONTAINER in {c["name"] for c in containers}


@pytest.mark.parametrize("form", FORMS)
def test_exporter_container_is_hardened_and_probed(
    built: dict[str, list[dict[str, Any]]], form: str
) -> None:
    template, container = _exporter_pod(built[form])
    pod_security = template["spec"].get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    assert security.get("runAsUser", 1) != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys(), kind
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    if form == "sidecar":
        # A sidecar's readiness would take the whole Rocket.Chat pod out of its Service.
        assert "readinessProbe" not in container
        assert "startupProbe" not in container
    else:
        assert template["spec"]["automountServiceAccountToken"] is False
        assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    port_names = {port["name"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["port"] in port_names
    assert {port["containerPort"] for port in container["ports"]} == {9776}


@pytest.mark.parametrize("form", FORMS)
def test_token_comes_from_the_secret_and_config_from_the_configmap(
    built: dict[str, list[dict[str, Any]]], form: str
) -> None:
    documents = built[form]
    template, container = _exporter_pod(documents)
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    config_map = _config_map(documents)
    config = yaml.safe_load(config_map["data"]["config.yaml"])

    token_file = Path(config["rocketchat"]["auth_token_file"])
    secret_volume = volumes[mounts[str(token_file.parent)]]
    assert secret_volume["secret"]["secretName"] == "rocketchat-livechat-exporter"
    assert token_file.name in {item["path"] for item in secret_volume["secret"]["items"]}

    (config_flag,) = [a for a in container["args"] if a.startswith("--config.file=")]
    config_path = Path(config_flag.partition("=")[2])
    config_volume = volumes[mounts[str(config_path.parent)]]
    assert config_volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert config_path.name in config_map["data"]

    env = {item["name"]: item for item in container["env"]}
    assert env["ROCKETCHAT_USER_ID"]["valueFrom"]["secretKeyRef"]["name"] == (
        "rocketchat-livechat-exporter"
    )
    assert "ROCKETCHAT_AUTH_TOKEN" not in env, "the token belongs in a file, not in the env"
    assert env["ROCKETCHAT_URL"]["value"].startswith("http")
    assert set(config) <= {"rocketchat", "poll", "collectors"}
    assert all(config["collectors"].values()), "the dashboard needs every collector"


@pytest.mark.parametrize("form", FORMS)
def test_a_config_change_renames_the_configmap_so_the_pods_roll(form: str, tmp_path: Path) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    target = _user_kustomization(tmp_path / "user", copy) if form == "sidecar" else copy
    before = _kustomize(target)
    config = copy / "base" / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("interval: 30s", "interval: 45s"),
        encoding="utf-8",
    )
    after = _kustomize(target)
    old, new = (_config_map(docs)["metadata"]["name"] for docs in (before, after))
    assert old != new, "the ConfigMap name must change with its content"
    assert old.startswith("rocketchat-livechat-exporter-config-")
    template, _ = _exporter_pod(after)
    referenced = {v["configMap"]["name"] for v in template["spec"]["volumes"] if "configMap" in v}
    assert referenced == {new}


@pytest.mark.parametrize("form", FORMS)
def test_every_exporter_object_has_the_recommended_labels(
    built: dict[str, list[dict[str, Any]]], form: str
) -> None:
    user_name = load_yaml(USER_DEPLOYMENT)["metadata"]["name"]
    for document in built[form]:
        if document["kind"] == "Deployment" and document["metadata"]["name"] == user_name:
            continue  # the user's own Deployment keeps its own labels
        labels = document["metadata"].get("labels", {})
        assert RECOMMENDED.items() <= labels.items(), (document["kind"], labels)
        assert labels.get("app.kubernetes.io/component"), document["kind"]


def test_example_secret_has_the_keys_the_pods_read() -> None:
    secret = load_yaml(KUBERNETES / "secret.example.yaml")
    assert secret["metadata"]["name"] == "rocketchat-livechat-exporter"
    assert set(secret["stringData"]) == {"user-id", "auth-token"}


# ---------------------------------------------------------------------------- scraping


def test_service_monitor_reaches_the_exporter_port(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    documents = built["standalone"]
    template, container = _exporter_pod(documents)
    (service,) = _by_kind(documents, "Service")
    (monitor,) = _by_kind(documents, "ServiceMonitor")
    pod_labels = template["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    service_labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    target_port = service_ports[endpoint["port"]]["targetPort"]
    assert target_port in {port["name"] for port in container["ports"]}
    # The ExporterDown and TargetAbsent alerts find the job (the Service name) by this pattern.
    assert "rocketchat-livechat" in service["metadata"]["name"]
    _assert_keeps_namespace(monitor)


def test_pod_monitor_reaches_every_sidecar(built: dict[str, list[dict[str, Any]]]) -> None:
    documents = built["sidecar"]
    template, container = _exporter_pod(documents)
    (monitor,) = _by_kind(documents, "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {port["name"] for port in container["ports"]}
    # The job of a PodMonitor is <namespace>/<name>: the alerts' job pattern must match it.
    assert "rocketchat-livechat" in monitor["metadata"]["name"]
    _assert_keeps_namespace(monitor)


def _assert_keeps_namespace(monitor: dict[str, Any]) -> None:
    """The rules tell servers apart by namespace: no relabelling may drop or overwrite it."""
    endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
    for endpoint in endpoints:
        for relabel in endpoint.get("relabelings", []) + endpoint.get("metricRelabelings", []):
            assert "namespace" not in relabel.get("targetLabel", ""), relabel
            assert relabel.get("action") not in {"labeldrop", "labelkeep"}, relabel
        assert endpoint.get("honorLabels") is not True, "honorLabels lets a target set namespace"


# ---------------------------------------------------------------------------- generated copies


def test_prometheus_rule_carries_exactly_the_rules_file() -> None:
    expected = render(RULES.read_text(encoding="utf-8"))
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == expected, (
        "deploy/kubernetes/base/prometheusrule.yaml is out of date: "
        "run `python -m tests.deploy.generated`"
    )
    assert load_yaml(PROMETHEUS_RULE)["spec"] == load_yaml(RULES)


def test_dashboard_configmap_carries_exactly_the_dashboard() -> None:
    source = DASHBOARD.read_text(encoding="utf-8")
    assert DASHBOARD_CONFIGMAP.read_text(encoding="utf-8") == render_dashboard(source), (
        "deploy/kubernetes/base/grafana-dashboard.yaml is out of date: "
        "run `python -m tests.deploy.generated`"
    )
    config_map = load_yaml(DASHBOARD_CONFIGMAP)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = config_map["data"].values()
    assert json.loads(text) == json.loads(source)


def test_prometheus_rule_passes_promtool(
    built: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    promtool = find_tool(*PROMTOOL)
    (rule,) = _by_kind(built["standalone"], "PrometheusRule")
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    run_tool([promtool, "check", "rules", str(extracted)])


def test_repository_root_is_where_the_generator_writes() -> None:
    assert PROMETHEUS_RULE.is_relative_to(REPO)
    assert DASHBOARD_CONFIGMAP.is_relative_to(REPO)
