"""The conversations collector: closed livechat rooms as contact-centre KPIs, from
livechat/rooms (docs/conversations.md).

Each poll reads the rooms closed since the last one, plus `lookback` before, by closedAt on the
server's clock. Counters and histograms are cumulative in this object and published whole
every poll, since a snapshot replaces a collector's families at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.collectors import poll_failed
from exporter.collectors.closed_rooms import CloseLedger, Histogram, Window, iso_ms, to_ms
from exporter.collectors.departments import DepartmentDirectory
from exporter.config import ConversationsConfig, PollConfig
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import ClosedRoom, RoomsPage
from exporter.rocketchat.outcome import Outcome, Result
from exporter.snapshot import Families, Family, Sample

log = logging.getLogger(__name__)

CLOSED = "rocketchat_livechat_conversations_closed_total"
CLOSED_HELP = (
    "Closed conversations since the exporter started, by department and outcome (served: an "
    "agent took it; unserved: closed without ever being taken)."
)
FIRST_RESPONSE = "rocketchat_livechat_conversation_first_response_seconds"
FIRST_RESPONSE_HELP = (
    "Served conversations with an agent reply: from the visitor's first message to the first "
    "agent reply, queue time included (metrics.response.ft), counted at close."
)
DURATION = "rocketchat_livechat_conversation_duration_seconds"
DURATION_HELP = "Closed conversations: from creation to close (metrics.chatDuration)."
AGENT_CLOSED = "rocketchat_livechat_agent_conversations_closed_total"
AGENT_CLOSED_HELP = "Served conversations closed, by the last agent who served them."
DEPARTMENT_LABELS = ("department_id", "department")
OUTCOME_LABELS = (*DEPARTMENT_LABELS, "outcome")
AGENT_LABELS = ("agent_id", "agent", *DEPARTMENT_LABELS)
OUTCOMES = ("served", "unserved")
PERMISSION = "view-livechat-rooms"
STABLE_SORT = '{"closedAt":1,"_id":1}'
PAGE_SIZE = 100  # the server's default upper limit (API_Upper_Count_Limit)
MAX_PAGES = 2000
MAX_WAIT_BETWEEN_PAGES = 65.0  # one default rate-limit window


@dataclass(slots=True)
class Tally:
    """Everything counted since the exporter started."""

    first_response_buckets: tuple[float, ...]
    duration_buckets: tuple[float, ...]
    closed: dict[tuple[str, str], int] = field(default_factory=dict)
    first_response: dict[str, Histogram] = field(default_factory=dict)
    duration: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    by_agent: dict[tuple[str, str], int] = field(default_factory=dict)
    agent_names: dict[str, str] = field(default_factory=dict)

    def add(self, room: ClosedRoom) -> None:
        department = room.department_id or ""
        metrics = room.metrics
        response = metrics.response if metrics is not None else None
        first = response.ft if response is not None else None
        # servedBy is unset when a room goes back to the queue; a recorded agent reply still
        # shows that an agent took it (docs/conversations.md, "Outcome").
        outcome = "served" if room.served_by is not None or first is not None else "unserved"
        self.closed[department, outcome] = self.closed.get((department, outcome), 0) + 1
        if first is not None and first >= 0:
            self._first_response(department).observe(first)
        duration = _duration(room)
        if duration is not None:
            self._duration(department, outcome).observe(duration)
        agent = room.served_by
        if agent is not None and agent.id:
            key = (agent.id, department)
            self.by_agent[key] = self.by_agent.get(key, 0) + 1
            if agent.username:
                self.agent_names[agent.id] = agent.username

    def zero_fill(self, departments: list[str]) -> None:
        """Known departments get their series at 0, so rate() sees the first conversation."""
        for department in departments:
            self._first_response(department)
            for outcome in OUTCOMES:
                self.closed.setdefault((department, outcome), 0)
                self._duration(department, outcome)

    def _first_response(self, department: str) -> Histogram:
        found = self.first_response.get(department)
        if found is None:
            found = self.first_response[department] = Histogram(self.first_response_buckets)
        return found

    def _duration(self, department: str, outcome: str) -> Histogram:
        found = self.duration.get((department, outcome))
        if found is None:
            found = self.duration[department, outcome] = Histogram(self.duration_buckets)
        return found


def _duration(room: ClosedRoom) -> float | None:
    metrics = room.metrics
    if metrics is not None and metrics.chat_duration is not None:
        return max(0.0, metrics.chat_duration)
    if room.ts is None or room.closed_at is None:
        return None
    try:
        return max(0.0, (to_ms(room.closed_at) - to_ms(room.ts)) / 1000)
    except ValueError:
        return None


class ConversationsCollector:
    name = "conversations"
    endpoint = "livechat/rooms"

    def __init__(
        self,
        client: RocketChatClient,
        poll: PollConfig,
        config: ConversationsConfig,
        departments: DepartmentDirectory,
        server_clock: Callable[[], float | None] | None = None,
    ) -> None:
        self._client = client
        # Now on the server's clock; tests pass their own.
        self._server_clock = server_clock or client.server_time
        self._departments = departments
        self._ledger = CloseLedger(config.lookback, config.max_catch_up)
        self._tally = Tally(config.first_response_buckets, config.duration_buckets)
        self._unreadable = 0  # rooms of this poll without a usable closedAt
        # Only parameters every supported server accepts; departmentId is a plain string.
        self._filters = {"departmentId": poll.department_id} if poll.department_id else {}
        if poll.agent_id:
            self._filters["agents[]"] = poll.agent_id

    async def poll(self) -> Result[Families]:
        await self._departments.refresh_if_due(self._client)
        window = self._ledger.window(self._server_now_ms())
        if window.skipped_ms:
            log.warning(
                "conversations: polls failed for longer than max_catch_up; closes in the gap "
                "are not counted",
                extra={"kv": {"skipped": f"{window.skipped_ms / 1000:.0f}s"}},
            )
        self._unreadable = 0
        answer = await self._read(window)
        if self._unreadable:
            log.warning(
                "conversations: rooms without a readable closedAt skipped",
                extra={"kv": {"rooms": self._unreadable}},
            )
        if not answer.ok:
            return poll_failed(answer, PERMISSION)
        self._ledger.advance(window.end_ms)
        self._tally.zero_fill(self._departments.known())
        return answer.carrying(self._families())

    def _server_now_ms(self) -> int:
        now = self._server_clock()
        return round((now if now is not None else time.time()) * 1000)

    async def _read(self, window: Window) -> Result[None]:
        """Counts the window's new rooms. Rooms already counted sort first, so reading starts
        after them; a counted room seen past that point means a late close hides among them,
        and the window is read again from its start."""
        known = self._ledger.seen_in(window)
        answer, consistent = await self._read_from(window, known)
        if answer.ok and not consistent and known:
            again, _ = await self._read_from(window, 0)
            return again
        return answer

    async def _read_from(self, window: Window, offset: int) -> tuple[Result[None], bool]:
        start, rows_read, consistent = offset, 0, True
        present: set[str] = set()
        for page_number in range(MAX_PAGES):
            wait = MAX_WAIT_BETWEEN_PAGES if page_number else 0.0
            answer = await self._client.get(
                self.endpoint, self._params(window, offset), RoomsPage, max_wait=wait
            )
            if answer.data is None:
                return answer.failed(answer.outcome, answer.message), True
            page = answer.data
            for room in page.rooms:
                present.add(room.id)
                consistent &= self._count(room, window)
            offset += len(page.rooms)
            rows_read += len(page.rooms)
            done = not page.rooms or (
                offset >= page.total if page.total is not None else len(page.rooms) < PAGE_SIZE
            )
            if done:
                if start == 0:
                    self._ledger.forget_missing(window, present)
                elif page.total is not None and page.total != start + rows_read:
                    consistent = False
                ok: Result[None] = Result(
                    Outcome.SUCCESS, None, "", answer.status, answer.rate_limit
                )
                return ok, consistent
        message = f"paging did not end after {MAX_PAGES} pages"
        return Result(Outcome.INVALID_RESPONSE, None, message), True

    def _count(self, room: ClosedRoom, window: Window) -> bool:
        """Counts `room` once; False if it was counted before."""
        if room.department is not None and room.department.name:
            self._departments.learn(room.department.id, room.department.name)
        if not self._ledger.is_new(room.id):
            return False
        try:
            closed = to_ms(room.closed_at) if room.closed_at is not None else None
        except ValueError:
            closed = None
        if closed is None:
            self._unreadable += 1
        elif window.holds(closed):  # a server that ignored the filter must not count history
            self._ledger.record(room.id, closed)
            self._tally.add(room)
        return True

    def _params(self, window: Window, offset: int) -> dict[str, str]:
        closed_at = f'{{"start":"{iso_ms(window.start_ms)}","end":"{iso_ms(window.end_ms)}"}}'
        return {
            **self._filters,
            "closedAt": closed_at,
            "sort": STABLE_SORT,
            "count": str(PAGE_SIZE),
            "offset": str(offset),
        }

    def _families(self) -> Families:
        tally, name = self._tally, self._departments.name_of
        closed = tuple(
            ((d, name(d), outcome), float(n)) for (d, outcome), n in sorted(tally.closed.items())
        )
        first: list[Sample] = []
        for d, histogram in sorted(tally.first_response.items()):
            first.extend(histogram.samples((d, name(d))))
        duration: list[Sample] = []
        for (d, outcome), histogram in sorted(tally.duration.items()):
            duration.extend(histogram.samples((d, name(d), outcome)))
        agents = tuple(
            ((a, tally.agent_names.get(a, ""), d, name(d)), float(n))
            for (a, d), n in sorted(tally.by_agent.items())
        )
        return (
            Family(CLOSED, CLOSED_HELP, OUTCOME_LABELS, closed, "counter"),
            Family(
                FIRST_RESPONSE, FIRST_RESPONSE_HELP, DEPARTMENT_LABELS, tuple(first), "histogram"
            ),
            Family(DURATION, DURATION_HELP, OUTCOME_LABELS, tuple(duration), "histogram"),
            Family(AGENT_CLOSED, AGENT_CLOSED_HELP, AGENT_LABELS, agents, "counter"),
        )
