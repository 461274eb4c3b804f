"""Department names by id, for series whose endpoint gives only the id (inquiries).

Names come from two places: the queue collector's rows (free, every poll) and livechat/department
(one paged read every `collectors.department_refresh`, never once per poll). A failed refresh
keeps the names already known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from exporter.collectors.paging import fetch_all
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import Department, DepartmentsPage
from exporter.rocketchat.outcome import Outcome

log = logging.getLogger(__name__)

ENDPOINT = "livechat/department"
PERMISSION = "view-livechat-departments or view-l-room"
STABLE_SORT = '{"_id":1}'


class DepartmentDirectory:
    def __init__(self, refresh_every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._names: dict[str, str] = {}
        self._refresh_every = refresh_every
        self._clock = clock
        self._next_refresh = 0.0
        self._last_outcome: Outcome | None = None

    def learn(self, department_id: str, name: str) -> None:
        if department_id and name:
            self._names[department_id] = name

    def name_of(self, department_id: str) -> str:
        return self._names.get(department_id, "")

    def known(self) -> list[str]:
        return sorted(self._names)

    async def refresh_if_due(self, client: RocketChatClient) -> None:
        """Re-reads livechat/department when due (its requests count for the calling
        collector)."""
        if self._clock() < self._next_refresh:
            return
        self._next_refresh = self._clock() + self._refresh_every
        result = await fetch_all(
            client,
            ENDPOINT,
            {},
            sort=STABLE_SORT,
            page_size=0,
            model=DepartmentsPage,
            key=_department_id,
        )
        self._note(result.outcome, result.message)
        if result.data is not None:
            for department in result.data:
                self.learn(department.id, department.name or "")

    def _note(self, outcome: Outcome, message: str) -> None:
        """Logs a change of the refresh's fortune once, not every failed refresh."""
        if outcome is self._last_outcome:
            return
        self._last_outcome = outcome
        if outcome is Outcome.SUCCESS:
            log.info("department names refreshed", extra={"kv": {"departments": len(self._names)}})
            return
        hint = f"; the exporter's user needs {PERMISSION}" if outcome is Outcome.FORBIDDEN else ""
        log.warning(
            "cannot refresh department names; inquiries keep the names known so far",
            extra={"kv": {"outcome": outcome.value, "error": message + hint}},
        )


def _department_id(department: Department) -> str:
    return department.id
