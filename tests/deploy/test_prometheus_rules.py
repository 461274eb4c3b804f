"""Prometheus rules and configs: promtool-clean, unit-tested, and every alert documented."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from .support import (
    COMPOSE,
    PROMTOOL,
    REPO,
    RULES,
    RULES_TEST,
    find_tool,
    load_yaml,
    rules,
    run_tool,
)

SEVERITIES = {"warning", "critical"}


def test_promtool_check_rules() -> None:
    promtool = find_tool(*PROMTOOL)
    run_tool([promtool, "check", "rules", str(RULES)])


def test_promtool_test_rules() -> None:
    promtool = find_tool(*PROMTOOL)
    run_tool([promtool, "test", "rules", str(RULES_TEST)], timeout=120)


@pytest.mark.parametrize(
    "config", [REPO / "deploy" / "prometheus" / "prometheus.yml", COMPOSE / "prometheus.yml"]
)
def test_promtool_check_config(config: Path, tmp_path: Path) -> None:
    """Checked beside a copy of rules.yml, where both configs expect it."""
    promtool = find_tool(*PROMTOOL)
    shutil.copy(config, tmp_path / "prometheus.yml")
    shutil.copy(RULES, tmp_path / "rules.yml")
    run_tool([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path)


def test_every_alert_has_a_severity_summary_and_description() -> None:
    alerts = [rule for rule in rules() if rule.is_alert]
    assert len(alerts) >= 8
    for alert in alerts:
        assert alert.name.startswith("RocketChatLivechat"), alert.name
        assert alert.raw["labels"]["severity"] in SEVERITIES, alert.name
        annotations = alert.raw["annotations"]
        assert annotations["summary"].strip(), alert.name
        assert len(annotations["description"]) > 60, alert.name
        assert "for" in alert.raw, f"{alert.name} fires on a single evaluation"


def test_required_alerts_exist() -> None:
    expressions = {rule.name: rule.expr for rule in rules() if rule.is_alert}
    assert "rocketchat_livechat_up == 0" in expressions["RocketChatLivechatCollectorFailing"]
    assert "last_success_timestamp_seconds" in expressions["RocketChatLivechatDataStale"]
    assert 'result="rate_limited"' in expressions["RocketChatLivechatRateLimited"]
    assert "unauthorized|forbidden" in expressions["RocketChatLivechatCredentialsRejected"]
    assert "threshold" in expressions["RocketChatLivechatAgentOverloaded"]
    assert "online" in expressions["RocketChatLivechatDepartmentUnattended"]
    assert "oldest_queued" in expressions["RocketChatLivechatVisitorsWaitingTooLong"]
    assert "up{" in expressions["RocketChatLivechatExporterDown"]


def test_forbidden_alert_names_each_collectors_permission() -> None:
    (alert,) = [r for r in rules() if r.name == "RocketChatLivechatCredentialsRejected"]
    description = alert.raw["annotations"]["description"]
    for permission in (
        "view-l-room",
        "view-livechat-manager",
        "transfer-livechat-guest",
        "edit-omnichannel-contact",
        "manage-livechat-agents",
    ):
        assert permission in description


def _alert_cases(test_document: Any) -> dict[str, tuple[int, int]]:
    """alertname -> (evaluations expecting it to fire, evaluations expecting silence)."""
    cases: dict[str, tuple[int, int]] = {}
    for test in test_document["tests"]:
        for case in test.get("alert_rule_test", []):
            firing, silent = cases.get(case["alertname"], (0, 0))
            if case.get("exp_alerts"):
                firing += 1
            else:
                silent += 1
            cases[case["alertname"]] = (firing, silent)
    return cases


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    cases = _alert_cases(load_yaml(RULES_TEST))
    for alert in (rule.name for rule in rules() if rule.is_alert):
        firing, silent = cases.get(alert, (0, 0))
        assert firing >= 1, f"no promtool case in which {alert} fires"
        assert silent >= 1, f"no promtool case in which {alert} stays silent"


def test_every_recording_rule_has_a_unit_test() -> None:
    tested = {
        case["expr"].strip()
        for test in load_yaml(RULES_TEST)["tests"]
        for case in test.get("promql_expr_test", [])
    }
    for record in (rule.name for rule in rules() if not rule.is_alert):
        assert record in tested, f"no promql_expr_test for {record}"
