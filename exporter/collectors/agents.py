"""The agents collector: every omnichannel agent with its presence and livechat status, idle
ones included, from livechat/users/agent (docs/rocketchat-api.md, "livechat/users/agent").
livechat/queue lists only
agents who hold a chat.
"""

from __future__ import annotations

from exporter.collectors import poll_failed
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

    def __init__(self, client: RocketChatClient, poll: PollConfig) -> None:
        self._client = client
        self._page_size = poll.page_size or PAGE_SIZE

    async def poll(self) -> Result[Families]:
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
        return result.carrying((family,))
