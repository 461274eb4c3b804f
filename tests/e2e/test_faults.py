"""Fault injection: the real exporter process against a Rocket.Chat that misbehaves.

Every case of FAULTS runs the same cycle against its own fake and exporter (interval 1s,
timeout 1s, max_staleness 2s; /metrics scraped every 100 ms throughout):

1. a good poll: the series equal the fake's truth;
2. the fault starts and the polls fail, until the last good series are dropped;
3. the world changes, the fault ends, and the cycle waits for the next good poll.

The tests below then check one behaviour each, on every case's record: the process stays up
and every scrape is answered quickly; the failed polls are counted with the case's `result`
and their requests with its codes; `up` is 0 while the fault lasts; the last good series are
served for max_staleness after the first failure and dropped after it; the next good poll
serves the new truth with up 1; and nothing in the log is a traceback.

A cycle needs several poll intervals (1s is the least the config accepts), so the cycles run
a few at a time, once per module, and only those of the selected tests (`-k` works).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.fake import ApiUser, ServerSettings
from exporter.rocketchat.outcome import Outcome
from tests.e2e.conftest import small_world
from tests.e2e.harness import (
    Labels,
    exporter_config,
    queue_truth,
    selected,
    start_exporter,
)
from tests.e2e.observe import (
    POLLS,
    QUEUE_CHATS,
    REQUESTS,
    Observation,
    Watcher,
    first_log,
    log_time,
    sample_process,
    tracebacks,
)
from tests.support.faults import (
    Delay,
    Drop,
    Fault,
    HugeBody,
    InstrumentedFake,
    Reply,
    RequestRecord,
    ResetMidBody,
)

MAX_STALENESS = 2.0
TIMEOUT = 1.0
SCRAPE_BOUND = 0.5  # seconds per scrape, whatever Rocket.Chat does
DROP_SLACK = 0.75  # the drop is re-rendered and must be seen by a scrape 100 ms apart
AT_ONCE = 4  # cycles running side by side (2 cores: 4 exporters, 4 fakes, the scrapes)
STEP_WITHIN = 20.0  # seconds any step of a cycle may take before it is a failure
QUEUE = "livechat/queue"
FAILURES = frozenset(outcome.value for outcome in Outcome) - {"success"}
GIB = 1 << 30
POLL_DURATION = "rocketchat_livechat_exporter_poll_duration_seconds"


# --- the faults ----------------------------------------------------------------------------


@dataclass
class Stage:
    """One case's fake Rocket.Chat and what its fault needs."""

    fake: InstrumentedFake
    bot: ApiUser
    token_file: Path
    port: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


Step = Callable[[Stage], Awaitable[None]]


@dataclass(frozen=True)
class FaultCase:
    name: str
    start: Step
    end: Step
    result: str  # the polls_total result of the failed polls
    codes: frozenset[str]  # the requests_total codes of their requests
    rocketchat: Mapping[str, Any] = field(default_factory=dict)  # config overrides
    failed_polls: int = 1  # the cycle waits for at least this many before the fault ends
    prepare: Callable[[Stage], None] = lambda stage: None

    def __str__(self) -> str:
        return self.name


def injected(*faults: Fault) -> tuple[Step, Step]:
    """Every livechat/queue request answered by `faults` in order, the last one until the
    fault ends."""

    async def start(stage: Stage) -> None:
        for fault in faults[:-1]:
            stage.fake.inject(fault, times=1, path=QUEUE)
        stage.fake.inject(faults[-1], times=None, path=QUEUE)

    async def end(stage: Stage) -> None:
        stage.fake.clear_faults()

    return start, end


def server_down() -> tuple[Step, Step]:
    async def start(stage: Stage) -> None:
        await stage.fake.stop()

    async def end(stage: Stage) -> None:
        await stage.fake.start(port=stage.port)

    return start, end


def token_revoked() -> tuple[Step, Step]:
    """The token is revoked; the fault ends when the Secret (the token file) is rotated."""

    async def start(stage: Stage) -> None:
        stage.fake.revoke(stage.bot.user_id, stage.bot.token)

    async def end(stage: Stage) -> None:
        rotated = f"rotated-{secrets.token_hex(12)}"
        stage.bot.token = rotated
        stage.token_file.write_text(rotated + "\n")

    return start, end


STORM_WINDOW_MS = 2000


def rate_limited_user(stage: Stage) -> None:
    stage.bot.bypass_rate_limit = False
    stage.fake.settings.rate_limit_calls = 1
    stage.fake.settings.rate_limit_window_ms = STORM_WINDOW_MS


def rate_limit_storm() -> tuple[Step, Step]:
    """Another client on the same IP takes every call of every window (the limit counts per
    IP, docs/rocketchat-api.md, "Rate limits"), so each of the exporter's requests
    is refused with a 429."""

    async def start(stage: Stage) -> None:
        neighbour = stage.fake.add_user(ApiUser.supervisor("Neighbour00000001", "neighbour-token"))
        stage.tasks.append(asyncio.create_task(_hammer(stage.fake.url, neighbour)))

    async def end(stage: Stage) -> None:
        for task in stage.tasks:
            task.cancel()
        await asyncio.gather(*stage.tasks, return_exceptions=True)

    return start, end


async def _hammer(url: str, user: ApiUser, every: float = 0.025, at_most: float = 60.0) -> None:
    headers = {"X-User-Id": user.user_id, "X-Auth-Token": user.token}
    deadline = time.monotonic() + at_most
    async with aiohttp.ClientSession(headers=headers) as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/api/v1/{QUEUE}") as response:
                    await response.read()
            await asyncio.sleep(every)


def queue_page(queue: object) -> dict[str, Any]:
    return {"queue": queue, "count": 1, "offset": 0, "total": 1, "success": True}


def row(chats: object) -> dict[str, Any]:
    user = {"_id": "a1", "username": "alice", "status": "online"}
    return {"chats": chats, "user": user, "department": {}}


def case(
    name: str, steps: tuple[Step, Step], result: str, codes: Iterable[str], **options: Any
) -> FaultCase:
    return FaultCase(name, steps[0], steps[1], result, frozenset(codes), **options)


FAULTS = [
    # The slowest first, so that the cycles running side by side end together.
    case(
        "429 storm",
        rate_limit_storm(),
        "rate_limited",
        {"429"},
        prepare=rate_limited_user,
        failed_polls=2,
    ),
    case(
        "a 1 GiB body streamed without a length",
        injected(HugeBody(GIB, chunked=True)),
        "invalid_response",
        {"200"},
        rocketchat={"timeout": "20s"},  # refused for its size, not for the time it takes
    ),
    case(
        "a 1 GiB body announced by Content-Length",
        injected(HugeBody(GIB)),
        "invalid_response",
        {"200"},
    ),
    case(
        "connection refused: the server is down, then returns",
        server_down(),
        "network_error",
        {"none"},
    ),
    case("connection closed before any answer", injected(Drop()), "network_error", {"none"}),
    case("connection reset mid-body", injected(ResetMidBody()), "network_error", {"200"}),
    case(
        "chunked body cut short",
        injected(ResetMidBody(declared_length=None)),
        "network_error",
        {"200"},
    ),
    case(
        "truncated JSON",
        injected(Reply(200, b'{"queue":[{"chats":1,"user":{"_id":"a1')),
        "invalid_response",
        {"200"},
    ),
    case(
        "an HTML error page with status 200",
        injected(Reply(200, b"<html><body>Bad Gateway</body></html>", content_type="text/html")),
        "invalid_response",
        {"200"},
    ),
    case("an empty body", injected(Reply(200, b"")), "invalid_response", {"200"}),
    case(
        "chats as a string",
        injected(Reply.json(queue_page([row("3")]))),
        "invalid_response",
        {"200"},
    ),
    case("chats null", injected(Reply.json(queue_page([row(None)]))), "invalid_response", {"200"}),
    case(
        "queue not a list",
        injected(Reply.json(queue_page({"0": row(1)}))),
        "invalid_response",
        {"200"},
    ),
    case("queue null", injected(Reply.json(queue_page(None))), "invalid_response", {"200"}),
    case("answers slower than the timeout", injected(Delay(3 * TIMEOUT)), "timeout", {"none"}),
    case(
        "a burst of 5xx",
        injected(
            Reply.json({"success": False, "error": "Internal server error"}, status=500),
            Reply(502, b"<html>Bad Gateway</html>", content_type="text/html"),
            Reply(503, b"Service Unavailable", content_type="text/plain"),
        ),
        "server_error",
        {"500", "502", "503"},
        failed_polls=3,
    ),
    case(
        "token revoked, then the Secret rotated",
        token_revoked(),
        "unauthorized",
        {"401"},
        failed_polls=2,
    ),
]


def named(name: str) -> FaultCase:
    return next(c for c in FAULTS if c.name == name)


# --- one cycle -------------------------------------------------------------------------------


@dataclass
class Cycle:
    """What one case's cycle saw; the tests check it."""

    case: FaultCase
    error: str = ""  # a step that did not happen in time, or a crash of the cycle itself
    observations: list[Observation] = field(default_factory=list)
    good: Observation | None = None  # the last scrape before the fault
    good_truth: dict[Labels, float] = field(default_factory=dict)
    fault_started: float = 0.0  # Unix times
    failed_at: float = 0.0  # the first failed poll, by the exporter's log
    first_failure: Observation | None = None
    dropped: Observation | None = None
    fault_ended: float = 0.0
    truth_after: dict[Labels, float] = field(default_factory=dict)
    recovered: Observation | None = None
    alive_at_the_end: bool = False
    exit_code: int | None = None
    rss_before_kib: int = 0
    peak_rss_kib: int = 0
    requests: list[RequestRecord] = field(default_factory=list)
    bot_user_id: str = ""
    raw_log: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)

    def during_the_fault(self) -> list[Observation]:
        return [
            o for o in self.observations if self.fault_started <= o.at and o.done < self.fault_ended
        ]

    def last_during_the_fault(self) -> Observation:
        during = self.during_the_fault()
        assert during, "no scrape while the fault lasted"
        return during[-1]


def failed_polls(observation: Observation) -> float:
    return sum(observation.polls(result) for result in FAILURES)


async def run_cycle(case: FaultCase, tmp_path: Path) -> Cycle:
    cycle = Cycle(case)
    bot = ApiUser.supervisor(token=f"pat-{secrets.token_hex(16)}", bypass_rate_limit=True)
    fake = InstrumentedFake(small_world(), ServerSettings(), [bot], shuffle_seed=5)
    stage = Stage(fake, bot, tmp_path / "token")
    case.prepare(stage)
    await fake.start()
    stage.port = int(fake.url.rsplit(":", 1)[1])
    stage.token_file.write_text(bot.token + "\n")
    config = exporter_config(
        fake,
        rocketchat={"timeout": f"{TIMEOUT:g}s", "auth_token_file": str(stage.token_file)},
        poll={"interval": "1s", "max_staleness": f"{MAX_STALENESS:g}s"},
    )
    del config["rocketchat"]["auth_token"]
    config["rocketchat"].update(case.rocketchat)
    exporter = None
    try:
        exporter = await start_exporter(config, tmp_path)
        async with Watcher(exporter) as watcher:
            cycle.observations = watcher.observations
            try:
                await _go_through(cycle, stage, watcher)
            finally:
                cycle.alive_at_the_end = exporter.process.returncode is None
                if cycle.alive_at_the_end:
                    cycle.peak_rss_kib = sample_process(exporter.process.pid).hwm_kib
    except Exception:
        cycle.error = traceback.format_exc(limit=3)
    finally:
        if exporter is not None:
            cycle.exit_code = await exporter.stop()
            cycle.raw_log = exporter.raw_log
            cycle.tracebacks = tracebacks(exporter)
        for task in stage.tasks:
            task.cancel()
        await asyncio.gather(*stage.tasks, return_exceptions=True)
        await fake.stop()
        cycle.requests = list(fake.requests)
        cycle.bot_user_id = bot.user_id
    return cycle


async def _go_through(cycle: Cycle, stage: Stage, watcher: Watcher) -> None:
    fake, case, exporter = stage.fake, cycle.case, watcher.exporter
    good = await watcher.until(
        lambda o: o.polls("success") >= 1 and bool(o.scrape.family(QUEUE_CHATS)),
        STEP_WITHIN,
        "a first good poll",
    )
    cycle.rss_before_kib = sample_process(exporter.process.pid).rss_kib
    cycle.good, cycle.good_truth = good, queue_truth(fake.world)

    cycle.fault_started = time.time()
    await case.start(stage)
    before = failed_polls(good)
    cycle.first_failure = await watcher.until(
        lambda o: failed_polls(o) > before, STEP_WITHIN, "a failed poll"
    )
    down = first_log(exporter, "collector down", since=cycle.fault_started)
    assert down is not None, "no 'collector down' log line"
    cycle.failed_at = log_time(down)
    cycle.dropped = await watcher.until(
        lambda o: not o.scrape.family(QUEUE_CHATS),
        MAX_STALENESS + STEP_WITHIN,
        "the stale series dropped",
    )
    await watcher.until(
        lambda o: failed_polls(o) >= before + case.failed_polls,
        STEP_WITHIN,
        f"{case.failed_polls} failed polls",
    )

    alice = next(a for a in fake.world.agents.values() if a.username == "alice")
    room = next(r for r in fake.world.rooms.values() if r.agent_id == alice.id and r.open)
    fake.world.close_room(room.id)  # so that recovery must show new data, not the old
    cycle.truth_after = queue_truth(fake.world)
    cycle.fault_ended = time.time()
    await case.end(stage)
    successes = good.polls("success")
    cycle.recovered = await watcher.until(
        lambda o: o.polls("success") > successes and o.up() == 1, STEP_WITHIN, "a good poll again"
    )


async def run_cycles(cases: list[FaultCase], tmp_path: Path) -> dict[str, Cycle]:
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(index: int, case: FaultCase) -> Cycle:
        async with gate:
            where = tmp_path / f"case-{index}"
            where.mkdir()
            return await run_cycle(case, where)

    cycles = await asyncio.gather(*(one(i, c) for i, c in enumerate(cases)))
    return {cycle.case.name: cycle for cycle in cycles}


@pytest.fixture(scope="module")
def cycles(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Cycle]:
    """The cycles of every case a selected test of this module asks for, run once."""
    cases = selected(request, "case", FAULTS)
    return asyncio.run(run_cycles(cases, tmp_path_factory.mktemp("faults")))


@pytest.fixture
def cycle(cycles: dict[str, Cycle], case: FaultCase) -> Cycle:
    result = cycles[case.name]
    if result.error:
        pytest.fail(f"the cycle of {case.name!r} did not complete:\n{result.error}")
    return result


every_fault = pytest.mark.parametrize("case", FAULTS, ids=str)


def only(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", [named(name)], ids=str)


# --- what must hold for every fault ----------------------------------------------------------


@every_fault
def test_the_process_stays_up_and_stops_cleanly(cycle: Cycle) -> None:
    assert cycle.alive_at_the_end
    assert cycle.exit_code == 0


@every_fault
def test_every_scrape_is_answered_quickly(cycle: Cycle) -> None:
    during = cycle.during_the_fault()
    assert len(during) >= 10  # scrapes every 100 ms over at least max_staleness
    slowest = max(cycle.observations, key=lambda o: o.took)
    assert slowest.took < SCRAPE_BOUND


def grown(cycle: Cycle, metric: str, label: str) -> set[str]:
    """The values of `label` whose count in `metric` grew from the good state to the fault."""
    assert cycle.good is not None
    before = cycle.good.counted(metric, label)
    during = cycle.last_during_the_fault().counted(metric, label)
    return {value for value, count in during.items() if count > before.get(value, 0.0)}


@every_fault
def test_the_failed_polls_are_counted_with_their_result(cycle: Cycle) -> None:
    assert grown(cycle, POLLS, "result") == {cycle.case.result}


@every_fault
def test_their_requests_are_counted_with_their_code(cycle: Cycle) -> None:
    assert grown(cycle, REQUESTS, "code") == cycle.case.codes


@every_fault
def test_up_is_0_while_the_fault_lasts(cycle: Cycle) -> None:
    assert cycle.first_failure is not None
    after_failure = [o for o in cycle.during_the_fault() if o.at >= cycle.first_failure.at]
    assert after_failure
    assert {o.up() for o in after_failure} == {0}


@every_fault
def test_the_last_good_series_are_served_for_max_staleness(cycle: Cycle) -> None:
    assert cycle.first_failure is not None
    assert cycle.good is not None
    good_series = cycle.good.scrape.family(QUEUE_CHATS)
    assert good_series == cycle.good_truth
    served = [
        o
        for o in cycle.observations
        if o.at >= cycle.first_failure.at and o.done < cycle.failed_at + MAX_STALENESS - 0.1
    ]
    assert len(served) >= 5
    assert all(o.scrape.family(QUEUE_CHATS) == good_series for o in served)


@every_fault
def test_the_stale_series_are_dropped_after_max_staleness(cycle: Cycle) -> None:
    assert cycle.dropped is not None
    assert cycle.dropped.done >= cycle.failed_at + MAX_STALENESS
    assert cycle.dropped.at <= cycle.failed_at + MAX_STALENESS + DROP_SLACK
    later = [o for o in cycle.during_the_fault() if o.at >= cycle.dropped.at]
    assert all(not o.scrape.family(QUEUE_CHATS) for o in later)


@every_fault
def test_the_next_good_poll_serves_the_truth_again(cycle: Cycle) -> None:
    assert cycle.recovered is not None
    assert cycle.recovered.up() == 1
    assert cycle.recovered.scrape.family(QUEUE_CHATS) == cycle.truth_after
    assert cycle.truth_after != cycle.good_truth


@every_fault
def test_nothing_is_logged_as_a_traceback(cycle: Cycle) -> None:
    assert cycle.tracebacks == []


# --- what some faults must also do ---------------------------------------------------------


def exporter_requests(cycle: Cycle, start: float, end: float) -> list[RequestRecord]:
    return [
        r
        for r in cycle.requests
        if r.user_id == cycle.bot_user_id and r.endpoint == QUEUE and start <= r.wall <= end
    ]


@pytest.mark.parametrize(
    ("case", "where"),
    [
        (named("chats as a string"), "Expected `int`, got `str` - at `$.queue[0].chats`"),
        (named("chats null"), "Expected `int`, got `null` - at `$.queue[0].chats`"),
        (named("queue not a list"), "Expected `array`, got `object` - at `$.queue`"),
        (named("queue null"), "Expected `array`, got `null` - at `$.queue`"),
    ],
    ids=str,
)
def test_a_wrong_type_is_logged_with_its_place_in_the_answer(cycle: Cycle, where: str) -> None:
    down = [json.loads(line) for line in cycle.raw_log if '"collector down"' in line]
    assert len(down) == 1
    assert where in down[0]["error"]


@only("429 storm")
def test_in_a_429_storm_nothing_is_sent_before_the_window_reopens(cycle: Cycle) -> None:
    in_storm = sorted(
        (r for r in cycle.requests if cycle.fault_started <= r.wall <= cycle.fault_ended),
        key=lambda r: r.monotonic,
    )
    mine = [r for r in in_storm if r.user_id == cycle.bot_user_id]
    assert [r.status for r in mine].count(429) >= 2
    # The neighbour takes the one call of each window as soon as it opens: its 200s mark the
    # window starts. Polls are 1 s apart, yet no two of the exporter's requests share one.
    reopened = [r.monotonic for r in in_storm if r.user_id != cycle.bot_user_id and r.status == 200]
    for earlier, later in itertools.pairwise(mine):
        assert any(earlier.monotonic < t < later.monotonic for t in reopened)


@only("token revoked, then the Secret rotated")
def test_a_revoked_token_is_sent_once_a_poll_not_retried(cycle: Cycle) -> None:
    assert cycle.recovered is not None
    refused = [r for r in exporter_requests(cycle, 0, time.time()) if r.status == 401]
    polls = cycle.recovered.polls("unauthorized")
    assert polls >= 2
    assert len(refused) == polls


@only("connection refused: the server is down, then returns")
def test_a_returning_server_is_polled_again_without_a_backoff(cycle: Cycle) -> None:
    assert cycle.recovered is not None
    # The next scheduled poll (1 s, with 5% jitter) succeeds; scrapes are 100 ms apart.
    assert cycle.recovered.at - cycle.fault_ended < 1.05 + 0.5


@only("answers slower than the timeout")
def test_a_slow_answer_is_given_up_at_the_timeout(cycle: Cycle) -> None:
    assert cycle.first_failure is not None
    durations = cycle.first_failure.scrape.family(f"{POLL_DURATION}_sum")
    counts = cycle.first_failure.scrape.family(f"{POLL_DURATION}_count")
    assert cycle.good is not None
    before_sum = sum(cycle.good.scrape.family(f"{POLL_DURATION}_sum").values())
    before_count = sum(cycle.good.scrape.family(f"{POLL_DURATION}_count").values())
    polls = sum(counts.values()) - before_count
    assert polls >= 1
    assert (sum(durations.values()) - before_sum) / polls == pytest.approx(TIMEOUT, abs=0.3)
    abandoned = exporter_requests(cycle, cycle.fault_started, cycle.fault_ended)
    assert abandoned
    assert {r.status for r in abandoned} == {None}  # the exporter hung up first


@only("a 1 GiB body streamed without a length")
def test_a_huge_streamed_body_is_cut_at_the_limit_not_buffered(cycle: Cycle) -> None:
    from exporter.rocketchat.client import MAX_BODY_BYTES

    grown_mib = (cycle.peak_rss_kib - cycle.rss_before_kib) / 1024
    # At most the 128 MiB limit (and a growing buffer's slack) is ever held, not the 1 GiB.
    assert grown_mib < MAX_BODY_BYTES / 2**20 * 1.5


@only("a 1 GiB body announced by Content-Length")
def test_a_huge_announced_body_is_refused_before_reading(cycle: Cycle) -> None:
    grown_mib = (cycle.peak_rss_kib - cycle.rss_before_kib) / 1024
    assert grown_mib < 32


# --- faults on the scraping side -----------------------------------------------------------


async def test_scrapers_that_hang_up_early_leave_no_traceback(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    """Prometheus hangs up on a scrape that exceeds its scrape_timeout; so do impatient
    clients. The exporter lets them go without logging an error."""

    async def hang_up(session: aiohttp.ClientSession, times: int) -> None:
        impatient = aiohttp.ClientTimeout(total=0.001)
        for _ in range(times):
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with session.get(exporter.url + "/metrics", timeout=impatient) as response:
                    await response.read()

    exporter = await start_exporter(exporter_config(fake), tmp_path)
    try:
        await exporter.wait_for_polls()
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(hang_up(session, 150) for _ in range(4)))
        status, _, _ = await exporter.get("/metrics")
    finally:
        await exporter.stop()
    assert status == 200
    assert tracebacks(exporter) == []
