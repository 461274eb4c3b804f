"""Runs each collector on its own schedule and publishes what it gets.

Per collector, one task polls in a loop: polls never overlap, each start is `interval` after the
previous start with a little jitter, and never before the endpoint's rate-limit window reopens.
A success replaces the collector's series; after a failure the last good series are served for
`max_staleness`, then dropped. Logs say when a collector goes down or comes back, not every
failed poll.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from exporter.collectors import Collector
from exporter.config import format_duration
from exporter.exposition import Exposition
from exporter.rocketchat.outcome import Outcome, Result
from exporter.rocketchat.tally import RequestTally, count_requests_in
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import Families

log = logging.getLogger(__name__)

JITTER = 0.05  # each interval is stretched or shortened by up to 5%
# Rocket.Chat's default: 10 calls a minute per endpoint and client IP (docs/rocketchat-api.md,
# "Rate limits").
DEFAULT_RATE_LIMIT_PER_MINUTE = 10
RATE_LIMIT_FIX = (
    "give the exporter's Rocket.Chat user the bot role or the api-bypass-rate-limit "
    "permission, or poll less often"
)


@dataclass(frozen=True)
class Schedule:
    collector: Collector
    interval: float


@dataclass
class CollectorStatus:
    """What the landing page shows about one collector."""

    name: str
    interval: float
    outcome: Outcome | None = None
    message: str = ""
    last_success: float | None = None  # Unix time
    series: int = 0
    serving: bool = False  # its series are in the snapshot
    failed_at: float | None = None  # clock() of the first failed poll since the last success
    warned_rate: bool = field(default=False, repr=False)


class Poller:
    def __init__(
        self,
        schedules: Sequence[Schedule],
        ready_at: Callable[[str], float],
        exposition: Exposition,
        metrics: SelfMetrics,
        max_staleness: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._schedules = schedules
        self._ready_at = ready_at  # an endpoint's rate-limit reopening, from the client
        self._exposition = exposition
        self._metrics = metrics
        self._max_staleness = max_staleness
        self._clock = clock
        self._rng = rng or random.Random()
        self.status = {
            s.collector.name: CollectorStatus(s.collector.name, s.interval) for s in schedules
        }

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for schedule in self._schedules:
                group.create_task(self._run(schedule), name=f"poll-{schedule.collector.name}")

    async def _run(self, schedule: Schedule) -> None:
        collector = schedule.collector
        status = self.status[collector.name]
        while True:
            started = self._clock()
            await self.poll_once(collector, status)
            next_start = started + schedule.interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
            next_start = max(next_start, self._ready_at(collector.endpoint))
            await self._wait_until(next_start, collector.name, status)

    async def poll_once(self, collector: Collector, status: CollectorStatus) -> Result[Families]:
        started = self._clock()
        tally = self._metrics.tally(collector.name)
        answer = await self._poll_dropping_stale(collector, status, tally)
        duration = self._clock() - started
        if answer.data is not None:
            await self._exposition.publish(collector.name, answer.data)
            status.serving, status.failed_at = True, None
            status.series = sum(len(family) for family in answer.data)
            status.last_success = time.time()
        else:
            if status.failed_at is None:
                status.failed_at = self._clock()
            await self._drop_if_stale(collector.name, status)
        self._metrics.record_poll(collector.name, answer, duration)
        self._log_transition(collector.name, status, answer, duration)
        self._warn_if_over_rate_limit(collector.endpoint, status, answer, tally)
        return answer

    async def _poll_dropping_stale(
        self, collector: Collector, status: CollectorStatus, tally: RequestTally
    ) -> Result[Families]:
        """Polls; a slow poll (timeouts, pages, rate-limit waits) must not keep stale series
        past their time, so the drop can happen while the poll runs."""
        task = asyncio.create_task(self._poll_safely(collector, tally))
        try:
            while True:
                drop_at = self._drop_time(status)
                timeout = None if drop_at is None else max(0.0, drop_at - self._clock())
                done, _ = await asyncio.wait({task}, timeout=timeout)
                if done:
                    return task.result()
                await self._drop_if_stale(collector.name, status)
        finally:
            task.cancel()

    @staticmethod
    async def _poll_safely(collector: Collector, tally: RequestTally) -> Result[Families]:
        """A bug in a collector must not stop the others: it is logged with its stack and
        counted as a failed poll."""
        count_requests_in(tally)  # this task's requests only
        try:
            return await collector.poll()
        except Exception as error:
            log.error(
                "collector failed unexpectedly",
                exc_info=True,
                extra={"kv": {"collector": collector.name}},
            )
            return Result(Outcome.INVALID_RESPONSE, None, f"internal error: {error!r}")

    async def _wait_until(self, deadline: float, name: str, status: CollectorStatus) -> None:
        """Sleeps until `deadline`, waking on the way to drop stale series on time."""
        while (now := self._clock()) < deadline:
            drop_at = self._drop_time(status)
            wake = deadline if drop_at is None else min(deadline, max(drop_at, now))
            await asyncio.sleep(wake - now)
            await self._drop_if_stale(name, status)

    def _drop_time(self, status: CollectorStatus) -> float | None:
        if not status.serving or status.failed_at is None:
            return None
        return status.failed_at + self._max_staleness

    async def _drop_if_stale(self, name: str, status: CollectorStatus) -> None:
        drop_at = self._drop_time(status)
        if drop_at is None or self._clock() < drop_at:
            return
        await self._exposition.publish(name, None)
        status.serving, status.series = False, 0
        log.warning(
            "stale series dropped",
            extra={
                "kv": {"collector": name, "max_staleness": format_duration(self._max_staleness)}
            },
        )

    def _log_transition(
        self, name: str, status: CollectorStatus, answer: Result[Families], duration: float
    ) -> None:
        previous, status.outcome, status.message = status.outcome, answer.outcome, answer.message
        fields: dict[str, object] = {"collector": name, "outcome": answer.outcome.value}
        if answer.ok:
            fields.update(series=status.series, duration=f"{duration:.3f}s")
            if previous is not None and previous is not Outcome.SUCCESS:
                log.info("collector recovered", extra={"kv": fields})
            else:
                log.debug("poll succeeded", extra={"kv": fields})
            return
        fields["error"] = answer.message
        if answer.outcome is Outcome.RATE_LIMITED:
            fields["fix"] = RATE_LIMIT_FIX
        if previous is answer.outcome:
            log.debug("poll failed again", extra={"kv": fields})
        else:
            log.warning(
                "collector down" if previous in (None, Outcome.SUCCESS) else "collector still down",
                extra={"kv": fields},
            )

    def _warn_if_over_rate_limit(
        self,
        endpoint: str,
        status: CollectorStatus,
        answer: Result[Families],
        tally: RequestTally,
    ) -> None:
        """Once per collector: the server limits this user, and a poll's requests at this
        interval would exceed the limit (paging can take many requests a poll)."""
        limit = answer.rate_limit.limit if answer.rate_limit else None
        if status.warned_rate or not answer.ok or not limit:
            return
        requests = tally.requests_to(endpoint)
        per_minute = requests * 60 / status.interval
        if per_minute > limit:
            status.warned_rate = True
            log.warning(
                "polling exceeds the server's rate limit",
                extra={
                    "kv": {
                        "collector": status.name,
                        "requests_per_poll": requests,
                        "per_minute": round(per_minute, 1),
                        "limit": limit,
                        "fix": RATE_LIMIT_FIX,
                    }
                },
            )


def rate_limit_warnings(schedules: Sequence[Schedule]) -> list[str]:
    """Start-up check against Rocket.Chat's default limit, which counts each endpoint apart:
    one line per collector that polls its endpoint more often than that allows."""
    lines = []
    for schedule in schedules:
        per_minute = 60 / schedule.interval
        if per_minute > DEFAULT_RATE_LIMIT_PER_MINUTE:
            lines.append(
                f"collector {schedule.collector.name} polls {schedule.collector.endpoint} "
                f"{per_minute:g} times a minute, over Rocket.Chat's default limit of "
                f"{DEFAULT_RATE_LIMIT_PER_MINUTE}; unless the exporter's user bypasses it, "
                f"polls will be refused (429): {RATE_LIMIT_FIX}"
            )
    return lines
