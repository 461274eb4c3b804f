"""Tests of the fake Rocket.Chat itself, one behaviour each, checked against the API notes
(docs/rocketchat-api.md, cited by heading) and docs/fake.md. They double as its documentation.

This module holds the small harness they share: :func:`serve` runs a fake on 127.0.0.1 and
yields a :class:`Client` that speaks to it as a given user.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from exporter.fake import ApiUser, ServerSettings, World
from tests.support.faults import InstrumentedFake

QueryParams = Mapping[str, str] | Sequence[tuple[str, str]]


def bot() -> ApiUser:
    """The default caller: a supervisor that the rate limiter leaves alone (docs/rocketchat-api.md,
    "Rate limits")."""
    return ApiUser.supervisor(bypass_rate_limit=True)


ALL_QUERY = {"includeOfflineAgents": "true"}  # every agent's rows, not only the available ones
# docs/rocketchat-api.md, "livechat/queue"
STABLE_SORT = '{"chats":-1,"user._id":1,"department._id":1}'


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


class Client:
    """Speaks to one fake as ``user`` unless told otherwise."""

    def __init__(self, fake: InstrumentedFake, session: aiohttp.ClientSession, user: ApiUser):
        self.fake = fake
        self.session = session
        self.user = user

    async def get(
        self,
        endpoint: str,
        params: QueryParams | None = None,
        *,
        user: ApiUser | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Answer:
        """GET /api/v1/<endpoint> with the credentials of ``user`` (default: the client's).

        ``options`` go to aiohttp's ``request`` (e.g. ``timeout``).
        """
        caller = user or self.user
        auth = {"X-User-Id": caller.user_id, "X-Auth-Token": caller.token}
        return await self.request(
            "GET", endpoint, params, headers={**auth, **(headers or {})}, **options
        )

    async def anonymous_get(
        self, endpoint: str, params: QueryParams | None = None, **options: Any
    ) -> Answer:
        return await self.request("GET", endpoint, params, **options)

    async def request(
        self, method: str, endpoint: str, params: QueryParams | None = None, **options: Any
    ) -> Answer:
        url = f"{self.fake.url}/api/v1/{endpoint}"
        async with self.session.request(method, url, params=params, **options) as response:
            return Answer(response.status, response.headers, await response.read())

    async def queue(self, params: QueryParams | None = None, **options: Any) -> Answer:
        return await self.get("livechat/queue", params, **options)


@asynccontextmanager
async def serve(
    world: World | None = None,
    settings: ServerSettings | None = None,
    users: Iterable[ApiUser] | None = None,
    **fake_options: Any,
) -> AsyncIterator[Client]:
    """A running fake on 127.0.0.1; the client calls as the first user (default: :func:`bot`)."""
    callers = list(users) if users is not None else [bot()]
    fake = InstrumentedFake(world or World(seed=1), settings, callers, **fake_options)
    await fake.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(fake, session, callers[0])
    finally:
        await fake.stop()


class FakeClock:
    """A clock the test moves by hand, for the rate limiter's windows."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rows_by_key(answer: Answer) -> dict[tuple[str | None, str | None], int]:
    """``{(user._id, department._id): chats}`` of a livechat/queue answer."""
    return {
        (row["user"].get("_id"), row["department"].get("_id")): row["chats"]
        for row in answer.body["queue"]
    }
