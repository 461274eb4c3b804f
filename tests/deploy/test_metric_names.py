"""Every metric the dashboard and the rules read is one the exporter really exports."""

from __future__ import annotations

import pytest

from .support import (
    CONTRACT_METRICS,
    PROMETHEUS_SERIES,
    exported_names,
    http_get,
    label_values_query,
    load_dashboard,
    metric_names,
    panel_queries,
    query_variables,
    recorded_names,
    rules,
    variable_query,
)


def _expressions() -> dict[str, str]:
    """Where each expression comes from -> the PromQL."""
    dashboard = load_dashboard()
    found = {f"panel {q.panel}/{q.ref_id}": q.expr for q in panel_queries(dashboard)}
    for variable in query_variables(dashboard):
        selector, _ = label_values_query(variable_query(variable))
        if selector:
            found[f"variable {variable['name']}"] = selector
    for rule in rules():
        found[f"rule {rule.name}"] = rule.expr
    return found


def _used_names() -> dict[str, set[str]]:
    """Metric name -> where it is read, without the names the rules record themselves."""
    used: dict[str, set[str]] = {}
    for where, expr in _expressions().items():
        for name in metric_names(expr) - recorded_names():
            used.setdefault(name, set()).add(where)
    return used


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (job) (max by (job, agent_id) (rocketchat_livechat_queue_chats{job=~"$job"}))',
            {"rocketchat_livechat_queue_chats"},
        ),
        (
            'histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b(c)"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        ("time() - a:b:c > on () group_left () d:e:f offset 5m", {"a:b:c", "d:e:f"}),
        ('{__name__=~"m1|m2", job="x"}', {"m1", "m2"}),
        ('label_replace(m, "department", "(none)", "department", "") or vector(0)', {"m"}),
        ("up == 0 and ignoring (result) z unless bool 1e3", {"up", "z"}),
    ],
)
def test_metric_name_extraction_reads_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_dashboard_and_rules_use_only_contract_metrics() -> None:
    """The names fixed by the contract (README, "Metrics"); checkable before the exporter runs."""
    used = _used_names()
    assert used, "found no metric names at all"
    unknown = {
        name: sorted(where)
        for name, where in used.items()
        if name not in CONTRACT_METRICS | PROMETHEUS_SERIES
    }
    assert not unknown, f"metrics outside the contract: {unknown}"


def test_dashboard_and_rules_use_only_metrics_the_exporter_exports(exporter_url: str) -> None:
    status, exposition = http_get(f"{exporter_url}/metrics")
    assert status == 200
    exported = exported_names(exposition)
    allowed = exported | PROMETHEUS_SERIES
    missing = {name: sorted(where) for name, where in _used_names().items() if name not in allowed}
    assert not missing, (
        f"read by the dashboard or the rules but not exported by `python -m exporter --demo`: "
        f"{missing}"
    )


def test_the_contract_metrics_are_all_exported(exporter_url: str) -> None:
    """CONTRACT_METRICS, which the static check above relies on, matches the real exporter."""
    status, exposition = http_get(f"{exporter_url}/metrics")
    assert status == 200
    exported = exported_names(exposition)
    assert exported >= CONTRACT_METRICS
