"""The Rocket.Chat client: every answer of every server era maps to one outcome
(docs/rocketchat-api.md, "Error bodies" and "Rate limits"), the rate limit is honoured,
credentials are sent and renewed."""

from __future__ import annotations

import asyncio
import email.utils
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from exporter.rocketchat.auth import PasswordAuth, TokenAuth
from exporter.rocketchat.client import RESET_MARGIN, RocketChatClient
from exporter.rocketchat.models import QueuePage
from exporter.rocketchat.outcome import Outcome, RateLimit, Result
from tests.unit.conftest import Clock, counted

BASE = "http://rc.test"
QUEUE = re.compile(r"^http://rc\.test/api/v1/livechat/queue(\?.*)?$")
LOGIN = "http://rc.test/api/v1/login"
ROW: dict[str, Any] = {
    "chats": 2,
    "user": {"_id": "a1", "username": "alice", "status": "online"},
    "department": {"_id": "d1", "name": "Sales"},
}


def page(*rows: dict[str, Any], total: int | None = None) -> dict[str, Any]:
    return {
        "queue": list(rows),
        "count": len(rows),
        "offset": 0,
        "total": len(rows) if total is None else total,
        "success": True,
    }


@pytest.fixture
async def client(clock: Clock) -> AsyncIterator[RocketChatClient]:
    async with RocketChatClient(BASE, TokenAuth("u1", "tok-abcdef"), 5.0, clock=clock) as c:
        yield c


async def get_queue(client: RocketChatClient, **kwargs: Any) -> Result[QueuePage]:
    return await client.get("livechat/queue", {"count": "0"}, QueuePage, **kwargs)


async def outcome_of(
    mock: aioresponses, client: RocketChatClient, **answer: Any
) -> tuple[Outcome, tuple[str, ...]]:
    """The outcome of a queue request that gets `answer` (aioresponses' arguments), and the
    status codes the poller's tally counts for it."""
    mock.get(QUEUE, **answer)
    result, codes = await counted(get_queue(client))
    return result.outcome, codes


def sent_headers(mock: aioresponses) -> list[dict[str, str]]:
    return [call.kwargs["headers"] for calls in mock.requests.values() for call in calls]


# --- success and the shapes rows come in (docs/rocketchat-api.md, "livechat/queue") ------


async def test_a_good_answer_is_a_success_with_rows(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, payload=page(ROW))
    answer, answer_codes = await counted(get_queue(client))
    assert answer.outcome is Outcome.SUCCESS
    assert answer.data is not None
    row = answer.data.rows[0]
    assert (row.chats, row.user.id, row.user.username, row.user.status) == (
        2,
        "a1",
        "alice",
        "online",
    )
    assert answer_codes == ("200",)


@pytest.mark.parametrize(
    "department",
    [{}, {"_id": None, "name": None}, {"_id": "gone"}, None],
    ids=["empty (E4+)", "nulls (E1/E2)", "deleted, no name", "absent"],
)
async def test_every_department_shape_is_accepted(
    mock: aioresponses, client: RocketChatClient, department: Any
) -> None:
    row = {**ROW, "department": department}
    if department is None:
        del row["department"]
    mock.get(QUEUE, payload=page(row))
    assert (await get_queue(client)).ok


async def test_extra_fields_of_newer_servers_are_ignored(
    mock: aioresponses, client: RocketChatClient
) -> None:
    row = {**ROW, "_id": "x", "user": {**ROW["user"], "userId": "a1"}, "new": [1, 2]}
    mock.get(QUEUE, payload={**page(row), "newTopLevel": {"a": 1}})
    assert (await get_queue(client)).ok


async def test_a_deleted_agent_row_of_old_servers_is_accepted(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, payload=page({**ROW, "user": {}}))
    answer = await get_queue(client)
    assert answer.data is not None
    assert answer.data.rows[0].user.id is None


# --- failures, per era's body (docs/rocketchat-api.md, "Error bodies") -------------------

UNAUTHORIZED_BODIES: dict[str, dict[str, Any]] = {
    "restivus": {"status": "error", "message": "You must be logged in to do this."},
    "apiclass": {
        "success": False,
        "error": "You must be logged in to do this.",
        "status": "error",
        "message": "You must be logged in to do this.",
    },
    "v8": {"success": False, "error": "You must be logged in to do this."},
}
FORBIDDEN_ANSWERS = {
    "restivus": (
        403,
        {
            "success": False,
            "error": "User does not have the permissions required for this "
            "action [error-unauthorized]",
        },
    ),
    "v8": (
        403,
        {
            "success": False,
            "error": "User does not have the permissions required for this "
            "action [error-forbidden]",
        },
    ),
    "secondary-permission": (403, {"success": False, "error": "unauthorized"}),
    "E1-400": (400, {"success": False, "error": "error-not-authorized"}),
}
BAD_REQUEST_BODIES = {
    "E5": {
        "success": False,
        "error": "must NOT have additional properties [invalid-params]",
        "errorType": "invalid-params",
    },
    "E6": {
        "success": False,
        "errorType": "error-invalid-params",
        "error": "must NOT have additional properties",
    },
    "sort": {
        "success": False,
        "error": 'Invalid sort parameter provided: "x" [error-invalid-sort]',
        "errorType": "error-invalid-sort",
        "details": {"helperMethod": "parseJsonQuery"},
    },
}
TOO_MANY = (
    "Error, too many requests. Please slow down. You must wait 42 seconds before trying "
    "this endpoint again. [error-too-many-requests]"
)


# Each era's answer: its status, its body, the outcome and what the message must quote.
ERROR_ANSWERS = [
    *[
        pytest.param(401, body, Outcome.UNAUTHORIZED, "You must be logged in", id=f"401 {era}")
        for era, body in UNAUTHORIZED_BODIES.items()
    ],
    *[
        pytest.param(status, body, Outcome.FORBIDDEN, str(status), id=f"forbidden {era}")
        for era, (status, body) in FORBIDDEN_ANSWERS.items()
    ],
    *[
        pytest.param(400, body, Outcome.BAD_REQUEST, body["error"], id=f"400 {era}")
        for era, body in BAD_REQUEST_BODIES.items()
    ],
]


@pytest.mark.parametrize(("status", "body", "outcome", "quoted"), ERROR_ANSWERS)
async def test_an_error_answer_is_its_outcome_in_every_era(
    mock: aioresponses,
    client: RocketChatClient,
    status: int,
    body: dict[str, Any],
    outcome: Outcome,
    quoted: str,
) -> None:
    mock.get(QUEUE, status=status, payload=body)
    answer = await get_queue(client)
    assert answer.outcome is outcome
    assert quoted in answer.message


async def test_404_says_to_check_the_url(mock: aioresponses, client: RocketChatClient) -> None:
    mock.get(QUEUE, status=404, body="Not Found", content_type="text/plain")
    answer = await get_queue(client)
    assert answer.outcome is Outcome.BAD_REQUEST
    assert "rocketchat.url" in answer.message


@pytest.mark.parametrize("with_error_type", [False, True])
async def test_429_is_rate_limited(
    mock: aioresponses, client: RocketChatClient, with_error_type: bool
) -> None:
    body: dict[str, Any] = {"success": False, "error": TOO_MANY}
    if with_error_type:
        body["errorType"] = "error-too-many-requests"
    mock.get(QUEUE, status=429, payload=body)
    assert (await get_queue(client)).outcome is Outcome.RATE_LIMITED


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_a_server_error(
    mock: aioresponses, client: RocketChatClient, status: int
) -> None:
    html = {"body": "<html>Bad Gateway</html>", "content_type": "text/html"}
    assert await outcome_of(mock, client, status=status, **html) == (
        Outcome.SERVER_ERROR,
        (str(status),),
    )


async def test_no_answer_in_time_is_a_timeout(mock: aioresponses, client: RocketChatClient) -> None:
    assert await outcome_of(mock, client, timeout=True) == (Outcome.TIMEOUT, ("none",))


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ClientPayloadError("broken body"),
        ConnectionRefusedError(111, "refused"),
    ],
    ids=["disconnected", "reset", "payload", "refused"],
)
async def test_transport_failures_are_network_errors(
    mock: aioresponses, client: RocketChatClient, error: Exception
) -> None:
    assert await outcome_of(mock, client, exception=error) == (Outcome.NETWORK_ERROR, ("none",))


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b'{"queue": [',
        b'{"queue": {}, "success": true}',
        b'{"queue": [{"chats": "3"}], "success": true}',
        b'{"queue": [{"chats": null}]}',
        b'{"queue": [{"chats": -1}]}',
        b'{"queue": [], "success": false}',
        b"[]",
        b"",
        b'{"success": true}',
    ],
    ids=[
        "html",
        "truncated",
        "queue-not-list",
        "chats-string",
        "chats-null",
        "chats-negative",
        "success-false",
        "array",
        "empty",
        "no-queue",
    ],
)
async def test_malformed_answers_are_invalid_responses(
    mock: aioresponses, client: RocketChatClient, body: bytes
) -> None:
    mock.get(QUEUE, body=body)
    answer = await get_queue(client)
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert answer.data is None
    assert "\n" not in answer.message


async def test_a_wrong_type_names_its_path(mock: aioresponses, client: RocketChatClient) -> None:
    mock.get(QUEUE, body=b'{"queue": [{"chats": 1}, {"chats": "3"}], "success": true}')
    answer = await get_queue(client)
    assert "$.queue[1].chats" in answer.message


async def test_an_oversized_answer_is_refused_not_buffered(mock: aioresponses) -> None:
    mock.get(QUEUE, body=b'{"queue": [' + b" " * 5000 + b"]}")
    async with RocketChatClient(BASE, TokenAuth("u", "t"), 5.0, max_body_bytes=1000) as small:
        answer = await get_queue(small)
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert "larger than" in answer.message


# --- the rate limit (docs/rocketchat-api.md, "Rate limits") -------------------------------


def limit_headers(remaining: int, reset_in: float, server_now: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(int((server_now + reset_in) * 1000)),  # epoch milliseconds
        "Date": email.utils.formatdate(server_now, usegmt=True),
    }


async def rate_limit_read(
    mock: aioresponses, client: RocketChatClient, headers: dict[str, str]
) -> RateLimit:
    """The rate limit the client reads from a good answer with `headers`."""
    mock.get(QUEUE, payload=page(ROW), headers=headers)
    limit = (await get_queue(client)).rate_limit
    assert limit is not None
    return limit


async def test_rate_limit_headers_are_read_in_milliseconds(
    mock: aioresponses, client: RocketChatClient
) -> None:
    limit = await rate_limit_read(mock, client, limit_headers(7, 42, 1_700_000_000))
    assert (limit.limit, limit.remaining) == (10, 7)
    assert limit.reset_in == pytest.approx(42)


async def test_the_reset_is_measured_on_the_servers_clock(
    mock: aioresponses, client: RocketChatClient
) -> None:
    # The server's clock is years off ours: its own Date header keeps the wait right.
    limit = await rate_limit_read(mock, client, limit_headers(3, 30, 1_500_000_000))
    assert limit.reset_in == pytest.approx(30)


async def test_no_headers_means_no_rate_limit(mock: aioresponses, client: RocketChatClient) -> None:
    mock.get(QUEUE, payload=page(ROW))
    assert (await get_queue(client)).rate_limit is None


async def test_nothing_is_sent_before_the_reset_after_a_429(
    mock: aioresponses, client: RocketChatClient, clock: Clock
) -> None:
    mock.get(
        QUEUE,
        status=429,
        payload={"success": False, "error": TOO_MANY},
        headers=limit_headers(0, 20, 1_700_000_000),
    )
    await get_queue(client)
    assert client.ready_at("livechat/queue") == pytest.approx(clock.now + 20 + RESET_MARGIN)
    clock.now += 19
    answer, answer_codes = await counted(get_queue(client))
    assert answer.outcome is Outcome.RATE_LIMITED
    assert answer_codes == ()  # refused here, not sent
    assert sum(len(calls) for calls in mock.requests.values()) == 1
    assert client.ready_at("livechat/other") == 0


async def test_a_429_without_headers_waits_as_its_message_says(
    mock: aioresponses, client: RocketChatClient, clock: Clock
) -> None:
    mock.get(QUEUE, status=429, payload={"success": False, "error": TOO_MANY})
    await get_queue(client)
    assert client.ready_at("livechat/queue") == pytest.approx(clock.now + 42 + RESET_MARGIN)


async def test_the_last_allowed_call_closes_the_window(
    mock: aioresponses, client: RocketChatClient, clock: Clock
) -> None:
    mock.get(QUEUE, payload=page(ROW), headers=limit_headers(0, 15, 1_700_000_000))
    assert (await get_queue(client)).ok
    assert client.ready_at("livechat/queue") == pytest.approx(clock.now + 15 + RESET_MARGIN)


async def test_a_short_wait_for_the_window_is_slept(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, payload=page(ROW), headers=limit_headers(0, 0, 1_700_000_000))
    mock.get(QUEUE, payload=page(ROW))
    await get_queue(client)  # window closes for RESET_MARGIN seconds
    assert (await get_queue(client, max_wait=1.0)).ok


# --- credentials (docs/rocketchat-api.md, "Login and tokens") -----------------------------


async def test_the_token_goes_in_the_two_headers(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, payload=page())
    await get_queue(client)
    headers = sent_headers(mock)[0]
    assert headers["X-User-Id"] == "u1"
    assert headers["X-Auth-Token"] == "tok-abcdef"


async def test_only_the_given_parameters_are_sent(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, payload=page())
    await client.get("livechat/queue", {"count": "0", "includeOfflineAgents": "true"}, QueuePage)
    (url,) = [key[1] for key in mock.requests]
    assert dict(url.query) == {"count": "0", "includeOfflineAgents": "true"}


async def test_a_rotated_token_file_is_retried_once_after_a_401(
    mock: aioresponses, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    auth = TokenAuth("u1", token_file=str(token_file))
    tokens: list[str] = []

    def answer(url: object, **kwargs: Any) -> CallbackResult:
        tokens.append(kwargs["headers"]["X-Auth-Token"])
        if len(tokens) == 1:
            token_file.write_text("new-token\n")  # the Secret was rotated meanwhile
            return CallbackResult(status=401, payload=UNAUTHORIZED_BODIES["restivus"])
        return CallbackResult(payload=page())

    mock.get(QUEUE, callback=answer, repeat=True)
    async with RocketChatClient(BASE, auth, 5.0) as client:
        assert (await get_queue(client)).ok
    assert tokens == ["old-token", "new-token"]


async def test_a_rejected_fixed_token_is_not_retried(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, status=401, payload=UNAUTHORIZED_BODIES["restivus"], repeat=True)
    answer, answer_codes = await counted(get_queue(client))
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert answer_codes == ("401",)


def login_ok(token: str) -> dict[str, Any]:
    return {"status": "success", "data": {"userId": "bot-id", "authToken": token, "me": {}}}


async def test_password_login_gets_a_token_and_uses_it(mock: aioresponses) -> None:
    mock.post(LOGIN, payload=login_ok("session-1"))
    mock.get(QUEUE, payload=page(ROW), repeat=True)
    async with RocketChatClient(BASE, PasswordAuth("bot", "pw-secret"), 5.0) as client:
        _, first_codes = await counted(get_queue(client))
        await get_queue(client)
    assert first_codes == ("200", "200")  # the login, then the queue
    logins = [c for (method, _), calls in mock.requests.items() if method == "POST" for c in calls]
    assert len(logins) == 1
    assert logins[0].kwargs["json"] == {"user": "bot", "password": "pw-secret"}
    assert sent_headers(mock)[-1]["X-Auth-Token"] == "session-1"


async def test_an_expired_session_logs_in_again_once(mock: aioresponses) -> None:
    mock.post(LOGIN, payload=login_ok("session-1"))
    mock.post(LOGIN, payload=login_ok("session-2"))
    mock.get(QUEUE, payload=page())
    mock.get(QUEUE, status=401, payload=UNAUTHORIZED_BODIES["apiclass"])
    mock.get(QUEUE, payload=page())
    async with RocketChatClient(BASE, PasswordAuth("bot", "pw"), 5.0) as client:
        assert (await get_queue(client)).ok
        answer, answer_codes = await counted(get_queue(client))
    assert answer.ok
    assert answer_codes == ("401", "200", "200")


async def test_a_login_needing_2fa_says_to_use_a_token(mock: aioresponses) -> None:
    mock.post(
        LOGIN,
        status=401,
        payload={
            "status": "error",
            "error": "totp-required",
            "message": "TOTP Required",
            "details": {},
        },
    )
    async with RocketChatClient(BASE, PasswordAuth("bot", "pw"), 5.0) as client:
        answer = await get_queue(client)
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert "Personal Access Token" in answer.message


async def test_a_refused_login_is_not_repeated_at_once(mock: aioresponses, clock: Clock) -> None:
    mock.post(
        LOGIN,
        status=401,
        payload={"status": "error", "error": 403, "message": "Unauthorized"},
        repeat=True,
    )
    auth = PasswordAuth("bot", "wrong", clock=clock)
    async with RocketChatClient(BASE, auth, 5.0) as client:
        first = await get_queue(client)
        second, second_codes = await counted(get_queue(client))
        clock.now += 3600
        await get_queue(client)
    assert first.outcome is second.outcome is Outcome.UNAUTHORIZED
    assert second_codes == ()  # no second login within the quiet period
    assert len([c for (m, _), calls in mock.requests.items() if m == "POST" for c in calls]) == 2


# --- hostile answers: untrusted to the last byte (issue 13, points 2 and 3) ----------------


@pytest.mark.parametrize(
    "body",
    [b"[" * 30_000 + b"]" * 30_000, b'{"queue": [], "x": ' + b"[" * 30_000, b"\xff\xfe{}"],
    ids=["nested-30000-deep", "nested-inside-a-page", "not-utf-8"],
)
async def test_an_unreadable_success_body_is_an_invalid_response(
    mock: aioresponses, client: RocketChatClient, body: bytes
) -> None:
    mock.get(QUEUE, body=body)
    answer, codes = await counted(get_queue(client))
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert codes == ("200",)
    assert "\n" not in answer.message


@pytest.mark.parametrize(
    "body",
    [b'{"success": false, "error": "caf\xe9 ferm\xe9"}', b'{"error": ' + b"[" * 30_000],
    ids=["latin-1", "nested"],
)
async def test_an_unreadable_error_body_keeps_its_status_class(
    mock: aioresponses, client: RocketChatClient, body: bytes
) -> None:
    mock.get(QUEUE, status=400, body=body)
    answer, codes = await counted(get_queue(client))
    assert answer.outcome is Outcome.BAD_REQUEST
    assert codes == ("400",)
    assert len(answer.message) < 300


@pytest.mark.parametrize(
    "header", ["X-RateLimit-Reset", "X-RateLimit-Remaining", "X-RateLimit-Limit"]
)
@pytest.mark.parametrize("status", [200, 429])
async def test_a_rate_limit_header_of_hundreds_of_digits_is_an_invalid_response(
    mock: aioresponses, client: RocketChatClient, header: str, status: int
) -> None:
    headers = limit_headers(3, 10, 1_700_000_000)
    headers[header] = "9" * 400
    mock.get(QUEUE, status=status, payload=page(ROW), headers=headers)
    answer, codes = await counted(get_queue(client))
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert f"unreadable {header} header" in answer.message
    assert "(400 characters)" in answer.message
    assert codes == (str(status),)
    assert answer.rate_limit is None


@pytest.mark.parametrize("value", ["-1", "1e9", "12.5", "٣"])
async def test_a_rate_limit_header_that_is_not_a_plain_count_is_refused(
    mock: aioresponses, client: RocketChatClient, value: str
) -> None:
    mock.get(QUEUE, payload=page(ROW), headers={"X-RateLimit-Remaining": value})
    answer = await get_queue(client)
    assert answer.outcome is Outcome.INVALID_RESPONSE


async def test_a_count_too_large_for_a_sample_is_an_invalid_response(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, payload=page({**ROW, "chats": 10**300}))
    answer = await get_queue(client)
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert "$.queue[0].chats" in answer.message


async def test_concurrent_tasks_count_their_own_requests(
    mock: aioresponses, client: RocketChatClient
) -> None:
    mock.get(QUEUE, payload=page(ROW), repeat=True)
    mock.get(re.compile(r".*/livechat/users/agent.*"), status=403, repeat=True)

    async def two_queue_reads() -> tuple[str, ...]:
        _, codes = await counted(_two(get_queue(client), get_queue(client)))
        return codes

    async def one_agents_read() -> tuple[str, ...]:
        _, codes = await counted(client.get("livechat/users/agent", {}, QueuePage))
        return codes

    first, second = await asyncio.gather(two_queue_reads(), one_agents_read())
    assert first == ("200", "200")
    assert second == ("403",)


async def _two(a: Any, b: Any) -> None:
    await a
    await b
