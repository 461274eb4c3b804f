"""Renders the Kubernetes copies of the rules and the dashboard from their sources.

deploy/kubernetes/base/prometheusrule.yaml carries exactly deploy/prometheus/rules.yml (what
promtool tests) and deploy/kubernetes/base/grafana-dashboard.yaml exactly
grafana/dashboards/rocketchat-livechat.json, so both are generated, not edited: after changing
either source run `python -m tests.deploy.generated` from the repository root (test_kubernetes
fails while a copy is out of date).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = REPO / "grafana" / "dashboards" / "rocketchat-livechat.json"
PROMETHEUS_RULE = REPO / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"
DASHBOARD_CONFIGMAP = REPO / "deploy" / "kubernetes" / "base" / "grafana-dashboard.yaml"

RULE_HEADER = """\
# GENERATED from deploy/prometheus/rules.yml by `python -m tests.deploy.generated`:
# edit rules.yml, not this file. If your Prometheus selects rules by label
# (kube-prometheus-stack: release=<name>), add that label below.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: rocketchat-livechat-exporter
  labels:
    app.kubernetes.io/name: rocketchat-livechat-exporter
    app.kubernetes.io/component: alerting
spec:
"""

DASHBOARD_HEADER = """\
# GENERATED from grafana/dashboards/rocketchat-livechat.json by
# `python -m tests.deploy.generated`: edit the JSON, not this file. The label is what the
# Grafana dashboard sidecar of kube-prometheus-stack looks for (sidecar.dashboards.label).
apiVersion: v1
kind: ConfigMap
metadata:
  name: rocketchat-livechat-exporter-dashboard
  labels:
    grafana_dashboard: "1"
    app.kubernetes.io/name: rocketchat-livechat-exporter
    app.kubernetes.io/component: dashboard
data:
  rocketchat-livechat.json: |
"""


def render(rules_text: str) -> str:
    """The PrometheusRule manifest whose spec is the `groups:` document of rules_text."""
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = [("  " + line) if line.strip() else "" for line in lines[start:]]
    return RULE_HEADER + "\n".join(body) + "\n"


def render_dashboard(dashboard_text: str) -> str:
    """The ConfigMap that carries dashboard_text, byte for byte, as a literal block."""
    body = [("    " + line) if line.strip() else "" for line in dashboard_text.splitlines()]
    return DASHBOARD_HEADER + "\n".join(body) + "\n"


def main() -> None:
    PROMETHEUS_RULE.write_text(render(RULES.read_text(encoding="utf-8")), encoding="utf-8")
    DASHBOARD_CONFIGMAP.write_text(
        render_dashboard(DASHBOARD.read_text(encoding="utf-8")), encoding="utf-8"
    )
    for path in (PROMETHEUS_RULE, DASHBOARD_CONFIGMAP):
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
