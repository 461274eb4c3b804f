"""ServiceMonitor, PodMonitor and PrometheusRule against the Prometheus Operator's CRD schemas.

The schemas come from the npm package @kubernetes-models/prometheus-operator (pinned in
tests/deploy/crd/package.json), installed on first use into DEPLOY_NPM_PREFIX (default: a
folder under the system temp directory), never into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import KUBECTL, KUBERNETES, find_tool, run_tool
from .test_kubernetes import CUSTOM_KINDS, _user_kustomization

CRD = Path(__file__).resolve().parent / "crd"
NODE = ("node", "Debian package nodejs")
NPM = ("npm", "Debian package npm")


@pytest.fixture(scope="module")
def validator() -> list[str]:
    """The command that validates a JSON array of objects on stdin."""
    node = find_tool(*NODE)
    prefix = Path(
        os.environ.get("DEPLOY_NPM_PREFIX")
        or Path(tempfile.gettempdir()) / "rocketchat-livechat-exporter-npm"
    )
    prefix.mkdir(parents=True, exist_ok=True)
    wanted = (CRD / "package.json").read_text(encoding="utf-8")
    installed = prefix / "package.json"
    module = prefix / "node_modules" / "@kubernetes-models" / "prometheus-operator"
    if not module.is_dir() or not installed.is_file() or installed.read_text() != wanted:
        npm = find_tool(*NPM)
        installed.write_text(wanted, encoding="utf-8")
        run_tool([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=prefix, timeout=300)
    shutil.copy(CRD / "validate.mjs", prefix / "validate.mjs")
    return [node, str(prefix / "validate.mjs")]


def _validate(command: list[str], objects: list[dict[str, Any]]) -> tuple[int, str]:
    done = subprocess.run(
        command, input=json.dumps(objects), capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def _custom_objects(directory: Path) -> list[dict[str, Any]]:
    output = run_tool([find_tool(*KUBECTL), "kustomize", str(directory)])
    return [doc for doc in yaml.safe_load_all(output) if doc and doc["kind"] in CUSTOM_KINDS]


def test_both_forms_objects_match_the_operator_schemas(
    validator: list[str], tmp_path: Path
) -> None:
    objects = _custom_objects(KUBERNETES) + _custom_objects(_user_kustomization(tmp_path))
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == ["PodMonitor", "PrometheusRule", "PrometheusRule", "ServiceMonitor"]
    code, output = _validate(validator, objects)
    assert code == 0, output


def test_the_schema_check_rejects_a_wrong_type(validator: list[str]) -> None:
    (monitor,) = [o for o in _custom_objects(KUBERNETES) if o["kind"] == "ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["port"] = 9776  # a port *name* is a string
    code, output = _validate(validator, [monitor])
    assert code == 1, output
    assert "port" in output, output
