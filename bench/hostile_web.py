"""Hostile clients against the real exporter process: the figures of issue 13, points 11-13.

    python -m bench.hostile_web                  # about a minute; prints one JSON report
    python -m bench.hostile_web --sockets 1000 --wrong-logins 300

- RSS before, during and after `--sockets` TCP connections to the TLS port that never start
  the handshake (held until the server drops them, then closed);
- the time for a new connection to get `/-/healthy` while 128 idle keep-alive sockets are open;
- the time for a correct login (bcrypt cost 10) while `--wrong-logins` wrong-password requests
  from clients that hang up at once are queued, and the same login on an idle server.
Not part of `scripts/test`: it opens thousands of sockets and takes a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import bcrypt
import trustme
import yaml

from bench.processes import Target, exporter_command, fake_running, running

USER, PASSWORD = "prometheus", "bench-secret-42"
IDLE = 128  # ConnectionLimits.max_connections
TIMEOUT = aiohttp.ClientTimeout(total=120)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_web", description=__doc__)
    parser.add_argument("--sockets", type=int, default=4000, help="idle TLS sockets")
    parser.add_argument("--wrong-logins", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=7, help="timed probes and logins")
    return parser.parse_args(argv)


def web_config(folder: Path, users: int) -> tuple[str, ssl.SSLContext]:
    """TLS, and `users` users with the same password: each timed login uses a fresh one, since
    a verified login is cached and would cost no bcrypt round the second time."""
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(folder / "s.pem"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    config = {
        "tls_server_config": {"cert_file": "s.pem", "key_file": "s.pem"},
        "basic_auth_users": {f"{USER}{index}": hashed for index in range(users)},
    }
    (folder / "web.yml").write_text(yaml.safe_dump(config))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return str(folder / "web.yml"), client


def authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def port_of(target: Target) -> int:
    return int(target.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def mib(size: int) -> float:
    return round(size / 2**20, 1)


async def timed_get(url: str, tls: ssl.SSLContext, auth: str | None = None) -> tuple[int, float]:
    connector = aiohttp.TCPConnector(ssl=tls, force_close=True)
    headers = {"Authorization": auth} if auth else {}
    started = time.perf_counter()
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session,
            session.get(url, headers=headers) as answer,
        ):
            await answer.read()
            return answer.status, time.perf_counter() - started
    except (aiohttp.ClientError, TimeoutError):
        return 0, time.perf_counter() - started  # 0: no answer (reset, refused, timed out)


async def idle_tls_sockets(target: Target, count: int) -> dict[str, object]:
    before = target.memory().rss
    writers = []
    peak = before
    for index in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port_of(target))
        writers.append(writer)
        if index % 200 == 0:
            peak = max(peak, target.memory().rss)
    for _ in range(20):  # held for two seconds
        peak = max(peak, target.memory().rss)
        await asyncio.sleep(0.1)
    open_in_server = len(os.listdir(f"/proc/{target.pid}/fd"))
    still_open = sum(1 for w in writers if not w.transport.is_closing())
    for writer in writers:
        writer.close()
    await asyncio.sleep(3)
    return {
        "sockets": count,
        "rss_before_mib": mib(before),
        "rss_during_peak_mib": mib(peak),
        "rss_after_mib": mib(target.memory().rss),
        "server_fds_during": open_in_server,
        "client_sockets_not_yet_closed": still_open,
    }


async def probe_with_idle_keepalives(
    target: Target, base: str, tls: ssl.SSLContext, probes: int
) -> dict[str, object]:
    request = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
    idle: list[asyncio.StreamWriter] = []
    seconds, codes = [], []
    for _ in range(probes):
        idle = [w for w in idle if not w.transport.is_closing()]
        for index in range(IDLE - len(idle)):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                port_of(target),
                ssl=tls,
                server_hostname="127.0.0.1",
                local_addr=(f"127.0.0.{2 + index % 4}", 0),  # within the per-address share
            )
            writer.write(request)
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                continue  # refused at the cap (the server under test may do that)
            idle.append(writer)
        code, took = await timed_get(base + "/-/healthy", tls)
        codes.append(code)
        seconds.append(took)
    for writer in idle:
        writer.close()
    return {
        "idle": IDLE,
        "codes": sorted(set(codes)),
        "median_s": round(statistics.median(seconds), 4),
        "max_s": round(max(seconds), 4),
    }


async def login_under_abandoned_flood(
    target: Target, base: str, tls: ssl.SSLContext, wrong: int, probes: int
) -> dict[str, object]:
    users = iter(f"{USER}{index}" for index in range(probes + 1))
    _, quiet = await timed_get(base + "/metrics", tls, authorization(next(users), PASSWORD))
    wrong_request = (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + authorization(f"{USER}0", "wrong").encode()
        + b"\r\n\r\n"
    )
    timings = []
    for user in users:
        for _ in range(wrong):
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(target), ssl=tls, server_hostname="127.0.0.1"
            )
            writer.write(wrong_request)
            await writer.drain()
            writer.transport.abort()  # hang up at once
        timings.append(await timed_get(base + "/metrics", tls, authorization(user, PASSWORD)))
    return {
        "wrong_logins_abandoned": wrong,
        "correct_login_idle_s": round(quiet, 3),
        "correct_login_after_flood_codes": sorted({code for code, _ in timings}),
        "correct_login_after_flood_s": [round(t, 3) for _, t in timings],
    }


async def measure(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hostile-web-") as folder:
        logins = max(1, args.probes // 3)
        path, tls = web_config(Path(folder), logins + 1)
        async with fake_running(100) as fake:
            command = [*exporter_command(fake, Path(folder), 5.0), f"--web.config.file={path}"]
            async with running("exporter", command) as target:
                base = target.url.removesuffix("/metrics").replace("http://", "https://")
                report: dict[str, object] = {}
                report["idle_tls"] = await idle_tls_sockets(target, args.sockets)
                report["probe"] = await probe_with_idle_keepalives(target, base, tls, args.probes)
                report["login"] = await login_under_abandoned_flood(
                    target, base, tls, args.wrong_logins, logins
                )
                errors = [line for line in target.lines if '"level": "error"' in line]
                report["error_lines"] = len(errors) + sum("Traceback" in x for x in target.lines)
                return report


def main(argv: Sequence[str] | None = None) -> int:
    report = asyncio.run(measure(parse_args(argv)))
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
