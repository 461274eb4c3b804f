"""The fake Rocket.Chat for the benchmark, in a process of its own.

`python -m bench.fakeproc --rows N [--no-infinite-count]` serves `make_world(rows=N)` with
exporter/fake's FakeRocketChat on a free loopback port and prints one JSON line on stdout:
`{"url": ..., "user_id": ..., "token": ...}`. It stops on SIGTERM or when stdin closes.

Two additions for measuring, neither visible to the clients:
- every API answer is sent by a middleware that notes its size and the time its last byte was
  handed to the socket; `GET /_bench/log` returns those records as JSON;
- the world never changes during a benchmark, so the fake runs with `memoize_queries=True`: its
  Python aggregation and sort of the queue are computed once per query, and a poll's wall time
  measures the exporter and the wire, not the fake (whose aggregation of 50,000 rows takes
  ~0.15 s a request, 75 s for a paged poll).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.fake import ApiUser, FakeRocketChat, ServerSettings, make_world

LOG_PATH = "/_bench/log"


@dataclass(frozen=True, slots=True)
class Answered:
    """One API request as the benchmark sees it."""

    endpoint: str  # e.g. "livechat/queue"
    count: str | None  # the query's count and offset, for paging checks
    offset: str | None
    status: int
    body_bytes: int
    header_bytes: int
    arrived: float  # Unix time the request arrived
    last_byte: float  # Unix time the answer's last byte was handed to the socket


def recording_middleware(log: list[Answered]) -> Any:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == LOG_PATH:
            return web.json_response([asdict(entry) for entry in log])
        arrived = time.time()
        response = await handler(request)
        await response.prepare(request)
        await response.write_eof()
        headers = sum(len(k) + len(v) + 4 for k, v in response.headers.items())
        log.append(
            Answered(
                request.path.removeprefix("/api/v1/"),
                request.query.get("count"),
                request.query.get("offset"),
                response.status,
                response.content_length or 0,
                headers,
                arrived,
                time.time(),
            )
        )
        return response

    return record


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fakeproc")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--departments", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-infinite-count",
        dest="infinite_count",
        action="store_false",
        help="API_Allow_Infinite_Count off: count=0 means 50 rows, pages hold 100 at most",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    user = ApiUser.supervisor(bypass_rate_limit=True)
    settings = ServerSettings(allow_infinite_count=args.infinite_count)
    world = make_world(args.rows, departments=args.departments, seed=args.seed)
    fake = FakeRocketChat(world, settings, [user], shuffle_seed=args.seed, memoize_queries=True)
    log: list[Answered] = []
    fake.app.middlewares.append(recording_middleware(log))
    await fake.start()
    print(json.dumps({"url": fake.url, "user_id": user.user_id, "token": user.token}), flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
