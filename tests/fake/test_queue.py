"""GET /api/v1/livechat/queue: the aggregation, filters, row shapes and sort
(docs/rocketchat-api.md, "livechat/queue")."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from exporter.fake import Agent, Department, ModelEra, ServerSettings, World, make_world

from . import STABLE_SORT, rows_by_key, serve


@dataclass
class Team:
    world: World
    sales: Department
    support: Department
    alice: Agent  # online, available
    bob: Agent  # offline, still serving
    carol: Agent  # online but not available for omnichannel
    dave: Agent  # away


def team() -> Team:
    world = World(seed=5)
    sales, support = world.add_department("Sales"), world.add_department("Support")
    alice = world.add_agent("alice", department_ids=[sales.id, support.id])
    bob = world.add_agent("bob", status="offline", department_ids=[sales.id])
    carol = world.add_agent("carol", status_livechat="not-available")
    dave = world.add_agent("dave", status="away", department_ids=[support.id])
    world.open_room(alice.id, sales.id)
    # on hold still counts (docs/rocketchat-api.md, "livechat/queue")
    world.open_room(alice.id, sales.id, on_hold=True)
    world.open_room(alice.id, None)
    world.open_room(bob.id, sales.id)
    world.open_room(carol.id, support.id)
    world.open_room(dave.id, support.id)
    world.close_room(world.open_room(dave.id, support.id).id)  # closed: not counted
    # waiting, no servedBy: not counted (docs/rocketchat-api.md, "livechat/queue")
    world.queue_inquiry(sales.id)
    return Team(world, sales, support, alice, bob, carol, dave)


async def test_counts_open_served_rooms_per_agent_and_department() -> None:
    """docs/rocketchat-api.md, "livechat/queue": one row per (agent, department); on-hold counted;
    closed and queued not."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue({"includeOfflineAgents": "true"})
    assert rows_by_key(answer) == {
        (t.alice.id, t.sales.id): 2,
        (t.alice.id, None): 1,
        (t.bob.id, t.sales.id): 1,
        (t.carol.id, t.support.id): 1,
        (t.dave.id, t.support.id): 1,
    }
    assert (answer.body["count"], answer.body["total"], answer.body["offset"]) == (5, 5, 0)


async def test_default_hides_offline_and_not_available_agents() -> None:
    """docs/rocketchat-api.md, "livechat/queue": without includeOfflineAgents, only presence !=
    offline and statusLivechat available."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue()
    assert {user for user, _ in rows_by_key(answer)} == {t.alice.id, t.dave.id}


@pytest.mark.parametrize("flag", ["True", "1", "yes", "TRUE", ""])
async def test_include_offline_agents_needs_the_exact_string_true(flag: str) -> None:
    """docs/rocketchat-api.md, "livechat/queue": the route passes ``includeOfflineAgents ===
    'true'``."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue({"includeOfflineAgents": flag})
    assert t.bob.id not in {user for user, _ in rows_by_key(answer)}


async def test_agent_id_filter_keeps_only_that_agent() -> None:
    """docs/rocketchat-api.md, "livechat/queue": agentId filters rows; an unknown or hidden agent
    gives an empty result."""
    t = team()
    async with serve(t.world) as client:
        alice = await client.queue({"agentId": t.alice.id})
        unknown = await client.queue({"agentId": "another-agent"})
        offline = await client.queue({"agentId": t.bob.id})
    assert {user for user, _ in rows_by_key(alice)} == {t.alice.id}
    assert unknown.body["queue"] == offline.body["queue"] == []


async def test_unknown_department_gives_the_empty_answer() -> None:
    """docs/rocketchat-api.md, "livechat/queue": exactly the documented empty body."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue({"departmentId": "no-chats"})
    assert answer.body == {"queue": [], "count": 0, "offset": 0, "total": 0, "success": True}


async def test_department_filter_applies_to_the_room() -> None:
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue({"departmentId": t.sales.id, "includeOfflineAgents": "true"})
    assert rows_by_key(answer) == {(t.alice.id, t.sales.id): 2, (t.bob.id, t.sales.id): 1}


@pytest.mark.parametrize(("era", "rows"), [("E1", 0), ("E2", 3), ("E3", 3), ("E5", 3)])
async def test_literal_undefined_department_is_ignored_from_e2(era: ModelEra, rows: int) -> None:
    """docs/rocketchat-api.md, "livechat/queue" table: E1 filters on any truthy departmentId; E2+
    ignore 'undefined'."""
    t = team()
    async with serve(t.world, ServerSettings(model=era)) as client:
        answer = await client.queue({"departmentId": "undefined"})
    assert answer.body["total"] == rows


async def test_row_fields_come_in_the_documented_order() -> None:
    """docs/rocketchat-api.md, "livechat/queue": chats, user {_id, username, status}, department
    {_id, name}."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue({"agentId": t.dave.id})
    assert answer.raw.startswith(
        b'{"queue":[{"chats":1,"user":{"_id":"%s","username":"dave","status":"away"},'
        b'"department":{"_id":"%s","name":"Support"}}]'
        % (t.dave.id.encode(), t.support.id.encode())
    )


@pytest.mark.parametrize(
    ("era", "shape"),
    [
        ("E1", {"_id": None, "name": None}),
        ("E2", {"_id": None, "name": None}),
        ("E5", {}),
        ("E4", {}),
    ],
)
async def test_room_without_department_shape_per_era(era: ModelEra, shape: dict[str, None]) -> None:
    """docs/rocketchat-api.md, "livechat/queue": E1/E2 $ifNull gives nulls; E4+ leave the fields
    out."""
    t = team()
    async with serve(t.world, ServerSettings(model=era)) as client:
        answer = await client.queue({"agentId": t.alice.id})
    departments = [row["department"] for row in answer.body["queue"]]
    assert shape in departments


@pytest.mark.parametrize(("era", "has_null_name"), [("E1", True), ("E2", True), ("E5", False)])
async def test_deleted_department_keeps_its_id_and_loses_its_name(
    era: ModelEra, has_null_name: bool
) -> None:
    """docs/rocketchat-api.md, "livechat/queue": ``{"_id": id, "name": null}`` in E1/E2, ``{"_id":
    id}`` in E4/E5."""
    t = team()
    t.world.remove_department(t.support.id)
    async with serve(t.world, ServerSettings(model=era)) as client:
        answer = await client.queue({"agentId": t.dave.id})
    expected = {"_id": t.support.id, "name": None} if has_null_name else {"_id": t.support.id}
    assert answer.body["queue"][0]["department"] == expected


@pytest.mark.parametrize(
    ("era", "include_offline", "kept"),
    [
        ("E1", "true", True),
        ("E2", "true", True),
        ("E2", "false", False),
        ("E5", "true", False),
        ("E4", "true", False),
    ],
)
async def test_deleted_agent_is_an_empty_user_only_in_old_eras_with_offline_agents(
    era: ModelEra, include_offline: str, kept: bool
) -> None:
    """docs/rocketchat-api.md, "livechat/queue": E1/E2 preserve a null user (``user: {}``) when the
    user match is empty."""
    t = team()
    t.world.remove_agent(t.bob.id)
    async with serve(t.world, ServerSettings(model=era)) as client:
        answer = await client.queue({"includeOfflineAgents": include_offline})
    users = [row["user"] for row in answer.body["queue"]]
    assert ({} in users) is kept


async def test_deleted_agents_of_one_department_share_one_row_in_e1_e2() -> None:
    """docs/rocketchat-api.md, "livechat/queue": the E1/E2 group key is built from the user's
    fields, all missing when deleted."""
    t = team()
    eve = t.world.add_agent("eve")
    t.world.open_room(eve.id, t.sales.id)
    t.world.remove_agent(eve.id)
    t.world.remove_agent(t.bob.id)
    async with serve(t.world, ServerSettings(model="E2")) as client:
        answer = await client.queue({"includeOfflineAgents": "true", "departmentId": t.sales.id})
    assert {"chats": 2, "user": {}, "department": {"_id": t.sales.id, "name": "Sales"}} in (
        answer.body["queue"]
    )


async def test_default_sort_is_chats_descending() -> None:
    """docs/rocketchat-api.md, "livechat/queue": ``{chats: -1}`` when no sort is sent."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue({"includeOfflineAgents": "true"})
    chats = [row["chats"] for row in answer.body["queue"]]
    assert chats == sorted(chats, reverse=True)
    assert chats[0] == 2


def tied_world(agents: int = 30) -> World:
    world = World(seed=9)
    for i in range(agents):
        world.open_room(world.add_agent(f"agent{i:02d}").id, None)
    return world


async def test_ties_come_back_in_a_different_order_on_every_call() -> None:
    """docs/rocketchat-api.md, "livechat/queue": equal ``chats`` have no defined order, so paging
    may skip or repeat rows."""
    async with serve(tied_world()) as client:
        orders = [
            [row["user"]["_id"] for row in (await client.queue()).body["queue"]] for _ in range(3)
        ]
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(orders[2])
    assert orders[0] != orders[1] != orders[2]


async def test_stable_sort_gives_the_same_order_on_every_call() -> None:
    """docs/rocketchat-api.md, "livechat/queue": ``{"chats":-1,"user._id":1,"department._id":1}`` is
    unique per row."""
    async with serve(tied_world()) as client:
        orders = [
            [
                row["user"]["_id"]
                for row in (await client.queue({"sort": STABLE_SORT})).body["queue"]
            ]
            for _ in range(3)
        ]
    assert orders[0] == orders[1] == orders[2] == sorted(orders[0])


async def test_sort_applies_to_projected_dotted_fields() -> None:
    """docs/rocketchat-api.md, "livechat/queue": sort keys address the row after $project, e.g.
    ``user.username``."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue(
            {"includeOfflineAgents": "true", "sort": '{"user.username":-1,"chats":1}'}
        )
    names = [row["user"]["username"] for row in answer.body["queue"]]
    assert names == ["dave", "carol", "bob", "alice", "alice"]
    assert [row["chats"] for row in answer.body["queue"]][-2:] == [1, 2]


async def test_missing_department_sorts_before_any_id() -> None:
    """MongoDB orders a missing or null value before strings."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue({"agentId": t.alice.id, "sort": '{"department._id":1}'})
    assert answer.body["queue"][0]["department"] == {}


async def test_total_counts_rows_not_chats() -> None:
    """docs/rocketchat-api.md, "livechat/queue": total is the number of (agent, department) rows;
    count the rows on the page."""
    t = team()
    async with serve(t.world) as client:
        answer = await client.queue({"includeOfflineAgents": "true", "count": "2"})
    assert (answer.body["count"], answer.body["total"]) == (2, 5)


async def test_total_skew_makes_total_disagree_with_the_rows() -> None:
    """docs/rocketchat-api.md, "livechat/queue": in E5 the page and total are separate aggregations
    and can disagree."""
    t = team()
    async with serve(t.world, ServerSettings(total_skew=3)) as client:
        answer = await client.queue({"includeOfflineAgents": "true", "count": "0"})
    assert (len(answer.body["queue"]), answer.body["total"]) == (5, 8)


async def test_world_changes_show_on_the_next_call() -> None:
    """Nothing is cached: a test mutates the world between two polls."""
    t = team()
    async with serve(t.world) as client:
        before = rows_by_key(await client.queue())
        t.alice.status = "offline"
        after = rows_by_key(await client.queue())
    assert (t.alice.id, t.sales.id) in before
    assert (t.alice.id, t.sales.id) not in after


async def test_50000_rows_come_back_in_well_under_a_second() -> None:
    """Benchmarks poll a big fake; it must not be the bottleneck."""
    world = make_world(50_000, seed=1)
    async with serve(world) as client:
        started = time.perf_counter()
        answer = await client.queue(
            {"count": "0", "includeOfflineAgents": "true", "sort": STABLE_SORT}
        )
        elapsed = time.perf_counter() - started
    assert answer.body["count"] == answer.body["total"] == 50_000
    assert elapsed < 1.0, elapsed
