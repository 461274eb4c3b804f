"""The aiohttp middleware that applies the web config to every request."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TypeVar

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from exporter.webconfig.basic_auth import Verdict
from exporter.webconfig.reload import WebConfigWatcher

REALM = "rocketchat-livechat-exporter"
# Served without credentials: they reveal only that the process is alive (docs/web-config.md,
# "Basic auth").
PROBE_PATHS: frozenset[str] = frozenset({"/-/healthy", "/-/ready"})


def web_config_middleware(
    watcher: WebConfigWatcher, *, open_paths: Collection[str] = PROBE_PATHS
) -> Middleware:
    """Reloads the web config when due, asks for basic auth on every path but `open_paths`
    when users are configured, and sets the configured response headers (not on responses a
    handler has already prepared)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        watcher.maybe_reload()
        headers = watcher.config.http.headers
        basic_auth = watcher.basic_auth
        if basic_auth.enabled and request.path not in open_paths:
            verdict = await basic_auth.authorize(
                request.headers.get(hdrs.AUTHORIZATION), lambda: _connected(request)
            )
            if verdict is not Verdict.ALLOWED:
                return _set_headers(_refusal(verdict), headers)
        try:
            response = await handler(request)
        except web.HTTPException as error:
            _set_headers(error, headers)
            raise
        return _set_headers(response, headers)

    return middleware


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


def _refusal(verdict: Verdict) -> web.Response:
    if verdict is Verdict.BUSY:
        return web.Response(
            status=503, text="Too many logins at once\n", headers={"Retry-After": "1"}
        )
    return web.Response(
        status=401,
        text="Unauthorized\n",
        headers={hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}"'},
    )


_Response = TypeVar("_Response", bound=web.StreamResponse)


def _set_headers(response: _Response, headers: Iterable[tuple[str, str]]) -> _Response:
    if not response.prepared:
        for name, value in headers:
            response.headers[name] = value
    return response
