"""Soak test: the real exporter process, for a long run, against the fake Rocket.Chat whose
world keeps changing, with faults mixed in and scrapes in parallel.

What it runs:
- the exporter with every collector polling every second, in pages of 5 rows (so one poll is
  several requests), started through tests/soak/instrumented.py, which only adds a count of
  its asyncio tasks written to a file;
- a simulated team (exporter.fake.Simulation) changing the data every half second;
- faults, one every `fault_every` seconds on average, on a random endpoint (or all of them):
  5xx, 429 with a reset time, dropped and reset connections, truncated, non-JSON and wrongly
  typed bodies, a 200 MiB body, answers slower than the timeout, a revoked token, and an
  outage of the whole server every `outage_every` seconds on average;
- `scrapers` clients at once: /metrics as text, as gzipped OpenMetrics, the landing page, the
  health endpoints, unknown paths, and scrapes abandoned mid-way.

What it checks, once a second (`/proc/<pid>/status`, `/proc/<pid>/fd`, the task count):
resident memory, asyncio tasks, open file descriptors and sockets must stay FLAT. After the
warm-up, the samples are cut in thirds; the last third, compared with the first, may rise by
at most (floor: the lowest sample; ceiling: the highest):

    rss      floor + max(4 MiB, 5%)    ceiling + max(8 MiB, 10%)
    tasks    floor + 2                 ceiling + scrapers + 2
    fds      floor + 2                 ceiling + scrapers + 4
    sockets  floor + 2                 ceiling + scrapers + 4

A leak raises the floor (what is left when nothing is in flight); in-flight scrapes and polls
only move the ceiling. Threads must stay at or under THREADS_BOUND (the default executor's
pool). Also: no scrape slower than SCRAPE_BOUND, no failed scrape of a path that exists, no
traceback or error line in the log, a clean exit on SIGTERM, and after the faults stop, every
collector is up again and serves exactly the fake's truth.

    scripts/soak                    # 30 minutes
    scripts/soak --duration 2h --scrapers 8 --report soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from exporter.durations import format_duration, parse_duration
from exporter.fake import ApiUser, ServerSettings, Simulation, build_demo_world
from tests.e2e.harness import (
    Scrape,
    agents_truth,
    inquiries_truth,
    parse_text,
    queue_truth,
    terminate,
)
from tests.e2e.observe import sample_process
from tests.soak import instrumented
from tests.support.faults import Delay, Drop, Fault, HugeBody, InstrumentedFake, Reply, ResetMidBody

ROOT = Path(__file__).resolve().parents[2]
COLLECTORS = ("queue", "inquiries", "agents")
ENDPOINTS = ("livechat/queue", "livechat/inquiries.list", "livechat/users/agent", None)
TOKEN = "soak-personal-access-token-0123456789abcdef"
SCRAPE_BOUND = 2.0  # seconds: the slowest scrape allowed
THREADS_BOUND = 40
START_WITHIN = 20.0
RECOVER_WITHIN = 30.0
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;q=0.3"


@dataclass(frozen=True)
class SoakOptions:
    duration: float = 1800.0
    scrapers: int = 4
    fault_every: float = 1.0  # mean seconds between two faults
    outage_every: float = 60.0  # mean seconds between two outages of the whole server
    sample_every: float = 1.0
    warm_up: float | None = None  # default: a tenth of the run, at least 10 s
    seed: int = 1

    @property
    def warm_up_seconds(self) -> float:
        return self.warm_up if self.warm_up is not None else max(10.0, self.duration / 10)


# --- samples and what "flat" means -----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the exporter started listening
    rss_kib: int
    tasks: int
    fds: int
    sockets: int
    threads: int


@dataclass(frozen=True)
class Flatness:
    what: str
    first: tuple[float, float]  # (floor, ceiling) of the first third after the warm-up
    last: tuple[float, float]
    floor_slack: float
    ceiling_slack: float

    @property
    def flat(self) -> bool:
        return (
            self.last[0] <= self.first[0] + self.floor_slack
            and self.last[1] <= self.first[1] + self.ceiling_slack
        )

    def __str__(self) -> str:
        verdict = "flat" if self.flat else "GROWS"
        return (
            f"{self.what:8} first third {self.first[0]:8.1f} .. {self.first[1]:8.1f}   "
            f"last third {self.last[0]:8.1f} .. {self.last[1]:8.1f}   "
            f"(allowed +{self.floor_slack:.1f} / +{self.ceiling_slack:.1f})  {verdict}"
        )


def flatness(samples: Sequence[Sample], warm_up: float, scrapers: int) -> list[Flatness]:
    settled = [s for s in samples if s.at >= warm_up]
    third = len(settled) // 3
    if third < 3:
        raise ValueError(f"{len(settled)} samples after the warm-up: too few for thirds")
    first, last = settled[:third], settled[-third:]

    def span(values: list[float]) -> tuple[float, float]:
        return (min(values), max(values))

    def check(what: str, get: Callable[[Sample], float], floor: float, ceiling: float) -> Flatness:
        return Flatness(
            what, span([get(s) for s in first]), span([get(s) for s in last]), floor, ceiling
        )

    rss_floor = min(s.rss_kib for s in first) / 1024
    return [
        check(
            "rss MiB",
            lambda s: s.rss_kib / 1024,
            max(4, rss_floor * 0.05),
            max(8, rss_floor * 0.10),
        ),
        check("tasks", lambda s: s.tasks, 2, scrapers + 2),
        check("fds", lambda s: s.fds, 2, scrapers + 4),
        check("sockets", lambda s: s.sockets, 2, scrapers + 4),
    ]


# --- the report ------------------------------------------------------------------------------


@dataclass
class SoakReport:
    options: SoakOptions
    samples: list[Sample] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    scrapes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, whole scrapes of /metrics
    scrape_errors: list[str] = field(default_factory=list)
    polls: dict[str, float] = field(default_factory=dict)  # "collector result" -> count
    requests: dict[str, float] = field(default_factory=dict)  # "collector code" -> count
    log_lines: int = 0
    bad_log_lines: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    recovery: str = "not reached"  # "ok", or what was wrong after the faults stopped
    exit_code: int | None = None
    crashed: str = ""  # an exception of the soak itself

    def flatness(self) -> list[Flatness]:
        return flatness(self.samples, self.options.warm_up_seconds, self.options.scrapers)

    def problems(self) -> list[str]:
        found = [f"the soak itself failed: {self.crashed}"] if self.crashed else []
        try:
            found += [f"not flat: {check}" for check in self.flatness() if not check.flat]
        except ValueError as error:
            found.append(str(error))
        threads = max((s.threads for s in self.samples), default=0)
        if threads > THREADS_BOUND:
            found.append(f"{threads} threads, more than {THREADS_BOUND}")
        if self.latencies and max(self.latencies) > SCRAPE_BOUND:
            found.append(f"a scrape took {max(self.latencies):.2f}s (bound {SCRAPE_BOUND}s)")
        found += [f"scrape failed: {error}" for error in self.scrape_errors[:5]]
        found += [f"log: {line[:300]}" for line in self.bad_log_lines[:5]]
        found += [f"stdout: {line[:300]}" for line in self.stdout[:5]]
        if self.recovery != "ok":
            found.append(f"after the faults: {self.recovery}")
        if self.exit_code != 0:
            found.append(f"exit code {self.exit_code} after SIGTERM")
        return found

    def summary(self) -> str:
        lines = [
            f"soak: {format_duration(self.options.duration)}, {self.options.scrapers} scrapers, "
            f"seed {self.options.seed}, {len(self.samples)} samples",
        ]
        with contextlib.suppress(ValueError):
            lines += [f"  {check}" for check in self.flatness()]
        if self.samples:
            first, last = self.samples[0], self.samples[-1]
            lines.append(
                f"  threads  {first.threads} -> {last.threads} "
                f"(max {max(s.threads for s in self.samples)})"
            )
        polls = sum(self.polls.values())
        by_result = Counter[str]()
        for key, count in self.polls.items():
            by_result[key.split()[1]] += int(count)
        lines.append(f"  polls    {polls:.0f}: {dict(by_result.most_common())}")
        codes = Counter[str]()
        for key, count in self.requests.items():
            codes[key.split()[1]] += int(count)
        lines.append(f"  requests {sum(codes.values())}: {dict(codes.most_common())}")
        lines.append(f"  faults   {sum(self.faults.values())}: {dict(self.faults.most_common())}")
        if self.latencies:
            ordered = sorted(self.latencies)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            lines.append(
                f"  scrapes  {sum(self.scrapes.values())} ({dict(self.scrapes.most_common())}); "
                f"/metrics p50 {statistics.median(ordered) * 1000:.1f} ms, "
                f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
            )
        lines.append(f"  log      {self.log_lines} lines, {len(self.bad_log_lines)} bad")
        lines += [f"    {n} x {kind}" for kind, n in bad_log_kinds(self.bad_log_lines).items()]
        lines.append(f"  recovery {self.recovery}; exit code {self.exit_code}")
        problems = self.problems()
        lines.append("  verdict  " + ("PASS" if not problems else "FAIL"))
        lines += [f"    - {problem}" for problem in problems]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "options": asdict(self.options),
            "samples": [asdict(s) for s in self.samples],
            "faults": dict(self.faults),
            "polls": self.polls,
            "requests": self.requests,
            "problems": self.problems(),
        }


def bad_log_kinds(lines: Sequence[str]) -> Counter[str]:
    """Bad log lines by logger and error, e.g. "aiohttp.server: ConnectionResetError: ..."."""
    kinds: Counter[str] = Counter()
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            kinds["(not a log record)"] += 1
            continue
        kinds[f"{entry.get('logger')}: {entry.get('error') or entry.get('msg')}"[:160]] += 1
    return kinds


# --- the exporter process --------------------------------------------------------------------


@dataclass
class Exporter:
    process: asyncio.subprocess.Process
    url: str
    tasks_file: Path
    report: SoakReport
    readers: list[asyncio.Task[None]]

    def last_task_count(self) -> int:
        lines = self.tasks_file.read_text(encoding="ascii").splitlines()
        return int(lines[-1].split()[1]) if lines else 0


async def _read_stderr(
    stream: asyncio.StreamReader, report: SoakReport, listening: asyncio.Future[str]
) -> None:
    async for raw in stream:
        line = raw.decode(errors="replace").rstrip("\n")
        report.log_lines += 1
        try:
            entry = json.loads(line)
        except ValueError:
            report.bad_log_lines.append(line)  # not a log record: a traceback, or a crash
            continue
        if "stack" in entry or entry.get("level") == "error" or "Traceback" in line:
            report.bad_log_lines.append(line)
        if entry.get("msg") == "listening" and not listening.done():
            listening.set_result(str(entry["address"]).split(",")[0].strip())
    if not listening.done():
        listening.set_exception(RuntimeError(f"the exporter exited: {report.bad_log_lines[-3:]}"))


async def _read_stdout(stream: asyncio.StreamReader, report: SoakReport) -> None:
    async for raw in stream:
        if len(report.stdout) < 100:
            report.stdout.append(raw.decode(errors="replace").rstrip("\n"))


@contextlib.asynccontextmanager
async def exporter_process(
    config: dict[str, Any], workdir: Path, report: SoakReport
) -> AsyncIterator[Exporter]:
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    tasks_file = workdir / "tasks"
    tasks_file.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROCKETCHAT_", "LIVECHAT_"))}
    env[instrumented.ENV_FILE] = str(tasks_file)
    env[instrumented.ENV_EVERY] = str(report.options.sample_every / 2)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.soak.instrumented",
        f"--config.file={config_file}",
        "--web.listen-address=127.0.0.1:0",
        "--log.format=json",
        "--log.level=info",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert process.stderr is not None
    assert process.stdout is not None
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    readers = [
        asyncio.create_task(_read_stderr(process.stderr, report, listening)),
        asyncio.create_task(_read_stdout(process.stdout, report)),
    ]
    exporter = Exporter(process, "", tasks_file, report, readers)
    try:
        exporter.url = "http://" + await asyncio.wait_for(listening, START_WITHIN)
        yield exporter
    finally:
        await terminate(process)
        report.exit_code = process.returncode
        await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 5)


# --- the faults ------------------------------------------------------------------------------


@dataclass
class Stage:
    fake: InstrumentedFake
    bot: ApiUser
    port: int
    rng: random.Random
    report: SoakReport


def _rate_limited() -> Reply:
    reset_ms = int((time.time() + 1.0) * 1000)
    headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "0"}
    body = {
        "success": False,
        "error": "Error, too many requests. Please slow down. You must wait 1 seconds before "
        "trying this endpoint again. [error-too-many-requests]",
    }
    return Reply.json(body, 429, {**headers, "X-RateLimit-Reset": str(reset_ms)})


_WRONG_TYPES = {"queue": [{"chats": "2", "user": {}}], "inquiries": None, "users": {"x": 1}}

# name, weight, the fault (made afresh for each use), how many requests it answers
INJECTED: list[tuple[str, int, Callable[[], Fault], int]] = [
    ("500", 4, lambda: Reply.json({"success": False, "error": "boom"}, 500), 1),
    ("502/503 burst", 2, lambda: Reply(502, b"<html>Bad Gateway</html>", {}, "text/html"), 3),
    ("429", 3, _rate_limited, 1),
    ("dropped connection", 3, lambda: Drop(), 2),  # aiohttp retries a GET once
    ("reset mid-body", 3, lambda: ResetMidBody(), 1),
    ("chunked body cut short", 2, lambda: ResetMidBody(declared_length=None), 1),
    ("truncated JSON", 2, lambda: Reply(200, b'{"queue":[{"chats":1,"us'), 1),
    ("not JSON", 2, lambda: Reply(200, b"<html>maintenance</html>", {}, "text/html"), 1),
    ("wrong types", 3, lambda: Reply.json(_WRONG_TYPES), 1),
    ("200 MiB body", 1, lambda: HugeBody(200 << 20), 1),
    ("slower than the timeout", 2, lambda: Delay(1.5), 1),
    ("401", 1, lambda: Reply.json({"success": False, "error": "You must be logged in"}, 401), 2),
]


async def inject_one(stage: Stage) -> None:
    names = [name for name, _, _, _ in INJECTED]
    weights = [weight for _, weight, _, _ in INJECTED]
    index = names.index(stage.rng.choices(names, weights)[0])
    name, _, make, times = INJECTED[index]
    stage.fake.inject(make(), times=times, path=stage.rng.choice(ENDPOINTS))
    stage.report.faults[name] += 1


async def revoke_token_for_a_while(stage: Stage) -> None:
    stage.bot.token = ""
    stage.report.faults["token revoked"] += 1
    await asyncio.sleep(stage.rng.uniform(1.0, 3.0))
    stage.bot.token = TOKEN


async def outage(stage: Stage) -> None:
    await stage.fake.stop()
    stage.report.faults["server outage"] += 1
    try:
        await asyncio.sleep(stage.rng.uniform(1.0, 4.0))
    finally:
        await stage.fake.start(port=stage.port)


async def make_trouble(stage: Stage, options: SoakOptions, until: float) -> None:
    """Faults at random moments until `until` (monotonic); each has ended when it returns."""
    next_outage = time.monotonic() + stage.rng.expovariate(1 / options.outage_every)
    while (now := time.monotonic()) < until:
        await asyncio.sleep(min(stage.rng.expovariate(1 / options.fault_every), until - now))
        if time.monotonic() >= until:
            break
        if time.monotonic() >= next_outage:
            await outage(stage)
            next_outage = time.monotonic() + stage.rng.expovariate(1 / options.outage_every)
        elif stage.rng.random() < 0.03:
            await revoke_token_for_a_while(stage)
        else:
            await inject_one(stage)
    stage.fake.clear_faults()


# --- the scrapers ----------------------------------------------------------------------------

Visit = Callable[[aiohttp.ClientSession, str, SoakReport], Awaitable[None]]


async def _timed_metrics(
    session: aiohttp.ClientSession, url: str, report: SoakReport, headers: dict[str, str]
) -> None:
    started = time.monotonic()
    async with session.get(url + "/metrics", headers=headers) as response:
        await response.read()
        if response.status != 200:
            report.scrape_errors.append(f"/metrics answered {response.status}")
    report.latencies.append(time.monotonic() - started)


async def scrape_text(session: aiohttp.ClientSession, url: str, report: SoakReport) -> None:
    await _timed_metrics(session, url, report, {"Accept-Encoding": "identity"})


async def scrape_like_prometheus(
    session: aiohttp.ClientSession, url: str, report: SoakReport
) -> None:
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
    await _timed_metrics(session, url, report, headers)


def visit(path: str, expected: int) -> Visit:
    async def get(session: aiohttp.ClientSession, url: str, report: SoakReport) -> None:
        async with session.get(url + path) as response:
            await response.read()
            if response.status != expected:
                report.scrape_errors.append(f"{path} answered {response.status}")

    return get


async def abandon_a_scrape(session: aiohttp.ClientSession, url: str, report: SoakReport) -> None:
    """A scraper that hangs up before the answer (a Prometheus scrape timeout)."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        timeout = aiohttp.ClientTimeout(total=0.001)
        async with session.get(url + "/metrics", timeout=timeout) as response:
            await response.read()


VISITS: list[tuple[str, int, Visit]] = [
    ("metrics text", 6, scrape_text),
    ("metrics gzip openmetrics", 6, scrape_like_prometheus),
    ("landing page", 1, visit("/", 200)),
    ("healthy", 1, visit("/-/healthy", 200)),
    ("ready", 1, visit("/-/ready", 200)),
    ("not found", 1, visit("/nope", 404)),
    ("abandoned", 2, abandon_a_scrape),
]


async def scraper(url: str, report: SoakReport, rng: random.Random, until: float) -> None:
    names = [name for name, _, _ in VISITS]
    weights = [weight for _, weight, _ in VISITS]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while time.monotonic() < until:
            name = rng.choices(names, weights)[0]
            _, _, go = VISITS[names.index(name)]
            try:
                await go(session, url, report)
            except (aiohttp.ClientError, TimeoutError) as error:
                report.scrape_errors.append(f"{name}: {type(error).__name__}: {error}")
            report.scrapes[name] += 1
            await asyncio.sleep(rng.uniform(0.02, 0.2))


# --- sampling and the end check --------------------------------------------------------------


async def sample_until(exporter: Exporter, started: float, until: float) -> None:
    every = exporter.report.options.sample_every
    while time.monotonic() < until:
        process = sample_process(exporter.process.pid)
        exporter.report.samples.append(
            Sample(
                at=round(process.at - started, 3),
                rss_kib=process.rss_kib,
                tasks=exporter.last_task_count(),
                fds=process.fds,
                sockets=process.sockets,
                threads=process.threads,
            )
        )
        await asyncio.sleep(every)


async def metrics(url: str) -> Scrape:
    headers = {"Accept-Encoding": "identity"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/metrics", headers=headers) as r,
    ):
        text = await r.text()
    return Scrape(text, parse_text(text))


def successes(scrape: Scrape, collector: str) -> float:
    value = scrape.value(
        "rocketchat_livechat_exporter_polls_total", collector=collector, result="success"
    )
    return value or 0.0


async def check_recovery(url: str, fake: InstrumentedFake) -> str:
    """After the faults: two fresh good polls of each collector, then the truth exactly."""
    before = await metrics(url)
    deadline = time.monotonic() + RECOVER_WITHIN
    while True:
        scrape = await metrics(url)
        if all(successes(scrape, c) >= successes(before, c) + 2 for c in COLLECTORS):
            break
        if time.monotonic() > deadline:
            return f"not every collector polled well twice within {RECOVER_WITHIN:g}s"
        await asyncio.sleep(0.2)
    waiting, oldest = inquiries_truth(fake.world)
    shown_oldest = scrape.family("rocketchat_livechat_inquiries_oldest_queued_timestamp_seconds")
    checks = {
        "up": {c: scrape.value("rocketchat_livechat_up", collector=c) for c in COLLECTORS}
        == dict.fromkeys(COLLECTORS, 1.0),
        "queue": scrape.family("rocketchat_livechat_queue_chats") == queue_truth(fake.world),
        "inquiries": scrape.family("rocketchat_livechat_inquiries_queued") == waiting,
        "oldest": shown_oldest.keys() == oldest.keys()
        and all(abs(shown_oldest[k] - v) < 0.01 for k, v in oldest.items()),
        "agents": scrape.family("rocketchat_livechat_agent_status") == agents_truth(fake.world),
    }
    wrong = [name for name, ok in checks.items() if not ok]
    return "ok" if not wrong else f"wrong after recovery: {', '.join(wrong)}"


def harvest_counters(report: SoakReport, scrape: Scrape) -> None:
    for (name, labels), value in scrape.series.items():
        tags = dict(labels)
        if name == "rocketchat_livechat_exporter_polls_total":
            report.polls[f"{tags['collector']} {tags['result']}"] = value
        elif name == "rocketchat_livechat_exporter_requests_total":
            report.requests[f"{tags['collector']} {tags['code']}"] = value


# --- the whole run ---------------------------------------------------------------------------


def exporter_config(url: str, user_id: str) -> dict[str, Any]:
    return {
        "rocketchat": {"url": url, "user_id": user_id, "auth_token": TOKEN, "timeout": "1s"},
        "poll": {"interval": "1s", "page_size": 5, "max_staleness": "3s"},
        "collectors": {
            "queue": True,
            "inquiries": True,
            "agents": True,
            "department_refresh": "10s",
        },
    }


async def soak(
    options: SoakOptions, progress: Callable[[str], None] = lambda _: None
) -> SoakReport:
    report = SoakReport(options)
    rng = random.Random(options.seed)
    world = build_demo_world(options.seed)
    bot = ApiUser.supervisor(token=TOKEN, bypass_rate_limit=True)
    fake = InstrumentedFake(world, ServerSettings(), [bot], shuffle_seed=options.seed)
    await fake.start()
    simulation = asyncio.create_task(Simulation(world, random.Random(options.seed)).run(0.5))
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
            config = exporter_config(fake.url, bot.user_id)
            async with exporter_process(config, Path(workdir), report) as exporter:
                await _run(exporter, fake, bot, rng, progress)
                if exporter.process.returncode is None:
                    simulation.cancel()
                    report.recovery = await check_recovery(exporter.url, fake)
                    harvest_counters(report, await metrics(exporter.url))
    except Exception as error:  # the soak's own failure is a finding, reported with the rest
        report.crashed = f"{type(error).__name__}: {error}"
    finally:
        simulation.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await simulation
        await fake.stop()
    return report


async def _run(
    exporter: Exporter,
    fake: InstrumentedFake,
    bot: ApiUser,
    rng: random.Random,
    progress: Callable[[str], None],
) -> None:
    options = exporter.report.options
    started = time.monotonic()
    until = started + options.duration
    stage = Stage(
        fake, bot, int(fake.url.rsplit(":", 1)[1]), random.Random(rng.random()), exporter.report
    )
    jobs = [
        asyncio.create_task(make_trouble(stage, options, until), name="faults"),
        asyncio.create_task(sample_until(exporter, started, until), name="samples"),
        *(
            asyncio.create_task(
                scraper(exporter.url, exporter.report, random.Random(rng.random()), until)
            )
            for _ in range(options.scrapers)
        ),
    ]
    reported = started
    try:
        while not all(job.done() for job in jobs):
            await asyncio.wait(jobs, timeout=1.0)
            for job in jobs:
                if job.done() and not job.cancelled() and job.exception() is not None:
                    raise job.exception()  # type: ignore[misc]
            if exporter.process.returncode is not None:
                raise RuntimeError(f"the exporter exited with {exporter.process.returncode}")
            if time.monotonic() - reported >= 60 and exporter.report.samples:
                reported = time.monotonic()
                last = exporter.report.samples[-1]
                progress(
                    f"{format_duration(reported - started)} of {format_duration(options.duration)}"
                    f": rss {last.rss_kib / 1024:.1f} MiB, {last.tasks} tasks, {last.fds} fds "
                    f"({last.sockets} sockets), {last.threads} threads, "
                    f"{sum(exporter.report.faults.values())} faults so far"
                )
    finally:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


# --- command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", default="30m", help="how long (default 30m)")
    parser.add_argument("--scrapers", type=int, default=4, help="clients at once (default 4)")
    parser.add_argument("--fault-every", default="1s", help="mean time between faults")
    parser.add_argument("--outage-every", default="1m", help="mean time between outages")
    parser.add_argument("--warm-up", default=None, help="ignored at the start (default: 10%%)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)
    options = SoakOptions(
        duration=parse_duration(args.duration),
        scrapers=args.scrapers,
        fault_every=parse_duration(args.fault_every),
        outage_every=parse_duration(args.outage_every),
        warm_up=parse_duration(args.warm_up) if args.warm_up else None,
        seed=args.seed,
    )
    print(f"soak: running for {format_duration(options.duration)} ...", file=sys.stderr)
    report = asyncio.run(soak(options, lambda line: print(line, file=sys.stderr, flush=True)))
    print(report.summary())
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_json(), indent=1))
    return 0 if not report.problems() else 1


if __name__ == "__main__":
    sys.exit(main())
