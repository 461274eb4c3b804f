"""What keeps a large poll cheap (bench/ measures it at 50,000 rows): the answer is decoded off
the event loop, decoded rows are freed as their samples are made, samples share their label
tuples, and /metrics sends the cached chunks of a large body as they are."""

from __future__ import annotations

import gc
import re
import sys
import threading
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aioresponses import aioresponses

from exporter import exposition as exposition_module
from exporter.cli import SWITCH_INTERVAL, tune_runtime
from exporter.collectors.queue import QUEUE_CHATS, QueueCollector, samples
from exporter.config import PollConfig
from exporter.exposition import Exposition, Format, Variant
from exporter.rocketchat import client as client_module
from exporter.rocketchat.classify import classify
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.models import QueuePage
from exporter.web import WebOptions, create_app
from exporter.web import app as web_module
from tests.unit.test_exposition import queue_family, self_registry

QUEUE = re.compile(r"^http://rc\.test/api/v1/livechat/queue(\?.*)?$")
TEXT, TEXT_GZ = Variant(Format.TEXT, False), Variant(Format.TEXT, True)
OM, OM_GZ = Variant(Format.OPENMETRICS, False), Variant(Format.OPENMETRICS, True)


def queue_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "chats": 1 + i % 4,
            "user": {"_id": f"a{i // 3}", "username": f"agent{i // 3}", "status": "online"},
            "department": {"_id": f"d{i % 3}", "name": f"Dept {i % 3}"} if i % 3 else {},
        }
        for i in range(count)
    ]


async def test_a_large_answer_is_decoded_off_the_event_loop(
    mock: aioresponses, client: RocketChatClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded_in: list[threading.Thread] = []
    real_decode = classify

    def noting(*args: Any) -> Any:
        decoded_in.append(threading.current_thread())
        return real_decode(*args)

    monkeypatch.setattr(client_module, "classify", noting)
    monkeypatch.setattr(client_module, "DECODE_IN_THREAD_ABOVE", 1000)
    rows = queue_rows(100)
    for _ in range(2):
        mock.get(QUEUE, payload={"queue": rows, "total": 100, "success": True})
    large = await client.get("livechat/queue", {}, QueuePage)
    monkeypatch.setattr(client_module, "DECODE_IN_THREAD_ABOVE", 10**9)
    small = await client.get("livechat/queue", {}, QueuePage)
    assert large.data is not None
    assert small.data is not None
    assert len(large.data.rows) == len(small.data.rows) == 100
    assert decoded_in[0] is not threading.main_thread()
    assert decoded_in[1] is threading.main_thread()


def test_samples_consume_the_rows_and_share_label_tuples() -> None:
    rows = msgspec.json.decode(msgspec.json.encode({"queue": queue_rows(9)}), type=QueuePage).queue
    built, departments = samples(rows)
    assert rows == []  # each decoded row is freed as its sample is made
    assert len(built) == 9
    assert built[0] == (("a0", "agent0", "online", "", ""), 1)
    assert built[1] == (("a0", "agent0", "online", "d1", "Dept 1"), 2)
    assert departments == [("", ""), ("d1", "Dept 1"), ("d2", "Dept 2")]
    by_agent = {labels[0]: labels for labels, _ in built}
    assert all(labels[1] is by_agent[labels[0]][1] for labels, _ in built)  # shared strings


async def test_queue_values_render_as_floats(mock: aioresponses, client: RocketChatClient) -> None:
    mock.get(QUEUE, payload={"queue": queue_rows(3), "total": 3, "success": True})
    answer = await QueueCollector(client, PollConfig()).poll()
    assert answer.data is not None
    exposition = Exposition(self_registry())
    await exposition.publish("queue", answer.data)
    body = bytes(await exposition.answer(TEXT))
    assert f'{QUEUE_CHATS}{{agent="agent0",agent_id="a0",department="",'.encode() in body
    assert b'department_id="d2",status="online"} 3.0\n' in body


@pytest.mark.parametrize("variant", [TEXT, TEXT_GZ, OM, OM_GZ], ids=str)
async def test_a_family_rendered_in_slices_equals_one_render(
    variant: Variant, monkeypatch: pytest.MonkeyPatch
) -> None:
    family = queue_family(*((f"a{i}", f"d{i % 4}", float(i)) for i in range(23)))
    whole = Exposition(self_registry())
    await whole.publish("queue", family)
    monkeypatch.setattr(exposition_module, "SLICE", 5)
    sliced = Exposition(self_registry())
    await sliced.publish("queue", family)
    body = await sliced.answer(variant)
    assert bytes(body) == bytes(await whole.answer(variant))
    if not variant.gzip:
        assert len(body.chunks) == 5 + 1  # 23 samples in slices of 5, then the self-metrics


async def test_scrapes_send_the_cached_chunks_not_copies() -> None:
    exposition = Exposition(self_registry())
    await exposition.publish("queue", queue_family(("a1", "d1", 1)))
    first, second = await exposition.answer(TEXT), await exposition.answer(TEXT)
    assert first.chunks[0] is second.chunks[0]


def test_the_process_is_set_up_for_a_responsive_event_loop() -> None:
    tune_runtime()
    assert sys.getswitchinterval() <= SWITCH_INTERVAL
    assert gc.get_freeze_count() > 0


@pytest.mark.parametrize("gzip", [False, True])
async def test_a_large_body_is_streamed_whole(gzip: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exposition_module, "SLICE", 50)
    monkeypatch.setattr(web_module, "STREAM_ABOVE", 0)
    exposition = Exposition(self_registry())
    await exposition.publish(
        "queue", queue_family(*((f"a{i}", f"d{i % 4}", float(i)) for i in range(400)))
    )
    expected = bytes(await exposition.answer(Variant(Format.TEXT, gzip)))
    app = create_app(exposition, WebOptions())
    async with TestClient(TestServer(app), auto_decompress=False) as http:
        encoding = "gzip" if gzip else "identity"
        response = await http.get("/metrics", headers={"Accept-Encoding": encoding})
        assert response.status == 200
        assert int(response.headers["Content-Length"]) == len(expected)
        assert response.headers["Content-Type"] == Format.TEXT.content_type
        assert await response.read() == expected
        head = await http.head("/metrics", headers={"Accept-Encoding": encoding})
        assert head.status == 200
        assert await head.read() == b""
