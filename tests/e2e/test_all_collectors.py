"""All three collectors against the fake: exact truth, per-collector on/off, their own rate
limits and permissions."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from exporter.fake import ApiUser
from tests.e2e.harness import (
    Scrape,
    agents_truth,
    exporter_config,
    exporter_running,
    inquiries_truth,
    queue_truth,
)
from tests.support.faults import InstrumentedFake

EVERYTHING = {"queue": True, "inquiries": True, "agents": True}
WAITING = "rocketchat_livechat_inquiries_queued"
OLDEST = "rocketchat_livechat_inquiries_oldest_queued_timestamp_seconds"
AGENT_STATUS = "rocketchat_livechat_agent_status"


async def poll_all(exporter: object, collectors: tuple[str, ...]) -> Scrape:
    from tests.e2e.harness import ExporterProcess

    assert isinstance(exporter, ExporterProcess)
    scrape = None
    for collector in collectors:
        scrape = await exporter.wait_for_polls(collector)
    assert scrape is not None
    return scrape


async def test_every_series_equals_the_truth(fake: InstrumentedFake, tmp_path: Path) -> None:
    async with exporter_running(exporter_config(fake, collectors=EVERYTHING), tmp_path) as e:
        scrape = await poll_all(e, ("queue", "inquiries", "agents"))
    waiting, oldest = inquiries_truth(fake.world)
    assert scrape.family("rocketchat_livechat_queue_chats") == queue_truth(fake.world)
    assert scrape.family(WAITING) == waiting
    assert scrape.family(OLDEST) == pytest.approx(oldest)
    assert scrape.family(AGENT_STATUS) == agents_truth(fake.world)
    for collector in ("queue", "inquiries", "agents"):
        assert scrape.value("rocketchat_livechat_up", collector=collector) == 1


async def test_a_collector_that_is_off_has_no_series_and_no_up(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    config = exporter_config(fake, collectors={"queue": False, "inquiries": True, "agents": False})
    async with exporter_running(config, tmp_path) as exporter:
        scrape = await exporter.wait_for_polls("inquiries")
    assert "rocketchat_livechat_queue_chats" not in scrape.text
    assert AGENT_STATUS not in scrape.text
    assert 'collector="queue"' not in scrape.text
    assert 'collector="agents"' not in scrape.text
    assert scrape.value("rocketchat_livechat_up", collector="inquiries") == 1
    assert {r.endpoint for r in fake.requests} == {"livechat/inquiries.list", "livechat/department"}


async def test_queue_emptied_is_a_zero_not_a_vanished_series(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with exporter_running(exporter_config(fake, collectors=EVERYTHING), tmp_path) as e:
        await e.wait_for_polls("inquiries")
        for inquiry in list(fake.world.inquiries.values()):
            agent = next(iter(fake.world.agents))
            fake.world.take_inquiry(inquiry.id, agent)
        scrape = await e.next_fresh_poll("inquiries")
    assert scrape.family(WAITING)
    assert set(scrape.family(WAITING).values()) == {0.0}
    assert scrape.family(OLDEST) == {}


async def test_each_collector_keeps_its_own_interval(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    collectors = {"queue": {"interval": "1s"}, "agents": {"enabled": True, "interval": "1h"}}
    async with exporter_running(exporter_config(fake, collectors=collectors), tmp_path) as e:
        await e.wait_for_polls("queue", more_than=2)
    agents_calls = [r for r in fake.requests if r.endpoint == "livechat/users/agent"]
    queue_calls = [r for r in fake.requests if r.endpoint == "livechat/queue"]
    assert len(agents_calls) == 1
    assert len(queue_calls) >= 3


@pytest.mark.parametrize(
    ("missing", "collector", "named"),
    [
        ("view-l-room", "queue", "view-l-room"),
        ("view-livechat-manager", "inquiries", "view-livechat-manager"),
        ("transfer-livechat-guest", "agents", "transfer-livechat-guest"),
    ],
)
async def test_a_missing_permission_names_it(
    fake: InstrumentedFake, tmp_path: Path, missing: str, collector: str, named: str
) -> None:
    user = next(iter(fake.users.values()))
    user.permissions.discard(missing)
    user.permissions.discard("edit-omnichannel-contact")
    async with exporter_running(exporter_config(fake, collectors=EVERYTHING), tmp_path) as e:
        scrape = await e.wait_for_polls(collector, result="forbidden")
    assert scrape.value("rocketchat_livechat_up", collector=collector) == 0
    down = [
        entry
        for entry in e.logs
        if entry.get("msg") == "collector down" and entry.get("collector") == collector
    ]
    assert named in down[0]["error"]
    others = {"queue", "inquiries", "agents"} - {collector}
    for other in others:
        assert scrape.value("rocketchat_livechat_up", collector=other) in (1.0, None)


def limit_rate(fake: InstrumentedFake, bot: ApiUser, calls: int, window_ms: int) -> None:
    """Takes `bot`'s bypass of the rate limit away: `calls` per endpoint and window, the
    windows starting now."""
    bot.bypass_rate_limit = False
    fake.settings.rate_limit_calls = calls
    fake.settings.rate_limit_window_ms = window_ms
    fake.reset_rate_limits()


async def test_each_endpoint_has_its_own_rate_limit(
    fake: InstrumentedFake, bot: ApiUser, tmp_path: Path
) -> None:
    limit_rate(fake, bot, calls=3, window_ms=4000)
    async with exporter_running(exporter_config(fake, collectors=EVERYTHING), tmp_path) as e:
        await e.wait_for_polls("queue", more_than=4, within=20)
        scrape = await e.scrape()
    for collector in ("queue", "inquiries", "agents"):
        assert (
            scrape.value("rocketchat_livechat_exporter_rate_limit_remaining", collector=collector)
            is not None
        )
    # The exporter stops at the last allowed call and waits for the window: no 429 at all.
    assert all(r.status != 429 for r in fake.requests)


async def test_after_a_429_nothing_is_sent_before_the_reset(
    fake: InstrumentedFake, bot: ApiUser, tmp_path: Path
) -> None:
    limit_rate(fake, bot, calls=2, window_ms=3000)
    user = next(iter(fake.users.values()))
    headers = {"X-User-Id": user.user_id, "X-Auth-Token": user.token}
    queue_url = f"{fake.url}/api/v1/livechat/queue"
    async with (
        exporter_running(exporter_config(fake), tmp_path) as exporter,
        aiohttp.ClientSession() as session,
    ):
        await exporter.wait_for_polls()
        # Another client on the same IP spends the rest of the window (docs/rocketchat-api.md, "Rate
        # limits": limits are per IP).
        for _ in range(3):
            async with session.get(queue_url, headers=headers):
                pass
        scrape = await exporter.wait_for_polls(result="rate_limited", within=10)
        async with session.get(queue_url, headers=headers) as probe:
            reset = int(probe.headers["X-RateLimit-Reset"]) / 1000  # the server's reset time
        await exporter.wait_for_polls(more_than=1, within=10)
    assert scrape.value("rocketchat_livechat_up", collector="queue") == 0
    ours = [r for r in fake.requests if r.endpoint == "livechat/queue" and "sort" in r.param_names]
    refused = next(i for i, r in enumerate(ours) if r.status == 429)
    assert ours[refused + 1].wall > reset
    assert ours[refused + 1].status == 200
