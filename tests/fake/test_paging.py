"""``count``, ``offset`` and ``sort`` as getPaginationItems and parseJsonQuery treat them
(docs/rocketchat-api.md, "Paging")."""

from __future__ import annotations

import pytest

from exporter.fake import ModelEra, ServerSettings, World, make_world

from . import STABLE_SORT, serve


def world_with_rows(rows: int = 150) -> World:
    return make_world(rows, departments=4, seed=2)


ALL = {"includeOfflineAgents": "true"}


async def test_default_page_is_50_rows() -> None:
    """docs/rocketchat-api.md, "Paging": a missing count means API_Default_Count (50)."""
    async with serve(world_with_rows()) as client:
        answer = await client.queue(ALL)
    assert (answer.body["count"], answer.body["total"]) == (50, 150)


async def test_count_above_the_upper_limit_is_clamped_silently() -> None:
    """docs/rocketchat-api.md, "Paging": count > API_Upper_Count_Limit (100) gives 100 rows, no
    error, no header."""
    async with serve(world_with_rows()) as client:
        answer = await client.queue({**ALL, "count": "500"})
    assert (answer.status, answer.body["count"], answer.body["total"]) == (200, 100, 150)


async def test_count_zero_returns_every_row_while_infinite_count_is_allowed() -> None:
    """docs/rocketchat-api.md, "Paging" and "livechat/queue": count=0 adds no $limit when
    API_Allow_Infinite_Count is true (the default)."""
    async with serve(world_with_rows()) as client:
        answer = await client.queue({**ALL, "count": "0"})
    assert answer.body["count"] == answer.body["total"] == 150


async def test_count_zero_means_the_default_when_infinite_count_is_off() -> None:
    """docs/rocketchat-api.md, "Paging": with API_Allow_Infinite_Count false, count=0 falls back to
    the default (50)."""
    async with serve(world_with_rows(), ServerSettings(allow_infinite_count=False)) as client:
        answer = await client.queue({**ALL, "count": "0"})
    assert answer.body["count"] == 50


async def test_settings_change_the_default_and_the_limit() -> None:
    settings = ServerSettings(default_count=10, upper_count_limit=20)
    async with serve(world_with_rows(), settings) as client:
        default = await client.queue(ALL)
        clamped = await client.queue({**ALL, "count": "100"})
    assert (default.body["count"], clamped.body["count"]) == (10, 20)


async def test_offset_skips_rows_and_is_echoed() -> None:
    async with serve(world_with_rows()) as client:
        everything = await client.queue({**ALL, "count": "0", "sort": STABLE_SORT})
        page = await client.queue({**ALL, "count": "100", "offset": "120", "sort": STABLE_SORT})
    assert page.body["queue"] == everything.body["queue"][120:]
    assert (page.body["offset"], page.body["count"], page.body["total"]) == (120, 30, 150)


async def test_stable_sort_pages_cover_every_row_exactly_once() -> None:
    """docs/rocketchat-api.md, "livechat/queue" and "Paging": paging with a unique sort neither
    skips nor repeats rows."""
    async with serve(world_with_rows()) as client:
        pages = [
            (await client.queue({**ALL, "count": "40", "offset": str(o), "sort": STABLE_SORT}))
            for o in range(0, 150, 40)
        ]
    keys = [(r["user"]["_id"], r["department"].get("_id")) for p in pages for r in p.body["queue"]]
    assert len(keys) == len(set(keys)) == 150


async def test_negative_offset_is_a_400_with_mongodbs_message() -> None:
    """docs/rocketchat-api.md, "Paging": a negative offset reaches $skip and MongoDB refuses it;
    failure() makes it a 400."""
    async with serve(world_with_rows()) as client:
        answer = await client.queue({"offset": "-5"})
    assert answer.status == 400
    assert answer.body == {
        "success": False,
        "error": "invalid argument to $skip stage: Expected a non-negative number in: $skip: -5",
    }


async def test_negative_count_is_a_400_with_mongodbs_message() -> None:
    async with serve(world_with_rows()) as client:
        answer = await client.queue({"count": "-1"})
    assert (answer.status, answer.body) == (
        400,
        {"success": False, "error": "the limit must be positive"},
    )


@pytest.mark.parametrize(
    ("era", "body"),
    [
        (
            "E5",
            {
                "success": False,
                "error": "must be number [invalid-params]",
                "errorType": "invalid-params",
            },
        ),
        (
            "E3",
            {
                "success": False,
                "error": "must be number [invalid-params]",
                "errorType": "invalid-params",
            },
        ),
    ],
)
async def test_non_numeric_count_is_rejected_by_the_schema(era: ModelEra, body: object) -> None:
    """docs/rocketchat-api.md, "livechat/queue": ajv cannot coerce ``abc`` to a number."""
    async with serve(world_with_rows(), ServerSettings(model=era)) as client:
        answer = await client.queue({"count": "abc"})
    assert (answer.status, answer.body) == (400, body)


@pytest.mark.parametrize("era", ["E1", "E2"])
async def test_non_numeric_count_means_no_limit_before_schemas(era: ModelEra) -> None:
    """docs/rocketchat-api.md, "Paging": parseInt('abc') is NaN, which adds no $limit: every row
    comes back."""
    async with serve(world_with_rows(), ServerSettings(model=era)) as client:
        answer = await client.queue({**ALL, "count": "abc"})
    assert answer.body["count"] == 150


async def test_non_numeric_offset_answers_a_null_offset_before_schemas() -> None:
    """docs/rocketchat-api.md, "Paging": offset=abc gives NaN: no $skip, and ``"offset": null`` in
    the JSON."""
    async with serve(world_with_rows(), ServerSettings(model="E2")) as client:
        answer = await client.queue({**ALL, "offset": "abc"})
    assert (answer.body["offset"], answer.body["count"]) == (None, 50)


async def test_fractional_count_is_truncated() -> None:
    async with serve(world_with_rows()) as client:
        answer = await client.queue({**ALL, "count": "7.9"})
    assert answer.body["count"] == 7


@pytest.mark.parametrize(
    "raw", ["chats", '{"chats":"asc"}', '{"chats":"1"}', '{"chats":2}', "[1]", '{"chats":true}']
)
async def test_invalid_sort_is_a_400_naming_the_raw_value(raw: str) -> None:
    """docs/rocketchat-api.md, "Paging": sort must be a JSON object whose values are exactly 1 or
    -1."""
    async with serve(world_with_rows()) as client:
        answer = await client.queue({"sort": raw})
    assert answer.status == 400
    assert answer.body == {
        "success": False,
        "error": f'Invalid sort parameter provided: "{raw}" [error-invalid-sort]',
        "errorType": "error-invalid-sort",
        "details": {"helperMethod": "parseJsonQuery"},
    }


async def test_any_sort_key_is_accepted() -> None:
    """docs/rocketchat-api.md, "livechat/queue": there is no allow-list; an unknown key sorts on a
    missing value."""
    async with serve(world_with_rows()) as client:
        answer = await client.queue({"sort": '{"nonsense":1}'})
    assert answer.status == 200
