"""The exporter's own metrics: poll outcomes, requests, rate limit, build info, process.

Requests are counted as the client sends them (`exporter/rocketchat/tally.py`):
`tally(collector)` gives the poller the per-poll tally that feeds requests_total.

They live in their own registry, small enough to render on every scrape, apart from the data
series, which are rendered once per snapshot (see exposition.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from exporter import __version__
from exporter.rocketchat.outcome import Outcome, Result
from exporter.rocketchat.tally import RequestTally

POLL_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class SelfMetrics:
    def __init__(self, collectors: Iterable[str]) -> None:
        # `_created` series double every counter's lines and nobody graphs them.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.up = Gauge("rocketchat_livechat_up",
                        "1 if the collector's last poll of Rocket.Chat succeeded, else 0.",
                        ["collector"], registry=r)  # fmt: skip
        self.last_success = Gauge(
            "rocketchat_livechat_exporter_last_success_timestamp_seconds",
            "Unix time of the collector's last successful poll.",
            ["collector"],
            registry=r,
        )
        self.poll_duration = Histogram(
            "rocketchat_livechat_exporter_poll_duration_seconds",
            "Wall time of whole polls (every page, waits for the rate limit included).",
            ["collector"],
            buckets=POLL_DURATION_BUCKETS,
            registry=r,
        )
        self.polls = Counter(
            "rocketchat_livechat_exporter_polls",
            "Polls of Rocket.Chat by outcome.",
            ["collector", "result"],
            registry=r,
        )
        self.requests = Counter(
            "rocketchat_livechat_exporter_requests",
            'HTTP requests sent to Rocket.Chat, by status code ("none": no answer came).',
            ["collector", "code"],
            registry=r,
        )
        self.rate_limit_remaining = Gauge(
            "rocketchat_livechat_exporter_rate_limit_remaining",
            "X-RateLimit-Remaining of the collector's last answer, while the server sends it.",
            ["collector"],
            registry=r,
        )
        build_info = Gauge(
            "rocketchat_livechat_exporter_build_info",
            "Always 1; the exporter's version.",
            ["version"],
            registry=r,
        )
        build_info.labels(__version__).set(1)
        for collector in collectors:
            # Every outcome from the start, so rate() and increase() see the first failure.
            for outcome in Outcome:
                self.polls.labels(collector, outcome.value)
            self.poll_duration.labels(collector)

    def tally(self, collector: str) -> RequestTally:
        """A tally for one poll of `collector`: each request it notes counts at once."""
        counter = self.requests

        def count(_endpoint: str, code: str) -> None:
            counter.labels(collector, code).inc()

        return RequestTally(count)

    def record_poll(self, collector: str, result: Result[Any], duration: float) -> None:
        self.polls.labels(collector, result.outcome.value).inc()
        self.poll_duration.labels(collector).observe(duration)
        self.up.labels(collector).set(1 if result.ok else 0)
        if result.ok:
            self.last_success.labels(collector).set(time.time())
        self._record_rate_limit(collector, result)

    def _record_rate_limit(self, collector: str, result: Result[Any]) -> None:
        if result.status is None:
            return  # no answer came: nothing is known about the limit
        remaining = result.rate_limit.remaining if result.rate_limit else None
        if remaining is not None:
            self.rate_limit_remaining.labels(collector).set(remaining)
        else:
            with contextlib.suppress(KeyError):
                self.rate_limit_remaining.remove(collector)

    def add_collector(self, collector: str) -> None:
        """A collector started by a config reload: its series from the start, as above."""
        for outcome in Outcome:
            self.polls.labels(collector, outcome.value)
        self.poll_duration.labels(collector)

    def remove_collector(self, collector: str) -> None:
        """A collector a config reload turned off: its series vanish."""
        for metric in (
            self.up,
            self.last_success,
            self.poll_duration,
            self.polls,
            self.requests,
            self.rate_limit_remaining,
        ):
            labelsets = {
                tuple(v for k, v in sample.labels.items() if k != "le")
                for family in metric.collect()
                for sample in family.samples
                if sample.labels.get("collector") == collector
            }
            for values in labelsets:
                with contextlib.suppress(KeyError):
                    metric.remove(*values)
