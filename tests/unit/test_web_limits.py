"""What one client can cost the exporter's HTTP server: bounded, whatever it sends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from prometheus_client import CollectorRegistry

from exporter.exposition import Exposition
from exporter.web import ConnectionLimits, GuardedSite, WebOptions, create_app
from exporter.web.limits import BadRequestLogFilter

LIMITS = ConnectionLimits(
    header_timeout=0.3, max_connections=4, max_per_address=4, write_timeout=0.5
)


BIG = 64 * 1024 * 1024  # far more than loopback's socket buffers hold


async def big_answer(_: web.Request) -> web.Response:
    return web.Response(body=b"x" * BIG)


async def slow_answer(_: web.Request) -> web.Response:
    await asyncio.sleep(1.0)
    return web.Response(text="slow\n")


@pytest.fixture
async def server() -> AsyncIterator[str]:
    exposition = Exposition(CollectorRegistry())
    app = create_app(exposition, WebOptions(limits=LIMITS))
    app.router.add_get("/big", big_answer)
    app.router.add_get("/slow", slow_answer)
    runner = web.AppRunner(app, keepalive_timeout=LIMITS.keepalive_timeout, shutdown_timeout=0.2)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def status_of(url: str, **headers: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as answer:
        await answer.read()
        return answer.status


async def raw_connection(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(base.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def test_unknown_paths_are_404(server: str) -> None:
    assert await status_of(server + "/no/such/path") == 404
    assert await status_of(server + "/-/healthy") == 200


async def test_a_very_long_url_is_refused(server: str) -> None:
    assert await status_of(server + "/metrics?" + "a" * 100_000) in (400, 414)
    assert await status_of(server + "/-/healthy") == 200


async def test_too_many_headers_are_refused(server: str) -> None:
    headers = {f"X-Header-{i}": "v" for i in range(300)}
    assert await status_of(server + "/-/healthy", **headers) in (400, 431)
    assert await status_of(server + "/-/healthy") == 200


async def test_a_client_that_trickles_its_headers_is_cut(server: str) -> None:
    reader, writer = await raw_connection(server)
    started = time.monotonic()
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    for _ in range(20):  # one header byte every 0.1 s: never finishes
        if writer.is_closing() or reader.at_eof():
            break
        writer.write(b"X")
        await asyncio.sleep(0.1)
    assert await closed_within(reader, 2.0)
    assert time.monotonic() - started < 1.5
    writer.close()


async def test_a_client_that_says_nothing_is_cut(server: str) -> None:
    reader, writer = await raw_connection(server)
    assert await closed_within(reader, 2.0)
    writer.close()


async def test_a_kept_alive_connection_serves_several_requests(server: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(server + "/-/healthy") as answer:
                assert answer.status == 200
            await asyncio.sleep(0.4)  # longer than the header timeout, between requests


async def test_at_the_cap_the_oldest_idle_connection_makes_way(server: str) -> None:
    idle = [await raw_connection(server) for _ in range(LIMITS.max_connections)]
    await asyncio.sleep(0.05)
    assert await status_of(server + "/-/healthy") == 200
    assert await closed_within(idle[0][0], 0.25)  # closed long before the header timeout
    for _, idle_writer in idle:
        idle_writer.close()


async def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503(server: str) -> None:
    async with aiohttp.ClientSession() as session:
        busy = [
            asyncio.create_task(status_of(server + "/slow")) for _ in range(LIMITS.max_connections)
        ]
        await asyncio.sleep(0.3)
        async with session.get(server + "/-/healthy") as answer:
            assert answer.status == 503
            assert answer.headers["Retry-After"] == "1"
        assert await asyncio.gather(*busy) == [200] * LIMITS.max_connections


def test_aiohttp_site_internals_are_as_expected() -> None:
    """GuardedSite relies on these private names of aiohttp's BaseSite (exporter/web/limits.py):
    when aiohttp renames them, this fails here rather than at start-up."""
    assert {"_runner", "_server", "_ssl_context"} <= set(web.BaseSite.__slots__)
    assert {"_host", "_port"} <= set(web.TCPSite.__slots__)
    assert web.BaseSite.start.__qualname__ == "BaseSite.start"


async def test_a_client_that_stops_reading_is_cut(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, set early
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(LIMITS.write_timeout + 0.5)  # never reads
    assert await status_of(server + "/-/healthy") == 200
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    received = 0
    async with asyncio.timeout(10):
        try:
            while chunk := await loop.sock_recv(sock, 1 << 20):
                received += len(chunk)
        except ConnectionError:
            pass
    sock.close()
    assert received < BIG  # the server gave up and closed: the answer was cut


def malformed_record(name: str = "aiohttp.server") -> logging.LogRecord:
    error = BadHttpMessage("Invalid header token")
    return logging.LogRecord(
        name, logging.ERROR, __file__, 1, "Error handling request", None, (type(error), error, None)
    )


def test_malformed_requests_become_one_rate_limited_debug_line() -> None:
    now = [0.0]
    quiet = BadRequestLogFilter(every=1.0, clock=lambda: now[0])
    logging.getLogger("aiohttp.server").setLevel(logging.DEBUG)
    try:
        record = malformed_record()
        assert quiet.filter(record)
        assert not any(quiet.filter(malformed_record()) for _ in range(99))
        assert (record.levelno, record.exc_info) == (logging.DEBUG, None)
        now[0] += 1.5
        later = malformed_record()
        assert quiet.filter(later)
        assert "99 more not logged" in later.getMessage()
    finally:
        logging.getLogger("aiohttp.server").setLevel(logging.NOTSET)


def test_other_server_errors_keep_their_traceback() -> None:
    record = malformed_record()
    record.exc_info = (RuntimeError, RuntimeError("bug"), None)
    assert BadRequestLogFilter().filter(record)
    assert record.levelno == logging.ERROR


@pytest.fixture
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@contextlib.asynccontextmanager
async def serving_tls(limits: ConnectionLimits, context: ssl.SSLContext) -> AsyncIterator[int]:
    app = create_app(Exposition(CollectorRegistry()), WebOptions(limits=limits))
    app.router.add_get("/slow", slow_answer)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    await GuardedSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def tls_server(tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> AsyncIterator[int]:
    async with serving_tls(LIMITS, tls_pair[0]) as port:
        yield port


async def tls_get(port: int, client: ssl.SSLContext, path: str = "/-/healthy") -> bytes:
    """Sends the request right after the handshake, as most clients do, and reads the status."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname="127.0.0.1"
    )
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        async with asyncio.timeout(5):
            return (await reader.readuntil(b"\r\n")).strip()
    finally:
        writer.close()


async def test_tls_request_sent_with_the_handshake_is_answered(
    tls_server: int, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    for _ in range(LIMITS.max_connections + 2):
        assert await tls_get(tls_server, tls_pair[1]) == b"HTTP/1.1 200 OK"


async def test_tls_sockets_that_never_handshake_count_and_are_cut(
    tls_server: int, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    silent = [await asyncio.open_connection("127.0.0.1", tls_server) for _ in range(6)]
    await asyncio.sleep(0.05)
    assert await tls_get(tls_server, tls_pair[1]) == b"HTTP/1.1 200 OK"  # made room
    assert await closed_within(silent[-1][0], 2.0)  # cut at the deadline
    for _, writer in silent:
        writer.close()


async def test_tls_at_the_cap_with_every_connection_busy_gets_503(
    tls_server: int, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    busy = [
        asyncio.create_task(tls_get(tls_server, tls_pair[1], "/slow"))
        for _ in range(LIMITS.max_connections)
    ]
    await asyncio.sleep(0.3)
    assert await tls_get(tls_server, tls_pair[1]) == b"HTTP/1.1 503 Service Unavailable"
    assert await asyncio.gather(*busy) == [b"HTTP/1.1 200 OK"] * LIMITS.max_connections


async def test_only_the_newest_tls_handshakes_wait(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    limits = ConnectionLimits(max_connections=64, max_handshakes=3, header_timeout=5)
    async with serving_tls(limits, tls_pair[0]) as port:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(12)]
        closed = [await closed_within(reader, 0.2) for reader, _ in silent]
        assert await tls_get(port, tls_pair[1]) == b"HTTP/1.1 200 OK"
        for _, writer in silent:
            writer.close()
    assert closed == [True] * 9 + [False] * 3


async def test_one_address_busy_with_its_share_leaves_room_for_the_others(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    limits = ConnectionLimits(max_connections=4, max_per_address=2, header_timeout=5)
    async with serving_tls(limits, tls_pair[0]) as port:
        busy = [asyncio.create_task(tls_get(port, tls_pair[1], "/slow")) for _ in range(2)]
        await asyncio.sleep(0.3)
        # 127.0.0.1 holds its share, all busy: a third from it is refused, another gets in.
        assert await tls_get(port, tls_pair[1]) == b"HTTP/1.1 503 Service Unavailable"
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=tls_pair[1],
            server_hostname="127.0.0.1",
            local_addr=("127.0.0.2", 0),  # another address
        )
        writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n")).strip() == b"HTTP/1.1 200 OK"
        writer.close()
        assert await asyncio.gather(*busy) == [b"HTTP/1.1 200 OK"] * 2
