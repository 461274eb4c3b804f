"""The exporter's HTTP server: /metrics, /-/healthy, /-/ready and a landing page.

Handlers only read what the poller has published; none of them calls Rocket.Chat, so a scrape
never waits for a poll, and Rocket.Chat's health never decides the exporter's readiness.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from exporter import __version__
from exporter.exposition import Exposition, negotiate
from exporter.poller import CollectorStatus

HEALTH_PATHS = ("/-/healthy", "/-/ready")


@dataclass(frozen=True)
class WebOptions:
    telemetry_path: str = "/metrics"
    rocketchat_url: str = ""


def create_app(
    exposition: Exposition,
    options: WebOptions,
    statuses: Callable[[], Iterable[CollectorStatus]] = list,
    middlewares: Sequence[Middleware] = (),
) -> web.Application:
    app = web.Application(middlewares=list(middlewares))
    app.router.add_get(options.telemetry_path, _metrics_handler(exposition))
    app.router.add_get("/-/healthy", _plain("Healthy.\n"))
    app.router.add_get("/-/ready", _plain("Ready.\n"))
    if options.telemetry_path != "/":
        app.router.add_get("/", _landing_handler(options, statuses))
    return app


def _metrics_handler(exposition: Exposition) -> Handler:
    async def metrics(request: web.Request) -> web.Response:
        variant = negotiate(
            request.headers.get("Accept", ""), request.headers.get("Accept-Encoding", "")
        )
        body = await exposition.scrape(variant)
        headers = {
            "Content-Type": variant.format.content_type,
            "Vary": "Accept, Accept-Encoding",
            "Cache-Control": "no-store",
        }
        if variant.gzip:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    return metrics


def _plain(text: str) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=text, headers={"Cache-Control": "no-store"})

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
