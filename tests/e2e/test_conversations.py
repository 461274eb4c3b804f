"""The real exporter process against the fake: the conversations series equal the fake's truth
while rooms close over several polls (docs/conversations.md)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from exporter.fake import ApiUser, ServerSettings, World
from exporter.fake.conversations import Conversation
from tests.e2e.harness import ExporterProcess, Labels, Scrape, exporter_config, labels_of
from tests.e2e.harness import exporter_running as running
from tests.support.faults import Delay, InstrumentedFake, Reply

CLOSED = "rocketchat_livechat_conversations_closed_total"
FIRST = "rocketchat_livechat_conversation_first_response_seconds"
DURATION = "rocketchat_livechat_conversation_duration_seconds"
AGENT = "rocketchat_livechat_agent_conversations_closed_total"
FIRST_BOUNDS = (15.0, 30.0, 60.0)
DURATION_BOUNDS = (60.0, 300.0)
LOOKBACK = 3.0


class Team:
    def __init__(self) -> None:
        self.world = World(seed=21)
        self.sales = self.world.add_department("Sales").id
        self.support = self.world.add_department("Support").id
        self.alice = self.world.add_agent("alice", department_ids=[self.sales]).id
        self.bob = self.world.add_agent("bob", department_ids=[self.sales, self.support]).id
        self.origin = 0.0  # rooms closed before this are not the exporter's to count

    def served(self, department: str, agent: str, *, reply_after: float, age: float) -> str:
        inquiry = self.world.queue_inquiry(department, ts=time.time() - age)
        self.world.take_inquiry(inquiry.id, agent)
        self.world.conversations.agent_reply(inquiry.room_id, inquiry.ts + reply_after)
        self.world.close_room(inquiry.room_id, forget=True)
        return inquiry.room_id

    def abandoned(self, department: str, *, age: float) -> str:
        inquiry = self.world.queue_inquiry(department, ts=time.time() - age)
        self.world.close_room(inquiry.room_id, forget=True)
        return inquiry.room_id

    def counted(self) -> list[Conversation]:
        return [
            r
            for r in self.world.conversations.rooms.values()
            if r.closed_at is not None and r.closed_at >= self.origin
        ]

    def name(self, department: str) -> str:
        return self.world.departments[department].name


def manager() -> ApiUser:
    user = ApiUser.supervisor(bypass_rate_limit=True)
    user.permissions.add("view-livechat-rooms")
    return user


@pytest.fixture
async def team_fake() -> AsyncIterator[tuple[Team, InstrumentedFake]]:
    team = Team()
    fake = InstrumentedFake(team.world, ServerSettings(), [manager()], shuffle_seed=3)
    await fake.start()
    try:
        yield team, fake
    finally:
        await fake.stop()


def config(fake: InstrumentedFake) -> dict[str, Any]:
    conversations = {
        "enabled": True,
        "interval": "1s",
        "lookback": f"{LOOKBACK:g}s",
        "max_catch_up": "1m",
        "first_response_buckets": [f"{b:g}s" for b in FIRST_BOUNDS],
        "duration_buckets": [f"{b:g}s" for b in DURATION_BOUNDS],
    }
    return exporter_config(fake, collectors={"queue": False, "conversations": conversations})


def truth(team: Team) -> dict[tuple[str, Labels], float]:
    """Every conversations series, from the fake's room history."""
    series: dict[tuple[str, Labels], float] = {}
    rooms = team.counted()
    for department in team.world.departments:
        name = team.name(department)
        for outcome in ("served", "unserved"):
            group = [r for r in rooms if r.department_id == department and _outcome(r) == outcome]
            labels = {"department_id": department, "department": name, "outcome": outcome}
            series[CLOSED, labels_of(**labels)] = len(group)
            _histogram(series, DURATION, labels, DURATION_BOUNDS, (_duration(r) for r in group))
        answered = [
            r.response_ft
            for r in rooms
            if r.department_id == department and r.response_ft is not None
        ]
        labels = {"department_id": department, "department": name}
        _histogram(series, FIRST, labels, FIRST_BOUNDS, answered)
    for room in rooms:
        if room.served_by is not None and room.department_id is not None:
            agent_id, username = room.served_by
            key = labels_of(
                agent_id=agent_id,
                agent=username,
                department_id=room.department_id,
                department=team.name(room.department_id),
            )
            series[AGENT, key] = series.get((AGENT, key), 0) + 1
    return series


def _outcome(room: Conversation) -> str:
    return "served" if room.served else "unserved"


def _duration(room: Conversation) -> float:
    assert room.chat_duration is not None
    return room.chat_duration


def _histogram(
    series: dict[tuple[str, Labels], float],
    name: str,
    labels: dict[str, str],
    bounds: tuple[float, ...],
    values: Iterable[float | None],
) -> None:
    observed = [v for v in values if v is not None]
    for bound in bounds:
        le = labels_of(**labels, le=repr(bound))
        series[f"{name}_bucket", le] = sum(1 for v in observed if v <= bound)
    series[f"{name}_bucket", labels_of(**labels, le="+Inf")] = len(observed)
    series[f"{name}_count", labels_of(**labels)] = len(observed)


def exported(scrape: Scrape) -> dict[tuple[str, Labels], float]:
    names = {CLOSED, AGENT} | {
        f"{h}_{part}" for h in (FIRST, DURATION) for part in ("bucket", "count")
    }
    return {key: value for key, value in scrape.series.items() if key[0] in names}


async def settled(exporter: ExporterProcess, team: Team) -> Scrape:
    """Polls until the exported series equal the truth (a close is read within a poll or
    two), then returns that scrape; on timeout the assertion shows the difference."""
    last: Scrape | None = None
    for _ in range(60):
        last = await exporter.scrape()
        if exported(last) == truth(team):
            return last
        await asyncio.sleep(0.25)
    assert last is not None
    assert exported(last) == truth(team)
    return last


async def first_poll(exporter: ExporterProcess, team: Team) -> None:
    await exporter.wait_for_polls("conversations")
    team.origin = time.time()


async def test_counters_and_buckets_equal_the_truth_over_several_polls(
    team_fake: tuple[Team, InstrumentedFake], tmp_path: Path
) -> None:
    team, fake = team_fake
    closed_long_ago = team.served(team.sales, team.alice, reply_after=5, age=100)
    team.world.conversations.rooms[closed_long_ago].closed_at = time.time() - 30
    async with running(config(fake), tmp_path) as exporter:
        await first_poll(exporter, team)
        scrape = await settled(exporter, team)  # every department at 0, nothing old counted
        assert (
            scrape.value(CLOSED, department_id=team.sales, department="Sales", outcome="served")
            == 0
        )
        for round_ in range(3):
            team.served(team.sales, team.alice, reply_after=10 + 20 * round_, age=200)
            team.abandoned(team.support, age=30)
            transferred = team.world.queue_inquiry(team.sales, ts=time.time() - 400)
            team.world.take_inquiry(transferred.id, team.alice)
            team.world.conversations.agent_reply(transferred.room_id)
            team.world.conversations.served(transferred.room_id, (team.bob, "bob"))
            team.world.close_room(transferred.room_id, forget=True)
            await settled(exporter, team)
        # A close written 2 s late (inside the lookback) is counted once it shows, although
        # it sorts before a close already counted.
        late = team.world.queue_inquiry(team.support)
        team.world.conversations.closed(late.room_id, time.time() - 0.5, visible_at=time.time() + 2)
        team.served(team.support, team.bob, reply_after=4, age=20)
        scrape = await settled(exporter, team)
        bob_support = labels_of(
            agent_id=team.bob, agent="bob", department_id=team.support, department="Support"
        )
        assert scrape.series[AGENT, bob_support] == 1


async def test_paging_past_100_rooms_and_a_429_in_the_middle(
    team_fake: tuple[Team, InstrumentedFake], tmp_path: Path
) -> None:
    team, fake = team_fake
    async with running(config(fake), tmp_path) as exporter:
        await first_poll(exporter, team)
        await settled(exporter, team)
        wait = "You must wait 1 seconds before trying this endpoint again."
        body = {
            "success": False,
            "error": f"Error, too many requests. {wait} [error-too-many-requests]",
        }
        # Atomic with the closes (the fake runs on this event loop): page 1 passes, page 2 gets 429.
        fake.inject(Delay(0), times=1, path="livechat/rooms")
        fake.inject(Reply.json(body, 429), times=1, path="livechat/rooms")
        for n in range(260):
            team.served(team.sales if n % 2 else team.support, team.bob, reply_after=n % 90, age=n)
        scrape = await settled(exporter, team)
        limited = scrape.value(
            "rocketchat_livechat_exporter_polls_total",
            collector="conversations",
            result="rate_limited",
        )
        assert limited == 1
        assert not fake.pending_faults


async def test_a_restart_counts_from_zero_and_nothing_twice(
    team_fake: tuple[Team, InstrumentedFake], tmp_path: Path
) -> None:
    team, fake = team_fake
    async with running(config(fake), tmp_path) as exporter:
        await first_poll(exporter, team)
        for _ in range(5):
            team.served(team.sales, team.alice, reply_after=3, age=50)
        await settled(exporter, team)
    for room in team.world.conversations.rooms.values():  # closed well before the restart
        room.closed_at = (room.closed_at or 0) - 10
    async with running(config(fake), tmp_path) as exporter:
        await first_poll(exporter, team)
        scrape = await settled(exporter, team)
        assert (
            scrape.value(CLOSED, department_id=team.sales, department="Sales", outcome="served")
            == 0
        )
        team.served(team.sales, team.alice, reply_after=3, age=50)
        for _ in range(int(LOOKBACK) + 2):  # polls whose windows all hold that close
            scrape = await exporter.next_fresh_poll("conversations")
        assert (
            scrape.value(CLOSED, department_id=team.sales, department="Sales", outcome="served")
            == 1
        )


async def test_a_close_exactly_on_the_edge_between_two_windows_counts_once(
    team_fake: tuple[Team, InstrumentedFake], tmp_path: Path
) -> None:
    """With no lookback the windows meet: both hold their shared instant (inclusive bounds)."""
    team, fake = team_fake
    settings = config(fake)
    settings["collectors"]["conversations"]["lookback"] = "0s"
    async with running(settings, tmp_path) as exporter:
        await first_poll(exporter, team)
        for _ in range(3):
            await exporter.next_fresh_poll("conversations")
            last = fake.requests_to("livechat/rooms")[-1].param("closedAt")
            assert last is not None
            edge = json.loads(last)["end"]  # the next window starts exactly here
            room = team.world.open_room(team.alice, team.sales)
            team.world.conversations.agent_reply(room.id)
            team.world.conversations.closed(room.id, _seconds(edge))
            await settled(exporter, team)
        for _ in range(2):  # later windows no longer hold those instants: still counted once
            scrape = await exporter.next_fresh_poll("conversations")
        served = scrape.value(
            CLOSED, department_id=team.sales, department="Sales", outcome="served"
        )
        assert served == 3


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
