"""The queue collector: open conversations per agent and department, from livechat/queue.

livechat/queue counts open rooms that already have an agent (on-hold included), one row per
(agent, department); it does not see visitors still waiting (docs/rocketchat-api.md,
"livechat/queue").
"""

from __future__ import annotations

import asyncio

from exporter.collectors import poll_failed
from exporter.collectors.departments import DepartmentDirectory
from exporter.collectors.paging import fetch_all
from exporter.config import PollConfig
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import QueuePage, QueueRow
from exporter.rocketchat.outcome import Result
from exporter.snapshot import Families, Family, Sample

QUEUE_CHATS = "rocketchat_livechat_queue_chats"
QUEUE_CHATS_HELP = (
    "Open conversations served by this agent in this department (on-hold included), "
    "from livechat/queue."
)
QUEUE_LABELS = ("agent_id", "agent", "status", "department_id", "department")
PERMISSION = "view-l-room"
# Unique and stable, so that offsets neither skip nor repeat rows between pages
# (docs/rocketchat-api.md, "livechat/queue").
STABLE_SORT = '{"chats":-1,"user._id":1,"department._id":1}'


def row_key(row: QueueRow) -> tuple[str, str]:
    department = row.department.id if row.department is not None else None
    return (row.user.id or "", department or "")


class QueueCollector:
    name = "queue"
    endpoint = "livechat/queue"

    def __init__(
        self,
        client: RocketChatClient,
        poll: PollConfig,
        departments: DepartmentDirectory | None = None,
    ) -> None:
        self._client = client
        self._departments = departments  # learns names from the rows, for other collectors
        self._page_size = poll.page_size
        # Only these six parameters exist; any other one is a 400 on 5.x+ servers
        # (docs/rocketchat-api.md, "Query parameters").
        self._params = {"includeOfflineAgents": "true" if poll.include_offline_agents else "false"}
        if poll.agent_id:
            self._params["agentId"] = poll.agent_id
        if poll.department_id:
            self._params["departmentId"] = poll.department_id

    async def poll(self) -> Result[Families]:
        result = await fetch_all(
            self._client,
            self.endpoint,
            self._params,
            sort=STABLE_SORT,
            page_size=self._page_size,
            model=QueuePage,
            key=row_key,
        )
        if result.data is None:
            return poll_failed(result, PERMISSION)
        # ~35 ms of Python at 50,000 rows: in a thread, which the event loop can preempt.
        series, departments = await asyncio.to_thread(samples, result.data)
        if self._departments is not None:
            for department_id, name in departments:
                self._departments.learn(department_id, name)
        family = Family(QUEUE_CHATS, QUEUE_CHATS_HELP, QUEUE_LABELS, series)
        return result.carrying((family,))


def samples(rows: list[QueueRow]) -> tuple[tuple[Sample, ...], list[tuple[str, str]]]:
    """One sample per row, and the distinct (department id, name) pairs of the rows.

    It empties `rows` as it goes, so that each decoded row is freed as its sample is made: at
    50,000 rows the 20 MB of decoded answer and the 7 MB of samples are never all alive at
    once. An agent's labels repeat in every department it serves, and a department's for
    every agent: each distinct label tuple is built once and shared. Values stay ints (the
    text is the same): small ints are shared objects, floats would be 24 bytes a sample."""
    users: dict[tuple[str | None, str | None, str | None], tuple[str, str, str]] = {}
    departments: dict[tuple[str | None, str | None], tuple[str, str]] = {}
    no_department = ("", "")
    result: list[Sample] = []
    append = result.append
    rows.reverse()
    while rows:
        row = rows.pop()
        user, department = row.user, row.department
        user_key = (user.id, user.username, user.status)
        user_labels = users.get(user_key)
        if user_labels is None:
            user_labels = (user.id or "", user.username or "", user.status or "")
            users[user_key] = user_labels
        if department is None:
            department_labels = no_department
        else:
            department_key = (department.id, department.name)
            department_labels = departments.get(department_key) or departments.setdefault(
                department_key, (department.id or "", department.name or "")
            )
        append((user_labels + department_labels, row.chats))
    return tuple(result), list(departments.values())
