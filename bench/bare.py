"""The practical limit of a scrape: a bare aiohttp handler serving a byte string.

`python -m bench.bare --text FILE --gzip FILE` serves the bytes of FILE on /metrics (those of
the gzip FILE, with `Content-Encoding: gzip`, when the client accepts gzip): the exporter's own
bodies, saved by the benchmark, so sizes and content match. It prints a JSON "listening" line on
stderr like the exporter's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

TEXT = "text/plain; version=0.0.4; charset=utf-8"


def create_app(text: bytes, zipped: bytes) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(
                body=zipped, headers={"Content-Type": TEXT, "Content-Encoding": "gzip"}
            )
        return web.Response(body=text, headers={"Content-Type": TEXT})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def serve(text: bytes, zipped: bytes) -> None:
    runner = web.AppRunner(create_app(text, zipped), access_log=None, keepalive_timeout=75)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    print(json.dumps({"msg": "listening", "address": f"127.0.0.1:{port}"}), file=sys.stderr,
          flush=True)  # fmt: skip
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--text", type=Path, required=True)
    parser.add_argument("--gzip", type=Path, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.text.read_bytes(), args.gzip.read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
