"""The data model: ids, changes, and the big generated worlds."""

from __future__ import annotations

import re
import time

import pytest

from exporter.fake import World, make_world


def test_ids_look_like_rocketchat_ids() -> None:
    world = World(seed=7)
    ids = [world.new_id() for _ in range(100)]
    assert all(re.fullmatch(r"[A-Za-z0-9]{17}", i) for i in ids)
    assert len(set(ids)) == 100


def test_same_seed_builds_the_same_world() -> None:
    first, second = make_world(200, seed=3, now=0.0), make_world(200, seed=3, now=0.0)
    assert first.agents == second.agents
    assert first.rooms == second.rooms


def test_queued_inquiry_is_an_open_unserved_room() -> None:
    world = World()
    inquiry = world.queue_inquiry(None, ts=100.0, visitor_name="Ada")
    room = world.rooms[inquiry.room_id]
    assert (room.open, room.agent_id, inquiry.status, inquiry.visitor_name) == (
        True,
        None,
        "queued",
        "Ada",
    )
    # livechat/queue does not count it (docs/rocketchat-api.md, "livechat/queue")
    assert list(world.served_rooms()) == []


def test_taking_an_inquiry_serves_its_room() -> None:
    world = World()
    agent = world.add_agent("alice")
    inquiry = world.queue_inquiry(None)
    room = world.take_inquiry(inquiry.id, agent.id)
    assert room.agent_id == agent.id
    assert world.queued_inquiries() == []
    assert world.chats_per_agent_department() == {(agent.id, None): 1}


def test_closing_a_room_ends_its_inquiry() -> None:
    world = World()
    inquiry = world.queue_inquiry(None)
    world.close_room(inquiry.room_id)
    assert not world.rooms[inquiry.room_id].open
    assert world.inquiries == {}


def test_removed_agent_leaves_its_rooms_pointing_at_it() -> None:
    world = World()
    agent = world.add_agent("alice")
    room = world.open_room(agent.id, None)
    world.remove_agent(agent.id)
    # servedBy keeps the deleted id (docs/rocketchat-api.md, "livechat/queue")
    assert world.rooms[room.id].agent_id == agent.id
    assert world.chats_per_agent_department() == {}


def test_removed_department_leaves_rooms_pointing_at_it() -> None:
    world = World()
    sales = world.add_department("Sales")
    agent = world.add_agent("alice", department_ids=[sales.id])
    room = world.open_room(agent.id, sales.id)
    world.remove_department(sales.id)
    assert world.rooms[room.id].department_id == sales.id
    assert agent.department_ids == []


def test_routable_truth_leaves_out_offline_and_not_available_agents() -> None:
    world = World()
    online = world.add_agent("online")
    offline = world.add_agent("offline", status="offline")
    unavailable = world.add_agent("unavailable", status_livechat="not-available")
    for agent in (online, offline, unavailable):
        world.open_room(agent.id, None)
    assert world.chats_per_agent_department(include_offline=False) == {(online.id, None): 1}
    assert len(world.chats_per_agent_department()) == 3


def test_make_world_has_the_requested_rows_with_ties_and_edge_cases() -> None:
    world = make_world(2000, departments=5, seed=11)
    rows = world.chats_per_agent_department()
    assert len(rows) == 2000
    # few distinct chat counts: ties everywhere (docs/rocketchat-api.md, "livechat/queue")
    assert len(set(rows.values())) <= 4
    assert any(department is None for _, department in rows)
    holders = [world.agents[agent_id] for agent_id, _ in rows]
    assert any(agent.status == "offline" for agent in holders)
    assert any(agent.status_livechat == "not-available" for agent in holders)


def test_make_world_builds_50000_rows_quickly() -> None:
    started = time.perf_counter()
    world = make_world(50_000, seed=1)
    assert time.perf_counter() - started < 3.0
    assert len(world.chats_per_agent_department()) == 50_000


def test_make_world_refuses_more_rows_than_agent_department_pairs() -> None:
    with pytest.raises(ValueError, match="rows"):
        make_world(100, agents=3, departments=4)
