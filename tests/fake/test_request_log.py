"""The request log that end-to-end tests assert on."""

from __future__ import annotations

import time

from exporter.fake import ApiUser

from . import STABLE_SORT, serve


async def test_each_request_is_logged_with_query_status_user_and_times() -> None:
    async with serve() as client:
        before = time.monotonic()
        await client.queue(
            [("count", "0"), ("includeOfflineAgents", "true"), ("sort", STABLE_SORT)]
        )
        await client.anonymous_get("livechat/queue")
    first, second = client.fake.requests
    assert (first.method, first.path, first.endpoint) == (
        "GET",
        "/api/v1/livechat/queue",
        "livechat/queue",
    )
    assert first.query == (("count", "0"), ("includeOfflineAgents", "true"), ("sort", STABLE_SORT))
    assert first.param_names == {"count", "includeOfflineAgents", "sort"}
    assert first.param("sort") == STABLE_SORT
    assert (first.status, first.user_id, first.client_ip) == (200, client.user.user_id, "127.0.0.1")
    assert (second.status, second.user_id) == (401, None)
    assert before <= first.monotonic <= second.monotonic
    assert abs(first.wall - time.time()) < 5


async def test_requests_to_filters_by_path() -> None:
    async with serve() as client:
        await client.queue()
        await client.get("livechat/department")
    assert [r.endpoint for r in client.fake.requests_to("livechat/department")] == [
        "livechat/department"
    ]
    assert len(client.fake.requests_to("/api/v1/livechat/queue")) == 1


async def test_the_log_never_holds_tokens_or_passwords() -> None:
    user = ApiUser.supervisor(password="pa55word", bypass_rate_limit=True)
    async with serve(users=[user]) as client:
        await client.queue()
        login = await client.request(
            "POST", "login", json={"user": user.username, "password": "pa55word"}
        )
    issued = login.body["data"]["authToken"]
    logged = repr(client.fake.requests)
    for secret in (user.token, "pa55word", issued):
        assert secret not in logged
