"""Fault injection: each kind, and how faults are matched and consumed."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from exporter.fake import ServerSettings
from tests.support.faults import Delay, Drop, HugeBody, Reply, ResetMidBody

from . import serve


async def test_reply_answers_with_the_given_status_body_and_headers() -> None:
    async with serve() as client:
        client.fake.inject(Reply.json({"oops": True}, status=503, headers={"X-Why": "test"}))
        answer = await client.queue()
    assert (answer.status, answer.body, answer.headers["X-Why"]) == (503, {"oops": True}, "test")


@pytest.mark.parametrize(
    "body",
    [b"<html>Bad Gateway</html>", b'{"queue":[{"chats":1', b'{"queue":"nope","success":true}'],
    ids=["not-json", "truncated-json", "wrong-types"],
)
async def test_reply_sends_any_raw_body(body: bytes) -> None:
    async with serve() as client:
        client.fake.inject(Reply(200, body))
        answer = await client.queue()
    assert (answer.status, answer.raw) == (200, body)


async def test_a_fault_skips_authentication_and_the_rate_limiter() -> None:
    """Faults replace the whole answer, right after routing."""
    async with serve() as client:
        client.fake.inject(Reply.json({}, status=200))
        answer = await client.anonymous_get("livechat/queue")
    assert answer.status == 200
    assert "X-RateLimit-Limit" not in answer.headers


async def test_a_fault_with_a_path_leaves_other_paths_alone() -> None:
    async with serve() as client:
        client.fake.inject(Reply(500, b"x"), path="livechat/inquiries.list")
        queue = await client.queue()
        inquiries = await client.get("livechat/inquiries.list")
    assert (queue.status, inquiries.status) == (200, 500)


async def test_a_fault_is_used_up_after_its_times() -> None:
    async with serve() as client:
        client.fake.inject(Reply(500, b"x"), times=2)
        statuses = [(await client.queue()).status for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert client.fake.pending_faults == []


async def test_a_fault_without_times_lasts_until_cleared() -> None:
    async with serve() as client:
        client.fake.inject(Reply(502, b"x"), times=None)
        statuses = [(await client.queue()).status for _ in range(3)]
        client.fake.clear_faults()
        statuses.append((await client.queue()).status)
    assert statuses == [502, 502, 502, 200]


async def test_faults_are_consumed_in_the_order_injected() -> None:
    async with serve() as client:
        client.fake.inject(Reply(500, b"x"))
        client.fake.inject(Reply(503, b"x"))
        statuses = [(await client.queue()).status for _ in range(3)]
    assert statuses == [500, 503, 200]


async def test_delay_answers_normally_after_waiting() -> None:
    async with serve() as client:
        client.fake.inject(Delay(0.2))
        started = time.monotonic()
        answer = await client.queue()
    assert answer.status == 200
    assert time.monotonic() - started >= 0.2


async def test_delay_trips_a_client_timeout_and_logs_no_status() -> None:
    async with serve() as client:
        client.fake.inject(Delay(5.0))
        with pytest.raises(asyncio.TimeoutError):
            await client.queue(timeout=aiohttp.ClientTimeout(total=0.1))
        for _ in range(100):  # the handler ends when the server sees the disconnect
            if client.fake.requests:
                break
            await asyncio.sleep(0.01)
    assert [(r.status, r.fault) for r in client.fake.requests] == [(None, "Delay")]


async def test_latency_setting_slows_every_answer() -> None:
    async with serve(settings=ServerSettings(latency=0.1)) as client:
        started = time.monotonic()
        await client.queue()
    assert time.monotonic() - started >= 0.1


async def test_drop_closes_the_connection_without_an_answer() -> None:
    async with serve() as client:
        client.fake.inject(Drop(), times=2)  # aiohttp retries an idempotent GET once
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await client.queue()
    assert [r.status for r in client.fake.requests] == [None, None]
    assert [r.fault for r in client.fake.requests] == ["Drop", "Drop"]


async def test_reset_mid_body_sends_headers_and_part_of_the_body() -> None:
    async with serve() as client:
        client.fake.inject(ResetMidBody(body=b'{"queue":[', declared_length=1000))
        with pytest.raises(aiohttp.ClientPayloadError):
            await client.queue()


async def test_reset_mid_body_works_with_chunked_encoding() -> None:
    async with serve() as client:
        client.fake.inject(ResetMidBody(declared_length=None))
        with pytest.raises(aiohttp.ClientPayloadError):
            await client.queue()


@pytest.mark.parametrize("chunked", [False, True])
async def test_huge_body_streams_exactly_size_bytes_of_valid_json(chunked: bool) -> None:
    size = 3 * 1024 * 1024 + 7
    async with serve() as client:
        client.fake.inject(HugeBody(size, chunked=chunked))
        answer = await client.queue()
    assert len(answer.raw) == size
    assert json.loads(answer.raw)["queue"] == []
    assert ("Content-Length" in answer.headers) is not chunked


async def test_huge_body_survives_a_client_that_stops_reading() -> None:
    async with serve() as client:
        client.fake.inject(HugeBody(50 * 1024 * 1024))
        url = f"{client.fake.url}/api/v1/livechat/queue"
        async with client.session.get(url) as response:
            first = await response.content.read(1024)
            response.close()
        after = await client.queue()
    assert first.startswith(b'{"queue":[]')
    assert after.status == 200


def test_times_must_be_positive() -> None:
    from exporter.fake import World
    from tests.support.faults import InstrumentedFake

    with pytest.raises(ValueError, match="times"):
        InstrumentedFake(World()).inject(Drop(), times=0)
