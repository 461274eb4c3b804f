"""Behaviours found wrong in the first notes and corrected against Rocket.Chat's source
(docs/fake.md lists each with its source path)."""

from __future__ import annotations

import pytest

from exporter.fake import Call, ModelEra, Route, ServerSettings, World, make_world
from exporter.fake.directory import FACET_ZERO_LIMIT

from . import ALL_QUERY, serve


@pytest.mark.parametrize("era", ["E3", "E4", "E5"])
@pytest.mark.parametrize("count", ["0", "00", "-0"])
async def test_unlimited_agents_break_the_facet(era: ModelEra, count: str) -> None:
    """findAgentsWithDepartments puts `0 && {$limit}` (a literal 0) into its $facet."""
    async with serve(make_world(rows=5), ServerSettings(model=era)) as client:
        answer = await client.get("livechat/users/agent", {"count": count})
    assert (answer.status, answer.body) == (400, {"success": False, "error": FACET_ZERO_LIMIT})
    assert FACET_ZERO_LIMIT.startswith("elements of arrays in $facet spec must be non-empty")


@pytest.mark.parametrize("era", ["E1", "E2"])
async def test_unlimited_agents_work_with_the_old_find(era: ModelEra) -> None:
    """E1/E2 read agents with a plain find, where limit 0 means no limit."""
    world = make_world(rows=5)
    async with serve(world, ServerSettings(model=era)) as client:
        answer = await client.get("livechat/users/agent", {"count": "0"})
    assert (answer.status, answer.body["count"]) == (200, len(world.agents))
    assert "departments" not in answer.body["users"][0]  # no $lookup in the old find


async def test_count_zero_is_the_default_page_when_infinite_counts_are_off() -> None:
    settings = ServerSettings(allow_infinite_count=False)
    async with serve(make_world(rows=5, agents=80), settings) as client:
        answer = await client.get("livechat/users/agent", {"count": "0"})
    assert (answer.status, answer.body["count"]) == (200, 50)


@pytest.mark.parametrize("count", ["", "Infinity", "-Infinity"])
async def test_empty_and_infinite_counts_mean_the_default_page(count: str) -> None:
    """ajv's query instance turns them into null, and getPaginationItems then uses 50."""
    async with serve(make_world(rows=120, agents=60)) as client:
        queue = await client.queue({**ALL_QUERY, "count": count})
        agents = await client.get("livechat/users/agent", {"count": count})
    assert (queue.status, queue.body["count"]) == (200, 50)
    assert (agents.status, agents.body["count"]) == (200, 50)


async def test_a_single_repeated_value_is_unwrapped() -> None:
    async with serve(make_world(rows=20)) as client:
        answer = await client.queue([("count", "7"), ("includeOfflineAgents", "true")])
    assert (answer.status, answer.body["count"]) == (200, 7)


async def test_agents_text_also_matches_the_email_address() -> None:
    world = World(seed=3)
    world.add_agent("amir")
    async with serve(world) as client:
        answer = await client.get("livechat/users/agent", {"text": "amir@example"})
    assert answer.body["total"] == 1


async def test_only_my_departments_is_an_enum() -> None:
    async with serve() as client:
        good = await client.get("livechat/department", {"onlyMyDepartments": "false"})
        bad = await client.get("livechat/department", {"onlyMyDepartments": "yes"})
    assert good.status == 200
    assert (bad.status, bad.body["error"]) == (
        400,
        "must be equal to one of the allowed values [invalid-params]",
    )


@pytest.mark.parametrize("name", ["query", "fields"])
async def test_newest_agent_schema_accepts_query_and_fields(name: str) -> None:
    async with serve() as client:
        answer = await client.get("livechat/users/agent", {name: "{}"})
    assert answer.status == 200


def _broken(call: Call) -> dict[str, object]:
    raise RuntimeError("connection pool closed")


async def test_any_exception_in_a_route_action_is_a_400() -> None:
    async with serve() as client:
        client.fake.add_route(Route("GET", "livechat/broken", _broken, {}))
        answer = await client.get("livechat/broken")
    assert (answer.status, answer.body) == (
        400,
        {"success": False, "error": "connection pool closed"},
    )


async def test_memoized_queries_answer_the_same_rows_for_a_fixed_world() -> None:
    world = make_world(rows=300, seed=4)
    async with serve(world, memoize_queries=True) as client:
        first = await client.queue(ALL_QUERY)
        world.open_room(next(iter(world.agents)), None)  # not seen: the answer is cached
        second = await client.queue(ALL_QUERY)
    assert first.body == second.body


@pytest.mark.parametrize(("model", "framework"), [("E6", "hono"), ("E5", "express")])
def test_servers_that_never_existed_are_refused(model: str, framework: str) -> None:
    with pytest.raises(ValueError, match="no such server"):
        ServerSettings(model=model, framework=framework)  # type: ignore[arg-type]


def test_the_default_server_is_the_newest_released_one() -> None:
    settings = ServerSettings()
    assert (settings.model, settings.framework, settings.breaking_9) == ("E5", "hono", False)
