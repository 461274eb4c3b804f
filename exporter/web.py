"""The exporter's HTTP server: /metrics, /-/healthy, /-/ready and a landing page.

Handlers only read what the poller has published; none of them calls Rocket.Chat, so a scrape
never waits for a poll, and Rocket.Chat's health never decides the exporter's readiness.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import payload, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.typedefs import Handler, Middleware

from exporter import __version__
from exporter.exposition import Body, Exposition, negotiate
from exporter.snapshot import CollectorStatus

HEALTH_PATHS = ("/-/healthy", "/-/ready")
# Bodies up to this size are joined and sent in one piece: that costs less than more writes.
STREAM_ABOVE = 1 << 20


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client may cost the exporter. aiohttp itself bounds the request line and each
    header to 8 KiB and a request to 128 headers (answering 400); these bound the rest."""

    # A request's headers must arrive within this long: a client that trickles them (or
    # connects and says nothing) is cut, as Go's ReadHeaderTimeout does.
    header_timeout: float = 10.0
    # Connections open at once; more are closed at accept. Prometheus needs one per target.
    max_connections: int = 128
    keepalive_timeout: float = 75.0
    # A response must be written within this long: a client that stops reading is cut.
    write_timeout: float = 60.0


@dataclass(frozen=True)
class WebOptions:
    telemetry_path: str = "/metrics"
    rocketchat_url: str = ""
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)


def create_app(
    exposition: Exposition,
    options: WebOptions,
    statuses: Callable[[], Iterable[CollectorStatus]] = list,
    middlewares: Sequence[Middleware] = (),
    *,
    reload: Callable[[], Awaitable[str | None]] | None = None,
) -> web.Application:
    app = web.Application(middlewares=[_bounded_requests(options.limits), *middlewares])
    app[_GUARDS] = {}  # filled by GuardedAppRunner's connections
    app.router.add_get(options.telemetry_path, _metrics_handler(exposition))
    app.router.add_get("/-/healthy", _plain("Healthy.\n"))
    app.router.add_get("/-/ready", _plain("Ready.\n"))
    if reload is not None:
        app.router.add_post("/-/reload", _reload_handler(reload))
    if options.telemetry_path != "/":
        app.router.add_get("/", _landing_handler(options, statuses))
    return app


def _metrics_handler(exposition: Exposition) -> Handler:
    async def metrics(request: web.Request) -> web.Response:
        variant = negotiate(
            request.headers.get("Accept", ""), request.headers.get("Accept-Encoding", "")
        )
        body = await exposition.answer(variant)
        headers = {
            "Content-Type": variant.format.content_type,
            "Vary": "Accept, Accept-Encoding",
            "Cache-Control": "no-store",
        }
        if variant.gzip:
            headers["Content-Encoding"] = "gzip"
        if len(body) <= STREAM_ABOVE:
            return web.Response(body=bytes(body), headers=headers)
        return web.Response(body=_ChunksPayload(body), headers=headers)

    return metrics


class _ChunksPayload(payload.Payload):
    """A large body's cached chunks, sent as they are, one at a time, when the response is
    written (so the write timeout covers them): never joined per scrape, nor copied whole into
    a send buffer, since aiohttp waits for the socket to drain after each."""

    def __init__(self, body: Body) -> None:
        super().__init__(body, content_type=None)
        self._body = body
        self._size = len(body)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._body).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for chunk in self._body.chunks:
            await writer.write(chunk)


def _plain(text: str) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=text, headers={"Cache-Control": "no-store"})

    return handler


def _reload_handler(reload: Callable[[], Awaitable[str | None]]) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        error = await reload()
        if error is None:
            return web.Response(text="Reloaded.\n", headers={"Cache-Control": "no-store"})
        return web.Response(status=500, text=f"{error}\n", headers={"Cache-Control": "no-store"})

    return handler


def _landing_handler(
    options: WebOptions, statuses: Callable[[], Iterable[CollectorStatus]]
) -> Handler:
    async def landing(_: web.Request) -> web.Response:
        return web.Response(
            text=landing_page(options, list(statuses())),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    return landing


def landing_page(options: WebOptions, statuses: Sequence[CollectorStatus]) -> str:
    rows = "\n".join(_status_row(status) for status in statuses)
    path = html.escape(options.telemetry_path, quote=True)
    watched = html.escape(options.rocketchat_url) or "(not set)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rocket.Chat livechat exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}
.down{{color:#b00}}.up{{color:#070}}</style></head>
<body><h1>Rocket.Chat livechat exporter</h1>
<p>Version {html.escape(__version__)}, watching {watched}.</p>
<ul><li><a href="{path}">Metrics</a></li><li><a href="/-/healthy">Health</a></li>
<li><a href="/-/ready">Readiness</a></li></ul>
<h2>Collectors</h2>
<table><tr><th>collector</th><th>every</th><th>last poll</th><th>series</th>
<th>last success</th><th>detail</th></tr>
{rows}
</table></body></html>
"""


def _status_row(status: CollectorStatus) -> str:
    outcome = status.outcome.value if status.outcome else "not polled yet"
    css = "up" if outcome == "success" else "down"
    since = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.last_success))
        if status.last_success
        else "never"
    )
    cells = (
        status.name,
        f"{status.interval:g}s",
        outcome,
        str(status.series),
        since,
        status.message,
    )
    tds = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
    return f'<tr class="{css}">{tds}</tr>'


# --- bounding what a client can cost ---------------------------------------------------------


class _ConnectionGuard(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: refuses connections over the limit and
    closes those whose request headers do not arrive in time."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        limits: ConnectionLimits,
        open_guards: dict[object, _ConnectionGuard],
    ) -> None:
        self._inner = inner
        self._limits = limits
        self._open = open_guards
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._in_request = False
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if len(self._open) >= self._limits.max_connections:
            transport.close()  # over the limit: cut at once, at the cost of an accept
            return
        self._admitted = True
        self._open[transport] = self
        self._inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self._in_request and self._timer is None:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._admitted:
            self._open.pop(self._transport, None)
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_started(self) -> None:
        self._in_request = True
        self._disarm()

    def request_finished(self) -> None:
        self._in_request = False

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._limits.header_timeout, self._cut)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cut(self) -> None:
        self._timer = None
        if self._transport is not None and not self._in_request:
            self._transport.close()


class _GuardedServer:
    """aiohttp's protocol factory, each protocol wrapped in a `_ConnectionGuard`."""

    def __init__(
        self, server: web.Server, limits: ConnectionLimits, guards: dict[object, _ConnectionGuard]
    ) -> None:
        self._server = server
        self._limits = limits
        self.guards = guards  # by transport, for the middleware

    def __call__(self) -> _ConnectionGuard:
        return _ConnectionGuard(self._server(), self._limits, self.guards)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)  # shutdown(), connections, ... for the runner


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections are bounded by `ConnectionLimits`."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        guarded = _GuardedServer(server, self._limits, self.app.get(_GUARDS, {}))
        return guarded  # type: ignore[return-value]  # quacks like web.Server


_GUARDS = web.AppKey("connection_guards", dict)


def _bounded_requests(limits: ConnectionLimits) -> Middleware:
    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Tells the connection's guard a request is being answered (its headers are in),
        and writes the response within `write_timeout`."""
        guard = request.app.get(_GUARDS, {}).get(request.transport)
        if guard is not None:
            guard.request_started()
        try:
            response = await handler(request)
            try:
                async with asyncio.timeout(limits.write_timeout):
                    await response.prepare(request)
                    await response.write_eof()
            except TimeoutError:
                if request.transport is not None:
                    request.transport.abort()  # the client stopped reading
            except ConnectionError:
                pass  # the client hung up: nothing to answer, nothing to log
            return response
        finally:
            if guard is not None:
                guard.request_finished()

    return bounded
