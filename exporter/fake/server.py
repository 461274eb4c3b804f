"""A fake Rocket.Chat REST API for the livechat endpoints the exporter reads.

It answers from a :class:`~exporter.fake.world.World` that is read afresh on every request, and
follows /work/shared/rocketchat-api.md ("§n" below) as closely as a fake needs to: the era
differences (§0, §4), paging and sort parsing (§2), the rate limiter and its headers (§3),
authentication and the exact error bodies (§4), and the row shapes of ``livechat/queue`` (§1).

Order of checks per request (§3, §4.4):

1. an injected fault, if one matches the path (see :meth:`FakeRocketChat.inject`);
2. unknown path or method: 404;
3. E6 only: query validation, 400 *before* authentication;
4. authentication: 401, not counted by the rate limiter;
5. rate limiter: counted, ``X-RateLimit-*`` headers from here on, 429 when exhausted;
6. E5: query validation, 400 (E1/E2 have no schema and ignore unknown parameters);
7. the route: permission (403; E1 ``livechat/queue``: 400), then paging, sort and the query.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import msgspec
from aiohttp import web
from multidict import CIMultiDictProxy, MultiMapping

from exporter.fake.world import Agent, Department, Inquiry, World, is_routable

Era: TypeAlias = Literal["E1", "E2", "E3", "E4", "E5", "E6"]
"""Code eras of §0. E3 and E4 behave exactly like E5 for everything this fake emulates."""

JsonObject: TypeAlias = dict[str, Any]

API_PREFIX = "/api/v1/"

# --- users and permissions ---------------------------------------------------------------

SUPERVISOR_PERMISSIONS: frozenset[str] = frozenset(
    {
        "view-l-room",  # livechat/queue (§1.1), livechat/department (§5.4)
        "view-livechat-manager",  # livechat/inquiries.list (§5.1)
        "view-livechat-departments",  # livechat/department (§5.4)
        "transfer-livechat-guest",  # livechat/users/agent, newer eras (§5.3)
        "manage-livechat-agents",  # livechat/users/agent, JS eras (§5.3)
    }
)
ALL_PERMISSIONS: frozenset[str] = SUPERVISOR_PERMISSIONS | {
    "edit-omnichannel-contact",
    "view-livechat-rooms",
}
BYPASS_RATE_LIMIT = "api-bypass-rate-limit"  # §3: such users are never limited, get no headers

DEFAULT_USER_ID = "ExporterBot000001"
DEFAULT_TOKEN = "exporter-personal-access-token-000000000000"
DEFAULT_TOTP_CODE = "123456"


@dataclass
class ApiUser:
    """A Rocket.Chat account the fake accepts, with a Personal Access Token (§4.1, §4.6).

    Mutable on purpose: a test revokes access with ``user.token = ""`` or
    :meth:`FakeRocketChat.revoke`. Tokens issued by ``POST /api/v1/login`` are added to
    ``login_tokens`` and authenticate as well. Secrets are left out of ``repr``.
    """

    user_id: str
    token: str = field(repr=False)
    username: str
    permissions: set[str] = field(default_factory=set)
    bypass_rate_limit: bool = False
    password: str | None = field(default=None, repr=False)
    totp_required: bool = False
    totp_code: str = field(default=DEFAULT_TOTP_CODE, repr=False)
    name: str = ""
    email: str = ""
    login_tokens: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def supervisor(
        cls,
        user_id: str = DEFAULT_USER_ID,
        token: str = DEFAULT_TOKEN,
        username: str = "exporter",
        *,
        bypass_rate_limit: bool = False,
        password: str | None = None,
        totp_required: bool = False,
    ) -> ApiUser:
        """The exporter's user: the permissions of a livechat supervisor / bot (§8.1)."""
        return cls(
            user_id,
            token,
            username,
            set(SUPERVISOR_PERMISSIONS),
            bypass_rate_limit=bypass_rate_limit,
            password=password,
            totp_required=totp_required,
        )

    def accepts(self, token: str) -> bool:
        return bool(token) and (token == self.token or token in self.login_tokens)

    @property
    def bypasses_rate_limit(self) -> bool:
        return self.bypass_rate_limit or BYPASS_RATE_LIMIT in self.permissions


@dataclass
class ServerSettings:
    """Server behaviour; tests may change any field while the fake runs."""

    era: Era = "E6"
    breaking_v8: bool = False  # 8.0 error bodies (§4.2, §4.3); only meaningful with E6
    default_count: int = 50  # API_Default_Count (§2)
    upper_count_limit: int = 100  # API_Upper_Count_Limit (§2)
    allow_infinite_count: bool = True  # API_Allow_Infinite_Count (§2)
    rate_limit_calls: int = 10  # per endpoint+method, per client IP; 0 turns the limiter off
    rate_limit_window_ms: int = 60_000
    total_skew: int = 0  # added to livechat/queue `total`: the E5 page/total race (§1.6)
    latency: float = 0.0  # seconds to wait before answering any request

    @property
    def v8(self) -> bool:
        return self.era == "E6" and self.breaking_v8


# --- the request log ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the fake received, logged once answered (or abandoned).

    Never holds a token or a password.
    """

    method: str
    path: str  # e.g. "/api/v1/livechat/queue"
    query: tuple[tuple[str, str], ...]  # (name, value) pairs, in the order sent
    status: int | None  # status sent; None: closed without an answer, or the client gave up
    user_id: str | None  # the X-User-Id header as sent
    client_ip: str
    monotonic: float  # time.monotonic() on arrival
    wall: float  # the fake's clock (Unix seconds) on arrival
    fault: str | None = None  # the injected fault that answered, if any

    @property
    def endpoint(self) -> str:
        """The path below /api/v1/, e.g. "livechat/queue"."""
        return _endpoint_name(self.path)

    @property
    def param_names(self) -> set[str]:
        return {name for name, _ in self.query}

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)


# --- fault injection ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """Answer with exactly this status, body and headers (any body: JSON or not)."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        """A JSON body; use it for wrong field types, e.g. ``{"queue": "nope"}``."""
        return cls(status, json.dumps(value).encode(), dict(headers or {}))


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds``, then answer normally (slow server; client timeouts)."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without sending a byte.

    Note: aiohttp's client silently retries an idempotent request once when the server
    disconnects before answering; inject with ``times=2`` to make a GET really fail there.
    """


@dataclass(frozen=True)
class ResetMidBody:
    """Send the status line, headers and ``body``, then close the connection.

    ``declared_length`` is the Content-Length announced (None: chunked encoding, ended
    without its final chunk).
    """

    body: bytes = b'{"queue":[{"chats":1,"user":{"_id":"'
    status: int = 200
    declared_length: int | None = 4096


@dataclass(frozen=True)
class HugeBody:
    """A valid JSON body of exactly ``size`` bytes, streamed in chunks (never held whole).

    It is a well-formed, empty livechat/queue answer padded with a long string field, so a
    client that reads it all would parse it: only a body-size limit stops it.
    """

    size: int
    status: int = 200
    chunk_size: int = 64 * 1024
    chunked: bool = False  # True: no Content-Length, chunked transfer encoding


Fault: TypeAlias = Reply | Delay | Drop | ResetMidBody | HugeBody


@dataclass
class _PendingFault:
    fault: Fault
    remaining: int | None  # None: until clear_faults()
    endpoint: str | None  # None: any path


# --- errors and their bodies (§4) ----------------------------------------------------------


class _ApiError(Exception):
    """Ends a request with this status and JSON body (the rate-limit headers still apply)."""

    def __init__(self, status: int, body: JsonObject) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


_LOGGED_OUT = "You must be logged in to do this."
_NO_PERMISSION = "User does not have the permissions required for this action"


def _unauthenticated(settings: ServerSettings) -> _ApiError:
    """401 for a missing, wrong or revoked token (§4.2)."""
    if settings.era != "E6":
        return _ApiError(401, {"status": "error", "message": _LOGGED_OUT})
    if settings.v8:
        return _ApiError(401, {"success": False, "error": _LOGGED_OUT})
    body = {"success": False, "error": _LOGGED_OUT, "status": "error", "message": _LOGGED_OUT}
    return _ApiError(401, body)


def _forbidden(settings: ServerSettings) -> _ApiError:
    """403 of a route-level ``permissionsRequired`` failure (§4.3)."""
    code = "error-forbidden" if settings.v8 else "error-unauthorized"
    return _ApiError(403, {"success": False, "error": f"{_NO_PERMISSION} [{code}]"})


def _bare_forbidden(settings: ServerSettings) -> _ApiError:
    """403 of a route that returns ``API.v1.forbidden()`` with no message (§4.3)."""
    return _ApiError(
        403, {"success": False, "error": "forbidden" if settings.v8 else "unauthorized"}
    )


def _failure(message: str) -> _ApiError:
    """Any exception inside a route, MongoDB's included, is a 400 ``failure()`` (§4.4)."""
    return _ApiError(400, {"success": False, "error": message})


def _invalid_params(settings: ServerSettings, message: str) -> _ApiError:
    """A query rejected by the route's ajv schema (§4.4)."""
    if settings.era == "E6":
        body = {"success": False, "errorType": "error-invalid-params", "error": message}
    else:
        body = {
            "success": False,
            "error": f"{message} [invalid-params]",
            "errorType": "invalid-params",
        }
    return _ApiError(400, body)


def _too_many_requests(wait_seconds: int) -> _ApiError:
    message = (
        "Error, too many requests. Please slow down. You must wait "
        f"{wait_seconds} seconds before trying this endpoint again. [error-too-many-requests]"
    )
    return _ApiError(429, {"success": False, "error": message})


# --- query parameters: schemas (§1.2) and JavaScript-flavoured parsing (§2) ---------------

_Kind: TypeAlias = Literal["number", "string", "boolean"]
_Schema: TypeAlias = Mapping[str, _Kind]
Params: TypeAlias = Mapping[str, object]
"""Query values: raw strings in E1/E2; ajv-coerced (float, str, bool or None) in E5/E6."""

_PAGING: _Schema = {"count": "number", "offset": "number", "sort": "string"}


def _validate_query(
    query: MultiMapping[str], schema: _Schema, settings: ServerSettings
) -> dict[str, object]:
    """ajv with ``additionalProperties: false`` and ``coerceTypes: true`` (§1.2)."""
    for name in query:
        if name not in schema:
            raise _invalid_params(settings, "must NOT have additional properties")
    params: dict[str, object] = {}
    for name, kind in schema.items():
        values = query.getall(name, [])
        if not values:
            continue
        coerced = _coerce(values[0], kind) if len(values) == 1 else _INVALID
        if coerced is _INVALID:
            raise _invalid_params(settings, f"must be {kind}")
        params[name] = coerced
    return params


def _lenient_query(query: MultiMapping[str], schema: _Schema) -> dict[str, object]:
    """E1/E2: no schema. Unknown names are ignored; a repeated name reads as String(array)."""
    return {name: ",".join(query.getall(name)) for name in schema if name in query}


_INVALID = object()


def _coerce(value: str, kind: _Kind) -> object:
    """ajv's coercion of a query string; "" becomes null because every field is nullable."""
    if kind == "string":
        return value
    if value == "":
        return None
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, _INVALID)
    number = _js_number(value)
    return _INVALID if number is None else number


_JS_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?Infinity")
_JS_RADIX = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+")
_JS_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")


def _js_number(text: str) -> float | None:
    """JavaScript's ``+text`` for a non-empty string; None where it would give NaN."""
    stripped = text.strip()
    if _JS_DECIMAL.fullmatch(stripped):
        return float(stripped.replace("Infinity", "inf"))
    if _JS_RADIX.fullmatch(stripped):
        return float(int(stripped, 0))
    return None


def _js_parse_int(value: object) -> int | None:
    """``parseInt(String(value))``; None stands for NaN."""
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    match = _JS_INT_PREFIX.match(str(value))
    return int(match.group(1)) if match else None


def _js_truthy(value: object) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


@dataclass(frozen=True)
class _Page:
    offset: int | None  # None: NaN (E1/E2 `offset=abc`), answered as null
    count: int | None  # None: NaN (E1/E2 `count=abc`), which means no limit

    def rows(self, rows: list[JsonObject]) -> list[JsonObject]:
        start = self.offset or 0  # the pipelines only add $skip/$limit when truthy
        return rows[start : start + self.count] if self.count else rows[start:]

    def check_for_mongo(self) -> None:
        """MongoDB refuses a negative $skip or $limit; the route turns it into a 400 (§2)."""
        if self.offset is not None and self.offset < 0:
            raise _failure(
                "invalid argument to $skip stage: Expected a non-negative number in: "
                f"$skip: {self.offset}"
            )
        if self.count is not None and self.count < 0:
            raise _failure("the limit must be positive")


def _pagination(params: Params, settings: ServerSettings) -> _Page:
    """``getPaginationItems`` (§2)."""
    # A negative (truthy, <= 0) setting falls back; exactly 0 slips through (§2).
    default = settings.default_count if settings.default_count >= 0 else 50
    upper = settings.upper_count_limit if settings.upper_count_limit >= 0 else 100
    raw_offset = params.get("offset")
    offset = _js_parse_int(raw_offset) if _js_truthy(raw_offset) else 0
    count: int | None = default
    if "count" in params:
        raw_count = params["count"]
        count = _js_parse_int(raw_count if _js_truthy(raw_count) else 0)
    if count is not None and count > upper:
        count = upper  # silently clamped, no error, no header (§2)
    if count == 0 and not settings.allow_infinite_count:
        count = default
    return _Page(offset, count)


SortSpec: TypeAlias = list[tuple[str, int]]


def _parse_sort(params: Params) -> SortSpec | None:
    """``parseJsonQuery``'s sort: a JSON object whose values are 1 or -1 (§2)."""
    raw = params.get("sort")
    if not raw:
        return None
    text = str(raw)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(_is_direction(v) for v in value.values()):
        raise _ApiError(
            400,
            {
                "success": False,
                "error": f'Invalid sort parameter provided: "{text}" [error-invalid-sort]',
                "errorType": "error-invalid-sort",
                "details": {"helperMethod": "parseJsonQuery"},
            },
        )
    return [(key, int(direction)) for key, direction in value.items()]


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # JSON.parse refuses NaN and Infinity


def _is_direction(value: object) -> bool:
    return type(value) in (int, float) and value in (1, -1)


# --- MongoDB-like sorting (§1.7) -----------------------------------------------------------


def _sort_documents(docs: list[JsonObject], sort: SortSpec, rng: random.Random) -> None:
    """Sort in place like ``$sort``, with ties in a fresh random order on every call.

    MongoDB promises no order among equal keys (§1.7), so shuffle first and then apply
    stable sorts from the last run of same-direction keys to the first.
    """
    if not sort:
        return
    rng.shuffle(docs)
    runs: list[tuple[list[str], int]] = []
    for path, direction in sort:
        if runs and runs[-1][1] == direction:
            runs[-1][0].append(path)
        else:
            runs.append(([path], direction))
    for paths, direction in reversed(runs):
        columns = [_sortable([get(doc) for doc in docs]) for get in map(_path_getter, paths)]
        keys = columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))
        order = sorted(range(len(docs)), key=keys.__getitem__, reverse=direction == -1)
        docs[:] = [docs[i] for i in order]


def _sortable(values: list[Any]) -> list[Any]:
    """Values that Python compares as MongoDB would: as they are when all are numbers or all
    strings (the common case, and fast), else mapped to their BSON type order."""
    kinds = set(map(type, values))
    if kinds <= {int, float} or kinds == {str}:
        return values
    return [_bson_order(value) for value in values]


def _path_getter(path: str) -> Callable[[JsonObject], object]:
    """A dotted path into a document; missing anywhere reads as null, as in MongoDB."""
    parts = path.split(".")
    if len(parts) == 1:
        return lambda doc: doc.get(path)
    if len(parts) == 2:
        outer, inner = parts
        return lambda doc: (
            inner_value.get(inner) if type(inner_value := doc.get(outer)) is dict else None
        )

    def get(doc: JsonObject) -> object:
        value: Any = doc
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return get


def _bson_order(value: object) -> tuple[int, Any]:
    """BSON comparison order: missing = null < numbers < strings < objects < arrays < bool."""
    kind = type(value)
    if kind is str:
        return (3, value)
    if kind is int or kind is float:
        return (2, value)
    if value is None:
        return (1, 0)
    if kind is bool:
        return (8, value)
    if kind is dict or kind is list:
        return (4 if kind is dict else 5, json.dumps(value))
    return (9, repr(value))


# --- the rate limiter (§3) ---------------------------------------------------------------


@dataclass(frozen=True)
class _RateVerdict:
    allowed: bool
    limit: int
    remaining: int
    reset_ms: int  # absolute Unix time in MILLISECONDS (§3)
    wait_seconds: int

    @property
    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_ms),
        }


@dataclass
class _RateRule:
    last_reset_ms: int
    counters: dict[str, int] = field(default_factory=dict)


class _RateLimiter:
    """Meteor's ``rate-limit`` as the REST API uses it (§3).

    One fixed window per endpoint+method rule, shared by all clients and started when the
    rule is created; per-IP counters inside it. The window resets lazily: on the first request
    more than ``window`` after the last reset, which starts the new window. Changing the
    settings re-registers every rule (§3: ``settings.watch``), which resets the counters.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rules: dict[str, _RateRule] = {}
        self._config: tuple[int, int] | None = None

    def reset(self) -> None:
        self._rules.clear()
        self._config = None

    def hit(self, rule: str, client_ip: str, settings: ServerSettings) -> _RateVerdict | None:
        """Count one call; None when the limiter is off."""
        limit, window = settings.rate_limit_calls, settings.rate_limit_window_ms
        if limit <= 0:
            return None
        now = int(self._clock() * 1000)  # Date.getTime()
        if self._config != (limit, window):
            self._rules.clear()
            self._config = (limit, window)
        state = self._rules.setdefault(rule, _RateRule(last_reset_ms=now))
        if now - state.last_reset_ms > window:
            state.counters.clear()
            state.last_reset_ms = now
        calls = state.counters[client_ip] = state.counters.get(client_ip, 0) + 1
        time_to_reset = window - (now - state.last_reset_ms)
        allowed = calls <= limit  # increment first, then check (§3)
        return _RateVerdict(
            allowed=allowed,
            limit=limit,
            remaining=limit - calls if allowed else 0,
            reset_ms=now + time_to_reset,
            wait_seconds=math.ceil(time_to_reset / 1000),
        )

    def register(self, rules: Iterable[str], settings: ServerSettings) -> None:
        """Create every rule now: the windows start at server start (§3)."""
        now = int(self._clock() * 1000)
        self._config = (settings.rate_limit_calls, settings.rate_limit_window_ms)
        self._rules = {rule: _RateRule(last_reset_ms=now) for rule in rules}


# --- routes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """What a route handler sees."""

    world: World
    settings: ServerSettings
    user: ApiUser | None
    params: Params
    headers: CIMultiDictProxy[str]
    body: bytes
    rng: random.Random
    query: MultiMapping[str] | None = None  # conv: the raw query, for livechat/rooms' arrays

    def has_any(self, *permissions: str) -> bool:
        return self.user is not None and not self.user.permissions.isdisjoint(permissions)

    def require_any(self, *permissions: str) -> None:
        """A route-level ``permissionsRequired`` (any of them; §4.3)."""
        if not self.has_any(*permissions):
            raise _forbidden(self.settings)


_Handler: TypeAlias = Callable[[_Call], JsonObject]


@dataclass(frozen=True)
class _Route:
    method: str
    name: str  # the path below /api/v1/
    handler: _Handler
    schema_old: _Schema  # E1/E2 (names read; no validation) and E5 (ajv)
    schema_e6: _Schema
    auth_required: bool = True
    adds_success: bool = True  # API.v1.success() appends `success: true`; login does not

    @property
    def rate_rule(self) -> str:
        return f"{API_PREFIX}{self.name}{self.method.lower()}"  # e.g. /api/v1/livechat/queueget

    def schema(self, era: Era) -> _Schema:
        return self.schema_e6 if era == "E6" else self.schema_old


# --- GET livechat/queue (§1) ---------------------------------------------------------------

_QUEUE_SCHEMA: _Schema = {
    **_PAGING,
    "agentId": "string",
    "departmentId": "string",
    "includeOfflineAgents": "string",
}


def _queue(call: _Call) -> JsonObject:
    settings, params = call.settings, call.params
    old = settings.era in ("E1", "E2")
    if settings.era != "E1":
        call.require_any("view-l-room")  # E2+: route level, 403 (§1.1)
    page = _pagination(params, settings)
    sort = _parse_sort(params)
    if settings.era == "E1" and not call.has_any("view-l-room"):
        # E1 checks inside the lib, after paging and sort, and answers 400 (§1.1).
        raise _ApiError(400, {"success": False, "error": "error-not-authorized"})
    if sort == []:
        raise _failure("$sort stage must have at least one sort key")  # an aggregation (§1.3)
    page.check_for_mongo()
    department_id = str(params.get("departmentId") or "")
    if department_id == "undefined" and settings.era != "E1":
        department_id = ""  # E2+ ignore the literal 'undefined' (§1.3 table)
    rows = _queue_rows(
        call.world,
        old_shapes=old,
        agent_id=str(params.get("agentId") or ""),
        department_id=department_id,
        include_offline=params.get("includeOfflineAgents") == "true",  # exact string (§1.1)
    )
    _sort_documents(rows, sort or [("chats", -1)], call.rng)
    queue = page.rows(rows)
    total = max(0, len(rows) + settings.total_skew)
    return {"queue": queue, "count": len(queue), "offset": page.offset, "total": total}


def _queue_rows(
    world: World, *, old_shapes: bool, agent_id: str, department_id: str, include_offline: bool
) -> list[JsonObject]:
    """``LivechatRooms.getQueueMetrics``: open served rooms grouped per (agent, department)."""
    per_room_key: dict[tuple[str, str | None], int] = {}
    seen = per_room_key.get
    for room in world.rooms.values():
        served_by = room.agent_id
        if served_by is None or not room.open:  # {open: true, servedBy: {$exists}} (§1.3)
            continue
        if department_id and room.department_id != department_id:
            continue
        key = (served_by, room.department_id)
        per_room_key[key] = seen(key, 0) + 1
    # E1/E2 keep a deleted agent's rooms when the user match is empty: its group key then
    # has no user fields, so all deleted agents of a department share one `user: {}` row.
    keep_deleted = old_shapes and include_offline and not agent_id
    groups: dict[tuple[str | None, str | None], int] = {}
    for (served_by, room_department), chats in per_room_key.items():
        agent = world.agents.get(served_by)
        if agent is None:
            if not keep_deleted:
                continue  # E4+: plain $unwind drops it; E1/E2: the status match drops it
            group: tuple[str | None, str | None] = (None, room_department)
        elif (agent_id and served_by != agent_id) or not (include_offline or is_routable(agent)):
            continue
        else:
            group = (served_by, room_department)
        groups[group] = groups.get(group, 0) + chats
    # Rows share their (read-only) user and department objects: built once per request.
    users: dict[str | None, JsonObject] = {}
    departments: dict[str | None, JsonObject] = {}
    rows = []
    for (user_id, group_department), chats in groups.items():
        user = users.get(user_id)
        if user is None:
            user = users[user_id] = _queue_user(world.agents.get(user_id or ""))
        department = departments.get(group_department)
        if department is None:
            department = departments[group_department] = _queue_department(
                world, group_department, old_shapes
            )
        rows.append({"chats": chats, "user": user, "department": department})
    return rows


def _queue_user(agent: Agent | None) -> JsonObject:
    if agent is None:
        return {}  # a deleted agent, E1/E2 with includeOfflineAgents=true (§1.4)
    return {"_id": agent.id, "username": agent.username, "status": agent.status}


def _queue_department(world: World, department_id: str | None, old_shapes: bool) -> JsonObject:
    """§1.4: E1/E2 fill missing fields with null ($ifNull); E4+ leave them out."""
    if department_id is None:
        return {"_id": None, "name": None} if old_shapes else {}
    department = world.departments.get(department_id)
    if department is not None:
        return {"_id": department.id, "name": department.name}
    return {"_id": department_id, "name": None} if old_shapes else {"_id": department_id}


# --- GET livechat/inquiries.list (§5.1) ----------------------------------------------------

_INQUIRIES_SCHEMA: _Schema = {"department": "string", **_PAGING}


def _inquiries(call: _Call) -> JsonObject:
    call.require_any("view-livechat-manager")
    page = _pagination(call.params, call.settings)
    sort = _parse_sort(call.params)
    page.check_for_mongo()
    wanted = call.params.get("department")
    # Found by id or name; an unknown department is silently ignored: the global list (§5.1).
    department = _department_by_id_or_name(call.world, str(wanted)) if wanted else None
    docs = [
        _inquiry_document(inquiry)
        for inquiry in call.world.inquiries.values()
        if inquiry.status == "queued"
        and (department is None or inquiry.department_id == department.id)
    ]
    _sort_documents(docs, [("ts", -1)] if sort is None else sort, call.rng)
    inquiries = page.rows(docs)
    return {
        "inquiries": inquiries,
        "offset": page.offset,
        "count": len(inquiries),
        "total": len(docs),
    }


def _department_by_id_or_name(world: World, wanted: str) -> Department | None:
    if wanted in world.departments:
        return world.departments[wanted]
    return next((d for d in world.departments.values() if d.name == wanted), None)


def _inquiry_document(inquiry: Inquiry) -> JsonObject:
    document: JsonObject = {
        "_id": inquiry.id,
        "rid": inquiry.room_id,
        "name": inquiry.visitor_name,
        "ts": iso_timestamp(inquiry.ts),
        "status": inquiry.status,
    }
    if inquiry.department_id is not None:
        document["department"] = inquiry.department_id  # absent, not null, without one
    return document


def iso_timestamp(unix_seconds: float) -> str:
    """A Date as JSON-serialised by Rocket.Chat: ``2021-07-22T14:28:57.987Z``."""
    moment = datetime.fromtimestamp(unix_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- GET livechat/users/agent (§5.3) -------------------------------------------------------

_AGENTS_SCHEMA: _Schema = {"text": "string", **_PAGING}
_AGENTS_SCHEMA_E6: _Schema = {
    **_AGENTS_SCHEMA,
    "onlyAvailable": "boolean",
    "excludeId": "string",
    "showIdleAgents": "boolean",
}


def _agents(call: _Call) -> JsonObject:
    if call.settings.era in ("E1", "E2"):
        call.require_any("manage-livechat-agents")  # route level in the JS era (§5.3)
    elif not call.has_any("transfer-livechat-guest", "edit-omnichannel-contact"):
        raise _bare_forbidden(call.settings)  # §5.3, §4.3
    page = _pagination(call.params, call.settings)
    sort = _parse_sort(call.params)
    page.check_for_mongo()
    params = call.params
    text = _text_filter(params.get("text"))
    exclude_id = params.get("excludeId")
    docs = [
        _agent_document(agent)
        for agent in call.world.agents.values()
        if (text is None or any(text.search(s) for s in (agent.username, agent.name)))
        and not (params.get("onlyAvailable") is True and agent.status_livechat != "available")
        and not (exclude_id and agent.id == exclude_id)
        # showIdleAgents=false hides offline agents (inferred from the parameter's name).
        and not (params.get("showIdleAgents") is False and agent.status == "offline")
    ]
    _sort_documents(docs, [("name", 1)] if sort is None else sort, call.rng)
    users = page.rows(docs)
    return {"users": users, "count": len(users), "offset": page.offset, "total": len(docs)}


def _agent_document(agent: Agent) -> JsonObject:
    return {
        "_id": agent.id,
        "username": agent.username,
        "name": agent.name,
        "status": agent.status,
        "statusLivechat": agent.status_livechat,
        "emails": [{"address": f"{agent.username}@example.com", "verified": True}],
        "livechat": {"maxNumberSimultaneousChat": agent.max_chats},
        "departments": list(agent.department_ids),
    }


def _text_filter(text: object) -> re.Pattern[str] | None:
    return re.compile(re.escape(str(text)), re.IGNORECASE) if text else None


# --- GET livechat/department (§5.4) --------------------------------------------------------

_DEPARTMENTS_SCHEMA: _Schema = {
    "text": "string",
    "enabled": "string",
    "onlyMyDepartments": "string",
    "excludeDepartmentId": "string",
    **_PAGING,
}
_DEPARTMENTS_SCHEMA_E6: _Schema = {**_DEPARTMENTS_SCHEMA, "showArchived": "string"}


def _departments(call: _Call) -> JsonObject:
    call.require_any("view-livechat-departments", "view-l-room")
    page = _pagination(call.params, call.settings)
    sort = _parse_sort(call.params)
    page.check_for_mongo()
    params, world = call.params, call.world
    text = _text_filter(params.get("text"))
    only_enabled = params.get("enabled") == "true"
    show_archived = params.get("showArchived") == "true"
    excluded = params.get("excludeDepartmentId")
    # onlyMyDepartments narrows the list only for EE monitors; it is accepted and ignored.
    docs = [
        _department_document(world, department)
        for department in world.departments.values()
        if (text is None or text.search(department.name))
        and (department.enabled or not only_enabled)
        and (show_archived or not department.archived)
        and department.id != excluded
    ]
    _sort_documents(docs, [("name", 1)] if sort is None else sort, call.rng)
    departments = page.rows(docs)
    return {
        "departments": departments,
        "count": len(departments),
        "offset": page.offset,
        "total": len(docs),
    }


def _department_document(world: World, department: Department) -> JsonObject:
    document: JsonObject = {
        "_id": department.id,
        "name": department.name,
        "enabled": department.enabled,
        "description": "",
        "showOnRegistration": True,
        "showOnOfflineForm": True,
        "email": "",
        "type": "d",
        "numAgents": sum(department.id in a.department_ids for a in world.agents.values()),
    }
    if department.archived:
        document["archived"] = True
    return document


# --- the server ----------------------------------------------------------------------------


class FakeRocketChat:
    """The fake server. ``.app`` is a plain aiohttp Application; or use :meth:`start`.

    ``world``, ``settings`` and ``users`` (a dict keyed by user id) are public and read on
    every request, so tests change them freely while the server runs. ``requests`` logs
    every request received.
    """

    def __init__(
        self,
        world: World,
        settings: ServerSettings | None = None,
        users: Iterable[ApiUser] | None = None,
        *,
        shuffle_seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.world = world
        self.settings = settings if settings is not None else ServerSettings()
        self.users: dict[str, ApiUser] = {
            user.user_id: user for user in (users if users is not None else [ApiUser.supervisor()])
        }
        self.requests: list[RequestRecord] = []
        self.url = ""
        self._clock = clock
        self._rng = random.Random(shuffle_seed)
        self._faults: list[_PendingFault] = []
        self._limiter = _RateLimiter(clock)
        self._routes = self._make_routes()
        self._limiter.register((r.rate_rule for r in self._routes.values()), self.settings)
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.app.on_startup.append(self._on_startup)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port) and return the base URL."""
        # A client that gives up (a timeout) ends its handler, logged with status None; and
        # stop() does not wait long for answers delayed by a fault.
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

    async def __aenter__(self) -> FakeRocketChat:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _on_startup(self, app: web.Application) -> None:
        self._limiter.register((r.rate_rule for r in self._routes.values()), self.settings)

    # --- test controls ------------------------------------------------------------------

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

    def inject(self, fault: Fault, times: int | None = 1, path: str | None = None) -> None:
        """Answer the next ``times`` matching requests with ``fault`` (None: until cleared).

        ``path`` ("livechat/queue" or "/api/v1/livechat/queue") limits it to one path; faults
        apply right after routing, before authentication and the rate limiter, and are
        consumed in the order injected.
        """
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        endpoint = _endpoint_name(path) if path is not None else None
        self._faults.append(_PendingFault(fault, times, endpoint))

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return [pending.fault for pending in self._faults]

    def reset_rate_limits(self) -> None:
        """Forget all counters and start fresh windows now."""
        self._limiter.register((r.rate_rule for r in self._routes.values()), self.settings)

    def requests_to(self, path: str) -> list[RequestRecord]:
        """The logged requests for one path ("livechat/queue" or "/api/v1/livechat/queue")."""
        endpoint = _endpoint_name(path)
        return [record for record in self.requests if record.endpoint == endpoint]

    # --- request handling ---------------------------------------------------------------

    def _make_routes(self) -> dict[tuple[str, str], _Route]:
        routes = [
            _Route("GET", "livechat/queue", _queue, _QUEUE_SCHEMA, _QUEUE_SCHEMA),
            _Route(
                "GET", "livechat/inquiries.list", _inquiries, _INQUIRIES_SCHEMA, _INQUIRIES_SCHEMA
            ),
            _Route("GET", "livechat/users/agent", _agents, _AGENTS_SCHEMA, _AGENTS_SCHEMA_E6),
            _Route(
                "GET",
                "livechat/department",
                _departments,
                _DEPARTMENTS_SCHEMA,
                _DEPARTMENTS_SCHEMA_E6,
            ),
            _Route("POST", "login", self._login, {}, {}, auth_required=False, adds_success=False),
            *_conversation_routes(),  # conv: livechat/rooms (exporter/fake/rooms.py)
        ]
        return {(route.method, route.name): route for route in routes}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived_monotonic, arrived_wall = time.monotonic(), self._clock()
        outcome = _Outcome()
        try:
            return await self._answer(request, outcome)
        finally:
            self.requests.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    query=tuple(request.query.items()),
                    status=outcome.status,
                    user_id=request.headers.get("X-User-Id"),
                    client_ip=_client_ip(request),
                    monotonic=arrived_monotonic,
                    wall=arrived_wall,
                    fault=outcome.fault,
                )
            )

    async def _answer(self, request: web.Request, outcome: _Outcome) -> web.StreamResponse:
        if self.settings.latency > 0:
            await asyncio.sleep(self.settings.latency)
        route = self._route_for(request)
        fault = self._take_fault(request.path)
        if fault is not None:
            outcome.fault = type(fault).__name__
            if not isinstance(fault, Delay):
                return await _send_fault(fault, request, outcome)
            await asyncio.sleep(fault.seconds)
        body = await request.read() if request.body_exists else b""
        response = self._respond(request, route, body)
        outcome.status = response.status
        return response

    def _route_for(self, request: web.Request) -> _Route | None:
        if not request.path.startswith(API_PREFIX):
            return None
        return self._routes.get((request.method, _endpoint_name(request.path)))

    def _take_fault(self, path: str) -> Fault | None:
        endpoint = _endpoint_name(path)
        for pending in self._faults:
            if pending.endpoint is None or pending.endpoint == endpoint:
                if pending.remaining is not None:
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        self._faults.remove(pending)
                return pending.fault
        return None

    def _respond(self, request: web.Request, route: _Route | None, body: bytes) -> web.Response:
        if route is None:
            return _json_response(404, {"success": False, "error": "API endpoint does not exist"})
        headers: dict[str, str] = {}  # the rate-limit headers, once the call is counted
        try:
            answer = self._run_route(request, route, body, headers)
        except _ApiError as error:
            return _json_response(error.status, error.body, headers)
        return _json_response(200, answer, headers)

    def _run_route(
        self, request: web.Request, route: _Route, body: bytes, headers: dict[str, str]
    ) -> JsonObject:
        """Steps 3 to 7 of the module docstring."""
        settings = self.settings
        schema = route.schema(settings.era)
        params: Params | None = None
        if settings.era == "E6":
            params = _validate_query(request.query, schema, settings)  # before auth (§4.4)
        user = self._authenticate(request) if route.auth_required else None
        if route.auth_required and user is None:
            raise _unauthenticated(settings)  # not counted by the limiter (§3)
        self._count_call(request, route, user, headers)
        if params is None and settings.era in ("E1", "E2"):
            params = _lenient_query(request.query, schema)
        elif params is None:
            params = _validate_query(request.query, schema, settings)  # E5: after the limiter
        call = _Call(
            self.world, settings, user, params, request.headers, body, self._rng, request.query
        )  # conv: + request.query
        answer = route.handler(call)
        if route.adds_success:
            answer["success"] = True
        return answer

    def _count_call(
        self, request: web.Request, route: _Route, user: ApiUser | None, headers: dict[str, str]
    ) -> None:
        """The rate limiter (§3): headers on every counted call, 429 once exhausted."""
        if user is not None and user.bypasses_rate_limit:
            return  # not limited and no headers at all
        verdict = self._limiter.hit(route.rate_rule, _client_ip(request), self.settings)
        if verdict is None:
            return
        headers.update(verdict.headers)
        if not verdict.allowed:
            raise _too_many_requests(verdict.wait_seconds)

    def _authenticate(self, request: web.Request) -> ApiUser | None:
        """X-User-Id + X-Auth-Token must match a user's token (§4.1)."""
        user_id = request.headers.get("X-User-Id", "")
        token = request.headers.get("X-Auth-Token", "")
        user = self.users.get(user_id)
        return user if user is not None and user.accepts(token) else None

    # --- POST login (§4.5) --------------------------------------------------------------

    def _login(self, call: _Call) -> JsonObject:
        payload = _json_object(call.body)
        resume = payload.get("resume")
        if isinstance(resume, str):
            user = next((u for u in self.users.values() if u.accepts(resume)), None)
            if user is None:
                raise self._login_error(
                    403, "You've been logged out by the server. Please log in again."
                )
            return self._login_success(user, resume)
        name = payload.get("user") or payload.get("username") or payload.get("email")
        password = payload.get("password")
        if not isinstance(name, str) or password is None:
            raise self._login_error(400, "Unrecognized options for login request")
        user = next((u for u in self.users.values() if name in (u.username, u.email)), None)
        if user is None:
            # Rocket.Chat replaces "User not found" by "Unauthorized" (§4.5).
            raise self._login_error("Unauthorized", "Unauthorized")
        if user.password is None or not _password_matches(password, user.password):
            raise self._login_error(403, "Incorrect password")
        if user.totp_required:
            self._check_totp(user, payload.get("code") or call.headers.get("X-2fa-code"))
        token = secrets.token_urlsafe(32)
        user.login_tokens.add(token)  # every REST login adds a resume token (§4.5)
        return self._login_success(user, token)

    def _check_totp(self, user: ApiUser, code: object) -> None:
        details = {"method": "totp", "availableMethods": ["totp"]}
        if not code:
            raise self._login_error("totp-required", "TOTP Required", details)
        if str(code) != user.totp_code:
            raise self._login_error("totp-invalid", "TOTP Invalid", {"method": "totp"})

    def _login_success(self, user: ApiUser, token: str) -> JsonObject:
        me = {
            "_id": user.user_id,
            "username": user.username,
            "name": user.name or user.username,
            "status": "online",
            "active": True,
            "roles": ["user", "livechat-manager"],
        }
        body: JsonObject = {
            "status": "success",
            "data": {"userId": user.user_id, "authToken": token, "me": me},
        }
        if self.settings.era == "E6":
            body["success"] = True  # the newest ApiClass adds it (§4.5)
        return body

    def _login_error(
        self, error: str | int, message: str, details: JsonObject | None = None
    ) -> _ApiError:
        body: JsonObject = {"success": False} if self.settings.era == "E6" else {}
        body.update({"status": "error", "error": error})
        if details is not None:
            body["details"] = details
        body["message"] = message
        return _ApiError(401, body)


def _conversation_routes() -> list[_Route]:
    """conv: livechat/rooms lives in its own module, which imports this one."""
    from exporter.fake.rooms import ROUTE, AnyName, rooms_route

    return [_Route("GET", ROUTE, rooms_route, AnyName(), AnyName())]


@dataclass
class _Outcome:
    status: int | None = None
    fault: str | None = None


# --- helpers -----------------------------------------------------------------------------


def _endpoint_name(path: str) -> str:
    stripped = path.lstrip("/")
    prefix = API_PREFIX.lstrip("/")
    return stripped[len(prefix) :] if stripped.startswith(prefix) else stripped


def _client_ip(request: web.Request) -> str:
    """X-Real-IP, else the socket address (§3, remoteAddressMiddleware)."""
    return request.headers.get("X-Real-IP") or request.remote or ""


def _json_response(
    status: int, body: JsonObject, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers=headers,
    )


def _json_object(body: bytes) -> JsonObject:
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _password_matches(given: object, password: str) -> bool:
    """A plain password, or ``{"digest": sha256 hex, "algorithm": "sha-256"}`` (§4.5)."""
    if isinstance(given, dict):
        expected = hashlib.sha256(password.encode()).hexdigest()
        return secrets.compare_digest(str(given.get("digest", "")), expected)
    return isinstance(given, str) and secrets.compare_digest(given.encode(), password.encode())


async def _send_fault(
    fault: Reply | Drop | ResetMidBody | HugeBody, request: web.Request, outcome: _Outcome
) -> web.StreamResponse:
    transport = request.transport
    if isinstance(fault, Drop):
        if transport is not None:
            transport.abort()
        return web.Response()  # never sent: the connection is gone
    if isinstance(fault, Reply):
        outcome.status = fault.status
        content_type = None if "Content-Type" in fault.headers else fault.content_type
        return web.Response(
            status=fault.status, body=fault.body, headers=fault.headers, content_type=content_type
        )
    outcome.status = fault.status
    response = web.StreamResponse(status=fault.status)
    response.content_type = "application/json"
    if isinstance(fault, ResetMidBody):
        return await _reset_mid_body(fault, request, response)
    return await _stream_huge_body(fault, request, response)


async def _reset_mid_body(
    fault: ResetMidBody, request: web.Request, response: web.StreamResponse
) -> web.StreamResponse:
    if fault.declared_length is None:
        response.enable_chunked_encoding()
    else:
        response.content_length = fault.declared_length
    await response.prepare(request)
    await response.write(fault.body)
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then closes: a short body
    return response


async def _stream_huge_body(
    fault: HugeBody, request: web.Request, response: web.StreamResponse
) -> web.StreamResponse:
    if fault.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = fault.size
    await response.prepare(request)
    try:
        for chunk in huge_body_chunks(fault.size, fault.chunk_size):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up reading, which is what a body-size limit does
    return response


_HUGE_PREFIX = b'{"queue":[],"count":0,"offset":0,"total":0,"success":true,"padding":"'
_HUGE_SUFFIX = b'"}'


def huge_body_chunks(size: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The body of :class:`HugeBody`: valid JSON of exactly ``size`` bytes, lazily."""
    if size < len(_HUGE_PREFIX) + len(_HUGE_SUFFIX):
        yield b" " * size  # too small for the JSON frame; only its size matters
        return
    yield _HUGE_PREFIX
    padding = size - len(_HUGE_PREFIX) - len(_HUGE_SUFFIX)
    block = b"x" * chunk_size
    while padding > 0:
        piece = block if padding >= chunk_size else block[:padding]
        padding -= len(piece)
        yield piece
    yield _HUGE_SUFFIX
