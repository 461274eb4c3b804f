"""What a route is, what its handler sees, and the table of routes the fake serves.

An endpoint is one :class:`Route` value in its own module; the server's table
(:func:`exporter.fake.server.default_routes`) lists them, and
:meth:`~exporter.fake.server.FakeRocketChat.add_route` adds more.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from multidict import CIMultiDictProxy, MultiMapping

from exporter.fake.errors import JsonObject, bare_forbidden
from exporter.fake.query import Params, Schema
from exporter.fake.settings import ModelEra, ServerSettings
from exporter.fake.users import ApiUser
from exporter.fake.world import World

API_PREFIX = "/api/v1/"


@dataclass(frozen=True)
class Call:
    """What a route handler sees."""

    world: World
    settings: ServerSettings
    user: ApiUser | None
    params: Params
    headers: CIMultiDictProxy[str]
    body: bytes
    rng: random.Random
    accounts: Mapping[str, ApiUser] = field(default_factory=dict)
    memo: dict[Any, Any] | None = None  # the fake's memoize_queries cache, or None
    query: MultiMapping[str] | None = None  # conv: the raw query, for livechat/rooms' arrays

    def has_any(self, *permissions: str) -> bool:
        return self.user is not None and self.user.has_any(permissions)

    def require_any_in_action(self, *permissions: str) -> None:
        """A check inside the route action: ``return API.v1.forbidden()``, always counted."""
        if not self.has_any(*permissions):
            raise bare_forbidden(self.settings)


Handler: TypeAlias = Callable[[Call], JsonObject]
Permissions: TypeAlias = Callable[[ModelEra], tuple[str, ...]]


def no_permissions(model: ModelEra) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Route:
    """One endpoint: ``schemas`` maps a model era to its query schema (the newest era listed
    at or before the server's applies); ``permissions`` are the route-level
    ``permissionsRequired`` (any of them) of each model era."""

    method: str
    name: str  # the path below /api/v1/
    handler: Handler
    schemas: Mapping[ModelEra, Schema]
    permissions: Permissions = no_permissions
    auth_required: bool = True
    adds_success: bool = True  # API.v1.success() appends `success: true`; login does not

    @property
    def rate_rule(self) -> str:
        return f"{API_PREFIX}{self.name}{self.method.lower()}"  # e.g. /api/v1/livechat/queueget

    def schema(self, model: ModelEra) -> Schema:
        chosen: Schema = {}
        for era, schema in sorted(self.schemas.items()):
            if era <= model:
                chosen = schema
        return chosen


def endpoint_name(path: str) -> str:
    """The path below /api/v1/, e.g. "livechat/queue"."""
    stripped = path.lstrip("/")
    prefix = API_PREFIX.lstrip("/")
    return stripped[len(prefix) :] if stripped.startswith(prefix) else stripped
