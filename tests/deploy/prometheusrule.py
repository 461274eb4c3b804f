"""Renders deploy/kubernetes/base/prometheusrule.yaml from deploy/prometheus/rules.yml.

The PrometheusRule must carry exactly the rules that promtool tests, so it is generated, not
edited: after changing rules.yml run `python -m tests.deploy.prometheusrule` from the repository
root (test_kubernetes checks that the two agree).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS_RULE = REPO / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/rules.yml by `python -m tests.deploy.prometheusrule`:
# edit rules.yml, not this file. If your Prometheus selects rules by label
# (kube-prometheus-stack: release=<name>), add that label below.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: rocketchat-livechat-exporter
  labels:
    app.kubernetes.io/name: rocketchat-livechat-exporter
spec:
"""


def render(rules_text: str) -> str:
    """The PrometheusRule manifest whose spec is the `groups:` document of rules_text."""
    lines = rules_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = [("  " + line) if line.strip() else "" for line in lines[start:]]
    return HEADER + "\n".join(body) + "\n"


def main() -> None:
    PROMETHEUS_RULE.write_text(render(RULES.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {PROMETHEUS_RULE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
