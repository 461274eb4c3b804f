"""The demo world, its simulation, and the demo server."""

from __future__ import annotations

import asyncio
import random

import aiohttp

from exporter.fake import Simulation, World, build_demo_world, start_demo_server


def test_demo_world_holds_the_cases_the_exporter_must_handle() -> None:
    world = build_demo_world(seed=1)
    agents = list(world.agents.values())
    holders = {world.agents[a].username for a, _ in world.chats_per_agent_department()}
    by_name = {a.username: a for a in agents}
    assert (len(agents), len(world.departments)) == (12, 4)
    assert {a.status for a in agents} == {"online", "away", "busy", "offline"}
    offline = [a.username for a in agents if a.status == "offline"]
    not_available = [a.username for a in agents if a.status_livechat == "not-available"]
    assert set(offline) <= holders
    assert set(not_available) <= holders
    # Rooms without a department only when no department could take them: none here.
    assert all(department is not None for _, department in world.chats_per_agent_department())
    assert 2 <= len(world.queued_inquiries()) <= 6
    assert by_name["alice.martin"].department_ids


def arrivals(world: World, count: int) -> list[str | None]:
    """The departments of ``count`` new visitors (none served, none giving up)."""
    simulation = Simulation(world, random.Random(4), arrival_probability=1.0)
    departments = []
    for _ in range(count):
        for inquiry in world.queued_inquiries():
            world.close_room(inquiry.room_id, forget=True)  # stay below the queue's cap
        simulation._visitor_arrives()
        departments += [i.department_id for i in world.queued_inquiries()]
    return departments


def test_visitors_get_a_department_while_one_has_an_online_agent() -> None:
    assert None not in arrivals(build_demo_world(seed=2), 100)


def test_visitors_without_a_choice_get_none_when_no_department_can_take_them() -> None:
    world = build_demo_world(seed=2)
    for agent in world.agents.values():
        agent.status = "offline"
    departments = arrivals(world, 100)
    assert len(departments) == 100
    assert 0 < departments.count(None) < 100  # only visitors who picked no department


def run(world: World, seed: int, steps: int) -> Simulation:
    simulation = Simulation(world, random.Random(seed))
    for _ in range(steps):
        simulation.step()
    return simulation


def test_simulation_is_reproducible_from_its_seeds() -> None:
    first = run(build_demo_world(seed=3), seed=4, steps=50).world
    second = run(build_demo_world(seed=3), seed=4, steps=50).world
    assert first.chats_per_agent_department() == second.chats_per_agent_department()
    assert [a.status for a in first.agents.values()] == [a.status for a in second.agents.values()]


def test_simulation_changes_the_world_and_keeps_it_plausible() -> None:
    world = build_demo_world(seed=5)
    start = world.chats_per_agent_department()
    simulation = Simulation(world, random.Random(6))
    for _ in range(300):
        simulation.step()
        assert len(world.queued_inquiries()) <= 12
        for inquiry in world.queued_inquiries():
            assert world.rooms[inquiry.room_id].agent_id is None  # waiting means unserved
        assert sum(world.chats_per_agent_department().values()) <= 12 * 4
    assert world.chats_per_agent_department() != start


def snapshot(world: World) -> tuple[object, ...]:
    statuses = [(a.status, a.status_livechat) for a in world.agents.values()]
    return (statuses, set(world.rooms), set(world.inquiries))


async def test_demo_server_serves_a_moving_world_with_rate_limit_headers() -> None:
    demo = await start_demo_server(seed=1, interval=0.005)
    try:
        headers = {"X-User-Id": demo.user_id, "X-Auth-Token": demo.token}
        url = f"{demo.url}/api/v1/livechat/queue?includeOfflineAgents=true&count=0"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers) as response,
        ):
            body = await response.json()
            assert response.headers["X-RateLimit-Limit"] == "10"  # not a bypass user
        assert body["total"] == len(demo.world.chats_per_agent_department())
        assert demo.url.startswith("http://127.0.0.1:")
        before = snapshot(demo.world)
        await asyncio.sleep(0.1)  # some 20 steps at this interval
        assert snapshot(demo.world) != before
    finally:
        await demo.stop()
    assert demo.task.cancelled()
