"""The real exporter process against the fake Rocket.Chat: every queue series equals the
fake's truth, whatever the server era, paging mode and changes between polls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.fake import Agent, Framework, ModelEra, World
from tests.e2e.harness import (
    Scrape,
    exporter_config,
    exporter_running,
    queue_truth,
    require_tool,
    run_tool,
)
from tests.support.faults import InstrumentedFake

QUEUE_CHATS = "rocketchat_livechat_queue_chats"
ALLOWED = {"count", "offset", "sort", "agentId", "departmentId", "includeOfflineAgents"}


@pytest.mark.parametrize(
    ("model", "framework"),
    [
        ("E1", "restivus-js"),
        ("E2", "restivus-js"),
        ("E3", "restivus-ts"),
        ("E4", "restivus-ts"),
        ("E5", "restivus-ts"),
        ("E5", "hono"),
    ],
)
async def test_series_equal_the_truth_in_every_era(
    fake: InstrumentedFake, tmp_path: Path, model: ModelEra, framework: Framework
) -> None:
    fake.settings.model, fake.settings.framework = model, framework
    async with exporter_running(exporter_config(fake), tmp_path) as exporter:
        scrape = await exporter.wait_for_polls()
        assert scrape.family(QUEUE_CHATS) == queue_truth(fake.world)
        assert scrape.value("rocketchat_livechat_up", collector="queue") == 1


async def test_paging_when_the_server_refuses_count_zero(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    from exporter.fake import make_world

    fake.world = make_world(rows=730, departments=6, seed=3)
    fake.settings.allow_infinite_count = False
    async with exporter_running(exporter_config(fake), tmp_path) as exporter:
        scrape = await exporter.wait_for_polls()
        assert scrape.family(QUEUE_CHATS) == queue_truth(fake.world)
        first_poll = [r for r in fake.requests if r.endpoint == "livechat/queue"][:8]
    # count=0 gives the default 50 rows, then pages of 100: 1 + ceil(680 / 100) = 8 requests.
    assert [r.param("offset") for r in first_poll] == [
        str(n) for n in (0, 50, 150, 250, 350, 450, 550, 650)
    ]


@pytest.mark.parametrize("skew", [-9, +9])
async def test_a_total_that_disagrees_with_the_rows(
    fake: InstrumentedFake, tmp_path: Path, skew: int
) -> None:
    from exporter.fake import make_world

    fake.world = make_world(rows=260, departments=4, seed=4)
    fake.settings.total_skew = skew
    config = exporter_config(fake, poll={"page_size": 100})
    async with exporter_running(config, tmp_path) as exporter:
        scrape = await exporter.wait_for_polls()
        truth = queue_truth(fake.world)
        shown = scrape.family(QUEUE_CHATS)
    if skew > 0:
        assert shown == truth  # ends on the short page
    else:
        # A low total ends paging early (docs/rocketchat-api.md, "livechat/queue"): what is
        # shown is right, and at most the rows past the total are missing until the next poll.
        assert shown.items() <= truth.items()
        assert len(shown) >= 260 + skew


async def poll_after(
    fake: InstrumentedFake, tmp_path: Path, change: Callable[[World], None]
) -> Scrape:
    """The first queue poll that starts after `change` to the world, made once the exporter
    has polled."""
    async with exporter_running(exporter_config(fake), tmp_path) as exporter:
        await exporter.wait_for_polls()
        change(fake.world)
        return await exporter.next_fresh_poll()


def agent_named(world: World, username: str) -> Agent:
    return next(a for a in world.agents.values() if a.username == username)


async def test_an_agent_that_leaves_disappears_from_metrics(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    dave = agent_named(fake.world, "dave")

    def dave_closes_his_chats(world: World) -> None:
        for room in [r for r in world.rooms.values() if r.agent_id == dave.id]:
            world.close_room(room.id)

    scrape = await poll_after(fake, tmp_path, dave_closes_his_chats)
    assert 'agent="dave"' not in scrape.text
    assert scrape.family(QUEUE_CHATS) == queue_truth(fake.world)


async def test_a_status_change_leaves_no_series_behind(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    alice = agent_named(fake.world, "alice")

    def alice_goes_away(_: World) -> None:
        alice.status = "away"

    scrape = await poll_after(fake, tmp_path, alice_goes_away)
    alice_series = [labels for labels in scrape.family(QUEUE_CHATS) if ("agent", "alice") in labels]
    assert len(alice_series) == 3
    assert all(("status", "away") in labels for labels in alice_series)
    assert scrape.family(QUEUE_CHATS) == queue_truth(fake.world)


async def test_deleted_agents_and_departments_keep_honest_labels(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    support = next(d for d in fake.world.departments.values() if d.name == "Support")
    fake.world.remove_department(support.id)
    async with exporter_running(exporter_config(fake), tmp_path) as exporter:
        scrape = await exporter.wait_for_polls()
    shown = scrape.family(QUEUE_CHATS)
    assert shown == queue_truth(fake.world)
    assert any(
        ("department_id", support.id) in labels and ("department", "") in labels for labels in shown
    )


async def test_offline_agents_are_left_out_when_asked(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    config = exporter_config(fake, poll={"include_offline_agents": False})
    async with exporter_running(config, tmp_path) as exporter:
        scrape = await exporter.wait_for_polls()
    assert scrape.family(QUEUE_CHATS) == queue_truth(fake.world, include_offline=False)
    assert 'agent="bob"' not in scrape.text


async def test_only_the_parameters_the_server_accepts_are_sent(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    config = exporter_config(
        fake,
        poll={"agent_id": "x", "department_id": "y"},
        collectors={"queue": True, "inquiries": True, "agents": True},
    )
    async with exporter_running(config, tmp_path) as exporter:
        for collector in ("queue", "inquiries", "agents"):
            await exporter.wait_for_polls(collector)
    queue_requests = [r for r in fake.requests if r.endpoint == "livechat/queue"]
    assert queue_requests
    assert all(r.param_names <= ALLOWED for r in queue_requests)
    assert {r.status for r in fake.requests} == {200}


async def test_the_text_exposition_passes_promtool(fake: InstrumentedFake, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = exporter_config(fake, collectors={"queue": True, "inquiries": True, "agents": True})
    async with exporter_running(config, tmp_path) as exporter:
        for collector in ("queue", "inquiries", "agents"):
            await exporter.wait_for_polls(collector)
        scrape = await exporter.scrape()
    code, output = await run_tool(promtool, "check", "metrics", stdin=scrape.text.encode())
    assert code == 0, output
