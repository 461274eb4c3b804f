"""``GET livechat/queue``: open served rooms grouped per (agent, department)
(docs/rocketchat-api.md, "livechat/queue")."""

from __future__ import annotations

from exporter.fake.errors import ApiError, JsonObject, failure
from exporter.fake.query import PAGING, Schema, pagination, parse_sort
from exporter.fake.routes import Call, Route
from exporter.fake.settings import ModelEra
from exporter.fake.sorting import sort_documents
from exporter.fake.world import Agent, World, is_routable

SCHEMA: Schema = {
    **PAGING,
    "agentId": "string",
    "departmentId": "string",
    "includeOfflineAgents": "string",
}
DEFAULT_SORT = [("chats", -1)]


def _permissions(model: ModelEra) -> tuple[str, ...]:
    return () if model == "E1" else ("view-l-room",)  # E1 checks inside the lib


def queue(call: Call) -> JsonObject:
    settings, params = call.settings, call.params
    page = pagination(params, settings)
    sort = parse_sort(params)
    if settings.model == "E1" and not call.has_any("view-l-room"):
        # E1 checks inside the lib, after paging and sort, and answers 400.
        raise ApiError(400, {"success": False, "error": "error-not-authorized"})
    if sort == []:
        raise failure("$sort stage must have at least one sort key")  # an aggregation
    page.check_for_mongo()
    department_id = str(params.get("departmentId") or "")
    if department_id == "undefined" and settings.model != "E1":
        department_id = ""  # E2 on ignore the literal 'undefined'
    filters = (
        settings.js_model,
        str(params.get("agentId") or ""),
        department_id,
        params.get("includeOfflineAgents") == "true",  # the exact string only
    )
    rows = _sorted_rows(call, filters, sort or DEFAULT_SORT)
    found = page.rows(rows)
    total = max(0, len(rows) + settings.total_skew)
    return {"queue": found, "count": len(found), "offset": page.offset, "total": total}


def _sorted_rows(
    call: Call, filters: tuple[bool, str, str, bool], sort: list[tuple[str, int]]
) -> list[JsonObject]:
    """The aggregation, then the sort; memoized per query when the fake is told to."""
    key = ("livechat/queue", filters, tuple(sort))
    if call.memo is not None and key in call.memo:
        cached: list[JsonObject] = call.memo[key]
        return cached
    old_shapes, agent_id, department_id, include_offline = filters
    rows = queue_rows(
        call.world,
        old_shapes=old_shapes,
        agent_id=agent_id,
        department_id=department_id,
        include_offline=include_offline,
    )
    sort_documents(rows, sort, call.rng)
    if call.memo is not None:
        call.memo[key] = rows
    return rows


def queue_rows(
    world: World, *, old_shapes: bool, agent_id: str, department_id: str, include_offline: bool
) -> list[JsonObject]:
    """``LivechatRooms.getQueueMetrics``: open served rooms grouped per (agent, department)."""
    per_room_key: dict[tuple[str, str | None], int] = {}
    seen = per_room_key.get
    for room in world.rooms.values():
        served_by = room.agent_id
        if served_by is None or not room.open:  # {open: true, servedBy: {$exists}}
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
                continue  # E4 on: plain $unwind drops it; E1/E2: the status match drops it
            group: tuple[str | None, str | None] = (None, room_department)
        elif (agent_id and served_by != agent_id) or not (include_offline or is_routable(agent)):
            continue
        else:
            group = (served_by, room_department)
        groups[group] = groups.get(group, 0) + chats
    return _rows(world, groups, old_shapes)


def _rows(
    world: World, groups: dict[tuple[str | None, str | None], int], old_shapes: bool
) -> list[JsonObject]:
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
        return {}  # a deleted agent, E1/E2 with includeOfflineAgents=true
    return {"_id": agent.id, "username": agent.username, "status": agent.status}


def _queue_department(world: World, department_id: str | None, old_shapes: bool) -> JsonObject:
    """E1/E2 fill missing fields with null ($ifNull); E4 on leave them out."""
    if department_id is None:
        return {"_id": None, "name": None} if old_shapes else {}
    department = world.departments.get(department_id)
    if department is not None:
        return {"_id": department.id, "name": department.name}
    return {"_id": department_id, "name": None} if old_shapes else {"_id": department_id}


QUEUE_ROUTE = Route("GET", "livechat/queue", queue, {"E1": SCHEMA}, _permissions)
