"""The Alertmanager example: valid for amtool, routed by category, inhibiting real alerts."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .support import REPO, find_tool, load_yaml, rules, run_tool

ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
AMTOOL = ("amtool", "Debian package prometheus-alertmanager")
SERVER_LABELS = {"cluster", "namespace", "job"}
CATEGORIES = {"exporter": "monitoring", "contact-centre": "contact-centre"}


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule.name: rule.raw for rule in rules() if rule.is_alert}


def _names(matchers: list[str]) -> set[str]:
    """The alert names an alertname matcher list selects, matched against the rules."""
    (matcher,) = [m for m in matchers if m.startswith("alertname")]
    match = re.fullmatch(r'alertname(=~|=)"(.*)"', matcher)
    assert match is not None, matcher
    operator, value = match.groups()
    if operator == "=":
        return {value} & _alerts().keys()
    return {name for name in _alerts() if re.fullmatch(value, name)}


def test_amtool_check_config() -> None:
    amtool = find_tool(*AMTOOL)
    output = run_tool([amtool, "check-config", str(ALERTMANAGER)])
    assert "SUCCESS" in output


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_routes_to_its_own_receiver(category: str) -> None:
    amtool = find_tool(*AMTOOL)
    routes_test = [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}"]
    output = run_tool([*routes_test, f"category={category}"])
    assert output.splitlines()[0].strip() == CATEGORIES[category], output


def test_every_alert_has_a_routed_category() -> None:
    for name, alert in _alerts().items():
        assert alert["labels"].get("category") in CATEGORIES, name


def test_grouping_never_mixes_two_servers() -> None:
    route = load_yaml(ALERTMANAGER)["route"]
    for node in [route, *route.get("routes", [])]:
        if "group_by" in node:
            assert set(node["group_by"]) >= SERVER_LABELS, node


def test_inhibit_rules_name_real_alerts_and_keep_servers_apart() -> None:
    inhibit_rules = load_yaml(ALERTMANAGER)["inhibit_rules"]
    assert len(inhibit_rules) >= 3
    for rule in inhibit_rules:
        sources, targets = _names(rule["source_matchers"]), _names(rule["target_matchers"])
        assert sources, rule["source_matchers"]
        assert targets, rule["target_matchers"]
        assert not sources & targets, "an alert inhibiting itself"
        assert set(rule["equal"]) >= SERVER_LABELS, "one server's cause silenced another's"
        categories = {_alerts()[name]["labels"]["category"] for name in sources | targets}
        assert len(categories) == 1, f"inhibits across categories: {rule}"
