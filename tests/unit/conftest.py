"""Fixtures for the unit tests of the client and the collectors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeVar

import pytest
from aioresponses import aioresponses

from exporter.rocketchat.auth import TokenAuth
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.tally import RequestTally, count_requests_in

T = TypeVar("T")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    """Rocket.Chat's answers, mocked at aiohttp's level."""
    with aioresponses() as m:
        yield m


@pytest.fixture
async def client() -> AsyncIterator[RocketChatClient]:
    """A client of http://rc.test with a fixed token."""
    async with RocketChatClient("http://rc.test", TokenAuth("u", "t"), 5.0) as c:
        yield c


async def counted(awaitable: Awaitable[T]) -> tuple[T, tuple[str, ...]]:
    """What `awaitable` came to, and the status codes of the requests it sent ("none": no
    answer came), as the poller's tally counts them."""
    tally = RequestTally()
    count_requests_in(tally)
    try:
        return await awaitable, tuple(tally.codes)
    finally:
        count_requests_in(RequestTally())
