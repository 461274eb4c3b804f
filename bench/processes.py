"""Starting the processes under test, following their JSON log lines, reading /proc.

Every server under test (exporter, baseline, bare handler) logs JSON lines on stderr: a
"listening" line with its address, and (exporter and baseline) "snapshot published" when a
poll's series start being served, with the time in `ts`. The benchmark notes the process's CPU
time as it reads each "snapshot published" line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.fakeproc import LOG_PATH, Answered
from bench.procstat import Memory, cpu_seconds, memory

START_TIMEOUT = 60.0
PUBLISHED = "snapshot published"


@dataclass(frozen=True, slots=True)
class Event:
    msg: str
    at: float  # Unix time, from the line's `ts` (millisecond precision)
    fields: dict[str, Any]
    cpu: float  # the process's CPU seconds when the line was read (PUBLISHED lines only)


@dataclass
class Target:
    """A server under test."""

    name: str
    process: asyncio.subprocess.Process
    url: str = ""
    events: list[Event] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def published(self) -> list[Event]:
        return [e for e in self.events if e.msg == PUBLISHED]

    def durations(self) -> list[float]:
        """The poll durations the process reported, in order."""
        return [
            float(str(e.fields["duration"]).removesuffix("s"))
            for e in self.events
            if e.msg == "poll succeeded"
        ]

    async def wait_published(self, count: int, within: float) -> list[Event]:
        """Waits until `count` snapshots have been published in all."""
        async with asyncio.timeout(within):
            while len(self.published()) < count:
                if self.process.returncode is not None:
                    raise RuntimeError(f"{self.name} exited: {self.lines[-10:]}")
                self._arrived.clear()
                await self._arrived.wait()
        return self.published()

    def memory(self) -> Memory:
        return memory(self.pid)


def _event_time(entry: dict[str, Any]) -> float:
    ts = str(entry.get("ts", ""))
    if not ts:
        return 0.0
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


async def _follow(target: Target, listening: asyncio.Future[str]) -> None:
    assert target.process.stderr is not None
    async for raw in target.process.stderr:
        line = raw.decode(errors="replace").rstrip("\n")
        target.lines.append(line)
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        msg = str(entry.get("msg", ""))
        cpu = cpu_seconds(target.pid) if msg == PUBLISHED else 0.0
        target.events.append(Event(msg, _event_time(entry), entry, cpu))
        target._arrived.set()
        if msg == "listening" and not listening.done():
            listening.set_result(str(entry["address"]).split(",")[0].strip())
    if not listening.done():
        listening.set_exception(RuntimeError(f"{target.name} exited: {target.lines[-10:]}"))
    target._arrived.set()


def _environment() -> dict[str, str]:
    prefixes = ("ROCKETCHAT_", "LIVECHAT_EXPORTER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


async def start(name: str, command: Sequence[str]) -> Target:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(),
        limit=2**20,
    )
    target = Target(name, process)
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    target._reader = asyncio.create_task(_follow(target, listening))
    try:
        address = await asyncio.wait_for(listening, START_TIMEOUT)
    except BaseException:
        await stop(target)
        raise
    target.url = f"http://{address}/metrics"
    return target


async def terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after 5 s: every child the bench starts ends by its PID."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


async def stop(target: Target) -> None:
    await terminate(target.process)
    if target._reader is not None:
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(target._reader, 2)


@contextlib.asynccontextmanager
async def running(name: str, command: Sequence[str]) -> AsyncIterator[Target]:
    target = await start(name, command)
    try:
        yield target
    finally:
        await stop(target)


# --- the fake Rocket.Chat ------------------------------------------------------------------


@dataclass
class Fake:
    url: str
    user_id: str
    token: str
    process: asyncio.subprocess.Process

    async def answered(self) -> list[Answered]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url + LOG_PATH) as response,
        ):
            entries = await response.json()
        return [Answered(**entry) for entry in entries]


@contextlib.asynccontextmanager
async def fake_running(rows: int, *, infinite_count: bool = True) -> AsyncIterator[Fake]:
    command = [sys.executable, "-m", "bench.fakeproc", "--rows", str(rows)]
    if not infinite_count:
        command.append("--no-infinite-count")
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        if not first:
            raise RuntimeError("the fake Rocket.Chat did not start")
        hello = json.loads(first)
        yield Fake(hello["url"], hello["user_id"], hello["token"], process)
    finally:
        await terminate(process)


# --- commands ------------------------------------------------------------------------------


def exporter_command(fake: Fake, workdir: Path, interval: float, page_size: int = 0) -> list[str]:
    config = {
        "rocketchat": {
            "url": fake.url,
            "user_id": fake.user_id,
            "auth_token": fake.token,
            "timeout": "60s",
        },
        "poll": {"interval": f"{interval:g}s", "page_size": page_size, "max_staleness": "1h"},
        "collectors": {"queue": True},
    }
    descriptor, name = tempfile.mkstemp(suffix=".yaml", prefix="exporter-", dir=workdir)
    with os.fdopen(descriptor, "w") as file:
        yaml.safe_dump(config, file)
    return [
        sys.executable,
        "-m",
        "exporter",
        "--config.file",
        name,
        "--web.listen-address=127.0.0.1:0",
        "--log.format=json",
        "--log.level=debug",
    ]


def baseline_command(fake: Fake, interval: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.baseline",
        "--url",
        fake.url,
        "--user-id",
        fake.user_id,
        "--token",
        fake.token,
        "--interval",
        f"{interval:g}",
    ]


def bare_command(text: Path, zipped: Path) -> list[str]:
    return [sys.executable, "-m", "bench.bare", "--text", str(text), "--gzip", str(zipped)]
