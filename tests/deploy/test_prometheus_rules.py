"""Prometheus rules and configs: promtool-clean, unit-tested, and every alert documented."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

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
        "view-livechat-rooms",
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


# ---------------------------------------------------------------- two servers, two namespaces

SERVERS = ("ns-a", "ns-b")


def _with_namespace(series: str, namespace: str) -> str:
    """'name{a="b"}' -> 'name{namespace="ns",a="b"}' (a promtool series or label string)."""
    name, brace, rest = series.partition("{")
    labels = f'namespace="{namespace}"'
    return f"{name}{{{labels},{rest}" if brace and rest != "}" else f"{name}{{{labels}}}"


def _is_per_server(test: dict[str, Any]) -> bool:
    """Cases already about several servers, or about none (absent()), are left as written."""
    if any("namespace=" in s["series"] for s in test.get("input_series", [])):
        return False
    return all(
        "job" in alert["exp_labels"]
        for case in test.get("alert_rule_test", [])
        for alert in case.get("exp_alerts", [])
    )


def _twice(test: dict[str, Any]) -> dict[str, Any]:
    """The same case run by two servers in two namespaces: every result once per namespace."""
    doubled = dict(test, name=f"{test['name']} (two namespaces)")
    doubled["input_series"] = [
        dict(series, series=_with_namespace(series["series"], ns))
        for series in test.get("input_series", [])
        for ns in SERVERS
    ]
    doubled["promql_expr_test"] = [
        dict(
            case,
            exp_samples=[
                dict(sample, labels=_with_namespace(sample["labels"], ns))
                if "job=" in sample["labels"]
                else sample
                for sample in case.get("exp_samples", [])
                for ns in (SERVERS if "job=" in sample["labels"] else SERVERS[:1])
            ],
        )
        for case in test.get("promql_expr_test", [])
    ]
    doubled["alert_rule_test"] = [
        dict(
            case,
            exp_alerts=[
                dict(alert, exp_labels={**alert["exp_labels"], "namespace": ns})
                for alert in case.get("exp_alerts", [])
                for ns in SERVERS
            ],
        )
        for case in test.get("alert_rule_test", [])
    ]
    return doubled


def test_every_rule_keeps_two_servers_in_two_namespaces_apart(tmp_path: Path) -> None:
    """Every promtool case again, with each series once in ns-a and once in ns-b.

    A rule that folded `namespace` would lose the label or add the two servers up, and the
    doubled expectations (each result once per namespace, with the original value) would fail.
    """
    promtool = find_tool(*PROMTOOL)
    document = load_yaml(RULES_TEST)
    doubled = [_twice(test) for test in document["tests"] if _is_per_server(test)]
    assert len(doubled) >= 15, "most cases should be doubled"
    shutil.copy(RULES, tmp_path / "rules.yml")
    test_file = tmp_path / "two-namespaces.test.yml"
    test_file.write_text(
        yaml.safe_dump({**document, "tests": doubled}, sort_keys=False), encoding="utf-8"
    )
    run_tool([promtool, "test", "rules", str(test_file)], cwd=tmp_path, timeout=120)


def test_the_two_namespace_check_catches_a_rule_that_folds_namespace(tmp_path: Path) -> None:
    """The doubling above really fails for `by (job, ...)` aggregation."""
    promtool = find_tool(*PROMTOOL)
    document = load_yaml(RULES_TEST)
    folding = RULES.read_text(encoding="utf-8").replace(
        "sum without (department_id, department) (", "sum by (job, agent_id, agent) (", 1
    )
    assert folding != RULES.read_text(encoding="utf-8")
    (tmp_path / "rules.yml").write_text(folding, encoding="utf-8")
    (first,) = [t for t in document["tests"] if t["name"].startswith("recording rules dedup")]
    test_file = tmp_path / "two-namespaces.test.yml"
    test_file.write_text(
        yaml.safe_dump({**document, "tests": [_twice(first)]}, sort_keys=False), encoding="utf-8"
    )
    with pytest.raises(AssertionError, match="FAILED"):
        run_tool([promtool, "test", "rules", str(test_file)], cwd=tmp_path, timeout=120)


# ---------------------------------------------------------------- annotations and the runbook

RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_BASE = (
    "https://github.com/rocketchat-livechat-exporter/rocketchat-livechat-exporter"
    "/blob/main/docs/runbook.md#"
)


def _runbook_sections() -> dict[str, str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    parts = re.split(r"^## (\S+)\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_summaries_are_static_sentences_and_descriptions_carry_the_specifics() -> None:
    for alert in (rule for rule in rules() if rule.is_alert):
        annotations = alert.raw["annotations"]
        summary = annotations["summary"]
        assert "{{" not in summary, f"{alert.name}: the summary must not vary per alert"
        assert summary.endswith("."), f"{alert.name}: {summary!r}"
        assert summary[0].isupper(), alert.name
        assert "{{" in annotations["description"], f"{alert.name}: no specifics in description"


def test_every_alert_links_its_runbook_section() -> None:
    sections = _runbook_sections()
    project_urls = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    source = project_urls["project"]["urls"]["Source"]
    assert RUNBOOK_BASE.startswith(source + "/"), "runbook links and [project.urls] disagree"
    for alert in (rule for rule in rules() if rule.is_alert):
        url = alert.raw["annotations"]["runbook_url"]
        assert url == RUNBOOK_BASE + alert.name.lower(), f"{alert.name}: {url}"
        assert alert.name in sections, f"docs/runbook.md has no section ## {alert.name}"
        for part in ("**Meaning.**", "**Check.**", "**Fix.**"):
            assert part in sections[alert.name], f"{alert.name}: no {part}"
    assert set(sections) == {rule.name for rule in rules() if rule.is_alert}


def test_every_alert_routes_by_category() -> None:
    for alert in (rule for rule in rules() if rule.is_alert):
        assert alert.raw["labels"]["category"] in {"exporter", "contact-centre"}, alert.name
