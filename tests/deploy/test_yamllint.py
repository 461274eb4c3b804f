"""yamllint over every YAML file the deploy work ships."""

from __future__ import annotations

from .support import REPO, YAMLLINT, YAMLLINT_CONFIG, find_tool, run_tool

LINTED = ("deploy", "grafana/provisioning", "tests/deploy/yamllint.yml")


def test_yamllint_is_clean() -> None:
    yamllint = find_tool(*YAMLLINT)
    run_tool([yamllint, "--strict", "--config-file", str(YAMLLINT_CONFIG), *LINTED], cwd=REPO)
