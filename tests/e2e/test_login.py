"""Password login end to end (docs/rocketchat-api.md, "Login and tokens"): the real exporter
process logs in with POST /api/v1/login, uses the session token, logs in again once when it is
revoked, and never logs in over and over: a refused login waits LOGIN_RETRY_AFTER (15 minutes)
or a new password."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from exporter.fake import ApiUser
from exporter.rocketchat.auth import LOGIN_RETRY_AFTER
from tests.e2e.harness import ExporterProcess, exporter_config, exporter_running, queue_truth
from tests.e2e.observe import QUEUE_CHATS, Watcher, tracebacks
from tests.support.faults import InstrumentedFake, Reply

PASSWORD = "correct-horse-battery-staple-42"
USERNAME = "exporter"
LOGGED_OUT = {"status": "error", "message": "You must be logged in to do this."}
WITHIN = 15.0


@pytest.fixture
def bot() -> ApiUser:
    """The exporter's user: it has a password, and no Personal Access Token that works, so
    every data request it makes succeeds only with a token from a login."""
    user = ApiUser.supervisor(bypass_rate_limit=True, password=PASSWORD)
    user.token = ""
    return user


def login_config(fake: InstrumentedFake, password_file: Path | None) -> dict[str, Any]:
    config = exporter_config(fake)
    rocketchat = config["rocketchat"]
    del rocketchat["user_id"], rocketchat["auth_token"]
    rocketchat["username"] = USERNAME
    if password_file is not None:
        rocketchat["password_file"] = str(password_file)
    return config


@asynccontextmanager
async def running_with_password(
    fake: InstrumentedFake, tmp_path: Path, password: str, source: str = "file"
) -> AsyncIterator[ExporterProcess]:
    """The exporter logging in with `password`, from a file or from the environment."""
    if source == "env":
        config, env = login_config(fake, None), {"ROCKETCHAT_PASSWORD": password}
    else:
        password_file = tmp_path / "password"
        password_file.write_text(password + "\n")
        config, env = login_config(fake, password_file), {}
    async with exporter_running(config, tmp_path, env=env) as exporter:
        yield exporter


def logins(fake: InstrumentedFake) -> list[int | None]:
    """The status of every POST /api/v1/login so far."""
    return [r.status for r in fake.requests_to("login") if r.method == "POST"]


def queue_requests(fake: InstrumentedFake, status: int) -> int:
    return sum(1 for r in fake.requests_to("livechat/queue") if r.status == status)


@pytest.mark.parametrize("source", ["file", "env"])
async def test_the_token_from_the_login_is_used(
    fake: InstrumentedFake, bot: ApiUser, tmp_path: Path, source: str
) -> None:
    async with running_with_password(fake, tmp_path, PASSWORD, source) as exporter:
        scrape = await exporter.wait_for_polls(within=WITHIN)
        scrape = await exporter.wait_for_polls(more_than=2, within=WITHIN)
    assert scrape.family(QUEUE_CHATS) == queue_truth(fake.world)
    assert logins(fake) == [200]
    assert len(bot.login_tokens) == 1
    queue = fake.requests_to("livechat/queue")
    assert {r.user_id for r in queue} == {bot.user_id}
    assert {r.status for r in queue} == {200}
    assert tracebacks(exporter) == []


async def test_a_revoked_session_logs_in_again_once_and_recovers(
    fake: InstrumentedFake, bot: ApiUser, tmp_path: Path
) -> None:
    async with running_with_password(fake, tmp_path, PASSWORD) as exporter:
        async with Watcher(exporter) as watcher:
            await watcher.until(lambda o: o.polls("success") >= 1, WITHIN, "a good poll")
            (session,) = bot.login_tokens
            fake.revoke(bot.user_id, session)
            fake.world.close_room(next(iter(fake.world.rooms)))
            renewed = await watcher.until(
                lambda o: o.requests("401") >= 1 and o.polls("success") >= 3, WITHIN, "renewal"
            )
        await exporter.wait_for_polls(more_than=renewed.polls("success") + 1, within=WITHIN)
    assert logins(fake) == [200, 200]
    assert queue_requests(fake, 401) == 1
    assert renewed.polls("unauthorized") == 0  # the retry saved the poll
    assert {o.up() for o in watcher.observations if o.polls("success") >= 1} == {1}
    assert renewed.scrape.family(QUEUE_CHATS) == queue_truth(fake.world)
    assert tracebacks(exporter) == []


async def test_a_wrong_password_is_unauthorized_and_not_tried_again(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running_with_password(fake, tmp_path, "not-the-password") as exporter:
        scrape = await exporter.wait_for_polls(result="unauthorized", more_than=2, within=WITHIN)
    assert logins(fake) == [401]  # three polls, one login: the next one in 15 minutes
    assert LOGIN_RETRY_AFTER == 900
    assert scrape.value("rocketchat_livechat_up", collector="queue") == 0
    assert fake.requests_to("livechat/queue") == []
    down = [e for e in exporter.logs if e.get("msg") == "collector down"]
    assert len(down) == 1
    assert down[0]["outcome"] == "unauthorized"
    assert "login failed" in down[0]["error"]
    assert tracebacks(exporter) == []


async def test_a_corrected_password_file_is_used_at_the_next_poll(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running_with_password(fake, tmp_path, "not-the-password") as exporter:
        await exporter.wait_for_polls(result="unauthorized", within=WITHIN)
        (tmp_path / "password").write_text(PASSWORD + "\n")
        scrape = await exporter.wait_for_polls(within=3.0)
    assert logins(fake) == [401, 200]
    assert scrape.family(QUEUE_CHATS) == queue_truth(fake.world)


async def test_a_user_with_two_factor_auth_is_told_to_use_a_personal_access_token(
    fake: InstrumentedFake, bot: ApiUser, tmp_path: Path
) -> None:
    bot.totp_required = True
    async with running_with_password(fake, tmp_path, PASSWORD) as exporter:
        scrape = await exporter.wait_for_polls(result="unauthorized", more_than=2, within=WITHIN)
        _, _, landing = await exporter.get("/")
    assert logins(fake) == [401]
    assert scrape.value("rocketchat_livechat_up", collector="queue") == 0
    (down,) = [e for e in exporter.logs if e.get("msg") == "collector down"]
    assert "two-factor" in down["error"]
    assert "Personal Access Token" in down["error"]
    assert b"Personal Access Token" in landing
    assert tracebacks(exporter) == []


async def test_a_session_refused_at_once_is_not_renewed_at_every_poll(
    fake: InstrumentedFake, bot: ApiUser, tmp_path: Path
) -> None:
    """E.g. a proxy starts dropping X-Auth-Token: the login works, its token never does.
    Every REST login adds a token to the user's document (docs/rocketchat-api.md, "Login and
    tokens"): no login per poll."""
    async with running_with_password(fake, tmp_path, PASSWORD) as exporter:
        await exporter.wait_for_polls(within=WITHIN)
        fake.inject(Reply.json(LOGGED_OUT, status=401), times=None, path="livechat/queue")
        scrape = await exporter.wait_for_polls(result="unauthorized", more_than=3, within=WITHIN)
    assert logins(fake) == [200, 200]  # the first session, and one renewal that did not help
    assert len(bot.login_tokens) == 2
    assert scrape.value("rocketchat_livechat_up", collector="queue") == 0
    assert any("X-Auth-Token" in str(e.get("error")) for e in exporter.logs)
    assert tracebacks(exporter) == []
