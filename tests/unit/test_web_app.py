"""The routes of exporter/web/app.py: reload, probes and the landing page."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from exporter.exposition import Exposition
from exporter.web import WebOptions, create_app, landing_page
from exporter.webconfig import WebConfigWatcher, web_config_middleware

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Status:
    name: str = "queue"
    interval: float = 30.0
    outcome: object = None
    message: str = ""
    last_success: float | None = None
    series: int = 0
    serving: bool = False


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    clients: list[Client] = []

    async def make(**kwargs: object) -> Client:
        app = create_app(Exposition(CollectorRegistry()), WebOptions(), **kwargs)  # type: ignore[arg-type]
        clients.append(TestClient(TestServer(app)))
        await clients[-1].start_server()
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


async def test_reload_that_succeeds_answers_200(
    make_client: Callable[..., Awaitable[Client]],
) -> None:
    calls: list[None] = []

    async def reload() -> str | None:
        calls.append(None)
        return None

    client = await make_client(reload=reload)
    answer = await client.post("/-/reload")
    assert (answer.status, await answer.text()) == (200, "reloaded\n")
    assert calls == [None]


async def test_reload_that_fails_answers_500_with_one_line(
    make_client: Callable[..., Awaitable[Client]],
) -> None:
    async def reload() -> str | None:
        return "config.yml: poll.interval: not a duration\nsecond line never shown"

    client = await make_client(reload=reload)
    answer = await client.post("/-/reload")
    assert answer.status == 500
    assert await answer.text() == "config.yml: poll.interval: not a duration\n"


async def test_without_a_reload_callback_there_is_no_reload_route(
    make_client: Callable[..., Awaitable[Client]],
) -> None:
    client = await make_client()
    assert (await client.post("/-/reload")).status in (404, 405)


async def test_reload_needs_post(make_client: Callable[..., Awaitable[Client]]) -> None:
    async def reload() -> str | None:
        raise AssertionError("a GET must not reload")

    client = await make_client(reload=reload)
    assert (await client.get("/-/reload")).status == 405


def test_landing_page_escapes_what_it_shows() -> None:
    status = Status(name="<queue>", message="<script>x</script>", last_success=0.0)
    page = landing_page(WebOptions(rocketchat_url="https://chat/?a=<b>"), [status])
    assert "<script>x" not in page
    assert "&lt;script&gt;" in page
    assert "&lt;queue&gt;" in page
    assert "never" in page


async def test_reload_is_behind_the_same_authentication_as_metrics(
    tmp_path: Path, make_client: Callable[..., Awaitable[Client]]
) -> None:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  alice: {hashed}\n")
    watcher = WebConfigWatcher(str(tmp_path / "web.yml"))
    calls: list[None] = []

    async def reload() -> str | None:
        calls.append(None)
        return None

    try:
        client = await make_client(reload=reload, middlewares=[web_config_middleware(watcher)])
        assert (await client.post("/-/reload")).status == 401
        assert calls == []
        token = base64.b64encode(b"alice:secret").decode()
        answer = await client.post("/-/reload", headers={"Authorization": f"Basic {token}"})
        assert answer.status == 200
        assert calls == [None]
    finally:
        watcher.close()
