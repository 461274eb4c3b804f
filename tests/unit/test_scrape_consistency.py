"""A scrape is one moment: the self-metrics it carries (polls counted, `up`) never count a
poll whose series it does not carry. Found by the fault-injection suite (tests/e2e/
test_faults.py), where a first scrape showed up=1 and a success without any data series."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from exporter import exposition as exposition_module
from exporter.exposition import Exposition, Format, Variant
from exporter.rocketchat.outcome import Outcome, Result
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import Family

TEXT = Variant(Format.TEXT, False)
LABELS = ("agent_id", "agent", "status", "department_id", "department")
QUEUE = (
    Family(
        "rocketchat_livechat_queue_chats",
        "Open chats.",
        LABELS,
        ((("a1", "alice", "online", "d1", "Sales"), 2.0),),
    ),
)


async def test_a_first_scrape_during_a_poll_never_counts_the_poll_without_its_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    metrics = SelfMetrics(["queue"])
    exposition = Exposition(metrics.registry)
    real_render = exposition_module.render_parts
    first_render_may_end = threading.Event()
    calls = 0

    def slow_first_render(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the scrape's render of the (empty) snapshot it began with
            first_render_may_end.wait(5)
        return real_render(*args)

    monkeypatch.setattr(exposition_module, "render_parts", slow_first_render)
    scrape = asyncio.create_task(exposition.answer(TEXT))
    await asyncio.sleep(0.05)  # the scrape now waits for its render
    await exposition.publish("queue", QUEUE)  # the poller publishes, then counts the poll
    metrics.record_poll("queue", Result(Outcome.SUCCESS, None, status=200), 0.1)
    first_render_may_end.set()
    text = bytes(await asyncio.wait_for(scrape, 5)).decode()

    counted = 'rocketchat_livechat_exporter_polls_total{collector="queue",result="success"} 1.0'
    if counted in text:
        assert "rocketchat_livechat_queue_chats{" in text
