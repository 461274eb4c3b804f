"""The conversations collector: windows, counting each close once, and its families.

The collector talks to the fake on 127.0.0.1 with the world's hand-moved clock as the server's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aioresponses import aioresponses
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors.closed_rooms import CloseLedger, Histogram, Window, iso_ms, to_ms
from exporter.collectors.conversations import ConversationsCollector
from exporter.collectors.departments import DepartmentDirectory
from exporter.config import ConversationsConfig, PollConfig
from exporter.exposition import Format, render_text
from exporter.fake import ApiUser, World
from exporter.rocketchat.auth import TokenAuth
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.outcome import Outcome
from exporter.snapshot import Families, Snapshot
from tests.support.faults import InstrumentedFake

T0 = 1_777_000_000.0
MS = 1000


# --- the ledger -------------------------------------------------------------------------


def test_the_first_window_starts_now_so_older_closes_never_count() -> None:
    ledger = CloseLedger(lookback=300, max_catch_up=3600)
    assert ledger.window(100 * MS) == Window(100 * MS, 100 * MS)


def test_later_windows_reach_back_by_the_lookback_but_not_before_the_start() -> None:
    ledger = CloseLedger(lookback=300, max_catch_up=3600)
    ledger.window(1000 * MS)
    ledger.advance(1000 * MS)
    assert ledger.window(1060 * MS) == Window(1000 * MS, 1060 * MS)
    ledger.advance(1060 * MS)
    ledger.advance(1400 * MS)
    assert ledger.window(1460 * MS) == Window(1100 * MS, 1460 * MS)


def test_a_long_outage_is_read_back_only_as_far_as_max_catch_up() -> None:
    ledger = CloseLedger(lookback=300, max_catch_up=3600)
    ledger.window(0)
    ledger.advance(1)
    window = ledger.window(10_000 * MS)
    assert window.skipped_ms == 10_000 * MS - 3600 * MS - 1
    assert window.start_ms == (10_000 - 3600 - 300) * MS


def test_ids_are_remembered_within_the_lookback_and_forgotten_after() -> None:
    ledger = CloseLedger(lookback=300, max_catch_up=3600)
    ledger.window(0)
    ledger.record("a", 10 * MS)
    ledger.advance(20 * MS)
    assert not ledger.is_new("a")
    ledger.advance(309 * MS)
    assert not ledger.is_new("a")  # a window may still start at 9 s
    ledger.advance(311 * MS)
    assert ledger.is_new("a")
    assert len(ledger) == 0


def test_seen_rooms_count_towards_the_window_that_holds_them() -> None:
    ledger = CloseLedger(lookback=300, max_catch_up=3600)
    ledger.window(0)
    for n, closed in enumerate((5, 10, 10)):
        ledger.record(f"r{n}", closed * MS)
    assert ledger.seen_in(Window(10 * MS, 20 * MS)) == 2
    ledger.forget_missing(Window(10 * MS, 20 * MS), {"r1"})
    assert ledger.is_new("r2")
    assert not ledger.is_new("r0")  # outside the window read: kept


def test_histogram_bounds_are_inclusive_and_cumulative() -> None:
    histogram = Histogram((15.0, 30.0))
    for value in (15.0, 15.001, 30.0, 31.0):
        histogram.observe(value)
    samples = dict(histogram.samples(("d",)))
    assert samples["d", "_bucket", "15.0"] == 1
    assert samples["d", "_bucket", "30.0"] == 3
    assert samples["d", "_bucket", "+Inf"] == 4
    assert samples["d", "_count", ""] == 4
    assert samples["d", "_sum", ""] == pytest.approx(91.001)


def test_iso_and_ms_round_trip() -> None:
    assert iso_ms(to_ms("2026-05-04T10:05:00.012Z")) == "2026-05-04T10:05:00.012Z"


# --- the collector against the fake -------------------------------------------------------


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    world: World
    clock: Clock
    fake: InstrumentedFake
    collector: ConversationsCollector
    sales: str
    alice: str


def manager() -> ApiUser:
    user = ApiUser.supervisor(bypass_rate_limit=True)
    user.permissions.add("view-livechat-rooms")
    return user


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    clock = Clock()
    world = World(seed=7, clock=clock)
    sales = world.add_department("Sales").id
    alice = world.add_agent("alice", department_ids=[sales]).id
    user = manager()
    async with InstrumentedFake(world, users=[user]) as fake:
        auth = TokenAuth(user.user_id, user.token)
        async with RocketChatClient(fake.url, auth, 5.0) as client:
            collector = ConversationsCollector(
                client,
                PollConfig(),
                ConversationsConfig(enabled=True, first_response_buckets=(30.0, 60.0)),
                DepartmentDirectory(600),
                server_clock=clock,
            )
            yield Setup(world, clock, fake, collector, sales, alice)


def served_and_closed(s: Setup, *, first_reply: float = 20.0) -> str:
    inquiry = s.world.queue_inquiry(s.sales)
    s.world.take_inquiry(inquiry.id, s.alice)
    s.world.conversations.agent_reply(inquiry.room_id, s.clock.now + first_reply)
    s.world.close_room(inquiry.room_id, forget=True)
    return inquiry.room_id


def values(families: Families) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = b"".join(render_text(_snapshot(families), Format.TEXT)).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _snapshot(families: Families) -> Snapshot:
    return Snapshot().replace("conversations", families)


def closed(s: Setup, got: Families, outcome: str) -> float:
    key = (
        "rocketchat_livechat_conversations_closed_total",
        (("department", "Sales"), ("department_id", s.sales), ("outcome", outcome)),
    )
    return values(got)[key]


async def poll(s: Setup) -> Families:
    answer = await s.collector.poll()
    assert answer.outcome is Outcome.SUCCESS, answer.message
    assert answer.data is not None
    return answer.data


async def test_closes_before_the_first_poll_are_not_counted(setup: Setup) -> None:
    served_and_closed(setup)
    setup.clock.now += 1
    first = await poll(setup)
    assert closed(setup, first, "served") == 0  # the department's series exist from the start
    setup.clock.now += 10
    served_and_closed(setup)
    setup.clock.now += 10
    assert closed(setup, await poll(setup), "served") == 1


async def test_each_close_counts_once_across_overlapping_windows(setup: Setup) -> None:
    await poll(setup)
    for _ in range(3):
        setup.clock.now += 5
        served_and_closed(setup)
        left = setup.world.queue_inquiry(setup.sales)
        setup.world.close_room(left.room_id, forget=True)
        setup.clock.now += 55
        got = await poll(setup)
    assert closed(setup, got, "served") == 3
    assert closed(setup, got, "unserved") == 3


async def test_a_close_on_the_window_edge_counts_once(setup: Setup) -> None:
    await poll(setup)
    setup.clock.now += 60
    served_and_closed(setup)  # closedAt == the next window's end, and inside the one after
    got = await poll(setup)
    setup.clock.now += 60
    got = await poll(setup)
    assert closed(setup, got, "served") == 1


async def test_a_late_close_inside_the_lookback_is_still_counted(setup: Setup) -> None:
    await poll(setup)
    setup.clock.now += 10
    late = setup.world.queue_inquiry(setup.sales)  # unserved, closed first, written last
    setup.world.conversations.closed(late.room_id, visible_at=setup.clock.now + 90)
    setup.clock.now += 1
    served_and_closed(setup)
    setup.clock.now += 50
    got = await poll(setup)
    assert (closed(setup, got, "served"), closed(setup, got, "unserved")) == (1, 0)
    setup.clock.now += 60  # the late close sorts before the room already counted
    got = await poll(setup)
    assert (closed(setup, got, "served"), closed(setup, got, "unserved")) == (1, 1)


async def test_histograms_observe_first_response_and_duration(setup: Setup) -> None:
    await poll(setup)
    setup.clock.now += 1
    served_and_closed(setup, first_reply=45.0)  # queue wait included: from the first message
    setup.clock.now += 10
    got = values(await poll(setup))
    labels = (("department", "Sales"), ("department_id", setup.sales))
    bucket = "rocketchat_livechat_conversation_first_response_seconds_bucket"
    assert got[bucket, (*labels, ("le", "30.0"))] == 0
    assert got[bucket, (*labels, ("le", "60.0"))] == 1
    agent = (("agent", "alice"), ("agent_id", setup.alice), *labels)
    assert got["rocketchat_livechat_agent_conversations_closed_total", agent] == 1
    count = "rocketchat_livechat_conversation_duration_seconds_count"
    assert got[count, (*labels, ("outcome", "served"))] == 1


async def test_paging_past_100_rooms_counts_every_room(setup: Setup) -> None:
    await poll(setup)
    setup.clock.now += 1
    for _ in range(250):
        served_and_closed(setup)
    setup.clock.now += 1
    assert closed(setup, await poll(setup), "served") == 250
    assert len(setup.fake.requests_to("livechat/rooms")) == 1 + 3


async def test_a_quiet_poll_costs_one_request(setup: Setup) -> None:
    await poll(setup)
    setup.clock.now += 5
    for _ in range(120):
        served_and_closed(setup)
    setup.clock.now += 55
    await poll(setup)
    before = len(setup.fake.requests_to("livechat/rooms"))
    setup.clock.now += 60
    await poll(setup)  # 120 rooms in the lookback, all counted already
    assert len(setup.fake.requests_to("livechat/rooms")) == before + 1


async def test_a_failed_poll_loses_nothing(setup: Setup) -> None:
    await poll(setup)
    setup.clock.now += 5
    served_and_closed(setup)
    setup.fake.users.clear()  # every request is now a 401
    assert (await setup.collector.poll()).outcome is Outcome.UNAUTHORIZED
    user = manager()
    setup.fake.add_user(user)
    setup.clock.now += 600  # well past the lookback
    assert closed(setup, await poll(setup), "served") == 1


async def test_without_the_permission_the_poll_names_it(setup: Setup) -> None:
    next(iter(setup.fake.users.values())).permissions.discard("view-livechat-rooms")
    answer = await setup.collector.poll()
    assert answer.outcome is Outcome.FORBIDDEN
    assert "view-livechat-rooms" in answer.message


async def test_the_request_sends_only_parameters_every_server_accepts(setup: Setup) -> None:
    await poll(setup)
    (record,) = setup.fake.requests_to("livechat/rooms")
    assert record.param_names == {"closedAt", "sort", "count", "offset"}
    assert record.param("sort") == '{"closedAt":1,"_id":1}'
    assert record.param("count") == "100"


async def test_visitor_data_is_never_kept(setup: Setup) -> None:
    await poll(setup)
    setup.clock.now += 1
    served_and_closed(setup)
    setup.clock.now += 1
    got = await poll(setup)
    text = b"".join(render_text(_snapshot(got), Format.OPENMETRICS)).decode()
    assert "guest-" not in text
    assert "tkn-" not in text
    assert "example.com" not in text


# --- agents per department (the agents collector) -----------------------------------------


async def test_department_agents_count_each_agent_in_each_of_its_departments() -> None:
    from exporter.collectors.agents import AgentsCollector

    world = World(seed=8)
    sales = world.add_department("Sales").id
    support = world.add_department("Support").id
    empty = world.add_department("Billing").id
    world.add_agent("alice", department_ids=[sales, support])
    world.add_agent("bob", status="away", department_ids=[sales])
    world.add_agent("carol", status_livechat="not-available", department_ids=[support])
    world.add_agent("dave")  # in no department
    user = ApiUser.supervisor(bypass_rate_limit=True)
    async with InstrumentedFake(world, users=[user]) as fake:
        auth = TokenAuth(user.user_id, user.token)
        async with RocketChatClient(fake.url, auth, 5.0) as client:
            collector = AgentsCollector(client, PollConfig(), DepartmentDirectory(600))
            answer = await collector.poll()
    assert answer.data is not None
    got = values(answer.data)
    name = "rocketchat_livechat_department_agents"

    def count(department: str, label: str, status: str, livechat: str) -> float | None:
        key = labels_of(
            department_id=department, department=label, status=status, livechat_status=livechat
        )
        return got.get((name, key))

    assert count(sales, "Sales", "online", "available") == 1
    assert count(sales, "Sales", "away", "available") == 1
    assert count(support, "Support", "online", "available") == 1
    assert count(support, "Support", "online", "not-available") == 1
    assert count(empty, "Billing", "online", "available") == 0  # the alert needs the zero


def labels_of(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


# --- configuration --------------------------------------------------------------------------

CREDENTIALS = {"url": "http://rc.test", "user_id": "u", "auth_token": "t"}


def _config(conversations: object) -> ConversationsConfig:
    from exporter.config import parse_config

    raw = {"rocketchat": CREDENTIALS, "collectors": {"conversations": conversations}}
    return parse_config(raw, {}, "test.yaml").collectors.conversations


def test_conversations_is_off_by_default_with_its_own_minute() -> None:
    from exporter.config import parse_config

    config = parse_config({"rocketchat": CREDENTIALS}, {}, "test.yaml")
    assert not config.collectors.conversations.enabled
    assert config.interval_of("conversations") == 60


def test_the_long_form_takes_buckets_as_durations() -> None:
    config = _config({"first_response_buckets": ["30s", "2m"], "lookback": "10m"})
    assert config.enabled
    assert config.first_response_buckets == (30.0, 120.0)
    assert config.lookback == 600


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ({"duration_buckets": ["5m", "1m"]}, "collectors.conversations.duration_buckets"),
        ({"lookbak": "1m"}, "collectors.conversations.lookbak"),
    ],
)
def test_bad_conversations_keys_are_named(value: object, key: str) -> None:
    from exporter.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(key)):
        _config(value)


# --- answers a real server should not give --------------------------------------------------

ROOMS = re.compile(r"^http://rc\.test/api/v1/livechat/rooms(\?.*)?$")
DEPARTMENTS = re.compile(r"^http://rc\.test/api/v1/livechat/department(\?.*)?$")


def rooms_page(rooms: list[dict[str, object]]) -> dict[str, object]:
    return {"rooms": rooms, "count": len(rooms), "offset": 0, "total": len(rooms), "success": True}


async def test_rooms_outside_the_window_or_without_a_close_are_skipped(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(DEPARTMENTS, payload={"departments": [], "total": 0, "success": True}, repeat=True)
    clock = Clock()
    collector = ConversationsCollector(
        client, PollConfig(), ConversationsConfig(enabled=True), DepartmentDirectory(600), clock
    )
    mock.get(ROOMS, payload=rooms_page([]))
    assert (await collector.poll()).ok
    clock.now += 60
    inside = iso_ms(round((clock.now - 1) * 1000))
    rooms: list[dict[str, object]] = [
        {"_id": "old", "closedAt": "2020-01-01T00:00:00.000Z"},  # the filter was ignored
        {"_id": "open", "ts": inside},  # no closedAt at all
        {"_id": "bad", "closedAt": "yesterday"},
        {"_id": "new", "closedAt": inside, "servedBy": {"_id": "a1", "username": "alice"}},
    ]
    mock.get(ROOMS, payload=rooms_page(rooms))
    answer = await collector.poll()
    assert answer.data is not None
    got = values(answer.data)
    key = (("department", ""), ("department_id", ""), ("outcome", "served"))
    assert got["rocketchat_livechat_conversations_closed_total", key] == 1
    assert (
        "rocketchat_livechat_conversations_closed_total",
        (*key[:2], ("outcome", "unserved")),
    ) not in got


async def test_a_room_of_the_wrong_shape_fails_the_poll_in_one_line(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(DEPARTMENTS, payload={"departments": [], "total": 0, "success": True}, repeat=True)
    collector = ConversationsCollector(
        client, PollConfig(), ConversationsConfig(enabled=True), DepartmentDirectory(600), Clock()
    )
    mock.get(ROOMS, payload=rooms_page([{"_id": "x", "closedAt": 5}]))
    answer = await collector.poll()
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert "\n" not in answer.message
