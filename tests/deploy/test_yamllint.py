"""yamllint over every YAML file the deploy work ships."""

from __future__ import annotations

from .support import REPO, YAMLLINT, YAMLLINT_CONFIG, find_tool, run_tool

LINTED = ("deploy", "grafana/provisioning", "tests/deploy/yamllint.yml")
# Generated copies of sources that are checked themselves (the dashboard is JSON).
NOT_LINTED = ("deploy/kubernetes/base/grafana-dashboard.yaml",)


def test_yamllint_is_clean() -> None:
    yamllint = find_tool(*YAMLLINT)
    config = YAMLLINT_CONFIG.read_text(encoding="utf-8")
    config += "ignore: |\n" + "".join(f"  {path}\n" for path in NOT_LINTED)
    run_tool([yamllint, "--strict", "--config-data", config, *LINTED], cwd=REPO)
