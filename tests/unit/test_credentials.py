"""Credentials under stress: sessions renewed once and never in a loop, malformed tokens
refused with a clear message, and no credential quoted back from an answer
(docs/rocketchat-api.md, "Login and tokens")."""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from pathlib import Path
from typing import Any

import pytest
from aioresponses import CallbackResult, aioresponses

from exporter.rocketchat.auth import LOGIN_BACKOFF_FIRST, PasswordAuth, TokenAuth
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import QueuePage
from exporter.rocketchat.outcome import Outcome, Result
from tests.unit.conftest import Clock, counted

BASE = "http://rc.test"
QUEUE = re.compile(r"^http://rc\.test/api/v1/livechat/queue(\?.*)?$")
LOGIN = "http://rc.test/api/v1/login"
LOGGED_OUT = {"status": "error", "message": "You must be logged in to do this."}
EMPTY_PAGE = {"queue": [], "count": 0, "offset": 0, "total": 0, "success": True}
TOKEN = "tok-0123456789abcdef"
PASSWORD = "pw-0123456789abcdef"


def login_ok(token: str) -> dict[str, Any]:
    return {"status": "success", "data": {"userId": "bot-id", "authToken": token, "me": {}}}


def logins(mock: aioresponses) -> int:
    return sum(len(calls) for (method, _), calls in mock.requests.items() if method == "POST")


async def get_queue(client: RocketChatClient) -> Result[QueuePage]:
    return await client.get("livechat/queue", {"count": "0"}, QueuePage)


# --- no login loop ---------------------------------------------------------------------------


async def test_a_session_refused_before_its_first_answer_is_not_renewed_every_poll(
    mock: aioresponses,
) -> None:
    # E.g. a proxy that drops X-Auth-Token: the login works, every data request is a 401.
    for n in range(5):
        mock.post(LOGIN, payload=login_ok(f"session-{n}"))
    mock.get(QUEUE, status=401, payload=LOGGED_OUT, repeat=True)
    async with RocketChatClient(BASE, PasswordAuth("bot", PASSWORD), 5.0) as client:
        answers = [await get_queue(client) for _ in range(4)]
    assert all(a.outcome is Outcome.UNAUTHORIZED for a in answers)
    assert logins(mock) == 1
    assert "not logging in again" in answers[-1].message
    assert "X-Auth-Token" in answers[-1].message


async def test_a_session_that_worked_and_is_then_refused_is_renewed_once(
    mock: aioresponses,
) -> None:
    for n in range(5):
        mock.post(LOGIN, payload=login_ok(f"session-{n}"))
    mock.get(QUEUE, payload=EMPTY_PAGE)  # session-0 works once ...
    mock.get(QUEUE, status=401, payload=LOGGED_OUT, repeat=True)  # ... then nothing does
    async with RocketChatClient(BASE, PasswordAuth("bot", PASSWORD), 5.0) as client:
        assert (await get_queue(client)).ok
        polls = [await counted(get_queue(client)) for _ in range(4)]
    assert all(result.outcome is Outcome.UNAUTHORIZED for result, _ in polls)
    assert polls[0][1] == ("401", "200", "401")  # the data, the login, the one retry
    assert all(codes == () for _, codes in polls[1:])  # then no request at all
    assert logins(mock) == 2


async def test_a_new_password_lifts_the_pause_after_a_refused_session(
    mock: aioresponses, tmp_path: Path, clock: Clock
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text("first-password\n")
    auth = PasswordAuth("bot", password_file=str(password_file), clock=clock)
    mock.post(LOGIN, payload=login_ok("session-0"))
    mock.post(LOGIN, payload=login_ok("session-1"))
    mock.get(QUEUE, status=401, payload=LOGGED_OUT)
    mock.get(QUEUE, payload=EMPTY_PAGE)
    async with RocketChatClient(BASE, auth, 5.0, clock=clock) as client:
        assert (await get_queue(client)).outcome is Outcome.UNAUTHORIZED
        password_file.write_text("second-password-longer\n")
        answer = await get_queue(client)
    assert answer.ok
    assert logins(mock) == 2


async def test_collectors_share_a_session_renewed_by_one_of_them(mock: aioresponses) -> None:
    # Two requests sent with session-0; both come back 401 after it was revoked. The first
    # logs in again; the second must retry with session-1, not fail nor log in itself.
    mock.post(LOGIN, payload=login_ok("session-0"))
    mock.post(LOGIN, payload=login_ok("session-1"))
    arrived = asyncio.Event()
    release = asyncio.Event()
    seen: list[str] = []

    async def answer(url: object, **kwargs: Any) -> CallbackResult:
        token = kwargs["headers"]["X-Auth-Token"]
        seen.append(token)
        if token == "session-0" and len(seen) <= 2:
            return CallbackResult(payload=EMPTY_PAGE)  # both collectors' first polls
        if token == "session-0":
            if len([t for t in seen if t == "session-0"]) == 4:
                arrived.set()
            await release.wait()
            return CallbackResult(status=401, payload=LOGGED_OUT)
        return CallbackResult(payload=EMPTY_PAGE)

    mock.get(QUEUE, callback=answer, repeat=True)
    async with RocketChatClient(BASE, PasswordAuth("bot", PASSWORD), 5.0) as client:
        assert (await get_queue(client)).ok
        assert (await get_queue(client)).ok
        both = asyncio.gather(get_queue(client), get_queue(client))
        await asyncio.wait_for(arrived.wait(), 5)
        release.set()
        first, second = await asyncio.wait_for(both, 5)
    assert first.ok
    assert second.ok
    assert logins(mock) == 2


# --- tokens that cannot be sent ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["two\nlines", "carriage\rreturn", "nul\x00byte"])
async def test_a_token_file_with_a_control_character_is_a_clear_unauthorized(
    mock: aioresponses, tmp_path: Path, text: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"{text}-{TOKEN}\n")
    async with RocketChatClient(BASE, TokenAuth("u1", token_file=str(token_file)), 5.0) as client:
        answer, answer_codes = await counted(get_queue(client))
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert answer_codes == ()
    assert str(token_file) in answer.message
    assert "control character" in answer.message
    assert TOKEN not in answer.message


async def test_a_user_id_with_a_line_break_is_a_clear_unauthorized(mock: aioresponses) -> None:
    async with RocketChatClient(BASE, TokenAuth("u1\nX-Evil: 1", TOKEN), 5.0) as client:
        answer = await get_queue(client)
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert "user id" in answer.message


async def test_a_login_answer_with_an_unsendable_token_is_invalid(mock: aioresponses) -> None:
    mock.post(LOGIN, payload=login_ok("bad\r\ntoken"))
    async with RocketChatClient(BASE, PasswordAuth("bot", PASSWORD), 5.0) as client:
        answer, answer_codes = await counted(get_queue(client))
    assert answer.outcome is Outcome.INVALID_RESPONSE
    assert answer_codes == ("200",)


# --- credentials echoed by the server -----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (400, f"Bad request; you sent X-Auth-Token: {TOKEN} ...", "text/plain"),
        (502, "<html>" + "x" * 100 + f"{TOKEN}</html>", "text/html"),  # past the quote's cut
        (500, '{"success":false,"error":"token ' + TOKEN + ' is not valid"}', "application/json"),
        (200, f"<html>proxy login page for {TOKEN}</html>", "text/html"),
        (400, " " * 4086 + TOKEN, "text/plain"),  # across the end of the part searched
    ],
    ids=["text", "past the quote's cut", "json", "200 not json", "whitespace then token"],
)
async def test_a_token_echoed_in_an_answer_is_not_quoted(
    mock: aioresponses, status: int, body: str, content_type: str
) -> None:
    mock.get(QUEUE, status=status, body=body, content_type=content_type)
    async with RocketChatClient(BASE, TokenAuth("u1", TOKEN), 5.0) as client:
        answer = await get_queue(client)
    assert not answer.ok
    assert TOKEN[:8] not in answer.message


async def test_a_password_echoed_by_a_refused_login_is_not_quoted(mock: aioresponses) -> None:
    mock.post(LOGIN, status=401, body=f"denied: password={PASSWORD}", content_type="text/plain")
    async with RocketChatClient(BASE, PasswordAuth("bot", PASSWORD), 5.0) as client:
        answer = await get_queue(client)
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert "<redacted>" in answer.message
    assert PASSWORD[:8] not in answer.message


# --- a failed login is one attempt for all collectors (issue 13, point 15) -------------------


def reset_headers(seconds_from_now: float) -> dict[str, str]:
    now = time.time()
    return {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int((now + seconds_from_now) * 1000)),
        "Date": email.utils.formatdate(now, usegmt=True),
    }


async def test_a_rate_limited_login_is_one_attempt_for_all_until_the_reset(
    mock: aioresponses, clock: Clock
) -> None:
    too_many = {"success": False, "error": "Error, too many requests. [error-too-many-requests]"}
    mock.post(LOGIN, status=429, payload=too_many, headers=reset_headers(120))
    mock.post(LOGIN, payload=login_ok("session-0"))
    mock.get(QUEUE, payload=EMPTY_PAGE, repeat=True)
    auth = PasswordAuth("bot", PASSWORD, clock=clock)
    async with RocketChatClient(BASE, auth, 5.0, clock=clock) as client:
        three = await asyncio.gather(*(get_queue(client) for _ in range(3)))
        assert all(result.outcome is Outcome.RATE_LIMITED for result in three)
        assert logins(mock) == 1
        clock.now += 100  # still before the reset
        assert (await get_queue(client)).outcome is Outcome.RATE_LIMITED
        assert logins(mock) == 1
        clock.now += 25
        assert (await get_queue(client)).ok
    assert logins(mock) == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, b"unavailable"), (403, b'{"success":false,"error":"no"}'), (200, b"<html>")],
    ids=["5xx", "403", "garbage"],
)
async def test_a_failed_login_backs_off_doubling(
    mock: aioresponses, clock: Clock, status: int, body: bytes
) -> None:
    mock.post(LOGIN, status=status, body=body, repeat=True)
    auth = PasswordAuth("bot", PASSWORD, clock=clock)
    async with RocketChatClient(BASE, auth, 5.0, clock=clock) as client:
        await asyncio.gather(*(get_queue(client) for _ in range(3)))
        assert logins(mock) == 1
        clock.now += LOGIN_BACKOFF_FIRST - 1
        await get_queue(client)
        assert logins(mock) == 1
        clock.now += 1
        await get_queue(client)
        assert logins(mock) == 2
        clock.now += LOGIN_BACKOFF_FIRST * 2 - 1  # the second wait is twice as long
        await get_queue(client)
        assert logins(mock) == 2
        clock.now += 1
        await get_queue(client)
        assert logins(mock) == 3
