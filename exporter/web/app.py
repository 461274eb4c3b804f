"""The exporter's HTTP routes: /metrics, /-/healthy, /-/ready, POST /-/reload and a landing page.

Handlers only read what the poller has published; none of them calls Rocket.Chat, so a scrape
never waits for a poll, and Rocket.Chat's health never decides the exporter's readiness.
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from aiohttp import payload, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.typedefs import Handler, Middleware

from exporter import __version__
from exporter.exposition import Body, Exposition, negotiate
from exporter.web.limits import (
    CONNECTIONS,
    ConnectionLimits,
    Connections,
    bounded_requests,
    quiet_bad_requests,
)

# Bodies up to this size are joined and sent in one piece: that costs less than more writes.
STREAM_ABOVE = 1 << 20

Reload = Callable[[], Awaitable[str | None]]


class StatusView(Protocol):
    """What the landing page shows of one collector (the poller publishes these)."""

    @property
    def name(self) -> str: ...
    @property
    def interval(self) -> float: ...
    @property
    def outcome(self) -> object: ...  # an Outcome enum (its .value is shown) or None
    @property
    def message(self) -> str: ...
    @property
    def last_success(self) -> float | datetime | None: ...
    @property
    def series(self) -> int: ...
    @property
    def serving(self) -> bool: ...


@dataclass(frozen=True)
class WebOptions:
    telemetry_path: str = "/metrics"
    rocketchat_url: str = ""
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)


def create_app(
    exposition: Exposition,
    options: WebOptions,
    statuses: Callable[[], Iterable[StatusView]] = list,
    middlewares: Sequence[Middleware] = (),
    *,
    reload: Reload | None = None,
) -> web.Application:
    """The application; serve it with `GuardedSite` so that `options.limits` hold."""
    quiet_bad_requests()
    connections = Connections(options.limits)
    app = web.Application(middlewares=[bounded_requests(connections), *middlewares])
    app[CONNECTIONS] = connections
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


def _reload_handler(reload: Reload) -> Handler:
    async def reload_now(_: web.Request) -> web.Response:
        problem = await reload()
        if problem is None:
            return web.Response(text="reloaded\n", headers={"Cache-Control": "no-store"})
        line = problem.splitlines()[0] if problem else "reload failed"
        return web.Response(status=500, text=line + "\n", headers={"Cache-Control": "no-store"})

    return reload_now


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


def _landing_handler(options: WebOptions, statuses: Callable[[], Iterable[StatusView]]) -> Handler:
    async def landing(_: web.Request) -> web.Response:
        return web.Response(
            text=landing_page(options, list(statuses())),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    return landing


def landing_page(options: WebOptions, statuses: Sequence[StatusView]) -> str:
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


def _status_row(status: StatusView) -> str:
    outcome = str(getattr(status.outcome, "value", status.outcome or "not polled yet"))
    css = "up" if outcome == "success" else "down"
    cells = (
        status.name,
        f"{status.interval:g}s",
        outcome,
        str(status.series),
        _since(status.last_success),
        status.message,
    )
    tds = "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
    return f'<tr class="{css}">{tds}</tr>'


def _since(moment: float | datetime | None) -> str:
    if not moment:
        return "never"
    seconds = moment.timestamp() if isinstance(moment, datetime) else moment
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
