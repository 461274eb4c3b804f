"""The list endpoints beside the queue: ``livechat/inquiries.list``, ``livechat/users/agent``
and ``livechat/department`` (docs/rocketchat-api.md, the sections of the same names)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from exporter.fake.errors import ApiError, JsonObject, failure
from exporter.fake.query import PAGING, Schema, pagination, parse_sort
from exporter.fake.routes import Call, Route
from exporter.fake.settings import ModelEra
from exporter.fake.sorting import sort_documents
from exporter.fake.world import Agent, Department, Inquiry, World

# --- GET livechat/inquiries.list ----------------------------------------------------------

INQUIRIES_SCHEMA: Schema = {"department": "string", **PAGING}


def inquiries(call: Call) -> JsonObject:
    page = pagination(call.params, call.settings)
    sort = parse_sort(call.params)
    page.check_for_mongo()
    wanted = call.params.get("department")
    # Found by id or name; an unknown department is silently ignored: the global list.
    department = _department_by_id_or_name(call.world, str(wanted)) if wanted else None
    docs = [
        _inquiry_document(inquiry)
        for inquiry in call.world.inquiries.values()
        if inquiry.status == "queued"
        and (department is None or inquiry.department_id == department.id)
    ]
    sort_documents(docs, [("ts", -1)] if sort is None else sort, call.rng)
    found = page.rows(docs)
    return {"inquiries": found, "offset": page.offset, "count": len(found), "total": len(docs)}


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


# --- GET livechat/users/agent ---------------------------------------------------------------

AGENTS_SCHEMA: Schema = {"text": "string", **PAGING}
# @rocket.chat/rest-typings 8.8.1, isLivechatUsersManagerGETProps
AGENTS_SCHEMA_8: Schema = {
    "text": "string",
    "onlyAvailable": "boolean",
    "excludeId": "string",
    "showIdleAgents": "boolean",
    **PAGING,
    "query": "string",
    "fields": "string",
}
# MongoDB's error 40171 for the literal 0 that `options.limit && {$limit}` leaves in the facet.
FACET_ZERO_LIMIT = (
    "elements of arrays in $facet spec must be non-empty objects, sortedResults argument "
    "contained an element of type int: 2: 0"
)


def _agent_permissions(model: ModelEra) -> tuple[str, ...]:
    return ("manage-livechat-agents",) if model in ("E1", "E2") else ()


def agents(call: Call) -> JsonObject:
    settings, params = call.settings, call.params
    if not settings.js_model:
        call.require_any_in_action("transfer-livechat-guest", "edit-omnichannel-contact")
    page = pagination(params, settings)
    sort = parse_sort(params)
    page.check_for_mongo()
    if settings.facet_agents and page.unlimited:
        raise failure(FACET_ZERO_LIMIT)  # Users.findAgentsWithDepartments
    text = _text_filter(params.get("text"))
    exclude_id = params.get("excludeId")
    docs = [
        _agent_document(agent, with_departments=settings.facet_agents)
        for agent in call.world.agents.values()
        if (text is None or any(map(text.search, _agent_texts(agent))))
        and not (params.get("onlyAvailable") is True and agent.status_livechat != "available")
        and not (exclude_id and agent.id == exclude_id)
        # showIdleAgents=false hides offline agents (inferred from the parameter's name).
        and not (params.get("showIdleAgents") is False and agent.status == "offline")
    ]
    sort_documents(docs, [("name", 1)] if sort is None else sort, call.rng)
    users = page.rows(docs)
    return {"users": users, "count": len(users), "offset": page.offset, "total": len(docs)}


def _agent_texts(agent: Agent) -> tuple[str, str, str]:
    return (agent.username, agent.name, _email(agent))


def _email(agent: Agent) -> str:
    return f"{agent.username}@example.com"


def _agent_document(agent: Agent, *, with_departments: bool) -> JsonObject:
    document: JsonObject = {
        "_id": agent.id,
        "username": agent.username,
        "name": agent.name,
        "status": agent.status,
        "statusLivechat": agent.status_livechat,
        "emails": [{"address": _email(agent), "verified": True}],
        "livechat": {"maxNumberSimultaneousChat": agent.max_chats},
    }
    if with_departments:  # the $lookup of findAgentsWithDepartments; E1/E2 use a plain find
        document["departments"] = list(agent.department_ids)
    return document


def _text_filter(text: object) -> re.Pattern[str] | None:
    return re.compile(re.escape(str(text)), re.IGNORECASE) if text else None


# --- GET livechat/department ----------------------------------------------------------------

DEPARTMENTS_SCHEMA: Schema = {
    "text": "string",
    "enabled": "string",
    "onlyMyDepartments": "string",
    "excludeDepartmentId": "string",
    **PAGING,
}
_DEPARTMENT_PERMISSIONS = ("view-livechat-departments", "view-l-room")
# @rocket.chat/rest-typings 8.8.1, isGETLivechatDepartmentProps
DEPARTMENTS_SCHEMA_8: Schema = {
    "text": "string",
    "onlyMyDepartments": "true|false",
    "enabled": "string",
    "excludeDepartmentId": "string",
    "showArchived": "string",
    **PAGING,
    "query": "string",
}


def departments(call: Call) -> JsonObject:
    if call.settings.js_model and not call.has_any(*_DEPARTMENT_PERMISSIONS):
        # The JavaScript lib checks and throws Error('error-not-authorized'): a 400.
        raise ApiError(400, {"success": False, "error": "error-not-authorized"})
    page = pagination(call.params, call.settings)
    sort = parse_sort(call.params)
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
    sort_documents(docs, [("name", 1)] if sort is None else sort, call.rng)
    found = page.rows(docs)
    return {"departments": found, "count": len(found), "offset": page.offset, "total": len(docs)}


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


INQUIRIES_ROUTE = Route(
    "GET",
    "livechat/inquiries.list",
    inquiries,
    {"E1": INQUIRIES_SCHEMA},
    lambda model: ("view-livechat-manager",),
)
AGENT_ROUTE = Route(
    "GET",
    "livechat/users/agent",
    agents,
    {"E1": AGENTS_SCHEMA, "E5": AGENTS_SCHEMA_8},
    _agent_permissions,
)
DEPARTMENT_ROUTE = Route(
    "GET",
    "livechat/department",
    departments,
    {"E1": DEPARTMENTS_SCHEMA, "E5": DEPARTMENTS_SCHEMA_8},
    lambda model: () if model in ("E1", "E2") else _DEPARTMENT_PERMISSIONS,
)
