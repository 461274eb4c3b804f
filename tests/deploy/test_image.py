"""The built image, read from a docker-archive file: what it runs, as whom, and what it carries.

.ci/image builds the Dockerfile with buildah, saves the image with `podman save --format
docker-archive` and runs this module with DEPLOY_TEST_IMAGE_ARCHIVE set. Without it the tests
skip (or fail when REQUIRE_IMAGE=1).
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .support import REPO

ARCHIVE_ENV = "DEPLOY_TEST_IMAGE_ARCHIVE"
# Python minor versions the test suite runs on in CI (Debian bookworm's python3).
TESTED_PYTHONS = {"3.11"}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
FORBIDDEN = re.compile(r"(^|/)(pip|setuptools|_distutils_hack)(-[^/]*\.dist-info)?(/|$)")


def _archive() -> Path:
    given = os.environ.get(ARCHIVE_ENV)
    if not given:
        reason = f"{ARCHIVE_ENV} is not set (.ci/image builds the image and sets it)"
        if os.environ.get("REQUIRE_IMAGE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(given)


@pytest.fixture(scope="module")
def image() -> tuple[dict[str, Any], list[str]]:
    """(the image config, every path in its layers)."""
    with tarfile.open(_archive()) as archive:
        manifest = json.load(_member(archive, "manifest.json"))[0]
        config = json.load(_member(archive, manifest["Config"]))
        paths: list[str] = []
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=_member(archive, layer)) as layer_tar:
                paths.extend(name.removeprefix("./") for name in layer_tar.getnames())
    return config, paths


def _member(archive: tarfile.TarFile, name: str) -> Any:
    stream = archive.extractfile(name)
    assert stream is not None, f"{name} is not a file in the archive"
    return stream


def test_runs_the_exporter_as_a_numeric_non_root_user(
    image: tuple[dict[str, Any], list[str]],
) -> None:
    config = image[0]["config"]
    user, _, group = config["User"].partition(":")
    assert user.isdigit(), config["User"]
    assert int(user) != 0, config["User"]
    assert not group or (group.isdigit() and int(group) != 0), config["User"]
    assert config["Entrypoint"] == ["rocketchat-livechat-exporter"]
    assert "9776/tcp" in config.get("ExposedPorts", {})


def test_carries_the_oci_labels_with_source_and_an_rfc3339_created(
    image: tuple[dict[str, Any], list[str]],
) -> None:
    labels = image[0]["config"]["Labels"]
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "version", "revision", "licenses", "source", "created"):
        assert labels.get(prefix + key, "").strip(), f"no {prefix}{key} label"
    assert labels[prefix + "source"].startswith("https://"), labels[prefix + "source"]
    created = labels[prefix + "created"]
    assert RFC3339.fullmatch(created), f"created={created!r} is not RFC 3339"
    datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert labels[prefix + "licenses"] == "MIT"
    assert re.fullmatch(r"[0-9a-f]{40}", labels[prefix + "revision"]), labels[prefix + "revision"]


def test_the_runtime_environment_has_no_pip_or_setuptools(
    image: tuple[dict[str, Any], list[str]],
) -> None:
    venv = [path for path in image[1] if path.startswith("opt/exporter/")]
    assert any(path.endswith("/exporter/__init__.py") for path in venv), "no exporter package"
    # A whiteout (.wh.<name>) deletes a lower layer's file: a deleted pip is gone.
    present = [p for p in venv if not Path(p).name.startswith(".wh.")]
    found = [p for p in present if FORBIDDEN.search(p.split("site-packages/", 1)[-1])]
    assert not found, f"pip or setuptools in the runtime environment: {found[:5]}"
    assert not [p for p in present if re.fullmatch(r"opt/exporter/bin/(pip|easy_install)[\d.]*", p)]


def test_python_is_a_version_the_test_suite_runs_on(
    image: tuple[dict[str, Any], list[str]],
) -> None:
    versions = {
        match.group(1)
        for path in image[1]
        if (match := re.fullmatch(r"opt/exporter/lib/python(\d+\.\d+)/site-packages", path))
    }
    assert versions, "no site-packages under /opt/exporter"
    assert versions <= TESTED_PYTHONS, versions
    ran = os.environ.get("DEPLOY_TEST_IMAGE_PYTHON")
    if ran:  # what `python` printed inside the image
        assert ran in TESTED_PYTHONS, ran


def test_the_dockerfile_default_base_is_a_tested_python() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    match = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\.\d+-slim", dockerfile, re.MULTILINE)
    assert match is not None, "no pinned default python base"
    assert match.group(1) in TESTED_PYTHONS, match.group(1)
