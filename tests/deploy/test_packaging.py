"""Package metadata a packager would accept (.ci/package builds and installs it for real)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from .support import REPO


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_an_spdx_expression_with_the_file(project: dict[str, Any]) -> None:
    metadata = project["project"]
    assert metadata["license"] == "MIT", "SPDX string, not the deprecated table"
    assert metadata["license-files"] == ["LICENSE"]
    license_text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License")
    assert not [c for c in metadata["classifiers"] if c.startswith("License ::")], (
        "license classifiers are deprecated beside an SPDX license"
    )
    requires = project["build-system"]["requires"]
    assert any(r.startswith("setuptools>=77") for r in requires), "license-files needs 77"


def test_metadata_for_an_index(project: dict[str, Any]) -> None:
    metadata = project["project"]
    assert len(metadata["keywords"]) >= 3
    assert "Programming Language :: Python :: 3.11" in metadata["classifiers"]
    assert "Topic :: System :: Monitoring" in metadata["classifiers"]
    for key in ("Homepage", "Source", "Issues", "Documentation"):
        assert metadata["urls"][key].startswith("https://"), key


def test_development_tools_are_groups_not_a_published_extra(project: dict[str, Any]) -> None:
    assert "optional-dependencies" not in project["project"]
    groups = project["dependency-groups"]
    included = {item["include-group"] for item in groups["dev"] if isinstance(item, dict)}
    assert included == set(groups) - {"dev"}
    tools = {req.split(">")[0].split("=")[0] for name in included for req in groups[name]}
    assert {"pytest", "mypy", "ruff", "build", "twine"} <= tools
    env = (REPO / "scripts" / "_env.sh").read_text(encoding="utf-8")
    assert "--group dev" in env
    assert env.index("--upgrade pip") < env.index("--group dev"), "pip 25.1+ first"


def test_the_sdist_carries_the_tests() -> None:
    manifest = (REPO / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    for needed in ("graft tests", "graft deploy", "graft grafana", "graft docs"):
        assert needed in manifest, needed
