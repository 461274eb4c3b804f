"""Fixtures for the deploy checks: the real exporter in demo mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .support import COLLECTORS, REPO, free_port, http_get, stop, wait_until_ready

# Set to test an exporter that already runs (e.g. `docker run -p 9776:9776 IMAGE --demo`):
# DEPLOY_TEST_EXPORTER_URL=http://127.0.0.1:9776
EXPORTER_URL_ENV = "DEPLOY_TEST_EXPORTER_URL"


# The demo with every collector on, conversations included.
DEMO_CONFIG = """\
poll:
  interval: 10s
collectors:
  queue: true
  inquiries: true
  agents: true
  conversations: {enabled: true, interval: 10s}
"""


def demo_config(folder: Path) -> Path:
    """The config file for `--demo --config.file`."""
    config = folder / "demo.yaml"
    config.write_text(DEMO_CONFIG, encoding="utf-8")
    return config


def _wait_for_first_polls(metrics_url: str, deadline_s: float) -> None:
    """The demo polls every 10 s; rocketchat_livechat_up appears after each first poll."""
    deadline = time.monotonic() + deadline_s
    missing: list[str] = list(COLLECTORS)
    while time.monotonic() < deadline:
        status, body = http_get(metrics_url)
        if status == 200:
            polled = {
                sample.labels.get("collector")
                for family in text_string_to_metric_families(body)
                for sample in family.samples
                if sample.name == "rocketchat_livechat_up"
            }
            missing = [c for c in COLLECTORS if c not in polled]
            if not missing:
                return
        time.sleep(0.5)
    pytest.fail(f"no first poll of {missing} after {deadline_s:.0f} s at {metrics_url}")


@pytest.fixture(scope="session")
def exporter_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of `python -m exporter --demo` on a free loopback port, after its first polls."""
    given = os.environ.get(EXPORTER_URL_ENV)
    if given:
        base = given.rstrip("/")
        wait_until_ready(f"{base}/-/ready", None, None, deadline_s=15)
        _wait_for_first_polls(f"{base}/metrics", deadline_s=30)
        yield base
        return
    port = free_port()
    folder = tmp_path_factory.mktemp("exporter")
    log = folder / "exporter.log"
    config = demo_config(folder)
    command = [
        sys.executable,
        "-m",
        "exporter",
        "--demo",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with Path(log).open("wb") as log_stream:
        process = subprocess.Popen(
            command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log_stream, stderr=log_stream
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/-/ready", process, log, deadline_s=20)
        _wait_for_first_polls(f"{base}/metrics", deadline_s=30)
        yield base
    finally:
        stop(process)
