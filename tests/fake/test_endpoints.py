"""The other endpoints the exporter reads: inquiries.list, users/agent, department
(docs/rocketchat-api.md, "livechat/department")."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.fake import ApiUser, ModelEra, ServerSettings, World

from . import serve


def waiting_world() -> tuple[World, str, str]:
    world = World(seed=4)
    sales = world.add_department("Sales").id
    support = world.add_department("Support").id
    world.queue_inquiry(sales, ts=1_626_964_137.987, visitor_name="hk")
    world.queue_inquiry(sales, ts=1_626_964_200.0)
    world.queue_inquiry(support, ts=1_626_964_100.0)
    world.queue_inquiry(None, ts=1_626_964_300.0)
    taken = world.queue_inquiry(sales, ts=1_626_964_000.0)
    world.take_inquiry(taken.id, world.add_agent("alice").id)
    return world, sales, support


# --- GET livechat/inquiries.list (docs/rocketchat-api.md, "livechat/inquiries.list")
# ----------------------------------------------------


async def test_inquiries_lists_only_queued_ones_newest_first() -> None:
    """docs/rocketchat-api.md, "livechat/inquiries.list": {status: 'queued'}, default sort {ts:
    -1}."""
    world, _, _ = waiting_world()
    async with serve(world) as client:
        answer = await client.get("livechat/inquiries.list")
    timestamps = [i["ts"] for i in answer.body["inquiries"]]
    assert timestamps == sorted(timestamps, reverse=True)
    assert (answer.body["total"], answer.body["count"], answer.body["offset"]) == (4, 4, 0)


async def test_inquiry_items_have_the_documented_shape() -> None:
    """docs/rocketchat-api.md, "livechat/inquiries.list": {_id, rid, name, ts (ISO 8601, ms, Z),
    status, department (an id)}."""
    world, sales, _ = waiting_world()
    async with serve(world) as client:
        answer = await client.get(
            "livechat/inquiries.list", {"department": "Sales", "sort": '{"ts":1}', "count": "1"}
        )
    inquiry = next(i for i in world.inquiries.values() if i.visitor_name == "hk")
    assert answer.body["inquiries"] == [
        {
            "_id": inquiry.id,
            "rid": inquiry.room_id,
            "name": "hk",
            "ts": "2021-07-22T14:28:57.987Z",
            "status": "queued",
            "department": sales,
        }
    ]


async def test_inquiry_without_department_has_no_department_field() -> None:
    world, _, _ = waiting_world()
    async with serve(world) as client:
        answer = await client.get("livechat/inquiries.list", {"count": "1"})
    assert "department" not in answer.body["inquiries"][0]  # the newest has none


@pytest.mark.parametrize("by", ["id", "name"])
async def test_inquiries_department_may_be_an_id_or_a_name(by: str) -> None:
    """docs/rocketchat-api.md, "livechat/inquiries.list": ``department`` resolves by id or name."""
    world, sales, _ = waiting_world()
    async with serve(world) as client:
        wanted = sales if by == "id" else "Sales"
        answer = await client.get("livechat/inquiries.list", {"department": wanted})
    assert answer.body["total"] == 2
    assert {i["department"] for i in answer.body["inquiries"]} == {sales}


async def test_unknown_inquiries_department_is_ignored_silently() -> None:
    """docs/rocketchat-api.md, "livechat/inquiries.list": an unknown department gives the global
    list, not an empty one."""
    world, _, _ = waiting_world()
    async with serve(world) as client:
        answer = await client.get("livechat/inquiries.list", {"department": "Nowhere"})
    assert answer.body["total"] == 4


async def test_inquiries_need_view_livechat_manager() -> None:
    agent = ApiUser("AgentOnly00000001", "token", "agent", {"view-l-room"})
    async with serve(users=[agent]) as client:
        answer = await client.get("livechat/inquiries.list")
    assert answer.status == 403


async def test_inquiries_reject_unknown_params_in_e6() -> None:
    async with serve() as client:
        answer = await client.get("livechat/inquiries.list", {"status": "queued"})
    assert answer.status == 400


# --- GET livechat/users/agent (docs/rocketchat-api.md, "livechat/users/agent")
# -------------------------------------------------------


def roster() -> World:
    world = World(seed=8)
    sales = world.add_department("Sales").id
    world.add_agent("zoe", name="Zoe Adams", department_ids=[sales], max_chats=3)
    world.add_agent("amir", name="Amir Khan", status="offline")
    world.add_agent("mia", name="Mia Wong", status_livechat="not-available")
    return world


async def test_agents_are_listed_by_name_with_their_availability() -> None:
    """docs/rocketchat-api.md, "livechat/users/agent": idle agents included; default sort {name:
    1}."""
    world = roster()
    async with serve(world) as client:
        answer = await client.get("livechat/users/agent")
    users = answer.body["users"]
    assert [u["name"] for u in users] == ["Amir Khan", "Mia Wong", "Zoe Adams"]
    zoe = users[2]
    assert set(zoe) == {
        "_id",
        "username",
        "name",
        "status",
        "statusLivechat",
        "emails",
        "livechat",
        "departments",
    }
    assert (zoe["status"], zoe["statusLivechat"], zoe["livechat"]) == (
        "online",
        "available",
        {"maxNumberSimultaneousChat": 3},
    )
    assert zoe["departments"] == world.agents[zoe["_id"]].department_ids


async def test_agents_text_filter_matches_username_or_name() -> None:
    async with serve(roster()) as client:
        answer = await client.get("livechat/users/agent", {"text": "KHAN"})
    assert [u["username"] for u in answer.body["users"]] == ["amir"]


@pytest.mark.parametrize(
    ("era", "v8", "body"),
    [
        (
            "E2",
            False,
            {
                "success": False,
                "error": "User does not have the permissions required for this action "
                "[error-unauthorized]",
            },
        ),
        ("E5", False, {"success": False, "error": "unauthorized"}),
        ("E5", True, {"success": False, "error": "forbidden"}),
    ],
)
async def test_agents_permission_per_era(era: ModelEra, v8: bool, body: dict[str, Any]) -> None:
    """docs/rocketchat-api.md, "livechat/users/agent": JS era route-level manage-livechat-agents;
    newer a bare forbidden()."""
    viewer = ApiUser("ViewerOnly0000001", "token", "viewer", {"view-l-room"})
    async with serve(settings=ServerSettings(model=era, breaking_9=v8), users=[viewer]) as client:
        answer = await client.get("livechat/users/agent")
    assert (answer.status, answer.body) == (403, body)


async def test_newer_agents_can_be_seen_with_edit_omnichannel_contact() -> None:
    viewer = ApiUser("ContactEditor0001", "token", "editor", {"edit-omnichannel-contact"})
    async with serve(settings=ServerSettings(model="E5"), users=[viewer]) as client:
        answer = await client.get("livechat/users/agent")
    assert answer.status == 200


NEWER_AGENT_PARAMS = {"onlyAvailable": "true", "showIdleAgents": "false"}


async def test_newer_agent_params_work_in_e5() -> None:
    """docs/rocketchat-api.md, "livechat/users/agent": onlyAvailable and showIdleAgents (booleans)
    filter the roster."""
    async with serve(roster()) as client:
        answer = await client.get("livechat/users/agent", NEWER_AGENT_PARAMS)
    assert [u["username"] for u in answer.body["users"]] == ["zoe"]


@pytest.mark.parametrize("era", ["E3", "E4"])
async def test_newer_agent_params_are_rejected_by_older_schemas(era: ModelEra) -> None:
    """docs/rocketchat-api.md, "livechat/users/agent": older schemas have additionalProperties:
    false and lack them."""
    async with serve(roster(), ServerSettings(model=era)) as client:
        answer = await client.get("livechat/users/agent", NEWER_AGENT_PARAMS)
    assert (answer.status, answer.body["errorType"]) == (400, "invalid-params")


async def test_newer_agent_params_are_ignored_in_the_js_era() -> None:
    async with serve(roster(), ServerSettings(model="E2")) as client:
        answer = await client.get("livechat/users/agent", NEWER_AGENT_PARAMS)
    assert answer.body["total"] == 3


async def test_exclude_id_leaves_one_agent_out() -> None:
    world = roster()
    zoe = next(a.id for a in world.agents.values() if a.username == "zoe")
    async with serve(world) as client:
        answer = await client.get("livechat/users/agent", {"excludeId": zoe})
    assert zoe not in {u["_id"] for u in answer.body["users"]}


async def test_boolean_params_must_be_true_or_false() -> None:
    async with serve(roster()) as client:
        answer = await client.get("livechat/users/agent", {"onlyAvailable": "yes"})
    assert (answer.status, answer.body["error"]) == (400, "must be boolean [invalid-params]")


# --- GET livechat/department (docs/rocketchat-api.md, "livechat/department")
# --------------------------------------------------------


def departments_world() -> World:
    world = World(seed=6)
    world.add_department("Support")
    world.add_department("Billing", enabled=False)
    world.add_department("Archive").archived = True
    world.add_department("Sales")
    return world


async def test_departments_are_listed_by_name() -> None:
    """docs/rocketchat-api.md, "livechat/department": department documents, default sort {name: 1};
    archived ones hidden."""
    async with serve(departments_world()) as client:
        answer = await client.get("livechat/department")
    names = [d["name"] for d in answer.body["departments"]]
    assert names == ["Billing", "Sales", "Support"]
    assert {"_id", "name", "enabled"} <= set(answer.body["departments"][0])
    assert answer.body["total"] == 3


async def test_departments_can_be_read_with_view_l_room_only() -> None:
    """docs/rocketchat-api.md, "livechat/department": view-livechat-departments OR view-l-room."""
    agent = ApiUser("AgentOnly00000001", "token", "agent", {"view-l-room"})
    nobody = ApiUser("NoPermissions0001", "token2", "nobody")
    async with serve(users=[agent, nobody]) as client:
        allowed = await client.get("livechat/department")
        denied = await client.get("livechat/department", user=nobody)
    assert (allowed.status, denied.status) == (200, 403)


async def test_department_filters() -> None:
    """docs/rocketchat-api.md, "livechat/department": enabled (exact "true"), text,
    excludeDepartmentId."""
    world = departments_world()
    sales = next(d.id for d in world.departments.values() if d.name == "Sales")
    async with serve(world) as client:
        enabled = await client.get("livechat/department", {"enabled": "true"})
        text = await client.get("livechat/department", {"text": "port"})
        excluded = await client.get("livechat/department", {"excludeDepartmentId": sales})
    assert [d["name"] for d in enabled.body["departments"]] == ["Sales", "Support"]
    assert [d["name"] for d in text.body["departments"]] == ["Support"]
    assert "Sales" not in [d["name"] for d in excluded.body["departments"]]


@pytest.mark.parametrize(("era", "status"), [("E4", 400), ("E5", 200)])
async def test_show_archived_exists_only_in_e5(era: ModelEra, status: int) -> None:
    async with serve(departments_world(), ServerSettings(model=era)) as client:
        answer = await client.get("livechat/department", {"showArchived": "true"})
    assert answer.status == status
    if status == 200:
        assert "Archive" in [d["name"] for d in answer.body["departments"]]
