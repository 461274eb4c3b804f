"""Paging through livechat/queue as the real server pages (docs/rocketchat-api.md, "Paging"):
count=0, silent clamping, ties in a new order on every call, a total that disagrees."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from exporter.collectors.paging import MAX_PAGES, fetch_all
from exporter.collectors.queue import STABLE_SORT, row_key
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import QueuePage, QueueRow
from exporter.rocketchat.outcome import Outcome, Result
from tests.unit.conftest import counted

QUEUE = re.compile(r"^http://rc\.test/api/v1/livechat/queue(\?.*)?$")


def make_rows(n: int, distinct_chats: int = 3) -> list[dict[str, Any]]:
    """n (agent, department) rows with only a few distinct `chats` values: many ties."""
    return [
        {
            "chats": 1 + i % distinct_chats,
            "user": {"_id": f"u{i // 4:04d}", "username": f"agent{i // 4}", "status": "online"},
            "department": {"_id": f"d{i % 4}", "name": f"Dept {i % 4}"} if i % 5 else {},
        }
        for i in range(n)
    ]


def _value(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else value


@dataclass
class PagedServer:
    """livechat/queue's paging, in an aioresponses callback."""

    rows: list[dict[str, Any]]
    allow_infinite_count: bool = True
    upper_limit: int = 100
    default_count: int = 50
    total_skew: int = 0
    queries: list[dict[str, str]] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def __call__(self, url: URL, **kwargs: Any) -> CallbackResult:
        query = {k: str(v) for k, v in kwargs["params"].items()}
        self.queries.append(query)
        ordered = self._sorted(json.loads(query.get("sort", '{"chats": -1}')))
        count = int(query.get("count", self.default_count))
        if count == 0 and not self.allow_infinite_count:
            count = self.default_count
        count = min(count, self.upper_limit) if count else len(ordered)
        offset = int(query.get("offset", 0))
        page = ordered[offset : offset + count]
        return CallbackResult(
            payload={
                "queue": page,
                "count": len(page),
                "offset": offset,
                "total": len(self.rows) + self.total_skew,
                "success": True,
            }
        )

    def _sorted(self, sort: dict[str, int]) -> list[dict[str, Any]]:
        rows = list(self.rows)
        self.rng.shuffle(rows)  # ties come back in a new order on every call
        for key, direction in reversed(sort.items()):
            rows.sort(key=lambda row: _value(row, key), reverse=direction < 0)
        return rows


async def fetch(client: RocketChatClient, page_size: int = 0) -> Result[Any]:
    return await fetch_all(
        client,
        "livechat/queue",
        {"includeOfflineAgents": "true"},
        sort=STABLE_SORT,
        page_size=page_size,
        model=QueuePage,
        key=row_key,
    )


def rows_of(answer: Result[Any]) -> list[QueueRow]:
    assert answer.data is not None, answer.message
    rows: list[QueueRow] = answer.data
    return rows


def keys(rows: list[QueueRow]) -> set[tuple[str, str]]:
    return {row_key(row) for row in rows}


def expected_keys(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["user"]["_id"], r["department"].get("_id", "")) for r in rows}


async def test_count_zero_reads_everything_in_one_request(
    mock: aioresponses, client: RocketChatClient
) -> None:
    server = PagedServer(make_rows(450))
    mock.get(QUEUE, callback=server, repeat=True)
    answer = await fetch(client)
    assert answer.ok
    assert len(rows_of(answer)) == 450
    assert keys(rows_of(answer)) == expected_keys(server.rows)
    assert len(server.queries) == 1
    assert server.queries[0]["count"] == "0"


async def test_infinite_count_off_falls_back_to_the_fewest_pages(
    mock: aioresponses, client: RocketChatClient
) -> None:
    server = PagedServer(make_rows(450), allow_infinite_count=False)
    mock.get(QUEUE, callback=server, repeat=True)
    answer, answer_codes = await counted(fetch(client))
    assert answer.ok
    assert keys(rows_of(answer)) == expected_keys(server.rows)
    assert len(rows_of(answer)) == 450
    # 50 rows from count=0, then pages clamped to 100: 100, 100, 100, 100, and the empty page
    # that ends it (a full page never ends paging: `total` is only a hint).
    assert [q["offset"] for q in server.queries] == ["0", "50", "150", "250", "350", "450"]
    assert answer_codes == ("200",) * 6


async def test_every_request_carries_the_stable_sort(
    mock: aioresponses, client: RocketChatClient
) -> None:
    server = PagedServer(make_rows(230, distinct_chats=1), allow_infinite_count=False)
    mock.get(QUEUE, callback=server, repeat=True)
    answer = await fetch(client)
    assert {q["sort"] for q in server.queries} == {STABLE_SORT}
    # Every row is a tie here; a stable sort is what keeps offsets from skipping rows.
    assert keys(rows_of(answer)) == expected_keys(server.rows)


async def test_a_configured_page_size_pages_from_the_start(
    mock: aioresponses, client: RocketChatClient
) -> None:
    server = PagedServer(make_rows(120))
    mock.get(QUEUE, callback=server, repeat=True)
    answer = await fetch(client, page_size=50)
    assert len(rows_of(answer)) == 120
    assert [(q["count"], q["offset"]) for q in server.queries] == [
        ("50", "0"),
        ("50", "50"),
        ("50", "100"),
    ]


async def test_pages_advance_by_the_rows_that_came_not_the_count_asked(
    mock: aioresponses, client: RocketChatClient
) -> None:
    server = PagedServer(make_rows(250), upper_limit=100)
    mock.get(QUEUE, callback=server, repeat=True)
    answer = await fetch(client, page_size=500)  # clamped to 100 without a word
    assert len(rows_of(answer)) == 250
    assert [q["offset"] for q in server.queries] == ["0", "100", "200"]


async def test_a_total_too_high_ends_on_the_short_page(
    mock: aioresponses, client: RocketChatClient
) -> None:
    server = PagedServer(make_rows(250), allow_infinite_count=False, total_skew=+7)
    mock.get(QUEUE, callback=server, repeat=True)
    answer = await fetch(client)
    assert keys(rows_of(answer)) == expected_keys(server.rows)
    # 50 (count=0), 100, 100, and an empty page: the total promised 7 rows more.
    assert len(server.queries) == 4


async def test_a_total_too_low_still_gets_every_row_of_count_zero(
    mock: aioresponses, client: RocketChatClient
) -> None:
    server = PagedServer(make_rows(300), total_skew=-20)
    mock.get(QUEUE, callback=server, repeat=True)
    answer = await fetch(client)
    assert len(rows_of(answer)) == 300
    assert len(server.queries) == 1


async def test_rows_seen_twice_are_kept_once(mock: aioresponses, client: RocketChatClient) -> None:
    rows = make_rows(10)
    first = {"queue": rows[:6], "count": 6, "offset": 0, "total": 10, "success": True}
    # Between the pages a row moved up: the second page repeats rows[5].
    second = {"queue": rows[5:], "count": 5, "offset": 6, "total": 10, "success": True}
    mock.get(QUEUE, payload=first)
    mock.get(QUEUE, payload=second)
    answer = await fetch(client, page_size=6)
    assert len(rows_of(answer)) == 10
    assert keys(rows_of(answer)) == expected_keys(rows)


async def test_an_empty_page_ends_paging(mock: aioresponses, client: RocketChatClient) -> None:
    rows = make_rows(5)
    mock.get(QUEUE, payload={"queue": rows, "count": 5, "offset": 0, "total": 99, "success": True})
    mock.get(QUEUE, payload={"queue": [], "count": 0, "offset": 5, "total": 99, "success": True})
    answer = await fetch(client, page_size=5)
    assert answer.ok
    assert len(rows_of(answer)) == 5


async def test_paging_that_never_ends_is_bounded(
    mock: aioresponses, client: RocketChatClient
) -> None:
    rows = make_rows(100)
    # A broken server: the same full page whatever the offset, and a total to match.
    mock.get(
        QUEUE,
        payload={"queue": rows, "count": 100, "offset": 0, "total": 10**9, "success": True},
        repeat=True,
    )
    answer, answer_codes = await counted(fetch(client, page_size=100))
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert "paging does not advance" in answer.message
    assert answer_codes == ("200", "200")


async def test_paging_that_keeps_bringing_new_rows_is_bounded(
    mock: aioresponses, client: RocketChatClient
) -> None:
    served = 0

    def endless(url: URL, **kwargs: Any) -> CallbackResult:
        nonlocal served
        served += 1
        return CallbackResult(payload={"queue": make_rows(served)[-1:], "success": True})

    mock.get(QUEUE, callback=endless, repeat=True)
    answer, answer_codes = await counted(fetch(client, page_size=1))
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert "paging did not end" in answer.message
    assert len(answer_codes) == MAX_PAGES


async def test_paging_without_total_ends_on_a_short_page(
    mock: aioresponses, client: RocketChatClient
) -> None:
    rows = make_rows(7)
    mock.get(QUEUE, payload={"queue": rows[:4], "success": True})
    mock.get(QUEUE, payload={"queue": rows[4:], "success": True})
    answer = await fetch(client, page_size=4)
    assert len(rows_of(answer)) == 7


async def test_a_failed_page_fails_the_whole_poll(
    mock: aioresponses, client: RocketChatClient
) -> None:
    server = PagedServer(make_rows(300), allow_infinite_count=False)
    mock.get(QUEUE, callback=server)
    mock.get(QUEUE, callback=server)
    mock.get(QUEUE, status=503, body="unavailable")
    answer, answer_codes = await counted(fetch(client))
    assert answer.outcome is Outcome.SERVER_ERROR
    assert answer.data is None
    assert answer_codes == ("200", "200", "503")


async def test_paging_waits_for_the_rate_limit_window_between_pages(
    mock: aioresponses, client: RocketChatClient
) -> None:
    rows = make_rows(8)
    reset_ms = int((time.time() + 0.3) * 1000)
    closed = {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset_ms),
    }
    mock.get(QUEUE, payload={"queue": rows[:4], "total": 8, "success": True}, headers=closed)
    mock.get(QUEUE, payload={"queue": rows[4:], "total": 8, "success": True})
    mock.get(QUEUE, payload={"queue": [], "total": 8, "success": True})  # full pages go on
    started = time.monotonic()
    answer = await fetch(client, page_size=4)
    assert len(rows_of(answer)) == 8
    assert time.monotonic() - started >= 0.3  # the second page waited for the reset


# --- total is a hint (issue 13, point 1) and count=0 may be refused (issue 9, point 1) -----


async def test_a_total_far_too_low_does_not_end_paging_early(
    mock: aioresponses, client: RocketChatClient
) -> None:
    # The newest servers count `total` in a second aggregation that can lag the page.
    server = PagedServer(make_rows(1000), total_skew=-150)
    mock.get(QUEUE, callback=server, repeat=True)
    answer = await fetch(client, page_size=100)
    assert len(rows_of(answer)) == 1000
    assert keys(rows_of(answer)) == expected_keys(server.rows)
    # Ten full pages, then the empty one that ends it.
    assert len(server.queries) == 11


async def test_a_400_to_count_zero_pages_that_endpoint_from_then_on(
    mock: aioresponses, client: RocketChatClient, caplog: pytest.LogCaptureFixture
) -> None:
    server = PagedServer(make_rows(230))
    refusal = {"success": False, "error": "elements of arrays in $facet spec must be non-empty"}

    def refusing_count_zero(url: URL, **kwargs: Any) -> CallbackResult:
        if str(kwargs["params"].get("count")) == "0":
            server.queries.append({"count": "0"})
            return CallbackResult(status=400, payload=refusal)
        return server(url, **kwargs)

    mock.get(QUEUE, callback=refusing_count_zero, repeat=True)
    with caplog.at_level(logging.WARNING):
        first, first_codes = await counted(fetch(client))
        second, second_codes = await counted(fetch(client))
    assert len(rows_of(first)) == len(rows_of(second)) == 230
    assert first_codes == ("400", "200", "200", "200")  # then pages of 100, 100, 30
    assert second_codes == ("200", "200", "200")  # count=0 is never sent again
    assert [q["count"] for q in server.queries].count("0") == 1
    refused = [r for r in caplog.records if "refuses count=0" in r.getMessage()]
    assert len(refused) == 1


async def test_a_400_to_a_positive_count_fails_the_poll(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, status=400, payload={"success": False, "error": "bad"}, repeat=True)
    answer, codes = await counted(fetch(client, page_size=100))
    assert answer.outcome is Outcome.BAD_REQUEST
    assert codes == ("400",)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"Bad Request: X-Auth-Token: t", "text/plain"),  # a proxy's, not the server's
        (
            b'{"success":false,"error":"must NOT have additional properties [invalid-params]",'
            b'"errorType":"invalid-params"}',
            "application/json",
        ),
    ],
    ids=["proxy", "invalid-params"],
)
async def test_a_400_that_names_another_cause_does_not_switch_to_paging(
    mock: aioresponses, client: RocketChatClient, body: bytes, content_type: str
) -> None:
    mock.get(QUEUE, status=400, body=body, content_type=content_type)
    mock.get(QUEUE, callback=PagedServer(make_rows(3)), repeat=True)
    failed, codes = await counted(fetch(client))
    assert failed.outcome is Outcome.BAD_REQUEST
    assert codes == ("400",)
    assert client.unlimited_count_refused == set()
    assert (await fetch(client)).ok
