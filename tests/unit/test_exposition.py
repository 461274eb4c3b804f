"""The /metrics body: content negotiation, the spliced gzip stream, one render per snapshot."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import zlib
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import exposition as exposition_module
from exporter.exposition import Exposition, Format, SelfMetricsText, Variant, negotiate
from exporter.rocketchat.outcome import Outcome, Result
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import Family

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
TEXT, TEXT_GZ = Variant(Format.TEXT, False), Variant(Format.TEXT, True)
OM, OM_GZ = Variant(Format.OPENMETRICS, False), Variant(Format.OPENMETRICS, True)
LABELS = ("agent_id", "agent", "status", "department_id", "department")


def queue_family(*rows: tuple[str, str, float]) -> tuple[Family, ...]:
    samples = tuple(
        ((agent, agent, "online", dept, dept.upper()), value) for agent, dept, value in rows
    )
    return (Family("rocketchat_livechat_queue_chats", "Open chats.", LABELS, samples),)


def self_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("rocketchat_livechat_up", "Up.", ["collector"], registry=registry).labels("queue").set(1)
    return registry


def samples_of(body: bytes, variant: Variant) -> dict[tuple[str, frozenset[Any]], float]:
    text = (gzip.decompress(body) if variant.gzip else body).decode()
    parse = parse_om if variant.format is Format.OPENMETRICS else parse_text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in parse(text)
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("accept", "encoding", "expected"),
    [
        (PROMETHEUS_ACCEPT, "gzip", OM_GZ),
        ("*/*", "gzip, deflate, br", TEXT_GZ),
        ("", "", TEXT),
        ("text/plain", "identity", TEXT),
        ("application/openmetrics-text; version=1.0.0", "", OM),
        ("application/openmetrics-text;q=0, text/plain", "gzip;q=0", TEXT),
        ("APPLICATION/OPENMETRICS-TEXT", "GZIP", OM_GZ),
        ("text/plain", "gzip;q=0", TEXT),
        ("text/plain", "gzip;q=0.000", TEXT),
        ("text/plain", "*;q=0.5", TEXT_GZ),
        ("text/plain", "*, gzip;q=0", TEXT),
        ("text/plain", "gzip;q=bogus", TEXT),
        ("application/openmetrics-text;q=0.5, text/plain;q=0.9", "", TEXT),
        ("application/openmetrics-text;q=0.9, text/plain;q=0.5", "", OM),
        ("application/openmetrics-text;q=0.5, */*", "", TEXT),
        ("application/openmetrics-text;q=0", "", TEXT),
        ("application/json", "br", TEXT),
    ],
)
def test_content_negotiation(accept: str, encoding: str, expected: Variant) -> None:
    assert negotiate(accept, encoding) == expected


@pytest.mark.parametrize("variant", [TEXT, TEXT_GZ, OM, OM_GZ], ids=str)
async def test_every_variant_parses_with_data_and_self_metrics(variant: Variant) -> None:
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(("a1", "d1", 3), ("a2", "", 1)))
    samples = samples_of(bytes(await exposition.answer(variant)), variant)
    labels = frozenset(
        {
            "agent_id": "a1",
            "agent": "a1",
            "status": "online",
            "department_id": "d1",
            "department": "D1",
        }.items()
    )
    assert samples[("rocketchat_livechat_queue_chats", labels)] == 3
    assert samples[("rocketchat_livechat_up", frozenset({("collector", "queue")}))] == 1
    assert len([key for key in samples if key[0] == "rocketchat_livechat_queue_chats"]) == 2


@pytest.mark.parametrize("fmt", list(Format))
async def test_gzip_is_one_stream_equal_to_the_plain_body(fmt: Format) -> None:
    exposition = Exposition(self_registry())
    await exposition.publish(
        "queue", queue_family(*((f"a{i}", f"d{i % 3}", i) for i in range(500)))
    )
    plain = bytes(await exposition.answer(Variant(fmt, False)))
    zipped = bytes(await exposition.answer(Variant(fmt, True)))
    inflater = zlib.decompressobj(wbits=31)  # exactly one gzip member, nothing after it
    assert inflater.decompress(zipped) == plain
    assert inflater.eof
    assert inflater.unused_data == b""
    assert len(zipped) < len(plain) / 3


async def test_openmetrics_ends_with_a_single_eof() -> None:
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(("a1", "d1", 1)))
    body = bytes(await exposition.answer(OM))
    assert body.endswith(b"\n# EOF\n")
    assert body.count(b"# EOF") == 1


async def test_the_data_part_is_rendered_once_per_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    renders: list[list[Variant]] = []
    real = exposition_module.render_parts

    def counting(snapshot: Any, variants: Any, reuse: Any = None) -> Any:
        renders.append(list(variants))
        return real(snapshot, variants, reuse or {})

    monkeypatch.setattr(exposition_module, "render_parts", counting)
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(("a1", "d1", 1)))
    assert renders == []  # nobody has asked for anything yet
    for _ in range(5):
        bytes(await exposition.answer(OM_GZ))
    assert renders == [[OM_GZ]]  # once, on demand
    await exposition.publish("queue", queue_family(("a1", "d1", 2)))
    assert renders[-1] == [OM_GZ]  # the variant in demand is rendered with the new snapshot
    for _ in range(5):
        bytes(await exposition.answer(OM_GZ))
    assert len(renders) == 2


async def test_a_scrape_does_not_wait_for_a_snapshot_being_rendered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(("a1", "d1", 1)))
    bytes(await exposition.answer(TEXT))
    release = threading.Event()
    real = exposition_module.render_parts

    def slow(snapshot: Any, variants: Any, reuse: Any = None) -> Any:
        release.wait(timeout=10)
        return real(snapshot, variants, reuse or {})

    monkeypatch.setattr(exposition_module, "render_parts", slow)
    publishing = asyncio.create_task(exposition.publish("queue", queue_family(("a1", "d1", 9))))
    await asyncio.sleep(0.05)
    body = bytes(await asyncio.wait_for(exposition.answer(TEXT), timeout=2))
    assert b'department_id="d1",status="online"} 1.0' in body  # the previous snapshot
    release.set()
    await publishing
    assert b'department_id="d1",status="online"} 9.0' in bytes(await exposition.answer(TEXT))


async def test_a_series_gone_from_the_answer_is_gone_from_the_body() -> None:
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(("a1", "d1", 1), ("a2", "d2", 4)))
    await exposition.publish("queue", queue_family(("a1", "d1", 1)))
    body = bytes(await exposition.answer(TEXT))
    assert b'agent_id="a2"' not in body
    assert b'agent_id="a1"' in body


async def test_dropping_a_collector_removes_its_series() -> None:
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(("a1", "d1", 1)))
    await exposition.publish("queue", None)
    assert b"rocketchat_livechat_queue_chats" not in bytes(await exposition.answer(TEXT))


async def test_label_values_are_escaped() -> None:
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(('we"ird\\name\n', "d", 1)))
    samples = samples_of(bytes(await exposition.answer(OM)), OM)
    assert any(("agent", 'we"ird\\name\n') in key[1] for key in samples)


async def test_publishing_logs_the_moment_the_new_series_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.exposition")
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(("a1", "d1", 1)))
    bytes(await exposition.answer(TEXT_GZ))
    await exposition.publish("queue", queue_family(("a1", "d1", 2), ("a2", "d1", 1)))
    published = [r for r in caplog.records if r.getMessage() == "snapshot published"]
    assert [r.levelno for r in published] == [logging.DEBUG, logging.DEBUG]
    fields = getattr(published[-1], "kv")  # noqa: B009
    assert fields["collector"] == "queue"
    assert fields["version"] == 2
    assert fields["series"] == 2
    assert fields["variants"] == 1  # the variant scraped since the first snapshot


@pytest.mark.parametrize("fmt", list(Format))
def test_self_metrics_rendered_a_family_at_a_time_equal_one_render(fmt: Format) -> None:
    metrics = SelfMetrics(["queue"])
    text = SelfMetricsText(metrics.registry)
    assert _without_process(text.render(fmt)) == _without_process(fmt.render(metrics.registry))
    metrics.record_poll("queue", Result(Outcome.TIMEOUT, None, "slow"), 2.5)  # changes families
    rendered = text.render(fmt)
    assert b'result="timeout"} 1.0' in rendered
    assert _without_process(rendered) == _without_process(fmt.render(metrics.registry))


def _without_process(body: bytes) -> list[bytes]:
    """The lines that cannot change between two renders a moment apart."""
    return [line for line in body.splitlines() if not line.startswith((b"process_", b"python_gc"))]
