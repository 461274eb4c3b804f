"""Fixtures for the unit tests of the client and the collectors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aioresponses import aioresponses

from exporter.rocketchat.auth import TokenAuth
from exporter.rocketchat.client import RocketChatClient


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
