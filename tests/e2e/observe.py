"""Watching the real exporter process from outside while something goes wrong: every scrape
timed and kept, counters read by label, log lines checked for tracebacks, /proc read for the
process's memory and file descriptors."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import aiohttp

from tests.e2e.harness import ExporterProcess, Scrape, parse_text

QUEUE_CHATS = "rocketchat_livechat_queue_chats"
POLLS = "rocketchat_livechat_exporter_polls_total"
REQUESTS = "rocketchat_livechat_exporter_requests_total"
UP = "rocketchat_livechat_up"
SCRAPE_TIMEOUT = 5.0  # far above any bound a test asserts: a hung scrape fails, it never hangs


@dataclass(frozen=True)
class Observation:
    """One scrape of /metrics: when it was sent (Unix time), how long the answer took."""

    at: float
    took: float
    scrape: Scrape

    @property
    def done(self) -> float:
        return self.at + self.took

    def polls(self, result: str, collector: str = "queue") -> float:
        return self.scrape.value(POLLS, collector=collector, result=result) or 0.0

    def requests(self, code: str, collector: str = "queue") -> float:
        return self.scrape.value(REQUESTS, collector=collector, code=code) or 0.0

    def up(self, collector: str = "queue") -> float | None:
        return self.scrape.value(UP, collector=collector)

    def counted(self, metric: str, label: str, collector: str = "queue") -> dict[str, float]:
        """`metric`'s samples of one collector by the value of `label` (result or code)."""
        return {
            dict(labels)[label]: value
            for labels, value in self.scrape.family(metric).items()
            if dict(labels).get("collector") == collector
        }


class Watcher:
    """Scrapes one exporter over a kept-alive connection and keeps every observation."""

    def __init__(self, exporter: ExporterProcess, every: float = 0.1) -> None:
        self.exporter = exporter
        self.every = every
        self.observations: list[Observation] = []
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Watcher:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT),
            headers={"Accept-Encoding": "identity"},
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def observe(self) -> Observation:
        assert self._session is not None, "use `async with Watcher(...)`"
        at, started = time.time(), time.monotonic()
        async with self._session.get(self.exporter.url + "/metrics") as response:
            text = await response.text()
            assert response.status == 200, f"/metrics answered {response.status}"
        observation = Observation(at, time.monotonic() - started, Scrape(text, parse_text(text)))
        self.observations.append(observation)
        return observation

    async def until(
        self, condition: Callable[[Observation], bool], within: float, what: str
    ) -> Observation:
        """The first observation meeting `condition`; an AssertionError after `within` s."""
        return await self.exporter.poll_until(self.observe, condition, within, what, self.every)

    def between(self, start: float, end: float) -> list[Observation]:
        """The observations sent and answered within [start, end] (Unix times)."""
        return [o for o in self.observations if o.at >= start and o.done <= end]


# --- the log -------------------------------------------------------------------------------


def log_time(entry: dict[str, Any]) -> float:
    """A JSON log line's `ts` ("2024-05-01T12:00:00.123Z") as Unix time."""
    return datetime.fromisoformat(str(entry["ts"]).replace("Z", "+00:00")).timestamp()


def first_log(exporter: ExporterProcess, msg: str, since: float = 0.0) -> dict[str, Any] | None:
    return next(
        (e for e in exporter.logs if e.get("msg") == msg and log_time(e) >= since - 0.002), None
    )


def tracebacks(exporter: ExporterProcess) -> list[str]:
    """Log lines that carry a stack or are not one-line log records at all."""
    found = [line for line in exporter.raw_log if "Traceback" in line]
    found += [str(e) for e in exporter.logs if "stack" in e or e.get("level") == "error"]
    return found


# --- the process, from /proc -----------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    at: float  # time.monotonic()
    rss_kib: int
    hwm_kib: int  # peak RSS so far
    threads: int
    fds: int
    sockets: int


def sample_process(pid: int) -> ProcessSample:
    status: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    fds = sockets = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed while listed
            target = os.readlink(f"/proc/{pid}/fd/{name}")
            fds += 1
            sockets += target.startswith("socket:")
    return ProcessSample(
        time.monotonic(),
        rss_kib=int(status["VmRSS"].split()[0]),
        hwm_kib=int(status["VmHWM"].split()[0]),
        threads=int(status["Threads"]),
        fds=fds,
        sockets=sockets,
    )
