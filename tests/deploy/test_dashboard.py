"""The Grafana dashboard: importable, provisionable, filterable, and safe with several exporters."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .support import (
    DASHBOARD,
    REPO,
    label_values_query,
    load_dashboard,
    load_yaml,
    metric_names,
    panel_queries,
    panels,
    query_variables,
    recorded_names,
    variable_query,
)

DATASOURCE_REF = "${datasource}"
FILTER_VARIABLES = ("cluster", "namespace", "job", "instance", "department", "agent", "status")
# Each variable's values follow the selection of the one before it.
FOLLOWS = {"namespace": "$cluster", "job": "$namespace"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def _datasource_references(node: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            found.extend(_datasource_references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_datasource_references(item))
    return found


def test_dashboard_is_valid_json_with_a_stable_uid() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "rocketchat-livechat"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["id"] is None, "an exported id clashes on import"


def test_import_inputs_and_requirements_are_declared(dashboard: dict[str, Any]) -> None:
    inputs = dashboard["__inputs"]
    assert any(i["type"] == "datasource" and i["pluginId"] == "prometheus" for i in inputs)
    required = {(r["type"], r["id"]) for r in dashboard["__requires"]}
    assert ("grafana", "grafana") in required
    assert ("datasource", "prometheus") in required
    for panel_type in {p["type"] for p in panels(dashboard)}:
        assert ("panel", panel_type) in required, f"__requires lacks the {panel_type} panel"


def test_datasource_is_a_prometheus_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    # Provisioning does not resolve __inputs: the current value must not name one.
    assert datasource["current"] == {}


def test_no_datasource_uid_is_hard_coded(dashboard: dict[str, Any]) -> None:
    references = _datasource_references(dashboard)
    assert references, "no datasource references at all"
    for reference in references:
        assert isinstance(reference, dict), f"legacy datasource reference {reference!r}"
        assert reference == {"type": "prometheus", "uid": DATASOURCE_REF}, reference


@pytest.mark.parametrize("name", FILTER_VARIABLES)
def test_filter_variable_is_multi_value_label_values_with_all(
    dashboard: dict[str, Any], name: str
) -> None:
    variables = {v["name"]: v for v in query_variables(dashboard)}
    variable = variables[name]
    selector, label = label_values_query(variable_query(variable))
    assert label == name
    assert selector, "label_values without a metric lists every series' labels"
    assert variable["multi"] is True
    assert variable["includeAll"] is True
    # `.*` also matches series without the label, e.g. rows without a department.
    assert variable["allValue"] == ".*"
    assert variable["datasource"] == {"type": "prometheus", "uid": DATASOURCE_REF}
    if name != "cluster":
        follows = FOLLOWS.get(name, "$job")
        assert follows in selector, f"{name} values should follow {follows}"


def test_service_level_target_is_a_bucket_bound(dashboard: dict[str, Any]) -> None:
    (target,) = [v for v in query_variables(dashboard) if v["name"] == "sl_target"]
    selector, label = label_values_query(variable_query(target))
    assert label == "le"
    assert selector
    assert "first_response_seconds_bucket" in selector
    assert target["multi"] is False
    assert target["includeAll"] is False
    assert "+Inf" in target["regex"], "+Inf is no target"
    (panel,) = [p for p in panels(dashboard) if p["title"].startswith("Answered within target")]
    assert 'le="$sl_target"' in panel["targets"][0]["expr"]


def test_every_panel_has_a_query(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        targets = [t for t in panel.get("targets", []) if t.get("expr", "").strip()]
        assert targets, f"panel {panel['title']!r} has no query"
        assert panel.get("description"), f"panel {panel['title']!r} has no description"


SERVER_SELECTION = 'cluster=~"$cluster", namespace=~"$namespace", job=~"$job"'
# The labels that tell the exporters of one server apart (deploy/prometheus/rules.yml).
EXPORTER_LABELS = "instance, pod, container, endpoint, service"


def _reads_only_thresholds(expr: str) -> bool:
    return all(name.endswith(":threshold") for name in metric_names(expr))


def test_every_query_follows_the_server_selection(dashboard: dict[str, Any]) -> None:
    for query in panel_queries(dashboard):
        if _reads_only_thresholds(query.expr):
            continue  # one value for every server
        assert SERVER_SELECTION in query.expr, f"{query.panel}/{query.ref_id} ignores a server"


def test_no_query_folds_two_servers(dashboard: dict[str, Any]) -> None:
    """Aggregations drop only exporter labels and data labels, never what names a server.

    Only single-number panels (stat, bar gauge) may total the servers the user selected.
    """
    totals = {"stat", "bargauge"}
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            for labels in re.findall(r"\bwithout \(([^()]*)\)", expr):
                assert not {"cluster", "namespace", "job"} & set(labels.replace(" ", "").split(","))
            if panel["type"] in totals:
                continue
            for labels in re.findall(r"\bby \(([^()]*)\)", expr):
                kept = set(labels.replace(" ", "").split(","))
                assert {"cluster", "namespace", "job"} <= kept, f"{panel['title']}: by ({labels})"


def test_thresholds_come_from_the_threshold_recording_rules(dashboard: dict[str, Any]) -> None:
    """No number is copied from the rules: a panel's threshold is a query of the rule."""
    with_thresholds = 0
    for panel in panels(dashboard):
        steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {})
        numbers = [s["value"] for s in steps.get("steps", []) if s["value"] is not None]
        if panel["type"] != "state-timeline":  # up: 0 red, 1 green, a value mapping
            assert not numbers, f"{panel['title']}: fixed thresholds {numbers}"
        for transformation in panel.get("transformations", []):
            if transformation["id"] != "configFromData":
                continue
            ref = transformation["options"]["configRefId"]
            (config,) = [t for t in panel["targets"] if t["refId"] == ref]
            names = metric_names(config["expr"])
            assert names, panel["title"]
            assert names <= recorded_names(), f"{panel['title']}: {names}"
            assert all(name.endswith(":threshold") for name in names), panel["title"]
            with_thresholds += 1
    assert with_thresholds >= 4


def test_queue_series_are_deduplicated_across_exporters_before_summing(
    dashboard: dict[str, Any],
) -> None:
    """Sidecars on each replica export the same data: take max across them, then sum."""
    raw_data = ("rocketchat_livechat_queue_chats{", "rocketchat_livechat_agent_status{")
    for query in panel_queries(dashboard):
        if any(name in query.expr for name in raw_data):
            assert f"max without ({EXPORTER_LABELS}" in query.expr, (
                f"{query.panel}/{query.ref_id} aggregates without max across exporters"
            )
        for name in (
            "rocketchat_livechat_inquiries_queued{",
            "rocketchat_livechat_inquiries_oldest_queued_timestamp_seconds{",
        ):
            assert name not in query.expr, (
                f"{query.panel}/{query.ref_id}: use the deduplicating recording rule"
            )


def test_rows_without_a_department_are_labelled(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            shows_department = "{{department}}" in target.get("legendFormat", "") or (
                target.get("format") == "table" and "department" in target["expr"]
            )
            if shows_department:
                assert '"(no department)"' in target["expr"], (
                    f'{panel["title"]}/{target["refId"]} shows department="" as a blank'
                )


def test_waiting_queue_panels_say_the_inquiries_collector_must_be_on(
    dashboard: dict[str, Any],
) -> None:
    waiting = [p for p in panels(dashboard) if "inquiries" in json.dumps(p["targets"])]
    assert len(waiting) >= 2
    for panel in waiting:
        assert "inquiries collector" in panel["description"], panel["title"]


def test_recording_rules_the_dashboard_reads_exist() -> None:
    used = set(re.findall(r"[a-z_]+:[a-z_]+:[a-z_0-9]+", DASHBOARD.read_text(encoding="utf-8")))
    assert used, "the dashboard uses no recording rule"
    assert used <= recorded_names(), f"not recorded in rules.yml: {used - recorded_names()}"


def test_required_rows_are_present(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[0] == "Overview"
    assert "Load over time" in rows
    assert any(r.startswith("Waiting queue") for r in rows)
    assert "Exporter health" in rows
    assert any(r.startswith("Service level") for r in rows)
    titles = {p["title"] for p in panels(dashboard)}
    for expected in (
        "Open conversations",
        "Agents serving",
        "Agents by status",
        "Busiest department",
        "Open conversations by department",
        "Open conversations by agent",
        "Visitors waiting",
        "Longest wait",
        "Collector up",
        "Time since last successful poll",
        "Poll duration",
        "Poll outcomes per minute",
        "Rate-limit calls remaining",
        "Answered within target by department",
        "First response time p50 / p90",
        "Conversations closed per hour by outcome",
        "Unserved share by department",
        "Conversation duration p50",
    ):
        assert expected in titles


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_provisioning_points_at_the_dashboard_and_a_prometheus() -> None:
    providers = load_yaml(
        REPO / "grafana" / "provisioning" / "dashboards" / "rocketchat-livechat.yml"
    )
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    datasources = load_yaml(REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert datasources["apiVersion"] == 1
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
