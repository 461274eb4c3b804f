"""Scraping /metrics the way the benchmark measures it: closed loops of N clients, or one
client at a steady pace, each scrape timed from sending the request to the body's last byte.

Bodies are read but not decompressed: the client's work should not count as the server's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

TEXT_HEADERS = {"Accept": "text/plain", "Accept-Encoding": "identity"}
GZIP_HEADERS = {"Accept": "text/plain", "Accept-Encoding": "gzip"}
TIMEOUT = aiohttp.ClientTimeout(total=120)


@dataclass(frozen=True, slots=True)
class Scrape:
    start: float  # Unix time the request was sent
    seconds: float  # until the last byte of the body
    size: int  # body bytes as sent (compressed when gzip)
    status: int
    gzip: bool

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclass(frozen=True, slots=True)
class Latency:
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    per_second: float  # scrapes completed per second of the measurement

    @staticmethod
    def of(scrapes: list[Scrape], elapsed: float | None = None) -> Latency:
        if not scrapes:
            return Latency(0, math.nan, math.nan, math.nan, 0.0)
        ms = sorted(s.seconds * 1000 for s in scrapes)
        if elapsed is None:
            elapsed = max(s.end for s in scrapes) - min(s.start for s in scrapes)
        return Latency(
            len(ms), percentile(ms, 0.50), percentile(ms, 0.99), ms[-1], len(ms) / elapsed
        )


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def headers_for(gzip: bool) -> dict[str, str]:
    return GZIP_HEADERS if gzip else TEXT_HEADERS


def session(clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients),
        auto_decompress=False,
        timeout=TIMEOUT,
    )


async def scrape_once(
    http: aiohttp.ClientSession, url: str, gzip: bool, keep: Callable[[bytes], None] | None = None
) -> Scrape:
    start, began = time.time(), time.perf_counter()
    async with http.get(url, headers=headers_for(gzip)) as response:
        body = await response.read()
    scrape = Scrape(start, time.perf_counter() - began, len(body), response.status, gzip)
    if response.status != 200:
        raise RuntimeError(f"GET {url} answered {response.status}")
    if keep is not None:
        keep(body)
    return scrape


async def closed_loop(
    url: str,
    *,
    gzip: bool,
    clients: int,
    seconds: float,
    min_scrapes: int = 10,
    max_seconds: float = 60.0,
    warmup: int = 2,
) -> Latency:
    """`clients` clients scraping back to back for `seconds` (longer until `min_scrapes` are
    done, at most `max_seconds`); each client first does `warmup` unmeasured scrapes."""
    async with session(clients) as http:
        await asyncio.gather(
            *(scrape_once(http, url, gzip) for _ in range(clients) for _ in range(warmup))
        )
        scrapes: list[Scrape] = []
        began = time.perf_counter()
        until, hard_stop = began + seconds, began + max_seconds

        async def client() -> None:
            while True:
                now = time.perf_counter()
                if now >= hard_stop or (now >= until and len(scrapes) >= min_scrapes):
                    return
                scrapes.append(await scrape_once(http, url, gzip))

        await asyncio.gather(*(client() for _ in range(clients)))
        return Latency.of(scrapes, time.perf_counter() - began)


async def paced(
    url: str,
    stop: asyncio.Event,
    *,
    period: float,
    keep: Callable[[Scrape, bytes], None] | None = None,
) -> list[Scrape]:
    """One client scraping every `period` seconds (or back to back when a scrape takes longer),
    text and gzip in turn, until `stop` is set."""
    scrapes: list[Scrape] = []
    async with session(1) as http:
        gzip = False
        next_start = time.perf_counter()
        while not stop.is_set():
            delay = next_start - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_start = time.perf_counter() + period
            kept: list[bytes] = []
            scrape = await scrape_once(http, url, gzip, kept.append if keep else None)
            scrapes.append(scrape)
            if keep is not None:
                keep(scrape, kept[0])
            gzip = not gzip
    return scrapes
