"""The baseline: the livechat exporter most people would hand-write.

A thread polls `livechat/queue?count=0` with urllib, decodes it with json, and sets a
prometheus-client `Gauge` with `.labels(...).set(...)` per row (after `.clear()`, so that agents
who left disappear). prometheus-client's stock `start_http_server` serves the default registry,
rendering every series on every scrape (and gzipping it when asked, at gzip's default level).

`python -m bench.baseline --url URL --user-id ID --token TOKEN --interval SECONDS` prints JSON
lines on stderr like the exporter's: "listening" with the address, and "snapshot published"
when a poll's rows are all set (the moment scrapes see them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from prometheus_client import Gauge, start_http_server

QUEUE_CHATS = Gauge(
    "rocketchat_livechat_queue_chats",
    "Open conversations served by this agent in this department (on-hold included), "
    "from livechat/queue.",
    ["agent_id", "agent", "status", "department_id", "department"],
)


def emit(msg: str, **fields: Any) -> None:
    now = time.time()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    print(json.dumps({"ts": ts, "msg": msg, **fields}), file=sys.stderr, flush=True)


def poll(url: str, user_id: str, token: str) -> int:
    request = urllib.request.Request(
        f"{url}/api/v1/livechat/queue?includeOfflineAgents=true&count=0",
        headers={"X-User-Id": user_id, "X-Auth-Token": token},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    QUEUE_CHATS.clear()
    for row in answer["queue"]:
        user = row.get("user") or {}
        department = row.get("department") or {}
        QUEUE_CHATS.labels(
            user.get("_id") or "",
            user.get("username") or "",
            user.get("status") or "",
            department.get("_id") or "",
            department.get("name") or "",
        ).set(row["chats"])
    return len(answer["queue"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--url", required=True)
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--interval", type=float, default=30.0)
    args = parser.parse_args(argv)
    server, _ = start_http_server(0, addr="127.0.0.1")
    emit("listening", address=f"127.0.0.1:{server.server_port}")
    while True:
        started = time.monotonic()
        series = poll(args.url, args.user_id, args.token)
        duration = time.monotonic() - started
        emit("snapshot published", series=series)
        emit("poll succeeded", duration=f"{duration:.3f}s")
        time.sleep(max(0.0, started + args.interval - time.monotonic()))


if __name__ == "__main__":
    sys.exit(main())
