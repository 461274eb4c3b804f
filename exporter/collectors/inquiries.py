"""The inquiries collector: visitors waiting for an agent, per department, from
livechat/inquiries.list (docs/rocketchat-api.md, "livechat/inquiries.list"). livechat/queue
never sees them.
"""

from __future__ import annotations

from datetime import datetime

from exporter.collectors import poll_failed
from exporter.collectors.departments import DepartmentDirectory
from exporter.collectors.paging import fetch_all
from exporter.config import PollConfig
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import InquiriesPage, Inquiry
from exporter.rocketchat.outcome import Outcome, Result
from exporter.snapshot import Families, Family

QUEUED = "rocketchat_livechat_inquiries_queued"
QUEUED_HELP = "Visitors waiting for an agent, from livechat/inquiries.list."
OLDEST = "rocketchat_livechat_inquiries_oldest_queued_timestamp_seconds"
OLDEST_HELP = "Unix time the longest-waiting visitor of the department entered the queue."
LABELS = ("department_id", "department")
PERMISSION = "view-livechat-manager"
STABLE_SORT = '{"ts":1,"_id":1}'


def inquiry_id(inquiry: Inquiry) -> str:
    return inquiry.id


def queued_at(ts: str | float | None) -> float | None:
    """ISO 8601 as the REST API writes dates ("2021-07-22T14:28:57.987Z"), or epoch ms."""
    if ts is None:
        return None
    if isinstance(ts, float | int):
        return float(ts) / 1000
    return datetime.fromisoformat(ts).timestamp()


class InquiriesCollector:
    name = "inquiries"
    endpoint = "livechat/inquiries.list"

    def __init__(
        self, client: RocketChatClient, poll: PollConfig, departments: DepartmentDirectory
    ) -> None:
        self._client = client
        self._page_size = poll.page_size
        self._departments = departments
        # The same department filter as the queue's; an unknown one returns every department.
        self._params = {"department": poll.department_id} if poll.department_id else {}

    async def poll(self) -> Result[Families]:
        await self._departments.refresh_if_due(self._client)
        result = await fetch_all(
            self._client,
            self.endpoint,
            self._params,
            sort=STABLE_SORT,
            page_size=self._page_size,
            model=InquiriesPage,
            key=inquiry_id,
        )
        if result.data is None:
            return poll_failed(result, PERMISSION)
        try:
            families = self._families(result.data)
        except (ValueError, OverflowError, OSError) as error:
            return result.failed(Outcome.INVALID_RESPONSE, f"unexpected inquiry time: {error}")
        return result.carrying(families)

    def _families(self, inquiries: list[Inquiry]) -> Families:
        waiting: dict[str, int] = dict.fromkeys(["", *self._departments.known()], 0)
        oldest: dict[str, float] = {}
        for inquiry in inquiries:
            if inquiry.status not in (None, "queued"):
                continue  # the endpoint lists queued ones; very old servers also others
            department = inquiry.department or ""
            waiting[department] = waiting.get(department, 0) + 1
            since = queued_at(inquiry.ts)
            if since is not None and since < oldest.get(department, float("inf")):
                oldest[department] = since
        return (
            Family(
                QUEUED,
                QUEUED_HELP,
                LABELS,
                tuple((self._labels(d), float(n)) for d, n in sorted(waiting.items())),
            ),
            Family(
                OLDEST,
                OLDEST_HELP,
                LABELS,
                tuple((self._labels(d), ts) for d, ts in sorted(oldest.items())),
            ),
        )

    def _labels(self, department: str) -> tuple[str, str]:
        return (department, self._departments.name_of(department))
