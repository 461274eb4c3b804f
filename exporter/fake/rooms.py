"""GET /api/v1/livechat/rooms in the fake: filters, paging, the permission, the 400 bodies and
full room documents (docs/conversations.md, "The fake").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from multidict import MultiMapping

from exporter.fake.conversations import Conversation, to_ms
from exporter.fake.errors import JsonObject, bare_forbidden, failure, invalid_params
from exporter.fake.query import Params, SortSpec, js_number, pagination, parse_sort
from exporter.fake.routes import Call, Route
from exporter.fake.sorting import sort_documents
from exporter.fake.world import World

ROUTE = "livechat/rooms"
SCALARS = (
    "count",
    "offset",
    "sort",
    "query",
    "fields",
    "createdAt",
    "customFields",
    "closedAt",
    "roomName",
    "open",
    "onhold",
    "queued",
    "departmentId",
)
ARRAYS = ("agents", "tags", "units", "departmentId")
_TRUE = ("t", "true", "1")
# Sorts the fake answers without building every document (the exporter's sort among them).
_FAST_SORT_KEYS = {"_id", "ts", "closedAt"}


class AnyName(Mapping[str, Any]):
    """A route schema that lets every name through the server's generic validation: this
    route validates its own query, array parameters included."""

    def __contains__(self, name: object) -> bool:
        return True

    def __getitem__(self, name: str) -> Any:
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(to_ms(seconds) / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rooms_route(call: Call) -> JsonObject:
    params, arrays = _read_query(call)
    if not _may_list(call, arrays.get("agents")):
        raise bare_forbidden(call.settings)
    page = pagination(params, call.settings)
    sort = parse_sort(params) or [("ts", -1)]
    _check_json(params, "fields")
    page.check_for_mongo()
    matches = _matching(call, params, arrays)
    return _answer(call, matches, sort, page.offset, page.count)


def _read_query(call: Call) -> tuple[Params, dict[str, list[str]]]:
    """The query as qs parses it: `name[]=` repeated is an array. Old JS servers take
    anything; the ajv servers refuse unknown names and a bare value for an array."""
    query: MultiMapping[str] = call.query if call.query is not None else _empty()
    lenient = call.settings.js_model
    params: dict[str, object] = {}
    arrays: dict[str, list[str]] = {}
    for name in set(query):
        values = query.getall(name)
        base = name.removesuffix("[]")
        if name.endswith("[]") and base in ARRAYS:
            arrays[base] = list(values)
        elif base in SCALARS and len(values) == 1:
            params[name] = values[0]
        elif lenient:
            continue
        elif base in ARRAYS or base in SCALARS:
            raise invalid_params(f"must be {'array' if base in ARRAYS else 'string'}")
        else:
            raise invalid_params("must NOT have additional properties")
    if not lenient:
        for name in ("count", "offset"):
            if name in params and params[name] != "":
                number = js_number(str(params[name]))
                if number is None:
                    raise invalid_params("must be number")
                params[name] = number
    if "departmentId" in params:
        arrays.setdefault("departmentId", []).append(str(params.pop("departmentId")))
    return params, arrays


def _empty() -> MultiMapping[str]:
    from multidict import MultiDict

    return MultiDict()


def _may_list(call: Call, agents: list[str] | None) -> bool:
    if call.has_any("view-livechat-rooms"):
        return True
    me = call.user.user_id if call.user is not None else None
    return call.has_any("view-l-room") and agents == [me]


def _check_json(params: Params, name: str) -> object:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return json.loads(str(raw))
    except ValueError as error:
        raise failure(_json_parse_message(str(raw), error)) from None


def _json_parse_message(text: str, error: ValueError) -> str:
    first = text[:1] or " "
    return f"Unexpected token '{first}', \"{text}\" is not valid JSON"


def _date_range(params: Params, name: str) -> tuple[int | None, int | None] | None:
    """`{"start": ISO, "end": ISO}`, either optional; `{}` matches nothing (None, None)."""
    value = _check_json(params, name)
    if value is None:
        return None
    if not isinstance(value, dict):
        return (None, None)
    bounds: list[int | None] = []
    for key in ("start", "end"):
        text = value.get(key)
        if not text:
            bounds.append(None)
            continue
        moment = _parse_date(str(text))
        if moment is None:
            raise failure(f'The "{name}.{key}" query parameter must be a valid date.')
        bounds.append(moment)
    return (bounds[0], bounds[1])


def _parse_date(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _in_range(moment: float | None, bounds: tuple[int | None, int | None] | None) -> bool:
    if bounds is None:
        return True
    start, end = bounds
    if moment is None or (start is None and end is None):
        return False  # {closedAt: {}} matches nothing, nor a room without the field
    ms = to_ms(moment)
    return (start is None or ms >= start) and (end is None or ms <= end)


def _boolean(params: Params, name: str) -> bool | None:
    raw = params.get(name)
    if raw in ("true", "false"):
        return raw == "true"
    return None


def _matching(call: Call, params: Params, arrays: dict[str, list[str]]) -> list[Conversation]:
    store = call.world.conversations
    now = store.clock()
    closed = _date_range(params, "closedAt")
    created = _date_range(params, "createdAt")
    custom = _check_json(params, "customFields")
    if custom is not None and not isinstance(custom, dict):
        raise failure('The "customFields" query parameter must be a valid JSON.')
    open_filter = _boolean(params, "open")
    onhold = str(params.get("onhold", "")) in _TRUE
    queued = str(params.get("queued", "")) in _TRUE
    agents, departments = arrays.get("agents"), arrays.get("departmentId")
    tags = arrays.get("tags")
    name = str(params.get("roomName", "")).lower()
    out = []
    for room in store.rooms.values():
        if room.closed_at is not None and room.visible_at > now:
            continue  # a close not written yet: the fake lists the room nowhere meanwhile
        is_open = room.closed_at is None
        if not (_in_range(room.closed_at, closed) and _in_range(room.ts, created)):
            continue
        if agents is not None and (room.served_by is None or room.served_by[0] not in agents):
            continue
        if departments and departments != ["undefined"] and room.department_id not in departments:
            continue
        if open_filter is not None and (is_open != open_filter or _on_hold(call.world, room)):
            continue
        if open_filter and room.served_by is None:
            continue
        if onhold and not _on_hold(call.world, room):
            continue
        if queued and not (is_open and room.served_by is None and not _on_hold(call.world, room)):
            continue
        if tags is not None and not set(tags) & set(room.tags):
            continue
        if name and name not in f"guest-{room.visitor}":
            continue
        if custom:
            continue  # the fake's visitors have no livechatData
        out.append(room)
    return out


def _on_hold(world: World, room: Conversation) -> bool:
    if room.closed_at is not None:
        return False
    live = world.rooms.get(room.id)
    return live.on_hold if live is not None else room.on_hold


def _answer(
    call: Call, rooms: list[Conversation], sort: SortSpec, offset: int | None, count: int | None
) -> JsonObject:
    start = offset or 0
    if all(path in _FAST_SORT_KEYS for path, _ in sort):
        call.rng.shuffle(rooms)  # ties in no promised order, as in MongoDB
        for path, direction in reversed(sort):
            rooms.sort(key=_fast_key(path), reverse=direction == -1)
        chosen = rooms[start : start + count] if count else rooms[start:]
        documents = [room_document(call.world, room) for room in chosen]
    else:
        documents = [room_document(call.world, room) for room in rooms]
        sort_documents(documents, sort, call.rng)
        documents = documents[start : start + count] if count else documents[start:]
    return {"rooms": documents, "count": len(documents), "offset": offset, "total": len(rooms)}


def _fast_key(path: str) -> Any:
    if path == "_id":
        return lambda room: room.id
    if path == "ts":
        return lambda room: to_ms(room.ts)
    # Missing sorts first, like null in MongoDB.
    return lambda room: -math.inf if room.closed_at is None else to_ms(room.closed_at)


def room_document(world: World, room: Conversation) -> JsonObject:
    """The full rocketchat_room document, visitor secrets included, as the route sends it."""
    n = room.visitor
    doc: JsonObject = {
        "_id": room.id,
        "msgs": room.messages,
        "usersCount": 2 if room.served else 1,
        "lm": iso(room.last_reply or room.visitor_query or room.ts),
        "fname": f"guest-{n}",
        "t": "l",
        "ts": iso(room.ts),
        "v": {"_id": f"vis-{n}", "username": f"guest-{n}", "token": f"tkn-{n}-secret"},
        "contactId": f"c-{n}",
        "cl": False,
        "verified": False,
        "source": {"type": "widget", "destination": "chat.example.com"},
        "queuedAt": iso(room.queued_at),
        "priorityWeight": 99,
        "estimatedWaitingTimeQueue": 9999999,
        "livechatData": {"email": f"guest-{n}@example.com"},
        "_updatedAt": iso(room.closed_at or room.ts),
    }
    _add_state(world, room, doc)
    _add_metrics(room, doc)
    if room.department_id is not None:
        doc["departmentId"] = room.department_id
        department = world.departments.get(room.department_id)
        if department is not None:
            doc["department"] = {"_id": department.id, "name": department.name}
    return doc


def _add_state(world: World, room: Conversation, doc: JsonObject) -> None:
    if room.closed_at is None:
        doc["open"] = True  # unset at close, never false
        if _on_hold(world, room):
            doc["onHold"] = True
    if room.waiting_response:
        doc["waitingResponse"] = True
    if room.served_by is not None and room.served_ts is not None:
        agent_id, username = room.served_by
        doc["servedBy"] = {"_id": agent_id, "username": username, "ts": iso(room.served_ts)}
        if not room.waiting_response and room.first_reply is not None:
            doc["responseBy"] = {
                "_id": agent_id,
                "username": username,
                "firstResponseTs": iso(room.last_reply or room.first_reply),
                "lastMessageTs": iso(room.last_reply or room.first_reply),
            }
    if room.closed_at is not None and room.closed_by is not None:
        doc["closedAt"] = iso(room.closed_at)
        doc["closer"] = room.closer
        doc["closedBy"] = {"_id": room.closed_by[0], "username": room.closed_by[1]}
        if room.tags:
            doc["tags"] = list(room.tags)


def _add_metrics(room: Conversation, doc: JsonObject) -> None:
    metrics: JsonObject = {}
    if room.visitor_query is not None:
        metrics["v"] = {"lq": iso(room.visitor_query)}
    if room.first_reply is not None and room.response_ft is not None:
        first = iso(room.first_reply)
        metrics["servedBy"] = {"lr": iso(room.last_reply or room.first_reply)}
        metrics["reaction"] = {"fd": first, "ft": room.reaction_ft, "tt": room.reaction_ft}
        metrics["response"] = {
            "fd": first,
            "ft": room.response_ft,
            "avg": room.response_ft,
            "total": max(room.replies, 1),
            "tt": room.response_ft,
        }
    if room.closed_at is not None:
        metrics["chatDuration"] = room.closed_at - room.ts
        if room.served_by is not None and room.served_ts is not None:
            metrics["serviceTimeDuration"] = room.closed_at - room.served_ts
    if metrics:
        doc["metrics"] = metrics


ROOMS_ROUTE = Route("GET", ROUTE, rooms_route, {"E1": AnyName()})
