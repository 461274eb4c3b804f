"""Scheduling, staleness and self-metrics of the poller, with scripted collectors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from exporter.exposition import Exposition, Format, Variant
from exporter.poller import Poller, Schedule, rate_limit_warnings
from exporter.rocketchat.outcome import Outcome, RateLimit, Result
from exporter.rocketchat.tally import note_request
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import Families, Family

TEXT = Variant(Format.TEXT, False)


def families(value: float) -> Families:
    return (
        Family(
            "rocketchat_livechat_queue_chats", "Open chats.", ("agent_id",), ((("a1",), value),)
        ),
    )


SUCCESS = Result(Outcome.SUCCESS, families(3), status=200)
TIMEOUT: Result[Families] = Result(Outcome.TIMEOUT, None, "no answer within 10s")


@dataclass
class ScriptedCollector:
    """Answers from a script; the last answer repeats."""

    script: list[Result[Families]]
    delay: float = 0.0
    name: str = "queue"
    endpoint: str = "livechat/queue"
    started: list[float] = field(default_factory=list)
    running: int = 0
    most_running: int = 0

    async def poll(self) -> Result[Families]:
        self.started.append(time.monotonic())
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            return await self.answer()
        finally:
            self.running -= 1

    async def answer(self) -> Result[Families]:
        """The next answer of the script (a subclass may answer otherwise)."""
        await asyncio.sleep(self.delay)
        result = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        # The one request the result stands for, as the client would note it.
        note_request(self.endpoint, str(result.status or "none"))
        return result


@dataclass
class Harness:
    exposition: Exposition
    metrics: SelfMetrics

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    async def body(self) -> bytes:
        return bytes(await self.exposition.answer(TEXT))


@contextlib.asynccontextmanager
async def running(
    collector: ScriptedCollector,
    interval: float,
    max_staleness: float = 60.0,
    ready_at: Callable[[str], float] = lambda _: 0.0,
) -> AsyncIterator[Harness]:
    metrics = SelfMetrics([collector.name])
    exposition = Exposition(metrics.registry)
    poller = Poller([Schedule(collector, interval)], ready_at, exposition, metrics, max_staleness)
    async with polling(poller):
        yield Harness(exposition, metrics)


@contextlib.asynccontextmanager
async def polling(poller: Poller) -> AsyncIterator[None]:
    """`poller` running in a task, cancelled at the end."""
    task = asyncio.create_task(poller.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def polls(harness: Harness, result: str) -> float:
    return (
        harness.value("rocketchat_livechat_exporter_polls_total", collector="queue", result=result)
        or 0.0
    )


async def test_a_success_serves_the_series_and_sets_up() -> None:
    collector = ScriptedCollector([SUCCESS])
    async with running(collector, interval=10) as h:
        await until(lambda: polls(h, "success") == 1)
        assert b'rocketchat_livechat_queue_chats{agent_id="a1"} 3.0' in await h.body()
        assert h.value("rocketchat_livechat_up", collector="queue") == 1
        assert (
            h.value("rocketchat_livechat_exporter_requests_total", collector="queue", code="200")
            == 1
        )
        last = h.value(
            "rocketchat_livechat_exporter_last_success_timestamp_seconds", collector="queue"
        )
        assert last is not None
        assert abs(last - time.time()) < 5


async def test_a_failure_sets_up_to_zero_at_once_but_keeps_the_last_data() -> None:
    collector = ScriptedCollector([SUCCESS, TIMEOUT])
    async with running(collector, interval=0.05, max_staleness=60) as h:
        await until(lambda: polls(h, "timeout") >= 1)
        assert h.value("rocketchat_livechat_up", collector="queue") == 0
        assert b'rocketchat_livechat_queue_chats{agent_id="a1"} 3.0' in await h.body()
        none = h.value(
            "rocketchat_livechat_exporter_requests_total", collector="queue", code="none"
        )
        assert none is not None
        assert none >= 1


async def test_stale_data_is_dropped_after_max_staleness_even_between_polls() -> None:
    collector = ScriptedCollector([SUCCESS, TIMEOUT])
    async with running(collector, interval=0.1, max_staleness=0.3) as h:
        await until(lambda: polls(h, "timeout") >= 1)
        failed_at = time.monotonic()
        assert b"rocketchat_livechat_queue_chats{" in await h.body()
        await until(lambda: not h.exposition.snapshot.families_by_collector)
        assert time.monotonic() - failed_at >= 0.25
        assert b"rocketchat_livechat_queue_chats{" not in await h.body()


async def test_the_drop_happens_on_time_without_a_poll() -> None:
    collector = ScriptedCollector([SUCCESS, TIMEOUT])
    # The next poll is 30 s away; the stale series must still go after 0.2 s.
    async with running(collector, interval=0.05, max_staleness=0.2) as h:
        await until(lambda: polls(h, "timeout") == 1)
        collector.script = [Result(Outcome.TIMEOUT, None, "slow")]
        collector.delay = 30
        await until(lambda: not h.exposition.snapshot.families_by_collector, within=2)
        assert polls(h, "timeout") == 1


async def test_recovery_serves_fresh_data_again() -> None:
    collector = ScriptedCollector([SUCCESS, TIMEOUT, Result(Outcome.SUCCESS, families(7))])
    async with running(collector, interval=0.05, max_staleness=0) as h:
        await until(lambda: polls(h, "success") == 2)
        assert b'rocketchat_livechat_queue_chats{agent_id="a1"} 7.0' in await h.body()
        assert h.value("rocketchat_livechat_up", collector="queue") == 1


async def test_polls_never_overlap() -> None:
    collector = ScriptedCollector([SUCCESS], delay=0.15)
    async with running(collector, interval=0.05) as h:
        await until(lambda: polls(h, "success") >= 3)
    assert collector.most_running == 1


async def test_polls_keep_their_interval_with_a_little_jitter() -> None:
    collector = ScriptedCollector([SUCCESS])
    async with running(collector, interval=0.2):
        await until(lambda: len(collector.started) >= 4)
    gaps = [b - a for a, b in zip(collector.started, collector.started[1:], strict=False)]
    assert all(0.2 * 0.95 - 0.01 <= gap <= 0.2 * 1.05 + 0.1 for gap in gaps), gaps


async def test_no_poll_starts_before_the_rate_limit_window_reopens() -> None:
    collector = ScriptedCollector([Result(Outcome.RATE_LIMITED, None, "429", status=429)])
    reopens = time.monotonic() + 0.4
    async with running(collector, interval=0.05, ready_at=lambda _: reopens):
        await until(lambda: len(collector.started) >= 2)
    assert collector.started[1] >= reopens


async def test_every_outcome_is_counted_from_zero() -> None:
    collector = ScriptedCollector([SUCCESS])
    async with running(collector, interval=10) as h:
        await until(lambda: polls(h, "success") == 1)
        for outcome in Outcome:
            assert (
                h.value(
                    "rocketchat_livechat_exporter_polls_total",
                    collector="queue",
                    result=outcome.value,
                )
                is not None
            )


async def test_rate_limit_remaining_follows_the_last_answer() -> None:
    limited = Result(Outcome.SUCCESS, families(1), status=200, rate_limit=RateLimit(10, 4, 30.0))
    unlimited = Result(Outcome.SUCCESS, families(1), status=200)
    collector = ScriptedCollector([limited, unlimited])
    async with running(collector, interval=0.05) as h:
        await until(lambda: polls(h, "success") == 1)
        assert h.value("rocketchat_livechat_exporter_rate_limit_remaining", collector="queue") == 4
        await until(lambda: polls(h, "success") >= 2)
        assert (
            h.value("rocketchat_livechat_exporter_rate_limit_remaining", collector="queue") is None
        )


async def test_state_changes_are_logged_not_every_failure(caplog: pytest.LogCaptureFixture) -> None:
    script = [SUCCESS, TIMEOUT, TIMEOUT, TIMEOUT, SUCCESS]
    collector = ScriptedCollector(script)
    with caplog.at_level(logging.INFO, logger="exporter"):
        async with running(collector, interval=0.02) as h:
            await until(lambda: polls(h, "success") >= 2)
    messages = [r.getMessage() for r in caplog.records if r.name == "exporter.poller"]
    assert messages.count("collector down") == 1
    assert messages.count("collector recovered") == 1
    assert "poll failed again" not in messages  # debug level, filtered out


async def test_a_collector_bug_is_logged_and_polling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(ScriptedCollector):
        async def answer(self) -> Result[Families]:
            raise KeyError("boom")

    collector = Broken([SUCCESS])
    async with running(collector, interval=0.05) as h:
        await until(lambda: len(collector.started) >= 2)
        assert polls(h, "invalid_response") >= 1
    assert any(r.getMessage() == "collector failed unexpectedly" for r in caplog.records)


def test_start_up_warns_when_the_interval_exceeds_the_default_limit() -> None:
    fast = Schedule(ScriptedCollector([SUCCESS]), 5.0)
    slow = Schedule(
        ScriptedCollector([SUCCESS], name="agents", endpoint="livechat/users/agent"), 6.0
    )
    warnings = rate_limit_warnings([fast, slow])
    assert len(warnings) == 1
    assert "livechat/queue 12 times a minute" in warnings[0]
    assert "bot role" in warnings[0]


async def test_collectors_start_and_stop_while_it_runs() -> None:
    queue = ScriptedCollector([SUCCESS])
    agents = ScriptedCollector(
        [Result(Outcome.SUCCESS, ())], name="agents", endpoint="livechat/users/agent"
    )
    metrics = SelfMetrics(["queue"])
    exposition = Exposition(metrics.registry)
    poller = Poller([Schedule(queue, 0.05)], lambda _: 0.0, exposition, metrics, 60.0)
    async with polling(poller):
        await until(lambda: len(queue.started) >= 1)
        poller.start(Schedule(agents, 0.05))
        await until(lambda: len(agents.started) >= 1 and poller.status["agents"].serving)
        assert {s.name for s in poller.statuses()} == {"queue", "agents"}
        with pytest.raises(ValueError, match="already running"):
            poller.start(Schedule(agents, 0.05))
        await poller.stop("queue")
        assert "queue" not in poller.status
        assert b"rocketchat_livechat_queue_chats" not in bytes(await exposition.answer(TEXT))
        stopped_at = len(queue.started)
        await until(lambda: len(agents.started) >= 3)
        assert len(queue.started) == stopped_at


async def test_published_status_is_frozen_and_redacted() -> None:
    leaky: Result[Families] = Result(Outcome.SERVER_ERROR, None, "Invalid token secret-token-1")
    collector = ScriptedCollector([leaky])
    metrics = SelfMetrics(["queue"])
    exposition = Exposition(metrics.registry)
    poller = Poller(
        [Schedule(collector, 10)],
        lambda _: 0.0,
        exposition,
        metrics,
        60.0,
        redact=lambda text: text.replace("secret-token-1", "<redacted>"),
    )
    async with polling(poller):
        await until(
            lambda: (
                poller.status.get("queue") is not None
                and poller.status["queue"].outcome is not None
            )
        )
        status = poller.status["queue"]
        assert status.message == "Invalid token <redacted>"
        with pytest.raises(AttributeError):
            status.message = "changed"  # type: ignore[misc]


async def test_a_poll_of_many_pages_warns_once_that_it_exceeds_the_servers_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Paging(ScriptedCollector):
        async def answer(self) -> Result[Families]:
            for _ in range(3):  # three pages, as the client notes them, plus a name lookup
                note_request(self.endpoint, "200")
            note_request("livechat/department", "200")
            return Result(Outcome.SUCCESS, families(1), status=200, rate_limit=RateLimit(10, 9, 5))

    collector = Paging([SUCCESS])
    with caplog.at_level(logging.WARNING):
        async with running(collector, interval=10) as h:
            await until(lambda: polls(h, "success") >= 1)
            assert (
                h.value(
                    "rocketchat_livechat_exporter_requests_total", collector="queue", code="200"
                )
                == 4
            )
    warned = [
        r for r in caplog.records if r.getMessage() == "polling exceeds the server's rate limit"
    ]
    assert len(warned) == 1
    assert warned[0].__dict__["kv"]["requests_per_poll"] == 3  # only the endpoint's own requests
