"""The queue collector: open conversations per agent and department, from livechat/queue.

livechat/queue counts open rooms that already have an agent (on-hold included), one row per
(agent, department); it does not see visitors still waiting (rocketchat-api.md §1.3).
"""

from __future__ import annotations

from exporter.collectors.departments import DepartmentDirectory
from exporter.collectors.paging import fetch_all
from exporter.config import PollConfig
from exporter.rocketchat.answers import Answer, Outcome
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import QueuePage, QueueRow
from exporter.snapshot import Families, Family, Interner, Sample

QUEUE_CHATS = "rocketchat_livechat_queue_chats"
QUEUE_CHATS_HELP = (
    "Open conversations served by this agent in this department (on-hold included), "
    "from livechat/queue."
)
QUEUE_LABELS = ("agent_id", "agent", "status", "department_id", "department")
PERMISSION = "view-l-room"
# Unique and stable, so that offsets neither skip nor repeat rows between pages (§1.7).
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
        # Only these six parameters exist; any other one is a 400 on 5.x+ servers (§1.2).
        self._params = {"includeOfflineAgents": "true" if poll.include_offline_agents else "false"}
        if poll.agent_id:
            self._params["agentId"] = poll.agent_id
        if poll.department_id:
            self._params["departmentId"] = poll.department_id

    async def poll(self) -> Answer[Families]:
        answer = await fetch_all(
            self._client,
            self.endpoint,
            self._params,
            sort=STABLE_SORT,
            page_size=self._page_size,
            model=QueuePage,
            key=row_key,
        )
        if answer.data is None:
            failed = answer.failed(answer.outcome, answer.message)
            if answer.outcome is Outcome.FORBIDDEN:
                failed = failed.with_hint(f"the exporter's user needs {PERMISSION}")
            return failed
        if self._departments is not None:
            for row in answer.data.rows:
                if row.department is not None:
                    self._departments.learn(row.department.id or "", row.department.name or "")
        family = Family(QUEUE_CHATS, QUEUE_CHATS_HELP, QUEUE_LABELS, samples(answer.data.rows))
        return Answer(
            answer.outcome, (family,), "", answer.status, answer.rate_limit, answer.requests
        )


def samples(rows: list[QueueRow]) -> tuple[Sample, ...]:
    intern = Interner()
    result = []
    for row in rows:
        user, department = row.user, row.department
        labels = (
            intern(user.id or ""),
            intern(user.username or ""),
            intern(user.status or ""),
            intern(department.id or "" if department is not None else ""),
            intern(department.name or "" if department is not None else ""),
        )
        result.append((labels, float(row.chats)))
    return tuple(result)
