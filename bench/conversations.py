"""Benchmark of the conversations collector (docs/conversations.md, "Cost").

    python -m bench.conversations [--rooms 10000]

1. **Requests per poll** at 100 closes a minute, 1m interval, 5m lookback: ten polls against
   the fake on loopback, driven by a hand-moved clock (no waiting).
2. **A large window**: `--rooms` closed in one window, read by one poll against a fake in a
   child process, so the CPU seconds (`time.process_time`) and the RSS growth measured are
   the collector's alone (client, decode, counting, families).
3. **Rendering**: the exposition of a 1,000-row queue snapshot with and without the
   conversations families (scrapes send these cached bytes, so this is what could change).
4. **/metrics latency**: the exporter in `--demo` mode, every collector on, with and without
   `conversations`: `--scrapes` scrapes back to back after 15 s of polling; p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from bench.processes import terminate
from exporter.collectors.conversations import ConversationsCollector
from exporter.collectors.departments import DepartmentDirectory
from exporter.config import ConversationsConfig, PollConfig
from exporter.exposition import Format, render_text
from exporter.fake import ApiUser, FakeRocketChat, World, make_world
from exporter.rocketchat.auth import TokenAuth
from exporter.rocketchat.client import RocketChatClient
from exporter.rocketchat.tally import RequestTally, count_requests_in
from exporter.snapshot import Families, Family, Snapshot


def manager() -> ApiUser:
    user = ApiUser.supervisor(bypass_rate_limit=True)
    user.permissions.add("view-livechat-rooms")
    return user


def collector_for(
    client: RocketChatClient, clock: Callable[[], float] | None = None
) -> ConversationsCollector:
    return ConversationsCollector(
        client, PollConfig(), ConversationsConfig(enabled=True), DepartmentDirectory(600), clock
    )


class Clock:
    def __init__(self) -> None:
        self.now = time.time() - 86_400

    def __call__(self) -> float:
        return self.now


def close_served(world: World, departments: list[str], agents: list[str], n: int) -> None:
    for i in range(n):
        inquiry = world.queue_inquiry(departments[i % len(departments)])
        world.take_inquiry(inquiry.id, agents[i % len(agents)])
        world.conversations.agent_reply(inquiry.room_id, inquiry.ts + 20 + i % 100)
        world.close_room(inquiry.room_id, forget=True)


async def requests_per_poll(polls: int = 10, per_minute: int = 100) -> list[int]:
    clock = Clock()
    world = World(seed=1, clock=clock)
    departments = [world.add_department(f"D{i}").id for i in range(4)]
    agents = [world.add_agent(f"agent{i}", department_ids=departments).id for i in range(20)]
    user = manager()
    auth = TokenAuth(user.user_id, user.token)
    async with (
        FakeRocketChat(world, users=[user]) as fake,
        RocketChatClient(fake.url, auth, 10) as client,
    ):
        collector = collector_for(client, clock)
        await collector.poll()
        counts = []
        for _ in range(polls):
            for _ in range(per_minute):  # spread over the minute
                clock.now += 60 / per_minute
                close_served(world, departments, agents, 1)
            tally = RequestTally()
            count_requests_in(tally)
            answer = await collector.poll()
            assert answer.ok, answer.message
            counts.append(tally.requests_to("livechat/rooms"))
    return counts


def _team(seed: int) -> tuple[Clock, World, list[str], list[str]]:
    """A world of 8 departments and 50 agents who belong to all of them."""
    clock = Clock()
    world = World(seed=seed, clock=clock)
    departments = [world.add_department(f"D{i}").id for i in range(8)]
    agents = [world.add_agent(f"a{i}", department_ids=departments).id for i in range(50)]
    return clock, world, departments, agents


def _serve_window(rooms: int, ready: Connection) -> None:
    """Child process: a fake with `rooms` closes inside the window of the next poll."""

    async def main() -> None:
        clock, world, departments, agents = _team(seed=2)
        user = manager()
        start = clock.now
        clock.now += 1
        close_served(world, departments, agents, rooms)
        clock.now += 1
        async with FakeRocketChat(world, users=[user]) as fake:
            ready.send((fake.url, user.user_id, user.token, start, clock.now))
            await asyncio.to_thread(ready.recv)  # until told to stop

    asyncio.run(main())


def rss_bytes(field: str = "VmRSS") -> int:
    """This process's resident memory, or its peak so far (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Restart VmHWM from the current RSS (Linux: write 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


async def large_window(rooms: int) -> dict[str, float]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve_window, args=(rooms, child), daemon=True)
    process.start()
    try:
        url, user_id, token, start, end = parent.recv()
        moments = iter([start, end])
        async with RocketChatClient(url, TokenAuth(user_id, token), 60) as client:
            collector = collector_for(client, lambda: next(moments))
            assert (await collector.poll()).ok
            gc.collect()
            reset_peak()
            tally = RequestTally()
            count_requests_in(tally)
            rss, cpu, wall = rss_bytes(), time.process_time(), time.perf_counter()
            answer = await collector.poll()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            peak = rss_bytes("VmHWM") - rss
            gc.collect()
            grown = rss_bytes() - rss
            assert answer.ok, answer.message
            assert answer.data is not None
            requests = tally.requests_to("livechat/rooms")
        parent.send("stop")
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "rss_growth_mb": grown / 2**20,
        "peak_growth_mb": peak / 2**20,
        "requests": requests,
    }


def render_cost(repeats: int = 20) -> dict[str, float]:
    world = make_world(rows=1000, departments=8, seed=3)
    queue = Family(
        "rocketchat_livechat_queue_chats",
        "open chats",
        ("agent_id", "department_id"),
        tuple(((a, d or ""), float(n)) for (a, d), n in world.chats_per_agent_department().items()),
    )
    conversations = _conversation_families()
    results = {}
    for label, families in (("without", (queue,)), ("with", (queue, *conversations))):
        snapshot = Snapshot().replace("queue", families)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            text = render_text(snapshot, Format.TEXT)
            times.append(time.perf_counter() - started)
        results[f"render_ms_{label}"] = statistics.median(times) * 1000
        results[f"bytes_{label}"] = float(sum(len(chunk) for chunk in text))
    return results


def _conversation_families() -> Families:
    """The families of a collector that has counted 8 departments and 50 agents."""

    async def build() -> Families:
        clock, world, departments, agents = _team(seed=4)
        user = manager()
        async with FakeRocketChat(world, users=[user]) as fake:
            auth = TokenAuth(user.user_id, user.token)
            async with RocketChatClient(fake.url, auth, 10) as client:
                collector = collector_for(client, clock)
                await collector.poll()
                clock.now += 1
                close_served(world, departments, agents, 400)
                clock.now += 1
                answer = await collector.poll()
        assert answer.data is not None
        return answer.data

    return asyncio.run(build())


async def scrape_latency(conversations: bool, scrapes: int) -> tuple[float, float, int]:
    """p50 and p99 in ms of back-to-back scrapes of a demo exporter (a child process)."""
    import json
    import os
    import sys
    import tempfile

    import aiohttp

    on = {"enabled": True, "interval": "10s"}
    collectors = {"queue": True, "inquiries": True, "agents": True, "conversations": on}
    if not conversations:
        collectors["conversations"] = False
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config:
        json.dump({"poll": {"interval": "10s"}, "collectors": collectors}, config)
    command = [sys.executable, "-m", "exporter", "--demo", "--config.file", config.name]
    command += ["--web.listen-address=127.0.0.1:0", "--log.format=json"]
    process = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stderr is not None
        address = ""
        while not address:
            line = await asyncio.wait_for(process.stderr.readline(), 20)
            entry = json.loads(line) if line.startswith(b"{") else {}
            if entry.get("msg") == "listening":
                address = str(entry["address"]).split(",")[0].strip()
        await asyncio.sleep(15)
        times, size = [], 0
        async with aiohttp.ClientSession() as session:
            for _ in range(scrapes):
                started = time.perf_counter()
                async with session.get(f"http://{address}/metrics") as response:
                    size = len(await response.read())
                times.append((time.perf_counter() - started) * 1000)
    finally:
        await terminate(process)
        os.unlink(config.name)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=500)
    args = parser.parse_args()
    counts = asyncio.run(requests_per_poll())
    print(f"requests per poll at 100 closes/min: max {max(counts)}, all {counts}")
    large = asyncio.run(large_window(args.rooms))
    print(
        f"{args.rooms} rooms in one window: {large['cpu_s']:.2f} s CPU, "
        f"{large['wall_s']:.2f} s wall, RSS +{large['rss_growth_mb']:.1f} MB after "
        f"(peak +{large['peak_growth_mb']:.1f} MB), "
        f"{large['requests']:.0f} requests"
    )
    render = render_cost()
    print(
        f"render 1,000-row snapshot: {render['render_ms_without']:.2f} ms without, "
        f"{render['render_ms_with']:.2f} ms with conversations "
        f"({render['bytes_without']:.0f} -> {render['bytes_with']:.0f} bytes)"
    )
    for conversations in (False, True):
        p50, p99, size = asyncio.run(scrape_latency(conversations, args.scrapes))
        state = "on " if conversations else "off"
        print(
            f"/metrics latency, demo, conversations {state}: p50 {p50:.2f} ms, "
            f"p99 {p99:.2f} ms, {size} bytes"
        )


if __name__ == "__main__":
    main()
