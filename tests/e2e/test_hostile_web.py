"""The exporter's own HTTP server against hostile clients, on the real process (issue 13, points
7, 8, 11-14 and q-values). Every loop is bounded; the longest test waits one header timeout."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import bcrypt
import trustme
import yaml

from tests.e2e.harness import ExporterProcess, exporter_config, start_exporter
from tests.support.faults import InstrumentedFake

USER, PASSWORD = "prometheus", "scrape-secret-42"
CAP = 128  # ConnectionLimits.max_connections
TIMEOUT = aiohttp.ClientTimeout(total=10)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write_web_config(path: Path, config: Mapping[str, object]) -> str:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(yaml.safe_dump(config) if config else "")
    staging.replace(path)
    return str(path)


def hashed(password: str, cost: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


@contextlib.asynccontextmanager
async def running(
    fake: InstrumentedFake, tmp_path: Path, web: Mapping[str, object] | None = None
) -> AsyncIterator[ExporterProcess]:
    args = []
    if web is not None:
        args.append(f"--web.config.file={write_web_config(tmp_path / 'web.yml', web)}")
    exporter = await start_exporter(exporter_config(fake), tmp_path, *args)
    try:
        yield exporter
    finally:
        await exporter.stop()


def port_of(exporter: ExporterProcess) -> int:
    return int(exporter.url.rsplit(":", 1)[1])


async def status(
    url: str,
    auth: str | None = None,
    tls: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str]]:
    connector = aiohttp.TCPConnector(ssl=tls, force_close=True) if tls else None
    headers = dict(headers or {})
    if auth:
        headers["Authorization"] = auth
    async with (
        aiohttp.ClientSession(connector=connector, timeout=TIMEOUT, auto_decompress=False) as s,
        s.get(url, headers=headers) as answer,
    ):
        await answer.read()
        return answer.status, dict(answer.headers)


async def open_idle(port: int, count: int, request: bytes = b"") -> list[asyncio.StreamWriter]:
    """`count` connections from 127.0.0.2-5, so that no one address holds more than its share
    (ConnectionLimits.max_per_address) and all of them stay open at the cap."""
    writers = []
    for index in range(count):
        source = (f"127.0.0.{2 + index % 4}", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=source)
        if request:
            writer.write(request)
            await reader.readuntil(b"\r\n\r\n")  # the answer's headers: now idle, kept alive
        writers.append(writer)
    return writers


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()


async def test_an_emptied_web_config_keeps_authentication(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running(fake, tmp_path, {"basic_auth_users": {USER: hashed(PASSWORD, 4)}}) as exp:
        assert (await status(exp.url + "/metrics"))[0] == 401
        for caught_mid_write in ({"basic_auth_users": None}, {}):
            write_web_config(tmp_path / "web.yml", caught_mid_write)
            await asyncio.sleep(1.2)  # the watcher checks the files at most once a second
            assert (await status(exp.url + "/metrics"))[0] == 401
            assert (await status(exp.url + "/metrics", basic(USER, PASSWORD)))[0] == 200
        warnings = [e for e in exp.logs if "removing authentication needs a restart" in str(e)]
        assert warnings
        assert all(e.get("level") in ("warn", "warning") for e in warnings)


async def test_an_unknown_user_costs_as_much_as_the_costliest_known_one(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    users = {"cheap": hashed("a", 4), "costly": hashed("b", 12)}
    async with running(fake, tmp_path, {"basic_auth_users": users}) as exporter:

        async def seconds(user: str) -> float:
            started = time.perf_counter()
            assert (await status(exporter.url + "/metrics", basic(user, "wrong")))[0] == 401
            return time.perf_counter() - started

        costly = min([await seconds("costly") for _ in range(2)])
        unknown = min([await seconds(f"nobody-{i}") for i in range(2)])
    # Only a lower bound: a busy machine can make the unknown user slower, never faster.
    assert unknown > costly / 2


async def test_tls_sockets_that_never_handshake_neither_lock_out_nor_linger(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "s.pem"))
    web = {"tls_server_config": {"cert_file": "s.pem", "key_file": "s.pem"}}
    client = ssl.create_default_context()
    ca.configure_trust(client)
    async with running(fake, tmp_path, web) as exporter:
        base = exporter.url.replace("http://", "https://")
        silent = await open_idle(port_of(exporter), CAP + 72)  # connect, never say hello
        try:
            await asyncio.sleep(0.3)
            assert (await status(base + "/-/healthy", tls=client))[0] == 200
            reader = await asyncio.open_connection("127.0.0.1", port_of(exporter))
            async with asyncio.timeout(14):  # the handshake deadline is 10 s
                assert await reader[0].read() == b""
            reader[1].close()
            for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x05hello"):
                _, writer = await asyncio.open_connection("127.0.0.1", port_of(exporter))
                writer.write(garbage)  # plain HTTP, then a broken ClientHello
                await writer.drain()
                writer.close()
            assert (await status(base + "/-/healthy", tls=client))[0] == 200
        finally:
            close_all(silent)
    assert not [e for e in exporter.logs if e.get("level") == "error"]
    assert not [line for line in exporter.raw_log if "Traceback" in line]


async def test_idle_keep_alive_sockets_at_the_cap_do_not_lock_out_probes(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as exporter:
        request = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
        idle = await open_idle(port_of(exporter), CAP, request)
        try:
            await asyncio.sleep(0.1)
            assert not [writer for writer in idle if writer.transport.is_closing()]
            started = time.monotonic()
            assert (await status(exporter.url + "/-/healthy"))[0] == 200
            assert time.monotonic() - started < 5  # not the 75 s keep-alive timeout
        finally:
            close_all(idle)


async def test_abandoned_wrong_passwords_do_not_delay_a_correct_login(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running(fake, tmp_path, {"basic_auth_users": {USER: hashed(PASSWORD, 12)}}) as exp:
        wrong = basic(USER, "wrong").encode()
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " + wrong + b"\r\n\r\n"
        for _ in range(300):  # each costs ~0.2 s of bcrypt if checked: a minute in all
            _, writer = await asyncio.open_connection("127.0.0.1", port_of(exp))
            writer.write(request)
            await writer.drain()
            writer.close()
        started = time.monotonic()
        code, _ = await status(exp.url + "/metrics", basic(USER, PASSWORD))
        assert code == 200
        assert time.monotonic() - started < 8


async def test_malformed_requests_log_no_error_nor_traceback(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as exporter:
        for index in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(exporter))
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header%d\r\n\r\n" % index)
            assert b" 400 " in (await reader.read()).split(b"\r\n", 1)[0]
            writer.close()
        assert (await status(exporter.url + "/-/healthy"))[0] == 200
    assert not [line for line in exporter.raw_log if "Traceback" in line]
    assert not [e for e in exporter.logs if e.get("level") == "error"]
    assert len([e for e in exporter.logs if "malformed HTTP request" in str(e)]) <= 5


async def test_q_values_decide_format_and_compression(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with running(fake, tmp_path) as exporter:
        url = exporter.url + "/metrics"
        _, refused = await status(url, headers={"Accept-Encoding": "gzip;q=0"})
        _, wanted = await status(url, headers={"Accept-Encoding": "gzip;q=0.5"})
        _, text = await status(
            url, headers={"Accept": "application/openmetrics-text;q=0, text/plain"}
        )
        _, om = await status(
            url, headers={"Accept": "application/openmetrics-text, text/plain;q=0.5"}
        )
    assert "Content-Encoding" not in refused
    assert wanted["Content-Encoding"] == "gzip"
    assert text["Content-Type"].startswith("text/plain")
    assert om["Content-Type"].startswith("application/openmetrics-text")
