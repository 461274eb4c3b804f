"""The fixed world every conformance case runs against.

Its ids come from the OpenAPI example of ``livechat/queue`` (RocketChat/Rocket.Chat-Open-API,
omnichannel.yaml), so that example's rows are this world's rows.
"""

from __future__ import annotations

from exporter.fake import ALL_PERMISSIONS, ApiUser, World

DEPARTMENT_1 = "457diLwcQMmdpaTjo"
DEPARTMENT_2 = "5mt9oEtQxuMMH23Co"
MARCOS = "CaevAPDbXN252kyXa"
OFFLINE_AGENT = "OfflineAgent00001"
AWAY_NOT_AVAILABLE = "NotAvailable00001"

PASSWORD = "conformance-password"
PLACEHOLDERS = {
    "{department_1}": DEPARTMENT_1,
    "{department_2}": DEPARTMENT_2,
    "{marcos}": MARCOS,
    "{offline_agent}": OFFLINE_AGENT,
}


def conformance_world() -> World:
    world = World(seed=9)
    world.add_department("Department 1", id=DEPARTMENT_1)
    world.add_department("Department 2", id=DEPARTMENT_2)
    both = [DEPARTMENT_1, DEPARTMENT_2]
    world.add_agent("marcos.defendi", id=MARCOS, department_ids=both)
    world.add_agent("olga.offline", id=OFFLINE_AGENT, status="offline", department_ids=both)
    world.add_agent(
        "nadia.away",
        id=AWAY_NOT_AVAILABLE,
        status="away",
        status_livechat="not-available",
        department_ids=[DEPARTMENT_2],
    )
    for agent, department, chats in [
        (MARCOS, DEPARTMENT_1, 1),
        (MARCOS, DEPARTMENT_2, 2),
        (OFFLINE_AGENT, DEPARTMENT_1, 1),
        (AWAY_NOT_AVAILABLE, DEPARTMENT_2, 1),
    ]:
        for _ in range(chats):
            world.open_room(agent, department)
    world.queue_inquiry(DEPARTMENT_1)
    world.queue_inquiry(DEPARTMENT_2)
    return world


def caller(permissions: str | list[str], *, rate_limited: bool = False) -> ApiUser:
    """``all``, ``none`` or a list of permission names."""
    if permissions == "all":
        granted = set(ALL_PERMISSIONS)
    elif permissions == "none":
        granted = set()
    else:
        granted = set(permissions)
    return ApiUser(
        "ConformanceUser01",
        "conformance-token",
        "conformance",
        granted,
        bypass_rate_limit=not rate_limited,
        password=PASSWORD,
    )
