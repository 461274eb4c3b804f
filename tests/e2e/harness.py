"""End-to-end harness: the real exporter process against the fake Rocket.Chat on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.fake import World
from tests.support.faults import InstrumentedFake

T = TypeVar("T")

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Series = dict[tuple[str, Labels], float]


def labels_of(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


@dataclass
class Scrape:
    text: str
    series: Series

    def family(self, name: str) -> dict[Labels, float]:
        return {labels: value for (metric, labels), value in self.series.items() if metric == name}

    def value(self, name: str, **labels: str) -> float | None:
        return self.series.get((name, labels_of(**labels)))


def parse_text(text: str) -> Series:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclass
class ExporterProcess:
    process: asyncio.subprocess.Process
    url: str = ""
    logs: list[dict[str, Any]] = field(default_factory=list)
    raw_log: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    async def get(
        self, path: str = "/metrics", **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.get(self.url + path, headers=headers) as response,
        ):
            return response.status, dict(response.headers), await response.read()

    async def scrape(self) -> Scrape:
        status, _, body = await self.get("/metrics", **{"Accept-Encoding": "identity"})
        assert status == 200
        text = body.decode()
        return Scrape(text, parse_text(text))

    async def wait_for(
        self, condition: Callable[[Scrape], bool], within: float = 15.0, what: str = "condition"
    ) -> Scrape:
        return await self.poll_until(self.scrape, condition, within, what)

    async def poll_until(
        self,
        probe: Callable[[], Awaitable[T]],
        condition: Callable[[T], bool],
        within: float,
        what: str,
        every: float = 0.05,
    ) -> T:
        """The first answer of `probe` (every `every` s) that meets `condition`; an
        AssertionError if the exporter exits first, or after `within` s."""
        deadline = time.monotonic() + within
        while True:
            answer = await probe()
            if condition(answer):
                return answer
            if self.process.returncode is not None:
                raise AssertionError(f"the exporter exited while waiting for {what}: {self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not met within {within}s: {self.tail()}")
            await asyncio.sleep(every)

    def tail(self) -> str:
        return f"log tail: {self.raw_log[-5:]}"

    async def wait_for_polls(
        self,
        collector: str = "queue",
        result: str = "success",
        more_than: float = 0,
        within: float = 15.0,
    ) -> Scrape:
        def enough(scrape: Scrape) -> bool:
            count = scrape.value(
                "rocketchat_livechat_exporter_polls_total", collector=collector, result=result
            )
            return count is not None and count > more_than

        return await self.wait_for(enough, within, f"{collector} polls with {result}")

    async def next_fresh_poll(self, collector: str = "queue") -> Scrape:
        """Waits for a poll that started after now: two more successes than so far."""
        now = (await self.scrape()).value(
            "rocketchat_livechat_exporter_polls_total", collector=collector, result="success"
        ) or 0
        return await self.wait_for_polls(collector, more_than=now + 1)

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        await terminate(self.process, sig)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 2)
        return self.process.returncode if self.process.returncode is not None else -1

    def messages(self) -> list[str]:
        return [entry.get("msg", "") for entry in self.logs]


async def _read_log(exporter: ExporterProcess, listening: asyncio.Future[str]) -> None:
    assert exporter.process.stderr is not None
    async for raw in exporter.process.stderr:
        line = raw.decode(errors="replace").rstrip("\n")
        exporter.raw_log.append(line)
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        exporter.logs.append(entry)
        if entry.get("msg") == "listening" and not listening.done():
            listening.set_result(str(entry["address"]).split(",")[0].strip())
    if not listening.done():
        listening.set_exception(AssertionError(f"exporter exited: {exporter.raw_log[-10:]}"))


async def start_exporter(
    config: Mapping[str, Any] | None,
    tmp_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
) -> ExporterProcess:
    command = [
        sys.executable,
        "-m",
        "exporter",
        "--web.listen-address=127.0.0.1:0",
        "--log.format=json",
        "--log.level=debug",
    ]
    if config is not None:
        command += ["--config.file", write_config(tmp_path, config)]
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **(env or {})},
    )
    exporter = ExporterProcess(process)
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    exporter._reader = asyncio.create_task(_read_log(exporter, listening))
    try:
        address = await asyncio.wait_for(listening, START_TIMEOUT)
    except BaseException:
        await exporter.stop(signal.SIGKILL)
        raise
    exporter.url = f"http://{address}"
    return exporter


def write_config(tmp_path: Path, config: Mapping[str, Any]) -> str:
    """`config` as a YAML file of its own in `tmp_path`; its path."""
    path = tmp_path / f"config-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(dict(config)))
    return str(path)


async def run_cli(
    *args: str, env: Mapping[str, str] | None = None, within: float = 30.0
) -> tuple[int, str, str]:
    """Runs `python -m exporter *args` to its end: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    return process.returncode or 0, out.decode(), err.decode()


async def terminate(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    """Stops `process` with `sig`, killing it if it has not exited within STOP_TIMEOUT."""
    if process.returncode is not None:
        return
    process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()


def selected(request: pytest.FixtureRequest, name: str, cases: Sequence[T]) -> list[T]:
    """The `cases` of parameter `name` that the selected tests of the requesting module use,
    in their order: for a module fixture that runs only the cases `-k` kept."""
    wanted = [
        item.callspec.params.get(name)
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.module is request.module
        and hasattr(item, "callspec")
    ]
    return [case for case in cases if case in wanted]


def clean_env() -> dict[str, str]:
    """The test process's environment without anything that configures the exporter."""
    prefixes = ("ROCKETCHAT_", "LIVECHAT_EXPORTER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def exporter_config(
    fake: InstrumentedFake,
    user_id: str | None = None,
    token: str | None = None,
    **sections: Mapping[str, Any],
) -> dict[str, Any]:
    user = next(iter(fake.users.values()))
    config: dict[str, Any] = {
        "rocketchat": {
            "url": fake.url,
            "user_id": user_id or user.user_id,
            "auth_token": token or user.token,
            "timeout": "2s",
        },
        "poll": {"interval": "1s", "max_staleness": "1m"},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


@contextlib.asynccontextmanager
async def exporter_running(
    config: Mapping[str, Any] | None,
    tmp_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[ExporterProcess]:
    exporter = await start_exporter(config, tmp_path, *args, env=env)
    try:
        yield exporter
    finally:
        await exporter.stop()


# --- the truth, computed from the fake's world independently of its HTTP layer --------------


def queue_truth(
    world: World, include_offline: bool = True, keep_deleted_agents: bool = False
) -> dict[Labels, float]:
    """What rocketchat_livechat_queue_chats must show: open served rooms per agent and
    department (docs/rocketchat-api.md, "livechat/queue")."""
    counts: Counter[Labels] = Counter()
    for room in world.rooms.values():
        if not room.open or room.agent_id is None:
            continue
        agent = world.agents.get(room.agent_id)
        if agent is None and not keep_deleted_agents:
            continue
        if (
            agent is not None
            and not include_offline
            and (agent.status == "offline" or agent.status_livechat != "available")
        ):
            continue
        department = world.departments.get(room.department_id or "")
        counts[
            labels_of(
                agent_id=agent.id if agent else "",
                agent=agent.username if agent else "",
                status=agent.status if agent else "",
                department_id=room.department_id or "",
                department=department.name if department else "",
            )
        ] += 1
    return {labels: float(n) for labels, n in counts.items()}


def inquiries_truth(world: World) -> tuple[dict[Labels, float], dict[Labels, float]]:
    """(waiting, oldest) per department: every department the exporter can know of has a
    waiting series, 0 included; the no-department queue always has one."""
    waiting: Counter[str] = Counter({"": 0, **dict.fromkeys(world.departments, 0)})
    oldest: dict[str, float] = {}
    for inquiry in world.inquiries.values():
        if inquiry.status != "queued":
            continue
        department = inquiry.department_id or ""
        waiting[department] += 1
        oldest[department] = min(oldest.get(department, inquiry.ts), inquiry.ts)

    def labels(department: str) -> Labels:
        known = world.departments.get(department)
        return labels_of(department_id=department, department=known.name if known else "")

    return (
        {labels(d): float(n) for d, n in waiting.items()},
        {labels(d): round(ts, 3) for d, ts in oldest.items()},
    )


def agents_truth(world: World) -> dict[Labels, float]:
    return {
        labels_of(
            agent_id=a.id, agent=a.username, status=a.status, livechat_status=a.status_livechat
        ): 1.0
        for a in world.agents.values()
    }


def require_tool(name: str) -> str:
    """The path of an outside tool; a missing one skips the test, unless REQUIRE_TOOLS=1
    (CI) makes that a failure."""
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        if os.environ.get("REQUIRE_TOOLS") == "1":
            pytest.fail(f"{name} is required (REQUIRE_TOOLS=1) but not installed")
        pytest.skip(f"{name} is not installed")
    return path


async def run_tool(*command: str, stdin: bytes = b"", within: float = 60.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(stdin), within)
    return process.returncode or 0, output.decode(errors="replace")
