"""GET livechat/rooms in the fake, per docs/conversations.md ("The livechat/rooms route")."""

from __future__ import annotations

import json
import random

import pytest

from exporter.fake import ApiUser, ServerSettings, World

from . import FakeClock, serve

T0 = 1_777_000_000.0
WINDOW = json.dumps({"start": "2026-04-24T03:06:40.000Z", "end": "2026-04-24T03:10:00.000Z"})


def manager() -> ApiUser:
    user = ApiUser.supervisor(bypass_rate_limit=True)
    user.permissions.add("view-livechat-rooms")
    return user


def history() -> tuple[World, dict[str, str]]:
    """Rooms of every state: closed served (transferred), closed unserved, open served,
    queued, on hold."""
    clock = FakeClock(T0)
    world = World(seed=3, clock=clock)
    sales = world.add_department("Sales").id
    alice = world.add_agent("alice", department_ids=[sales]).id
    bob = world.add_agent("bob", department_ids=[sales]).id
    store = world.conversations
    served = world.queue_inquiry(sales)
    clock.advance(30)
    world.take_inquiry(served.id, alice)
    clock.advance(15)
    store.agent_reply(served.room_id)
    store.served(served.room_id, (bob, "bob"))  # a transfer
    clock.advance(60)
    world.close_room(served.room_id, forget=True)
    left = world.queue_inquiry(sales)
    clock.advance(20)
    world.close_room(left.room_id, forget=True)
    open_room = world.open_room(alice, sales)
    queued = world.queue_inquiry(sales)
    held = world.open_room(bob, sales, on_hold=True)
    clock.advance(1)
    ids = {
        "served": served.room_id,
        "left": left.room_id,
        "open": open_room.id,
        "queued": queued.room_id,
        "held": held.id,
    }
    return world, ids


def ids_of(body: dict[str, object]) -> set[str]:
    rooms = body["rooms"]
    assert isinstance(rooms, list)
    return {room["_id"] for room in rooms}


async def test_closed_at_window_is_inclusive_on_both_edges() -> None:
    world, ids = history()
    served = world.conversations.rooms[ids["served"]]
    assert served.closed_at is not None
    edge = served.closed_at
    async with serve(world, users=[manager()]) as client:
        for start, end in ((edge, edge + 10), (edge - 10, edge)):
            window = {"start": _iso(start), "end": _iso(end)}
            answer = await client.get("livechat/rooms", {"closedAt": json.dumps(window)})
            assert ids["served"] in ids_of(answer.body)


async def test_empty_date_object_matches_nothing() -> None:
    world, _ = history()
    async with serve(world, users=[manager()]) as client:
        answer = await client.get("livechat/rooms", {"closedAt": "{}"})
    assert answer.body["rooms"] == []
    assert answer.body["total"] == 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"open": "true"}, {"open"}),
        ({"open": "false"}, {"served", "left"}),
        ({"queued": "true"}, {"queued"}),
        ({"onhold": "true"}, {"held"}),
    ],
)
async def test_state_filters_follow_the_model(params: dict[str, str], expected: set[str]) -> None:
    world, ids = history()
    async with serve(world, users=[manager()]) as client:
        answer = await client.get("livechat/rooms", params)
    assert ids_of(answer.body) == {ids[name] for name in expected}


async def test_agents_filter_matches_served_by_also_on_closed_rooms() -> None:
    world, ids = history()
    bob = next(a.id for a in world.agents.values() if a.username == "bob")
    async with serve(world, users=[manager()]) as client:
        answer = await client.get("livechat/rooms", [("agents[]", bob), ("open", "false")])
    assert ids_of(answer.body) == {ids["served"]}


async def test_closed_documents_are_full_and_carry_the_kpi_fields() -> None:
    world, ids = history()
    async with serve(world, users=[manager()]) as client:
        answer = await client.get("livechat/rooms", {"open": "false"})
    rooms = {room["_id"]: room for room in answer.body["rooms"]}
    served, left = rooms[ids["served"]], rooms[ids["left"]]
    assert "open" not in served
    assert "open" not in left
    assert served["servedBy"]["username"] == "bob"  # the transfer overwrote it
    assert served["metrics"]["response"]["ft"] == pytest.approx(45.0)
    assert served["metrics"]["reaction"]["ft"] == pytest.approx(15.0)
    assert served["metrics"]["chatDuration"] == pytest.approx(105.0)
    assert served["department"]["name"] == "Sales"
    assert served["v"]["token"]  # the visitor's secret is in the answer, as on a real server
    assert "servedBy" not in left
    assert "serviceTimeDuration" not in left["metrics"]
    assert left["closer"] == "visitor"
    assert left["waitingResponse"] is True
    assert left["closedAt"].endswith("Z")
    assert len(left["closedAt"]) == 24


async def test_paging_by_closed_at_and_id_is_stable_and_capped_at_100() -> None:
    clock = FakeClock(T0)
    world = World(seed=5, clock=clock)
    for _ in range(150):
        room = world.open_room(None)
        world.close_room(room.id, forget=True)  # all at the same instant: ties on closedAt
    seen: list[str] = []
    async with serve(world, users=[manager()]) as client:
        offset = 0
        while offset < 150:
            answer = await client.get(
                "livechat/rooms",
                {"sort": '{"closedAt":1,"_id":1}', "count": "500", "offset": str(offset)},
            )
            assert answer.body["count"] <= 100
            assert answer.body["total"] == 150
            seen += [room["_id"] for room in answer.body["rooms"]]
            offset += answer.body["count"]
    assert seen == sorted(seen)
    assert len(set(seen)) == 150


async def test_count_zero_returns_everything() -> None:
    world, _ = history()
    async with serve(world, users=[manager()]) as client:
        answer = await client.get("livechat/rooms", {"count": "0"})
    assert answer.body["count"] == answer.body["total"] == 5


async def test_a_late_close_is_listed_only_once_written() -> None:
    clock = FakeClock(T0)
    world = World(seed=6, clock=clock)
    room = world.open_room(None)
    world.conversations.closed(room.id, visible_at=T0 + 30)
    async with serve(world, users=[manager()]) as client:
        before = await client.get("livechat/rooms", {"open": "false"})
        clock.advance(31)
        after = await client.get("livechat/rooms", {"open": "false"})
    assert before.body["total"] == 0
    assert after.body["total"] == 1


async def test_without_the_permission_the_answer_is_403() -> None:
    world, _ = history()
    async with serve(world) as client:  # a supervisor without view-livechat-rooms
        answer = await client.get("livechat/rooms")
    assert answer.status == 403
    assert answer.body == {"success": False, "error": "unauthorized"}


async def test_an_agent_may_list_only_its_own_rooms() -> None:
    world, _ = history()
    agent = ApiUser("AgentUser00000001", "agent-token", "alice", {"view-l-room"}, True)
    async with serve(world, users=[agent]) as client:
        own = await client.get("livechat/rooms", [("agents[]", agent.user_id)])
        other = await client.get("livechat/rooms", [("agents[]", "someone-else")])
    assert own.status == 200
    assert other.status == 403


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"status": "open"}, "must NOT have additional properties [invalid-params]"),
        ({"agents": "x"}, "must be array [invalid-params]"),
        (
            {"closedAt": '{"start":"nope"}'},
            'The "closedAt.start" query parameter must be a valid date.',
        ),
        ({"closedAt": "invalid"}, "Unexpected token 'i', \"invalid\" is not valid JSON"),
        ({"sort": "x"}, 'Invalid sort parameter provided: "x" [error-invalid-sort]'),
    ],
)
async def test_bad_parameters_get_the_servers_400(params: dict[str, str], error: str) -> None:
    world, _ = history()
    settings = ServerSettings()
    async with serve(world, settings, users=[manager()]) as client:
        answer = await client.get("livechat/rooms", params)
    assert answer.status == 400
    assert answer.body["error"] == error


def _iso(seconds: float) -> str:
    from exporter.fake.rooms import iso

    return iso(seconds)


def test_the_demo_world_closes_served_and_unserved_conversations() -> None:
    from exporter.fake import Simulation, build_demo_world

    clock = FakeClock(T0)
    world = build_demo_world(seed=11)
    world.clock = clock
    world.conversations.clock = clock
    simulation = Simulation(world, random.Random(11), transfer_probability=0.05)
    for _ in range(400):
        clock.advance(2)
        simulation.step()
    closed = [r for r in world.conversations.rooms.values() if r.closed_at is not None]
    assert any(r.served and r.response_ft is not None for r in closed)
    assert any(not r.served for r in closed)
    assert any(r.served_ts is not None and r.served_ts > r.ts + 1 for r in closed)
