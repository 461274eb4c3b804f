"""The REST rate limiter: fixed windows, headers in epoch milliseconds, the 429 body
(docs/rocketchat-api.md, "Rate limits")."""

from __future__ import annotations

import asyncio
import time

from exporter.fake import ApiUser, ServerSettings

from . import FakeClock, serve


def limited() -> ApiUser:
    return ApiUser.supervisor()


async def test_counted_calls_carry_limit_remaining_and_a_reset_in_epoch_milliseconds() -> None:
    """docs/rocketchat-api.md, "Rate limits": the headers on every counted call; X-RateLimit-Reset
    is absolute, in ms."""
    clock = FakeClock()
    async with serve(users=[limited()], clock=clock) as client:
        clock.advance(15)
        answer = await client.queue()
    assert answer.headers["X-RateLimit-Limit"] == "10"
    assert answer.headers["X-RateLimit-Remaining"] == "9"
    # The window began at server start, so it ends 60 s after that, not after this call.
    assert int(answer.headers["X-RateLimit-Reset"]) == int((clock.now - 15 + 60) * 1000)
    assert "Retry-After" not in answer.headers
    assert "Date" in answer.headers


async def test_the_eleventh_call_in_a_window_is_a_429_saying_how_long_to_wait() -> None:
    """docs/rocketchat-api.md, "Rate limits": increment, then allow while the counter is <= 10; the
    wait is ceil(seconds)."""
    clock = FakeClock()
    async with serve(users=[limited()], clock=clock) as client:
        answers = [await client.queue() for _ in range(10)]
        clock.advance(17.5)
        blocked = await client.queue()
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == [str(9 - i) for i in range(10)]
    assert blocked.status == 429
    assert blocked.body == {
        "success": False,
        "error": "Error, too many requests. Please slow down. You must wait 43 seconds before "
        "trying this endpoint again. [error-too-many-requests]",
    }
    assert blocked.headers["X-RateLimit-Remaining"] == "0"
    assert blocked.headers["X-RateLimit-Reset"] == answers[0].headers["X-RateLimit-Reset"]


async def test_the_window_resets_on_the_first_request_after_it_ends() -> None:
    """docs/rocketchat-api.md, "Rate limits": lazy reset; that request starts the new window."""
    clock = FakeClock()
    async with serve(users=[limited()], clock=clock) as client:
        for _ in range(11):
            await client.queue()
        clock.advance(60.001)
        fresh = await client.queue()
    assert (fresh.status, fresh.headers["X-RateLimit-Remaining"]) == (200, "9")
    assert int(fresh.headers["X-RateLimit-Reset"]) == int((clock.now + 60) * 1000)


async def test_a_call_exactly_at_the_window_end_is_still_in_the_old_window() -> None:
    """docs/rocketchat-api.md, "Rate limits": the reset needs *more than* the interval since the
    last reset."""
    clock = FakeClock()
    async with serve(users=[limited()], clock=clock) as client:
        for _ in range(10):
            await client.queue()
        clock.advance(60)
        assert (await client.queue()).status == 429


async def test_a_tiny_window_resets_in_real_time() -> None:
    """The same with the real clock and a 200 ms window: no request before the reset time."""
    settings = ServerSettings(rate_limit_calls=2, rate_limit_window_ms=200)
    async with serve(settings=settings, users=[limited()]) as client:
        await client.queue()
        await client.queue()
        blocked = await client.queue()
        reset = int(blocked.headers["X-RateLimit-Reset"]) / 1000
        await asyncio.sleep(max(0.0, reset - time.time()) + 0.01)
        after = await client.queue()
    assert (blocked.status, after.status) == (429, 200)


async def test_a_bypass_user_gets_no_headers_and_no_limit() -> None:
    """docs/rocketchat-api.md, "Rate limits": api-bypass-rate-limit users are not limited and get no
    headers."""
    by_flag = ApiUser.supervisor(bypass_rate_limit=True)
    by_permission = ApiUser.supervisor(user_id="BypassPermission1", token="t2")
    by_permission.permissions.add("api-bypass-rate-limit")
    async with serve(users=[by_flag, by_permission]) as client:
        answers = [await client.queue(user=u) for _ in range(11) for u in (by_flag, by_permission)]
    assert {a.status for a in answers} == {200}
    assert not any("X-RateLimit-Limit" in a.headers for a in answers)


async def test_unauthenticated_calls_are_not_counted() -> None:
    """docs/rocketchat-api.md, "Rate limits": authentication first; a 401 does not use up the
    budget."""
    async with serve(users=[limited()]) as client:
        rejected = [await client.anonymous_get("livechat/queue") for _ in range(12)]
        answer = await client.queue()
    assert {r.status for r in rejected} == {401}
    assert "X-RateLimit-Limit" not in rejected[0].headers
    assert answer.headers["X-RateLimit-Remaining"] == "9"


async def test_a_restivus_403_is_counted_and_carries_the_headers() -> None:
    """docs/rocketchat-api.md, "Rate limits": on Restivus the permission check comes after the
    limiter."""
    nobody = ApiUser("NoPermissions0001", "token", "nobody")
    settings = ServerSettings(framework="restivus-ts")
    async with serve(settings=settings, users=[nobody]) as client:
        answer = await client.queue()
    assert (answer.status, answer.headers["X-RateLimit-Remaining"]) == (403, "9")


async def test_counters_are_per_client_ip() -> None:
    """docs/rocketchat-api.md, "Rate limits": the rule is keyed on {IPAddr, route}; X-Real-IP names
    the client."""
    async with serve(users=[limited()]) as client:
        for _ in range(10):
            await client.queue(headers={"X-Real-IP": "10.0.0.1"})
        other = await client.queue(headers={"X-Real-IP": "10.0.0.2"})
        same = await client.queue(headers={"X-Real-IP": "10.0.0.1"})
    assert (other.status, other.headers["X-RateLimit-Remaining"]) == (200, "9")
    assert same.status == 429


async def test_each_endpoint_has_its_own_budget() -> None:
    """docs/rocketchat-api.md, "livechat/department": every route has its own counter."""
    async with serve(users=[limited()]) as client:
        for _ in range(11):
            await client.queue()
        answer = await client.get("livechat/inquiries.list")
    assert (answer.status, answer.headers["X-RateLimit-Remaining"]) == (200, "9")


async def test_login_is_counted_per_ip_too() -> None:
    async with serve(users=[limited()]) as client:
        answer = await client.request("POST", "login", json={"user": "x", "password": "y"})
    assert answer.headers["X-RateLimit-Remaining"] == "9"


async def test_the_limiter_off_sends_no_headers() -> None:
    async with serve(settings=ServerSettings(rate_limit_calls=0), users=[limited()]) as client:
        answers = [await client.queue() for _ in range(12)]
    assert {a.status for a in answers} == {200}
    assert "X-RateLimit-Limit" not in answers[-1].headers


async def test_changing_the_settings_resets_the_counters() -> None:
    """docs/rocketchat-api.md, "Rate limits": a setting change re-registers every rule."""
    async with serve(users=[limited()]) as client:
        for _ in range(11):
            await client.queue()
        client.fake.settings.rate_limit_calls = 20
        answer = await client.queue()
    assert (answer.status, answer.headers["X-RateLimit-Remaining"]) == (200, "19")
