"""The three collectors: what each asks, and the families it makes of the answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aioresponses import aioresponses
from yarl import URL

from exporter.collectors.agents import AgentsCollector
from exporter.collectors.departments import DepartmentDirectory
from exporter.collectors.inquiries import InquiriesCollector
from exporter.collectors.queue import QueueCollector
from exporter.config import PollConfig
from exporter.rocketchat.auth import PasswordAuth
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.outcome import Outcome, Result
from exporter.snapshot import Families
from tests.unit.conftest import counted

BASE = "http://rc.test/api/v1/"
QUEUE = re.compile(r"^http://rc\.test/api/v1/livechat/queue(\?.*)?$")
INQUIRIES = re.compile(r"^http://rc\.test/api/v1/livechat/inquiries\.list(\?.*)?$")
DEPARTMENTS = re.compile(r"^http://rc\.test/api/v1/livechat/department(\?.*)?$")
AGENTS = re.compile(r"^http://rc\.test/api/v1/livechat/users/agent(\?.*)?$")
FORBIDDEN = {
    "success": False,
    "error": "User does not have the permissions required for this action [error-unauthorized]",
}


def listing(key: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: rows, "count": len(rows), "offset": 0, "total": len(rows), "success": True}


def series(answer: Result[Families], name: str) -> dict[tuple[str, ...], float]:
    assert answer.data is not None, answer.message
    (family,) = [f for f in answer.data if f.name == name]
    return dict(family.samples)


def queries(mock: aioresponses, path: str) -> list[dict[str, str]]:
    return [
        dict(url.query)
        for (_, url), calls in mock.requests.items()
        if isinstance(url, URL) and url.path.endswith(path)
        for _ in calls
    ]


# --- queue ---------------------------------------------------------------------------------


def with_department(row: dict[str, Any], department: Any) -> dict[str, Any]:
    """`row` with its department, or without the field at all for None."""
    return row if department is None else {**row, "department": department}


def queue_row(agent: str, department: Any, chats: int, status: str = "online") -> dict[str, Any]:
    user = {"_id": agent, "username": agent.upper(), "status": status}
    return with_department({"chats": chats, "user": user}, department)


async def test_queue_rows_become_labelled_series(
    mock: aioresponses, client: RocketChatClient
) -> None:
    rows = [
        queue_row("a1", {"_id": "d1", "name": "Sales"}, 3),
        queue_row("a1", {}, 1),
        queue_row("a2", {"_id": None, "name": None}, 2, "offline"),
        queue_row("a3", {"_id": "gone"}, 4, "away"),
        queue_row("a4", None, 5, "busy"),
    ]
    mock.get(QUEUE, payload=listing("queue", rows))
    answer = await QueueCollector(client, PollConfig()).poll()
    assert series(answer, "rocketchat_livechat_queue_chats") == {
        ("a1", "A1", "online", "d1", "Sales"): 3,
        ("a1", "A1", "online", "", ""): 1,
        ("a2", "A2", "offline", "", ""): 2,
        ("a3", "A3", "away", "gone", ""): 4,
        ("a4", "A4", "busy", "", ""): 5,
    }


async def test_queue_sends_only_the_parameters_the_server_accepts(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, payload=listing("queue", []), repeat=True)
    await QueueCollector(client, PollConfig()).poll()
    filtered = PollConfig(include_offline_agents=False, agent_id="a9", department_id="d9")
    await QueueCollector(client, filtered).poll()
    allowed = {"count", "offset", "sort", "agentId", "departmentId", "includeOfflineAgents"}
    first, second = queries(mock, "/livechat/queue")
    assert set(first) <= allowed
    assert set(second) <= allowed
    assert first["includeOfflineAgents"] == "true"
    assert second["includeOfflineAgents"] == "false"
    assert (second["agentId"], second["departmentId"]) == ("a9", "d9")


async def test_queue_forbidden_names_the_permission(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, status=403, payload=FORBIDDEN)
    answer = await QueueCollector(client, PollConfig()).poll()
    assert answer.outcome is Outcome.FORBIDDEN
    assert "view-l-room" in answer.message


async def test_queue_teaches_department_names(mock: aioresponses, client: RocketChatClient) -> None:
    directory = DepartmentDirectory(600)
    mock.get(QUEUE, payload=listing("queue", [queue_row("a1", {"_id": "d1", "name": "Sales"}, 1)]))
    await QueueCollector(client, PollConfig(), directory).poll()
    assert directory.name_of("d1") == "Sales"


# --- inquiries -----------------------------------------------------------------------------


def iso(unix: float) -> str:
    return (
        datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def inquiry(n: int, department: str | None, ts: float) -> dict[str, Any]:
    row = {
        "_id": f"i{n}",
        "rid": f"r{n}",
        "name": f"visitor {n}",
        "ts": iso(ts),
        "status": "queued",
    }
    return with_department(row, department)


async def poll_inquiries(
    client: RocketChatClient,
    config: PollConfig | None = None,
    directory: DepartmentDirectory | None = None,
) -> Result[Families]:
    collector = InquiriesCollector(
        client, config or PollConfig(), directory or DepartmentDirectory(600)
    )
    return await collector.poll()


async def test_inquiries_count_and_date_the_waiting_per_department(
    mock: aioresponses, client: RocketChatClient
) -> None:
    departments = [
        {"_id": "d1", "name": "Sales"},
        {"_id": "d2", "name": "Support"},
        {"_id": "d3", "name": "Billing"},
    ]
    mock.get(DEPARTMENTS, payload=listing("departments", departments))
    waiting = [
        inquiry(1, "d1", 1_700_000_100.5),
        inquiry(2, "d1", 1_700_000_050.25),
        inquiry(3, None, 1_700_000_200.0),
        inquiry(4, "d2", 1_700_000_300.0),
    ]
    mock.get(INQUIRIES, payload=listing("inquiries", waiting))
    answer, answer_codes = await counted(poll_inquiries(client))
    assert series(answer, "rocketchat_livechat_inquiries_queued") == {
        ("d1", "Sales"): 2,
        ("d2", "Support"): 1,
        ("", ""): 1,
        ("d3", "Billing"): 0,
    }
    oldest = series(answer, "rocketchat_livechat_inquiries_oldest_queued_timestamp_seconds")
    assert oldest == {
        ("d1", "Sales"): pytest.approx(1_700_000_050.25),
        ("d2", "Support"): 1_700_000_300.0,
        ("", ""): 1_700_000_200.0,
    }
    assert answer_codes == ("200", "200")  # the department list, then the inquiries


async def test_an_empty_queue_is_zero_not_absent(
    mock: aioresponses, client: RocketChatClient
) -> None:
    directory = DepartmentDirectory(600)
    directory.learn("d1", "Sales")
    mock.get(DEPARTMENTS, status=403, payload=FORBIDDEN)
    mock.get(INQUIRIES, payload=listing("inquiries", []))
    answer = await poll_inquiries(client, directory=directory)
    assert answer.ok  # a failed name lookup does not fail the poll
    assert series(answer, "rocketchat_livechat_inquiries_queued") == {
        ("", ""): 0,
        ("d1", "Sales"): 0,
    }
    assert series(answer, "rocketchat_livechat_inquiries_oldest_queued_timestamp_seconds") == {}


async def test_department_names_are_refreshed_slowly(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(
        DEPARTMENTS, payload=listing("departments", [{"_id": "d1", "name": "Sales"}]), repeat=True
    )
    mock.get(INQUIRIES, payload=listing("inquiries", []), repeat=True)
    collector = InquiriesCollector(client, PollConfig(), DepartmentDirectory(600))
    for _ in range(3):
        await collector.poll()
    assert len(queries(mock, "/livechat/department")) == 1
    assert len(queries(mock, "/livechat/inquiries.list")) == 3


async def test_inquiries_forbidden_names_the_permission(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(DEPARTMENTS, payload=listing("departments", []))
    mock.get(INQUIRIES, status=403, payload=FORBIDDEN)
    answer, answer_codes = await counted(poll_inquiries(client))
    assert (answer.outcome, answer_codes) == (Outcome.FORBIDDEN, ("200", "403"))
    assert "view-livechat-manager" in answer.message


async def test_an_unreadable_inquiry_time_is_an_invalid_response(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(DEPARTMENTS, payload=listing("departments", []))
    mock.get(INQUIRIES, payload=listing("inquiries", [{"_id": "i1", "ts": "yesterday"}]))
    answer = await poll_inquiries(client)
    assert answer.outcome is Outcome.INVALID_RESPONSE


async def test_inquiries_pass_the_department_filter(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(DEPARTMENTS, payload=listing("departments", []))
    mock.get(INQUIRIES, payload=listing("inquiries", []))
    await poll_inquiries(client, PollConfig(department_id="d7"))
    (query,) = queries(mock, "/livechat/inquiries.list")
    assert query["department"] == "d7"
    assert set(query) == {"department", "count", "offset", "sort"}


# --- agents --------------------------------------------------------------------------------


async def test_every_agent_is_one_series_with_both_statuses(
    mock: aioresponses, client: RocketChatClient
) -> None:
    users: list[dict[str, Any]] = [
        {
            "_id": "a1",
            "username": "alice",
            "status": "online",
            "statusLivechat": "available",
            "emails": [],
            "departments": ["d1"],
        },
        {"_id": "a2", "username": "bob", "status": "offline", "statusLivechat": "not-available"},
        {"_id": "a3", "username": "carol"},
    ]
    mock.get(AGENTS, payload=listing("users", users))
    answer = await AgentsCollector(client, PollConfig()).poll()
    assert series(answer, "rocketchat_livechat_agent_status") == {
        ("a1", "alice", "online", "available"): 1,
        ("a2", "bob", "offline", "not-available"): 1,
        ("a3", "carol", "", ""): 1,
    }


async def test_agents_send_no_parameters_older_servers_reject(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(AGENTS, payload=listing("users", []))
    await AgentsCollector(client, PollConfig()).poll()
    (query,) = queries(mock, "/livechat/users/agent")
    assert set(query) == {"count", "offset", "sort"}


async def test_agents_forbidden_names_the_permissions(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(AGENTS, status=403, payload={"success": False, "error": "unauthorized"})
    answer = await AgentsCollector(client, PollConfig()).poll()
    assert answer.outcome is Outcome.FORBIDDEN
    assert "transfer-livechat-guest" in answer.message


async def test_agents_never_ask_for_an_unlimited_count(
    mock: aioresponses, client: RocketChatClient
) -> None:
    # count=0 is a 400 on every server with Users.findAgentsWithDepartments.
    users = [{"_id": f"a{i:03d}", "username": f"agent{i}"} for i in range(150)]
    mock.get(AGENTS, payload={**listing("users", users[:100]), "total": 150})
    mock.get(AGENTS, payload={**listing("users", users[100:]), "total": 150})
    answer = await AgentsCollector(client, PollConfig(page_size=0)).poll()
    assert len(series(answer, "rocketchat_livechat_agent_status")) == 150
    sent = queries(mock, "/livechat/users/agent")
    assert [(q["count"], q["offset"]) for q in sent] == [("100", "0"), ("100", "100")]


async def test_a_403_from_the_login_does_not_name_the_endpoints_permission(
    mock: aioresponses,
) -> None:
    mock.post(
        "http://rc.test/api/v1/login", status=403, payload={"success": False, "error": "blocked"}
    )
    async with RocketChatClient("http://rc.test", PasswordAuth("bot", "pw"), 5.0) as client:
        answer = await QueueCollector(client, PollConfig()).poll()
    assert answer.outcome is Outcome.FORBIDDEN
    assert "login refused (403)" in answer.message
    assert "view-l-room" not in answer.message
    assert "permission missing" not in answer.message
