"""Fixtures for end-to-end tests: a fake Rocket.Chat on loopback, and its world."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exporter.fake import ApiUser, ServerSettings, World
from tests.support.faults import InstrumentedFake


def small_world() -> World:
    """A world with the shapes that matter: ties, offline and not-available agents holding
    chats, a chat without a department, an idle agent, waiting visitors."""
    world = World(seed=11)
    sales = world.add_department("Sales").id
    support = world.add_department("Support").id
    world.add_department("Billing")  # nobody in it: a zero waiting series
    alice = world.add_agent("alice", department_ids=[sales, support]).id
    bob = world.add_agent("bob", status="offline", department_ids=[sales]).id
    carol = world.add_agent("carol", status="away", status_livechat="not-available").id
    dave = world.add_agent("dave", status="busy", department_ids=[support]).id
    world.add_agent("erin", department_ids=[support])  # idle: in agents, not in the queue
    for agent, department, chats in [
        (alice, sales, 2),
        (alice, support, 2),
        (alice, None, 1),
        (bob, sales, 2),
        (carol, support, 1),
        (dave, support, 3),
        (dave, None, 1),
    ]:
        for _ in range(chats):
            world.open_room(agent, department)
    world.open_room(dave, support, on_hold=True)
    for department, age in [(sales, 120.0), (sales, 30.0), (None, 300.0), (support, 10.0)]:
        world.queue_inquiry(department, ts=world.clock() - age)
    return world


@pytest.fixture
def world() -> World:
    return small_world()


@pytest.fixture
def bot() -> ApiUser:
    """The exporter's user, with the bot role's bypass of the rate limit."""
    return ApiUser.supervisor(bypass_rate_limit=True)


@pytest.fixture
async def fake(world: World, bot: ApiUser) -> AsyncIterator[InstrumentedFake]:
    server = InstrumentedFake(world, ServerSettings(), [bot], shuffle_seed=5)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
