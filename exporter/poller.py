"""Runs each collector on its own schedule and publishes what it gets.

Per collector, one task polls in a loop: polls never overlap, each start is `interval` after the
previous start with a little jitter, and never before the endpoint's rate-limit window reopens.
A success replaces the collector's series; after a failure the last good series are served for
`max_staleness`, then dropped. Logs say when a collector goes down or comes back, not every
failed poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.collectors import Collector
from exporter.durations import format_duration
from exporter.exposition import Exposition
from exporter.rocketchat.outcome import Outcome, Result
from exporter.rocketchat.tally import RequestTally, count_requests_in
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import CollectorStatus, Families

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
    # When the collector's endpoint may be called again (the client's rate-limit gate); None:
    # the poller's own. A reload that replaces the client gives new schedules their own.
    ready_at: Callable[[str], float] | None = None


@dataclass
class _State:
    """The poller's own view of one collector; `published()` is what others see."""

    name: str
    interval: float
    outcome: Outcome | None = None
    message: str = ""
    last_success: float | None = None
    series: int = 0
    serving: bool = False
    failed_at: float | None = None  # clock() of the first failed poll since the last success
    warned_rate: bool = field(default=False, repr=False)

    def published(self) -> CollectorStatus:
        return CollectorStatus(
            self.name,
            self.interval,
            self.outcome,
            self.message,
            self.last_success,
            self.series,
            self.serving,
        )


def _unchanged(text: str) -> str:
    return text


class Poller:
    """Polls each scheduled collector in its own task. Collectors can be started and stopped
    while it runs (a config reload); the others keep their series and schedule."""

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
        redact: Callable[[str], str] = _unchanged,
    ) -> None:
        self._initial = list(schedules)
        self._ready_at = ready_at
        self._exposition = exposition
        self._metrics = metrics
        self.max_staleness = max_staleness  # the same for all: it comes from poll.*
        self._clock = clock
        self._rng = rng or random.Random()
        self._redact = redact  # a server may echo a credential in an error message
        self._states: dict[str, _State] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._published: dict[str, CollectorStatus] = {}
        self._broken: asyncio.Future[None] | None = None

    @property
    def status(self) -> Mapping[str, CollectorStatus]:
        """The last published status of each running collector, by name."""
        return MappingProxyType(self._published)

    def statuses(self) -> tuple[CollectorStatus, ...]:
        return tuple(self._published.values())

    async def run(self) -> None:
        """Polls until cancelled; raises if a collector's task fails (a bug in the poller)."""
        broken = self._broken_future()
        for schedule in self._initial:
            self.start(schedule)
        try:
            await broken
        finally:
            for name in list(self._tasks):
                await self.stop(name, drop=False)

    def start(self, schedule: Schedule) -> None:
        name = schedule.collector.name
        if name in self._tasks:
            raise ValueError(f"collector {name} is already running")
        self._states[name] = _State(name, schedule.interval)
        self._publish_status(self._states[name])
        task = asyncio.create_task(self._run(schedule), name=f"poll-{name}")
        task.add_done_callback(self._task_done)
        self._tasks[name] = task
        self._broken_future()

    async def stop(self, name: str, *, drop: bool = True) -> None:
        """Stops polling `name`; `drop` also removes its series from the exposition."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._states.pop(name, None)
        self._published.pop(name, None)
        if drop:
            await self._exposition.publish(name, None)

    def _broken_future(self) -> asyncio.Future[None]:
        """Fails with the error of a polling task that died (run() raises it)."""
        if self._broken is None:
            self._broken = asyncio.get_running_loop().create_future()
        return self._broken

    def _task_done(self, task: asyncio.Task[None]) -> None:
        broken = self._broken_future()
        if task.cancelled() or broken.done():
            return
        error = task.exception()
        if error is not None:
            broken.set_exception(error)

    def _publish_status(self, state: _State) -> None:
        if self._states.get(state.name) is state:
            self._published[state.name] = state.published()

    async def _run(self, schedule: Schedule) -> None:
        collector = schedule.collector
        status = self._states[collector.name]
        ready_at = schedule.ready_at or self._ready_at
        while True:
            started = self._clock()
            await self.poll_once(collector, status)
            next_start = started + schedule.interval * self._rng.uniform(1 - JITTER, 1 + JITTER)
            next_start = max(next_start, ready_at(collector.endpoint))
            await self._wait_until(next_start, collector.name, status)

    async def poll_once(self, collector: Collector, status: _State) -> Result[Families]:
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
        self._publish_status(status)
        return answer

    async def _poll_dropping_stale(
        self, collector: Collector, status: _State, tally: RequestTally
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

    async def _wait_until(self, deadline: float, name: str, status: _State) -> None:
        """Sleeps until `deadline`, waking on the way to drop stale series on time."""
        while (now := self._clock()) < deadline:
            drop_at = self._drop_time(status)
            wake = deadline if drop_at is None else min(deadline, max(drop_at, now))
            await asyncio.sleep(wake - now)
            await self._drop_if_stale(name, status)

    def _drop_time(self, status: _State) -> float | None:
        if not status.serving or status.failed_at is None:
            return None
        return status.failed_at + self.max_staleness

    async def _drop_if_stale(self, name: str, status: _State) -> None:
        drop_at = self._drop_time(status)
        if drop_at is None or self._clock() < drop_at:
            return
        await self._exposition.publish(name, None)
        status.serving, status.series = False, 0
        self._publish_status(status)
        log.warning(
            "stale series dropped",
            extra={"kv": {"collector": name, "max_staleness": format_duration(self.max_staleness)}},
        )

    def _log_transition(
        self, name: str, status: _State, answer: Result[Families], duration: float
    ) -> None:
        previous, status.outcome = status.outcome, answer.outcome
        status.message = self._redact(answer.message)
        fields: dict[str, object] = {"collector": name, "outcome": answer.outcome.value}
        if answer.ok:
            fields.update(series=status.series, duration=f"{duration:.3f}s")
            if previous is not None and previous is not Outcome.SUCCESS:
                log.info("collector recovered", extra={"kv": fields})
            else:
                log.debug("poll succeeded", extra={"kv": fields})
            return
        fields["error"] = status.message
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
        status: _State,
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
