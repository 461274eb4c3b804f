"""Reading a whole list endpoint of Rocket.Chat in as few requests as the server allows.

The server's paging has traps (rocketchat-api.md §1.6, §1.7, §2):
- `count=0` returns every row, but only while API_Allow_Infinite_Count is on; otherwise it
  means the default page (50 rows), silently.
- a `count` above API_Upper_Count_Limit (100) is clamped silently, so pages advance by the rows
  that came back, never by the count asked for.
- the default sort has ties whose order changes between calls, so offsets can skip or repeat
  rows: every request carries a unique, stable sort, and rows are de-duplicated by key.
- `total` may disagree with the rows (E5 counts in a separate aggregation): it ends paging
  early, it is never trusted to be exact.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from exporter.rocketchat.answers import Answer, Outcome, Request
from exporter.rocketchat.client import RocketChatClient

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

# Asked for once count=0 turned out to be cut short: the server clamps it to its upper limit.
FALLBACK_PAGE_SIZE = 1000
MAX_PAGES = 2000
# Longest wait for the rate-limit window between two pages of one poll (one default window).
MAX_WAIT_BETWEEN_PAGES = 65.0


class RowsPage(Protocol[R_co]):
    @property
    def total(self) -> int | None: ...

    @property
    def rows(self) -> Sequence[R_co]: ...


@dataclass(frozen=True, slots=True)
class Rows(Generic[R]):
    rows: list[R]  # de-duplicated, first seen wins
    pages: int  # requests that returned rows
    fell_back: bool  # count=0 was cut short, so the rows were paged


@dataclass
class _Progress(Generic[R]):
    by_key: dict[Hashable, R]
    offset: int = 0
    pages: int = 0
    capacity: int = 0  # the most rows one page has held: a page with fewer is the last


async def fetch_all(
    client: RocketChatClient,
    endpoint: str,
    params: Mapping[str, str],
    *,
    sort: str,
    page_size: int,
    model: type[RowsPage[R]],
    key: Callable[[R], Hashable],
) -> Answer[Rows[R]]:
    """Every row of `endpoint`; `page_size` 0 tries one count=0 request first."""
    progress: _Progress[R] = _Progress({})
    earlier: tuple[Request, ...] = ()  # the requests for the pages before this one
    count = page_size
    while True:
        query = {**params, "count": str(count), "offset": str(progress.offset), "sort": sort}
        wait = MAX_WAIT_BETWEEN_PAGES if progress.pages else 0.0
        answer = await client.get(endpoint, query, model, max_wait=wait)
        if answer.data is None:
            return answer.failed(answer.outcome, answer.message).with_requests(earlier)
        page = answer.data
        if _take_page(progress, page.rows, page.total, key, unlimited=count == 0):
            fell_back = page_size == 0 and count != 0
            rows = Rows(list(progress.by_key.values()), progress.pages, fell_back)
            done = Answer(Outcome.SUCCESS, rows, "", answer.status, answer.rate_limit)
            return done.with_requests(earlier + answer.requests)
        if progress.pages >= _page_bound(page.total, progress.capacity):
            message = f"paging did not end after {progress.pages} pages (total {page.total})"
            return answer.failed(Outcome.INVALID_RESPONSE, message).with_requests(earlier)
        earlier += answer.requests
        if count == 0:
            count = FALLBACK_PAGE_SIZE


def _take_page(
    progress: _Progress[R],
    rows: Sequence[R],
    total: int | None,
    key: Callable[[R], Hashable],
    unlimited: bool,
) -> bool:
    """Adds one page's rows; True when there is nothing more to fetch."""
    progress.pages += 1
    progress.offset += len(rows)
    for row in rows:
        progress.by_key.setdefault(key(row), row)
    if not rows or (total is not None and progress.offset >= total):
        return True
    if unlimited:  # count=0 is complete unless `total` says rows are missing
        return total is None
    short = len(rows) < progress.capacity
    progress.capacity = max(progress.capacity, len(rows))
    return short


def _page_bound(total: int | None, capacity: int) -> int:
    if total is None or capacity <= 0:
        return MAX_PAGES
    return min(MAX_PAGES, -(-total // capacity) + 3)  # slack for rows added while paging
