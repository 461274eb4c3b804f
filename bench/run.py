"""The benchmark: the exporter, the hand-written baseline and a bare handler, side by side.

For each queue size (default 1,000, 10,000 and 50,000 rows), against a fake Rocket.Chat in
its own process on loopback:

1. **Polling.** The server under test polls every second (two at 50,000 rows). After one
   scrape of each variant (text, gzip), `--polls` quiet polls give the requests and bytes per
   poll, the poll's wall time (its first request arriving at the fake to the new snapshot being
   served), the time from the answer's last byte to the snapshot being served, and CPU seconds
   per poll (/proc/<pid>/stat between two "snapshot published" log lines). Then `--polls` more
   polls while one client scrapes every 10 ms (text and gzip in turn): /metrics latency of the
   scrapes that overlap a poll, from its first request to its snapshot being served.
2. **Scraping.** A fresh process polls once, then 1 and 8 clients scrape back to back, text and
   gzip, for `--seconds` each: p50, p99, scrapes per second. Also the exposition's size.
3. **Bare handler.** The same scrapes against an aiohttp handler serving the exporter's bodies.
4. **Paging.** The exporter against a fake with API_Allow_Infinite_Count off, with
   `page_size: 0` (count=0 is cut short, so it falls back to pages) and `page_size: 100`.

Peak RSS is each process's VmHWM. Every round is repeated `--repeats` times; the tables show
medians. Results go to bench/results/<time>.json; `python -m bench.report FILE` re-prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import load, processes, report
from bench.fakeproc import Answered
from bench.processes import Event, Fake, Target

RESULTS = Path(__file__).parent / "results"
DEFAULT_ROWS = (1_000, 10_000, 50_000)
TARGETS = ("exporter", "baseline", "bare", "paging")
SCENARIOS = (("text", 1), ("gzip", 1), ("text", 8), ("gzip", 8))
MB = 2**20
# Rocket.Chat's defaults with API_Allow_Infinite_Count off (docs/rocketchat-api.md, "Paging").
DEFAULT_COUNT, UPPER_COUNT_LIMIT = 50, 100
_POLLS_TOTAL = re.compile(
    rb'rocketchat_livechat_exporter_polls_total\{collector="queue",result="success"\} (\S+)'
)


@dataclass(frozen=True)
class Plan:
    rows: tuple[int, ...]
    repeats: int
    polls: int
    seconds: float
    period: float
    targets: frozenset[str]  # exporter, baseline, bare, paging

    def interval(self, rows: int) -> float:
        return 1.0 if rows <= 10_000 else 2.0

    def timeout(self, rows: int, polls: int) -> float:
        return (polls + 3) * (self.interval(rows) + 60)


@dataclass(frozen=True, slots=True)
class Poll:
    requests: int
    body_bytes: int
    wire_bytes: int  # bodies and headers
    wall_s: float  # first request arriving at the fake -> snapshot served
    served_ms: float  # the answer's last byte -> snapshot served
    cpu_s: float  # CPU seconds of the process since the previous snapshot
    first_arrival: float
    last_byte: float
    published: float


def polls_of(published: list[Event], answered: list[Answered]) -> list[Poll | None]:
    """Poll i (i >= 1) is everything between snapshot i-1 and snapshot i; index 0 is None."""
    polls: list[Poll | None] = [None]
    for previous, current in itertools.pairwise(published):
        mine = [a for a in answered if previous.at < a.arrived <= current.at]
        if not mine:
            polls.append(None)
            continue
        first, last = min(a.arrived for a in mine), max(a.last_byte for a in mine)
        polls.append(
            Poll(
                requests=len(mine),
                body_bytes=sum(a.body_bytes for a in mine),
                wire_bytes=sum(a.body_bytes + a.header_bytes for a in mine),
                wall_s=current.at - first,
                served_ms=(current.at - last) * 1000,
                cpu_s=current.cpu - previous.cpu,
                first_arrival=first,
                last_byte=last,
                published=current.at,
            )
        )
    return polls


def poll_summary(polls: Sequence[Poll | None]) -> dict[str, Any]:
    measured = [p for p in polls if p is not None]
    if not measured:
        raise RuntimeError("no poll could be measured")
    summary: dict[str, Any] = {
        key: statistics.median(getattr(p, key) for p in measured)
        for key in ("requests", "body_bytes", "wire_bytes", "wall_s", "served_ms", "cpu_s")
    }
    summary["served_ms_max"] = max(p.served_ms for p in measured)
    summary["n"] = len(measured)
    return summary


async def warm_up(target: Target) -> dict[str, bytes]:
    """One scrape of each variant: they are rendered on demand, then with every snapshot."""
    bodies: dict[str, bytes] = {}
    async with load.session(1) as http:
        for name, gzip in (("text", False), ("gzip", True)):
            kept: list[bytes] = []
            await load.scrape_once(http, target.url, gzip, kept.append)
            bodies[name] = kept[0]
    return bodies


async def polling(target: Target, fake: Fake, plan: Plan, rows: int) -> dict[str, Any]:
    await target.wait_published(1, plan.timeout(rows, 1))
    await warm_up(target)
    first = len(target.published()) + 1  # the poll under way during the warm-up is skipped
    await target.wait_published(first + plan.polls, plan.timeout(rows, plan.polls + 1))
    quiet_range = range(first, first + plan.polls)

    stop = asyncio.Event()
    seen: list[tuple[load.Scrape, float]] = []  # text scrapes and the polls_total they showed

    def note(scrape: load.Scrape, body: bytes) -> None:
        if not scrape.gzip:
            match = _POLLS_TOTAL.search(body, max(0, len(body) - 50_000))
            if match:
                seen.append((scrape, float(match.group(1))))

    scraper = asyncio.create_task(load.paced(target.url, stop, period=plan.period, keep=note))
    await asyncio.sleep(plan.period * 2)
    loaded_first = len(target.published()) + 1
    await target.wait_published(loaded_first + plan.polls, plan.timeout(rows, plan.polls + 1))
    stop.set()
    scrapes = await scraper
    memory = target.memory()
    polls = polls_of(target.published(), await fake.answered())
    loaded = [polls[i] for i in range(loaded_first, loaded_first + plan.polls)]
    during = [
        s
        for s in scrapes
        for p in loaded
        if p is not None and s.start <= p.published and s.end >= p.first_arrival
    ]
    result: dict[str, Any] = {
        "polls": poll_summary([polls[i] for i in quiet_range]),
        "polls_under_load": poll_summary(loaded),
        "during_poll": asdict(load.Latency.of(during)),
        "during_poll_text": asdict(load.Latency.of([s for s in during if not s.gzip])),
        "during_poll_gzip": asdict(load.Latency.of([s for s in during if s.gzip])),
        "paced_scrapes": len(scrapes),
        "peak_rss_mb": memory.peak_rss / MB,
        "reported_poll_s": statistics.median(target.durations()[first:]),
    }
    if seen:  # the exporter: cross-check "served" from outside, by polls_total in the body
        outside = []
        for index in range(loaded_first, loaded_first + plan.polls):
            poll = polls[index]
            showing = [s for s, total in seen if total >= index + 1]
            if poll is not None and showing:
                outside.append((min(s.end for s in showing) - poll.last_byte) * 1000)
        if outside:
            result["served_ms_seen_by_scrapes"] = statistics.median(outside)
    return result


async def scraping(target: Target, plan: Plan, rows: int, polls: bool = True) -> dict[str, Any]:
    if polls:
        await target.wait_published(1, plan.timeout(rows, 1))
    bodies = await warm_up(target)
    figures: dict[str, Any] = {"size": {k: len(v) for k, v in bodies.items()}, "scrape": {}}
    for variant, clients in SCENARIOS:
        latency = await load.closed_loop(
            target.url, gzip=variant == "gzip", clients=clients, seconds=plan.seconds
        )
        figures["scrape"][f"{variant}_{clients}"] = asdict(latency)
    figures["peak_rss_mb"] = target.memory().peak_rss / MB
    figures["bodies"] = bodies
    return figures


async def one_size(rows: int, plan: Plan, workdir: Path) -> dict[str, Any]:
    interval = plan.interval(rows)
    result: dict[str, Any] = {"rows": rows}
    async with processes.fake_running(rows) as fake:
        for name in ("exporter", "baseline"):
            # The bare handler serves the exporter's bodies: they come from its steady run.
            if name not in plan.targets and not (name == "exporter" and "bare" in plan.targets):
                continue
            if name == "exporter":
                polls = processes.exporter_command(fake, workdir, interval)
                steady = processes.exporter_command(fake, workdir, 3600)
            else:
                polls = processes.baseline_command(fake, interval)
                steady = processes.baseline_command(fake, 3600)
            figures: dict[str, Any] = {}
            if name in plan.targets:
                async with processes.running(name, polls) as target:
                    figures = await polling(target, fake, plan, rows)
            async with processes.running(name, steady) as target:
                figures["steady"] = await scraping(target, plan, rows)
            result[name] = figures
    if "bare" in plan.targets:
        bodies = result["exporter"]["steady"]["bodies"]
        text, zipped = workdir / f"bare-{rows}.txt", workdir / f"bare-{rows}.gz"
        text.write_bytes(bodies["text"])
        zipped.write_bytes(bodies["gzip"])
        async with processes.running("bare", processes.bare_command(text, zipped)) as target:
            result["bare"] = {"steady": await scraping(target, plan, rows, polls=False)}
    for figures in result.values():
        if isinstance(figures, dict):
            figures.get("steady", {}).pop("bodies", None)
    if "paging" in plan.targets:
        result["paging"] = await paging(rows, plan, workdir)
    return result


async def paging(rows: int, plan: Plan, workdir: Path) -> dict[str, Any]:
    """API_Allow_Infinite_Count off: count=0 answers 50 rows, pages hold 100 at most."""
    figures: dict[str, Any] = {}
    polls = max(2, plan.polls // 2)
    cases = {
        "page_size_0": (0, 1 + math.ceil(max(0, rows - DEFAULT_COUNT) / UPPER_COUNT_LIMIT)),
        "page_size_100": (100, math.ceil(rows / UPPER_COUNT_LIMIT)),
    }
    async with processes.fake_running(rows, infinite_count=False) as fake:
        for name, (page_size, fewest) in cases.items():
            command = processes.exporter_command(fake, workdir, plan.interval(rows), page_size)
            async with processes.running("exporter", command) as target:
                await target.wait_published(1, plan.timeout(rows, 1))
                await warm_up(target)
                first = len(target.published()) + 1
                await target.wait_published(first + polls, plan.timeout(rows, polls + 1))
                peak = target.memory().peak_rss / MB
                measured = polls_of(target.published(), await fake.answered())
            figures[name] = {
                **poll_summary(measured[first : first + polls]),
                "fewest_requests": fewest,
                "peak_rss_mb": peak,
            }
    return figures


def median_of(rounds: Sequence[Any]) -> Any:
    """The element-wise median of equally shaped nested dicts (numbers only)."""
    head = rounds[0]
    if isinstance(head, dict):
        return {key: median_of([r[key] for r in rounds if key in r]) for key in head}
    if isinstance(head, bool) or not isinstance(head, int | float):
        return head
    values = [r for r in rounds if isinstance(r, int | float) and not math.isnan(r)]
    return statistics.median(values) if values else math.nan


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


async def run(plan: Plan) -> dict[str, Any]:
    started = time.time()
    load_before = os.getloadavg()
    rounds: dict[int, list[dict[str, Any]]] = {rows: [] for rows in plan.rows}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for repeat in range(plan.repeats):
            for rows in plan.rows:
                print(f"round {repeat + 1}/{plan.repeats}: {rows} rows ...", file=sys.stderr)
                rounds[rows].append(await one_size(rows, plan, Path(tmp)))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": machine(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "plan": {**asdict(plan), "targets": sorted(plan.targets)},
        "medians": {str(rows): median_of(r) for rows, r in rounds.items()},
        "rounds": {str(rows): r for rows, r in rounds.items()},
    }


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows",
        default=",".join(str(r) for r in DEFAULT_ROWS),
        help="queue sizes, comma-separated (default %(default)s)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default %(default)s)")
    parser.add_argument(
        "--polls", type=int, default=5, help="measured polls per phase (default %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="per scrape scenario (default %(default)s)"
    )
    parser.add_argument(
        "--period", type=float, default=0.01, help="of the scrapes during polls (s)"
    )
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="what to measure, comma-separated (default %(default)s); bare needs exporter",
    )
    args = parser.parse_args(argv)
    rows = tuple(int(r.replace("_", "")) for r in args.rows.split(","))
    targets = frozenset(args.targets.split(","))
    if not targets <= set(TARGETS):
        parser.error(f"--targets: choose from {', '.join(TARGETS)}")
    return Plan(rows, args.repeats, args.polls, args.seconds, args.period, targets)


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    results = asyncio.run(run(plan))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / time.strftime("%Y%m%d-%H%M%S.json")
    path.write_text(report.dumps(results))
    print(report.render(results))
    print(f"\nresults: {path}", file=sys.stderr)
    return 0 if all(ok for _, ok, _ in report.targets(results)) else 1


if __name__ == "__main__":
    sys.exit(main())
