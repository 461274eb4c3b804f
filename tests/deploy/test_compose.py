"""The docker compose try-out: valid for Compose, and wired to this repository's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .support import COMPOSE, DOCKER_COMPOSE, REPO, RULES, find_tool, load_yaml, run_tool

SERVICES = {"mongodb", "rocketchat", "exporter", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE / "compose.yaml")
    return document


def _bind_sources(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path (resolved) of the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (COMPOSE / source).resolve()
    return mounts


@pytest.mark.parametrize(
    "files", [["compose.yaml"], ["compose.yaml", "compose.demo.yaml"]], ids=["plain", "demo"]
)
def test_docker_compose_config_accepts_the_files(files: list[str]) -> None:
    """`docker-compose config` validates against the Compose schema without a Docker engine."""
    docker_compose = find_tool(*DOCKER_COMPOSE)
    arguments = [arg for name in files for arg in ("-f", name)]
    run_tool([docker_compose, *arguments, "config", "--quiet"], cwd=COMPOSE)


def test_all_services_are_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_exporter_is_built_from_this_repository(compose: dict[str, Any]) -> None:
    exporter = compose["services"]["exporter"]
    assert (COMPOSE / exporter["build"]["context"]).resolve() == REPO
    assert exporter["read_only"] is True
    assert exporter["cap_drop"] == ["ALL"]
    assert "9776:9776" in exporter["ports"]
    environment = exporter["environment"]
    assert environment["ROCKETCHAT_URL"] == "http://rocketchat:3000"
    assert {"ROCKETCHAT_USER_ID", "ROCKETCHAT_AUTH_TOKEN"} <= environment.keys()
    config_path = exporter["command"][0].partition("=")[2]
    config = load_yaml(_bind_sources(exporter)[config_path])
    assert all(config["collectors"].values()), "the dashboard needs every collector"


def test_demo_override_runs_the_simulated_server() -> None:
    override = load_yaml(COMPOSE / "compose.demo.yaml")
    assert override["services"]["exporter"]["command"] == ["--demo"]


def test_prometheus_loads_the_repository_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = _bind_sources(prometheus)
    assert mounts["/etc/prometheus/rules.yml"] == RULES
    config = load_yaml(mounts["/etc/prometheus/prometheus.yml"])
    assert config["rule_files"] == ["rules.yml"]
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["exporter:9776"]


def test_grafana_is_provisioned_with_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = _bind_sources(grafana)
    assert mounts["/etc/grafana/provisioning"] == REPO / "grafana" / "provisioning"
    provisioning = REPO / "grafana" / "provisioning"
    provider = load_yaml(provisioning / "dashboards" / "rocketchat-livechat.yml")
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert mounts[dashboards_path] == REPO / "grafana" / "dashboards"
    datasource = load_yaml(provisioning / "datasources" / "prometheus.yml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
