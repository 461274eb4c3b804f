"""Config reload of the real process, by SIGHUP and by POST /-/reload (README, "Configuration")."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.harness import ExporterProcess, Scrape, exporter_config, start_exporter
from tests.support.faults import InstrumentedFake

OK = "rocketchat_livechat_exporter_config_last_reload_successful"
WHEN = "rocketchat_livechat_exporter_config_last_reload_success_timestamp_seconds"
POLLS = "rocketchat_livechat_exporter_polls_total"
UP = "rocketchat_livechat_up"


@asynccontextmanager
async def running(
    fake: InstrumentedFake, tmp_path: Path
) -> AsyncIterator[tuple[ExporterProcess, Path]]:
    """The exporter with the queue and inquiries collectors, from the time both are up; and
    its config file."""
    path = tmp_path / "config.yaml"
    write(path, config_of(fake, inquiries=True))
    exporter = await start_exporter(None, tmp_path, "--config.file", str(path))
    try:
        await exporter.wait_for(has_collector("inquiries"), what="inquiries up")
        yield exporter, path
    finally:
        assert await exporter.stop() == 0


def config_of(fake: InstrumentedFake, **collectors: Any) -> dict[str, Any]:
    return exporter_config(fake, collectors={"queue": True, **collectors})


def write(path: Path, config: object) -> None:
    path.write_text(yaml.safe_dump(config) if not isinstance(config, str) else config)


async def post_reload(exporter: ExporterProcess) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(exporter.url + "/-/reload") as response,
    ):
        return response.status, await response.text()


async def sighup(exporter: ExporterProcess) -> None:
    before = exporter.messages().count("config reloaded") + _failures(exporter)
    exporter.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while exporter.messages().count("config reloaded") + _failures(exporter) == before:
        assert time.monotonic() < deadline, "no reload logged"
        await asyncio.sleep(0.05)


def _failures(exporter: ExporterProcess) -> int:
    return sum(m.startswith("config reload failed") for m in exporter.messages())


def polls(scrape: Scrape, collector: str) -> float:
    return scrape.value(POLLS, collector=collector, result="success") or 0.0


def has_collector(name: str) -> Callable[[Scrape], bool]:
    return lambda s: s.value(UP, collector=name) == 1


Reload = Callable[[ExporterProcess], Any]


async def by_post(exporter: ExporterProcess) -> None:
    status, text = await post_reload(exporter)
    assert status == 200, text


BOTH = pytest.mark.parametrize("reload", [sighup, by_post], ids=["sighup", "post"])


@BOTH
async def test_a_valid_config_takes_effect_and_keeps_unchanged_collectors(
    fake: InstrumentedFake, tmp_path: Path, reload: Reload
) -> None:
    async with running(fake, tmp_path) as (exporter, path):
        first = await exporter.scrape()
        assert first.value(OK) == 1
        started_at = first.value(WHEN)
        await exporter.wait_for_polls("queue", more_than=1)
        queue_before = polls(await exporter.scrape(), "queue")
        write(path, config_of(fake, agents=True))  # inquiries off, agents on, queue the same
        await asyncio.sleep(0.01)
        await reload(exporter)
        after = await exporter.wait_for(has_collector("agents"), what="agents up")
        assert after.value(OK) == 1
        assert (after.value(WHEN) or 0) > (started_at or 0)
        # The removed collector's series vanish, its self-metrics too.
        assert after.family("rocketchat_livechat_inquiries_queued") == {}
        assert after.value(UP, collector="inquiries") is None
        assert polls(after, "inquiries") == 0
        # The unchanged one kept its counters and series, and was not restarted.
        assert polls(after, "queue") >= queue_before
        assert after.family("rocketchat_livechat_queue_chats")
        entry = next(e for e in exporter.logs if e.get("msg") == "config reloaded")
        assert (entry["started"], entry["restarted"], entry["stopped"]) == (
            "agents",
            "",
            "inquiries",
        )


@BOTH
async def test_a_changed_collector_restarts_with_its_new_settings(
    fake: InstrumentedFake, tmp_path: Path, reload: Reload
) -> None:
    async with running(fake, tmp_path) as (exporter, path):
        await exporter.wait_for_polls("queue")
        write(path, config_of(fake, inquiries=True, queue={"interval": "2s"}))
        await reload(exporter)
        entry = next(e for e in exporter.logs if e.get("msg") == "config reloaded")
        assert entry["restarted"] == "queue"
        assert entry["started"] == entry["stopped"] == ""
        _, _, page = await exporter.get("/")
        assert b"<td>queue</td><td>2s</td>" in page


async def test_a_bad_config_by_post_changes_nothing_and_answers_500(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as (exporter, path):
        write(path, "poll:\n  interval: 30x\n")
        status, text = await post_reload(exporter)
        assert status == 500
        assert text.strip().startswith('poll.interval: "30x" is not a duration')
        assert text.count("\n") == 1
        scrape = await exporter.wait_for(lambda s: s.value(OK) == 0, what="reload failure")
        assert scrape.value(UP, collector="inquiries") == 1  # the old config goes on
        before = polls(scrape, "queue")
        await exporter.wait_for(lambda s: polls(s, "queue") > before, what="queue polls go on")
        failed = [e for e in exporter.logs if e.get("msg", "").startswith("config reload failed")]
        assert len(failed) == 1
        assert failed[0]["level"] == "error"
        write(path, config_of(fake, inquiries=True))
        assert (await post_reload(exporter))[0] == 200
        assert (await exporter.scrape()).value(OK) == 1


async def test_a_bad_config_by_sighup_changes_nothing(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as (exporter, path):
        write(path, "poll: {interval: 30s, interval: 1m}\n")
        await sighup(exporter)
        scrape = await exporter.wait_for(lambda s: s.value(OK) == 0, what="reload failure")
        assert scrape.value(UP, collector="inquiries") == 1
        assert exporter.process.returncode is None
        assert "config reloaded" not in exporter.messages()
        line = next(e for e in exporter.logs if e.get("msg", "").startswith("config reload failed"))
        assert 'duplicate key "interval"' in line["error"]


@pytest.mark.parametrize(
    "broken", ["tls_server_config: [\n", "[" * 100_000 + "]" * 100_000], ids=["syntax", "deep"]
)
async def test_a_bad_web_config_fails_the_reload(
    fake: InstrumentedFake, tmp_path: Path, broken: str
) -> None:
    path, web = tmp_path / "config.yaml", tmp_path / "web.yaml"
    write(path, config_of(fake))
    web.write_text("basic_auth_users: {}\n")
    exporter = await start_exporter(
        None, tmp_path, "--config.file", str(path), "--web.config.file", str(web)
    )
    try:
        await exporter.wait_for_polls("queue")
        web.write_text(broken)
        status, text = await post_reload(exporter)
        assert status == 500
        assert text.count("\n") == 1
        assert (await exporter.scrape()).value(OK) == 0
    finally:
        assert await exporter.stop() == 0


async def test_a_rocketchat_change_restarts_every_collector_on_a_new_client(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as (exporter, path):
        changed = config_of(fake, inquiries=True)
        changed["rocketchat"]["timeout"] = "3s"
        write(path, changed)
        await by_post(exporter)
        entry = next(e for e in exporter.logs if e.get("msg") == "config reloaded")
        assert entry["restarted"] == "inquiries,queue"
        before = polls(await exporter.scrape(), "queue")
        await exporter.wait_for(lambda s: polls(s, "queue") > before + 1, what="new client polls")
