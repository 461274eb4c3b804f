"""End to end: a real Prometheus scrapes the demo exporter and runs every dashboard query.

The exporter is scraped as two targets (instance sidecar-a and sidecar-b), as two sidecars of
one Rocket.Chat would be, so the queries' deduplication across exporters is exercised too.
"""

from __future__ import annotations

import math
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import (
    PROMETHEUS,
    RULES,
    find_tool,
    free_port,
    http_get,
    label_values_query,
    load_dashboard,
    panel_queries,
    prometheus_api,
    query_variables,
    recorded_names,
    stop,
    substitute_variables,
    variable_query,
    wait_until_ready,
)

pytestmark = pytest.mark.e2e

# Bounds: the demo polls every 10 s, so rate() over 30 s has data after about 20 s of scrapes.
READY_DEADLINE_S = 20
DATA_DEADLINE_S = 50
# What a Kubernetes scrape adds, so the dashboard's cluster and namespace variables have values.
SERVER = {"cluster": "e2e", "namespace": "livechat"}


@dataclass(frozen=True)
class Prometheus:
    url: str
    started_at: float


@pytest.fixture(scope="module")
def prometheus(exporter_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = find_tool(*PROMETHEUS)
    status, _ = http_get(f"{exporter_url}/metrics")
    assert status == 200
    workdir = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(exporter_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "rocketchat-livechat",
                "static_configs": [
                    {"targets": [target], "labels": {**SERVER, "instance": "sidecar-a"}},
                    {"targets": [target], "labels": {**SERVER, "instance": "sidecar-b"}},
                ],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = workdir / "prometheus.log"
    with Path(log).open("wb") as log_stream:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log_stream,
            stderr=log_stream,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/-/ready", process, log, deadline_s=READY_DEADLINE_S)
        yield Prometheus(url, time.time())
    finally:
        stop(process)


def _has_data(result: Any) -> bool:
    """Some series with at least one real (non-NaN) value."""
    for series in result.get("result", []):
        samples = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(not math.isnan(float(value)) for _, value in samples):
            return True
    return False


def _evaluate(prometheus: Prometheus, expr: str, instant: bool) -> Any:
    now = time.time()
    if instant:
        return prometheus_api(prometheus.url, "/api/v1/query", query=expr, time=f"{now:.3f}")
    # The whole test run: the demo's waiting queue comes and goes, so "now" may be empty.
    return prometheus_api(
        prometheus.url,
        "/api/v1/query_range",
        query=expr,
        start=f"{prometheus.started_at:.3f}",
        end=f"{now:.3f}",
        step="2s",
    )


def _wait_for_all(prometheus: Prometheus, queries: dict[str, tuple[str, bool]]) -> None:
    """Re-runs the queries that had no data until all have, or the deadline passes."""
    pending = dict(queries)
    deadline = time.monotonic() + DATA_DEADLINE_S
    while pending and time.monotonic() < deadline:
        for name, (expr, instant) in list(pending.items()):
            if _has_data(_evaluate(prometheus, expr, instant)):
                del pending[name]
        if pending:
            time.sleep(1)
    assert not pending, "no data after {} s for:\n{}".format(
        DATA_DEADLINE_S, "\n".join(f"- {name}: {expr}" for name, (expr, _) in pending.items())
    )


def test_prometheus_scrapes_both_sidecar_targets(prometheus: Prometheus) -> None:
    _wait_for_all(prometheus, {"both targets up": ("count(up == 1) == 2", True)})


def test_every_dashboard_panel_query_returns_data(prometheus: Prometheus) -> None:
    queries = {
        f"{q.panel} / {q.ref_id}": (substitute_variables(q.expr), q.instant)
        for q in panel_queries(load_dashboard())
    }
    assert len(queries) >= 20
    _wait_for_all(prometheus, queries)


def test_every_template_variable_has_values(prometheus: Prometheus) -> None:
    for variable in query_variables(load_dashboard()):
        selector, label = label_values_query(variable_query(variable))
        params = {"start": f"{prometheus.started_at - 60:.3f}", "end": f"{time.time():.3f}"}
        if selector:
            params["match[]"] = substitute_variables(selector)
        values = prometheus_api(prometheus.url, f"/api/v1/label/{label}/values", **params)
        assert values, f"variable {variable['name']}: label_values found nothing"


def test_every_recording_rule_produces_series(prometheus: Prometheus) -> None:
    records = {name: (name, False) for name in sorted(recorded_names())}
    _wait_for_all(prometheus, records)


def test_every_rule_evaluates_without_error(prometheus: Prometheus) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    unhealthy: list[str] = ["(rules not loaded)"]
    while unhealthy and time.monotonic() < deadline:
        groups = prometheus_api(prometheus.url, "/api/v1/rules")["groups"]
        unhealthy = [
            f"{rule['name']}: {rule.get('health')} {rule.get('lastError', '')}"
            for group in groups
            for rule in group["rules"]
            if rule.get("health") != "ok"
        ]
        if not groups:
            unhealthy = ["(rules not loaded)"]
        if unhealthy:
            time.sleep(0.5)
    assert not unhealthy, unhealthy


def test_open_conversations_are_counted_once_across_sidecars(prometheus: Prometheus) -> None:
    """Two targets export the same conversations; the overview must not double them."""
    (overview,) = [q for q in panel_queries(load_dashboard()) if q.panel == "Open conversations"]
    dashboard_expr = substitute_variables(overview.expr)
    one_exporter = 'sum(rocketchat_livechat_queue_chats{instance="sidecar-a"})'
    _wait_for_all(prometheus, {"one exporter": (one_exporter, True)})
    seen: list[tuple[float, float]] = []
    for _ in range(20):  # the two scrapes may straddle a poll: retry, bounded
        now = f"{time.time():.3f}"
        shown = prometheus_api(prometheus.url, "/api/v1/query", query=dashboard_expr, time=now)
        truth = prometheus_api(prometheus.url, "/api/v1/query", query=one_exporter, time=now)
        pair = (float(shown["result"][0]["value"][1]), float(truth["result"][0]["value"][1]))
        if pair[0] == pair[1]:
            return
        seen.append(pair)
        time.sleep(0.5)
    pytest.fail(f"dashboard total != one exporter's total: {seen}")
