"""The agents collector: every omnichannel agent with its presence and livechat status, idle
ones included, from livechat/users/agent (docs/rocketchat-api.md, "livechat/users/agent").
livechat/queue lists only agents who hold a chat. Also the agents of each department.
"""

from __future__ import annotations

from exporter.collectors import poll_failed
from exporter.collectors.departments import DepartmentDirectory
from exporter.collectors.paging import fetch_all
from exporter.config import PollConfig
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import Agent, AgentsPage
from exporter.rocketchat.outcome import Result
from exporter.snapshot import Families, Family, Interner

AGENT_STATUS = "rocketchat_livechat_agent_status"
AGENT_STATUS_HELP = (
    "Always 1: one series per omnichannel agent, with its presence (status) and its "
    "omnichannel availability (livechat_status), from livechat/users/agent."
)
LABELS = ("agent_id", "agent", "status", "livechat_status")
DEPARTMENT_AGENTS = "rocketchat_livechat_department_agents"
DEPARTMENT_AGENTS_HELP = (
    "Agents of the department by presence (status) and omnichannel availability "
    "(livechat_status), from each agent's departments in livechat/users/agent."
)
DEPARTMENT_LABELS = ("department_id", "department", "status", "livechat_status")
# Kept at 0 for every known department: an alert on "waiting, nobody online and available".
READY = ("online", "available")
# Older servers also check manage-livechat-agents at the route (docs/rocketchat-api.md,
# "Permissions").
PERMISSION = (
    "transfer-livechat-guest or edit-omnichannel-contact (older servers also need "
    "manage-livechat-agents)"
)
STABLE_SORT = '{"_id":1}'
# count=0 is a 400 on every server with Users.findAgentsWithDepartments (its $facet gets a
# literal 0 as $limit), so this endpoint is always paged: by the server's upper limit unless
# `poll.page_size` says otherwise.
PAGE_SIZE = 100


def agent_id(agent: Agent) -> str:
    return agent.id


class AgentsCollector:
    name = "agents"
    endpoint = "livechat/users/agent"

    def __init__(
        self,
        client: RocketChatClient,
        poll: PollConfig,
        departments: DepartmentDirectory | None = None,
    ) -> None:
        self._client = client
        self._departments = departments
        self._page_size = poll.page_size or PAGE_SIZE

    async def poll(self) -> Result[Families]:
        if self._departments is not None:  # names for the per-department series
            await self._departments.refresh_if_due(self._client)
        # No filter parameters: older servers reject the newer ones (onlyAvailable,
        # showIdleAgents) with a 400, and the defaults already list every agent.
        result = await fetch_all(
            self._client,
            self.endpoint,
            {},
            sort=STABLE_SORT,
            page_size=self._page_size,
            model=AgentsPage,
            key=agent_id,
        )
        if result.data is None:
            return poll_failed(result, PERMISSION)
        intern = Interner()
        samples = tuple(
            (
                (
                    agent.id,
                    agent.username or "",
                    intern(agent.status or ""),
                    intern(agent.status_livechat or ""),
                ),
                1.0,
            )
            for agent in result.data
        )
        family = Family(AGENT_STATUS, AGENT_STATUS_HELP, LABELS, samples)
        families: Families = (family, self._per_department(result.data, intern))
        return result.carrying(families)

    def _per_department(self, agents: list[Agent], intern: Interner) -> Family:
        counts: dict[tuple[str, str, str], int] = {}
        if self._departments is not None:
            for department in self._departments.known():
                counts[(department, *READY)] = 0
        for agent in agents:
            status = intern(agent.status or "")
            livechat = intern(agent.status_livechat or "")
            for department in set(agent.departments or ()):
                key = (department, status, livechat)
                counts[key] = counts.get(key, 0) + 1
        name = self._departments.name_of if self._departments is not None else _no_name
        samples = tuple(
            ((d, name(d), status, livechat), float(n))
            for (d, status, livechat), n in sorted(counts.items())
        )
        return Family(DEPARTMENT_AGENTS, DEPARTMENT_AGENTS_HELP, DEPARTMENT_LABELS, samples)


def _no_name(_: str) -> str:
    return ""
