"""The exporter configs shipped in deploy/ pass the real exporter's `--check-config`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .support import COMPOSE, KUBERNETES, REPO, load_yaml

ENVIRONMENT = {"ROCKETCHAT_USER_ID": "ExporterUserId0001"}


def _check_config(config: Path, **environment: str) -> None:
    # Only what the deployment itself sets: nothing from the caller's ROCKETCHAT_* variables.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ROCKETCHAT_") and name != "LIVECHAT_EXPORTER_CONFIG"
    }
    env.update(ENVIRONMENT, **environment)
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "--check-config", f"--config.file={config}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"--check-config {config.name} exited {done.returncode}: {output}"


def test_compose_exporter_config_is_valid() -> None:
    _check_config(
        COMPOSE / "exporter.yaml",
        ROCKETCHAT_URL="http://rocketchat:3000",
        ROCKETCHAT_AUTH_TOKEN="a-personal-access-token",
    )


@pytest.mark.parametrize("url", ["http://127.0.0.1:3000", "http://rocketchat:3000"])
def test_kubernetes_config_map_is_valid(url: str, tmp_path: Path) -> None:
    """With the Secret's token file where the pod mounts it (moved into tmp_path here)."""
    config = load_yaml(KUBERNETES / "base" / "config.yaml")
    token_file = tmp_path / Path(config["rocketchat"]["auth_token_file"]).name
    token_file.write_text("a-personal-access-token\n", encoding="utf-8")
    config["rocketchat"]["auth_token_file"] = str(token_file)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    _check_config(config_file, ROCKETCHAT_URL=url)
