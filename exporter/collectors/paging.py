"""Reading a whole list endpoint of Rocket.Chat in as few requests as the server allows.

The server's paging has traps (docs/rocketchat-api.md, "Paging"):
- `count=0` returns every row, but only while API_Allow_Infinite_Count is on; otherwise it
  means the default page (50 rows), silently. Where the model puts the 0 into a `$limit`
  (livechat/users/agent), it is a 400: that endpoint is paged for the rest of the process.
- a `count` above API_Upper_Count_Limit (100) is clamped silently, so pages advance by the rows
  that came back, never by the count asked for.
- the default sort has ties whose order changes between calls, so offsets can skip or repeat
  rows: every request carries a unique, stable sort, and rows are de-duplicated by key.
- `total` may disagree with the rows (the newest servers count in a separate aggregation): it
  is a hint. Paging goes on while pages come back full and ends on a short or empty page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.outcome import Outcome, Result

log = logging.getLogger(__name__)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

# Asked for once count=0 turned out to be cut short or refused: the server clamps it to its
# upper limit (100 by default), so this reads the fewest pages whatever the limit is.
FALLBACK_PAGE_SIZE = 1000
MAX_PAGES = 2000
# Longest wait for the rate-limit window between two pages of one poll (one default window).
MAX_WAIT_BETWEEN_PAGES = 65.0


class RowsPage(Protocol[R_co]):
    @property
    def total(self) -> int | None: ...

    @property
    def rows(self) -> Sequence[R_co]: ...


@dataclass
class _Progress(Generic[R]):
    by_key: dict[Hashable, R] = field(default_factory=dict)
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
) -> Result[list[R]]:
    """Every row of `endpoint`, de-duplicated (first seen wins); `page_size` 0 tries one
    count=0 request first, unless the endpoint refused one before."""
    progress: _Progress[R] = _Progress()
    unlimited = page_size == 0 and endpoint not in client.unlimited_count_refused
    count = page_size if page_size or unlimited else FALLBACK_PAGE_SIZE
    while True:
        query = {**params, "count": str(count), "offset": str(progress.offset), "sort": sort}
        wait = MAX_WAIT_BETWEEN_PAGES if progress.pages else 0.0
        result = await client.get(endpoint, query, model, max_wait=wait)
        if result.data is None:
            if count == 0 and refuses_unlimited_count(result):
                _refuse_unlimited(client, endpoint, result.message)
                count = FALLBACK_PAGE_SIZE
                continue
            return result.failed(result.outcome, result.message)
        page = result.data
        before = len(progress.by_key)
        if _take_page(progress, page.rows, page.total, key, count, unlimited=count == 0):
            return result.carrying(list(progress.by_key.values()))
        if len(progress.by_key) == before:
            message = f"paging does not advance: page {progress.pages} held no new row"
            return result.failed(Outcome.INVALID_RESPONSE, message)
        if progress.pages >= MAX_PAGES:
            message = f"paging did not end after {progress.pages} pages (total {page.total})"
            return result.failed(Outcome.INVALID_RESPONSE, message)
        if count == 0:
            count = FALLBACK_PAGE_SIZE


def refuses_unlimited_count(result: Result[Any]) -> bool:
    """A 400 `failure()` of a plain exception: the model could not run the query with no
    limit. Not a 400 of a proxy, nor one naming a cause (`invalid-params`, a bad sort...)."""
    return result.status == 400 and result.error_type == ""


def _refuse_unlimited(client: RocketChatClient, endpoint: str, message: str) -> None:
    client.unlimited_count_refused.add(endpoint)
    log.warning(
        "server refuses count=0 on this endpoint; paging it from now on",
        extra={"kv": {"endpoint": endpoint, "error": message}},
    )


def _take_page(
    progress: _Progress[R],
    rows: Sequence[R],
    total: int | None,
    key: Callable[[R], Hashable],
    asked: int,
    unlimited: bool,
) -> bool:
    """Adds one page's rows; True when there is nothing more to fetch."""
    first = progress.pages == 0
    progress.pages += 1
    progress.offset += len(rows)
    for row in rows:
        progress.by_key.setdefault(key(row), row)
    if not rows:
        return True
    if unlimited:  # count=0 is complete unless `total` says rows are missing
        return total is None or progress.offset >= total
    if first:
        # Fewer rows than asked: the last page, unless the server clamps below the count;
        # then only `total` can tell, and a wrong one costs one request more.
        short = len(rows) < asked and (total is None or progress.offset >= total)
    else:
        short = len(rows) < progress.capacity
    progress.capacity = max(progress.capacity, len(rows))
    return short
