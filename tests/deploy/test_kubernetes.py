"""Kubernetes manifests: schema-valid, kustomize-buildable, hardened, and wired together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .prometheusrule import PROMETHEUS_RULE, render
from .support import (
    KUBECTL,
    KUBERNETES,
    KUBERNETES_VALIDATE,
    PROMTOOL,
    RULES,
    find_tool,
    load_yaml,
    load_yaml_documents,
    run_tool,
)

FORMS = {"sidecar": KUBERNETES, "standalone": KUBERNETES / "standalone"}
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
EXPORTER_CONTAINER = "livechat-exporter"
# Oldest Kubernetes minor still in common use, and the validator's newest.
KUBERNETES_VERSIONS = ("1.29.0", None)


def _manifest_files() -> list[Path]:
    return sorted(path for path in KUBERNETES.rglob("*.yaml") if path.name != "kustomization.yaml")


def _built_in_manifests() -> list[Path]:
    return [
        path
        for path in _manifest_files()
        if not any(doc.get("kind") in CUSTOM_KINDS for doc in load_yaml_documents(path))
    ]


def _build(form: str) -> list[dict[str, Any]]:
    kubectl = find_tool(*KUBECTL)
    output = run_tool([kubectl, "kustomize", str(FORMS[form])])
    return [doc for doc in yaml.safe_load_all(output) if doc]


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


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "newest")
def test_kubernetes_validate_strict_on_built_in_kinds(version: str | None) -> None:
    validator = find_tool(*KUBERNETES_VALIDATE)
    files = [str(path) for path in _built_in_manifests()]
    assert len(files) >= 6
    version_flag = ["--kubernetes-version", version] if version else []
    output = run_tool([validator, "--strict", "--no-warn", *version_flag, *files])
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


@pytest.mark.parametrize("form", FORMS)
def test_kustomization_builds_every_piece(form: str) -> None:
    documents = _build(form)
    kinds = sorted(doc["kind"] for doc in documents)
    assert kinds == ["ConfigMap", "Deployment", "PrometheusRule", "Service", "ServiceMonitor"]
    _, container = _exporter_pod(documents)
    assert container["image"] == "rocketchat-livechat-exporter:0.1.0"


@pytest.mark.parametrize("form", FORMS)
def test_exporter_container_is_hardened_and_probed(form: str) -> None:
    template, container = _exporter_pod(_build(form))
    pod_security = template["spec"].get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True
    assert security.get("runAsUser", 1) != 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert template["spec"]["automountServiceAccountToken"] is False
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys(), kind
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    port_names = {port["name"] for port in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["port"] in port_names
    assert {port["containerPort"] for port in container["ports"]} == {9776}


@pytest.mark.parametrize("form", FORMS)
def test_token_comes_from_the_secret_and_config_from_the_configmap(form: str) -> None:
    documents = _build(form)
    template, container = _exporter_pod(documents)
    volumes = {volume["name"]: volume for volume in template["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    config_map = _by_kind(documents, "ConfigMap")[0]
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


def test_example_secret_has_the_keys_the_pods_read() -> None:
    secret = load_yaml(KUBERNETES / "secret.example.yaml")
    assert secret["metadata"]["name"] == "rocketchat-livechat-exporter"
    assert set(secret["stringData"]) == {"user-id", "auth-token"}


@pytest.mark.parametrize("form", FORMS)
def test_service_monitor_reaches_the_exporter_port(form: str) -> None:
    documents = _build(form)
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
    # The ExporterDown alert finds the job (the Service name) by this pattern.
    assert "rocketchat-livechat" in service["metadata"]["name"]


def test_prometheus_rule_carries_exactly_the_rules_file() -> None:
    expected = render(RULES.read_text(encoding="utf-8"))
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == expected, (
        "deploy/kubernetes/base/prometheusrule.yaml is out of date: "
        "run `python -m tests.deploy.prometheusrule`"
    )
    assert load_yaml(PROMETHEUS_RULE)["spec"] == load_yaml(RULES)


def test_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    promtool = find_tool(*PROMTOOL)
    (rule,) = _by_kind(_build("sidecar"), "PrometheusRule")
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    run_tool([promtool, "check", "rules", str(extracted)])
