"""The fake Rocket.Chat server: an aiohttp app that answers the livechat endpoints from a
:class:`~exporter.fake.world.World` read afresh on every request.

Order of checks per request, as the framework setting decides (docs/rocketchat-api.md,
"Order of checks"):

- every framework: unknown path or method, 404; then authentication, 401 (never counted);
- Hono: the route's ``permissionsRequired``, 403, answered before the rate limiter (not
  counted, no ``X-RateLimit-*`` headers); then the rate limiter (429); then the query schema
  (400 ``[invalid-params]``, counted); then the route action;
- Restivus: the rate limiter; then the query schema; then ``permissionsRequired`` (403, counted);
  then the route action.

E1/E2 routes have no schema and ignore unknown parameters. Any exception inside a route action
is a 400 ``{"success": false, "error": message}``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Self

import msgspec
from aiohttp import web

from exporter.fake.directory import AGENT_ROUTE, DEPARTMENT_ROUTE, INQUIRIES_ROUTE
from exporter.fake.errors import (
    ApiError,
    JsonObject,
    failure,
    forbidden,
    not_found,
    too_many_requests,
    unauthenticated,
)
from exporter.fake.login import LOGIN_ROUTE
from exporter.fake.query import Params, lenient_query, validate_query
from exporter.fake.queue import QUEUE_ROUTE
from exporter.fake.ratelimit import RateLimiter
from exporter.fake.routes import API_PREFIX, Call, Route, endpoint_name
from exporter.fake.settings import ServerSettings
from exporter.fake.users import ApiUser
from exporter.fake.world import World


def default_routes() -> list[Route]:
    """The livechat endpoints the exporter reads, and login."""
    from exporter.fake.rooms import ROOMS_ROUTE  # conv: livechat/rooms

    return [QUEUE_ROUTE, INQUIRIES_ROUTE, AGENT_ROUTE, DEPARTMENT_ROUTE, LOGIN_ROUTE, ROOMS_ROUTE]


class FakeRocketChat:
    """The fake server. ``.app`` is a plain aiohttp Application; or use :meth:`start`.

    ``world``, ``settings`` and ``users`` (a dict keyed by user id) are public and read on
    every request, so tests change them freely while the server runs.

    ``memoize_queries`` caches each query's sorted rows for the life of the server: only for a
    world that never changes (the benchmark), where a poll should measure the exporter.
    """

    def __init__(
        self,
        world: World,
        settings: ServerSettings | None = None,
        users: Iterable[ApiUser] | None = None,
        *,
        shuffle_seed: int | None = None,
        clock: Callable[[], float] = time.time,
        memoize_queries: bool = False,
        routes: Iterable[Route] | None = None,
    ) -> None:
        self.world = world
        self.settings = settings if settings is not None else ServerSettings()
        self.users: dict[str, ApiUser] = {
            user.user_id: user for user in (users if users is not None else [ApiUser.supervisor()])
        }
        self.url = ""
        self._rng = random.Random(shuffle_seed)
        self._memo: dict[Any, Any] | None = {} if memoize_queries else None
        self._limiter = RateLimiter(clock)
        self._routes: dict[tuple[str, str], Route] = {}
        for route in routes if routes is not None else default_routes():
            self.add_route(route)
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.app.on_startup.append(self._on_startup)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port) and return the base URL."""
        # A client that gives up (a timeout) ends its handler; and stop() does not wait long
        # for answers that a test delays.
        self._runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=0.2, handler_cancellation=True
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _on_startup(self, app: web.Application) -> None:
        self.reset_rate_limits()

    # --- test controls ------------------------------------------------------------------

    def add_route(self, route: Route) -> None:
        """Serve one more endpoint (or replace the one with the same method and name)."""
        self._routes[(route.method, route.name)] = route
        self.reset_rate_limits()

    def add_user(self, user: ApiUser) -> ApiUser:
        self.users[user.user_id] = user
        return user

    def revoke(self, user_id: str, token: str | None = None) -> None:
        """Revoke one token of a user, or (token None) delete the user with all its tokens."""
        if token is None:
            self.users.pop(user_id, None)
            return
        user = self.users[user_id]
        user.login_tokens.discard(token)
        if user.token == token:
            user.token = ""

    def reset_rate_limits(self) -> None:
        """Forget all counters and start fresh windows now (the windows start at start-up)."""
        self._limiter.register((r.rate_rule for r in self._routes.values()), self.settings)

    # --- request handling ---------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.settings.latency > 0:
            await asyncio.sleep(self.settings.latency)
        route = self._route_for(request)
        body = await request.read() if request.body_exists else b""
        headers: dict[str, str] = {}  # the rate-limit headers, once the call is counted
        try:
            if route is None:
                raise not_found()
            answer = self._run_route(request, route, body, headers)
        except ApiError as error:
            return json_response(error.status, error.body, headers)
        return json_response(200, answer, headers)

    def _route_for(self, request: web.Request) -> Route | None:
        if not request.path.startswith(API_PREFIX):
            return None
        return self._routes.get((request.method, endpoint_name(request.path)))

    def _run_route(
        self, request: web.Request, route: Route, body: bytes, headers: dict[str, str]
    ) -> JsonObject:
        """The order of checks of the module docstring."""
        settings = self.settings
        user = self._authenticate(request) if route.auth_required else None
        if route.auth_required and user is None:
            raise unauthenticated(settings)
        required = route.permissions(settings.model)
        if settings.hono:
            _check_permissions(user, required, settings)
        self._count_call(request, route, user, headers)
        params = self._params(request, route)
        if not settings.hono:
            _check_permissions(user, required, settings)
        call = Call(
            self.world,
            settings,
            user,
            params,
            request.headers,
            body,
            self._rng,
            self.users,
            self._memo,
            request.query,  # conv: livechat/rooms reads its array parameters itself
        )
        try:
            answer = route.handler(call)
        except ApiError:
            raise
        except Exception as error:  # the framework catches everything: a 400
            raise failure(str(error)) from error
        if route.adds_success:
            answer["success"] = True
        return answer

    def _params(self, request: web.Request, route: Route) -> Params:
        schema = route.schema(self.settings.model)
        if self.settings.js_model or not schema:
            return lenient_query(request.query, schema)
        return validate_query(request.query, schema)

    def _count_call(
        self, request: web.Request, route: Route, user: ApiUser | None, headers: dict[str, str]
    ) -> None:
        """The rate limiter: headers on every counted call, 429 once exhausted."""
        if user is not None and user.bypasses_rate_limit:
            return  # not limited and no headers at all
        verdict = self._limiter.hit(route.rate_rule, client_ip(request), self.settings)
        if verdict is None:
            return
        headers.update(verdict.headers)
        if not verdict.allowed:
            raise too_many_requests(verdict.wait_seconds)

    def _authenticate(self, request: web.Request) -> ApiUser | None:
        """X-User-Id + X-Auth-Token must match a user's token."""
        user_id = request.headers.get("X-User-Id", "")
        token = request.headers.get("X-Auth-Token", "")
        user = self.users.get(user_id)
        return user if user is not None and user.accepts(token) else None


def _check_permissions(
    user: ApiUser | None, required: tuple[str, ...], settings: ServerSettings
) -> None:
    if required and (user is None or not user.has_any(required)):
        raise forbidden(settings)


def client_ip(request: web.Request) -> str:
    """X-Real-IP, else the socket address (remoteAddressMiddleware)."""
    return request.headers.get("X-Real-IP") or request.remote or ""


def json_response(
    status: int, body: JsonObject, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers=headers,
    )
