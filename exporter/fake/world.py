"""The data model behind the fake Rocket.Chat: departments, agents, rooms and inquiries.

Plain mutable dataclasses on purpose: tests change the world directly between two polls
(``world.agents[a].status = "offline"``) and the fake server reads it afresh on every request,
so nothing derived is cached anywhere.

Ids look like Rocket.Chat's (17 characters of ``[A-Za-z0-9]``) and come from the world's own
seeded ``random.Random``, so a world built twice from the same seed is identical.
"""

from __future__ import annotations

import math
import random
import string
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from exporter.fake.conversations import Closer, ConversationStore

AgentStatus: TypeAlias = Literal["online", "away", "busy", "offline"]
LivechatStatus: TypeAlias = Literal["available", "not-available"]
InquiryStatus: TypeAlias = Literal["queued", "taken"]

ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 17

QueueKey: TypeAlias = tuple[str, str | None]
"""(agent id, department id or None): one row of ``livechat/queue``
(docs/rocketchat-api.md, "livechat/queue")."""


@dataclass(slots=True)
class Department:
    id: str
    name: str
    enabled: bool = True
    # newer servers hide archived departments (docs/rocketchat-api.md, "livechat/department"
    # showArchived)
    archived: bool = False


@dataclass(slots=True)
class Agent:
    """A user with the livechat-agent role."""

    id: str
    username: str
    name: str
    status: AgentStatus = "online"  # presence, as `user.status` in the queue rows
    status_livechat: LivechatStatus = "available"  # omnichannel availability
    department_ids: list[str] = field(default_factory=list)
    max_chats: int = 0  # livechat.maxNumberSimultaneousChat; 0 means no limit


@dataclass(slots=True)
class Room:
    """An omnichannel room. ``agent_id`` is ``servedBy._id``: None while the visitor waits."""

    id: str
    agent_id: str | None
    department_id: str | None
    open: bool = True
    on_hold: bool = False
    ts: float = 0.0  # creation time, Unix seconds


@dataclass(slots=True)
class Inquiry:
    """A visitor waiting in the queue for the (unserved) room ``room_id``."""

    id: str
    room_id: str
    visitor_name: str
    ts: float  # Unix seconds
    department_id: str | None
    status: InquiryStatus = "queued"


class World:
    """Everything the fake Rocket.Chat knows, keyed by id."""

    def __init__(self, seed: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.rng = random.Random(seed)
        self.clock = clock
        self.departments: dict[str, Department] = {}
        self.agents: dict[str, Agent] = {}
        self.rooms: dict[str, Room] = {}
        self.inquiries: dict[str, Inquiry] = {}
        # conv: every room's lifecycle, closed ones included (livechat/rooms)
        self.conversations = ConversationStore(clock)
        self._visitors = 0

    # --- ids ------------------------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh Rocket.Chat-like id, unique within this world."""
        while True:
            candidate = "".join(self.rng.choices(ID_ALPHABET, k=ID_LENGTH))
            if not self._id_taken(candidate):
                return candidate

    def _id_taken(self, candidate: str) -> bool:
        return any(
            candidate in table
            for table in (self.departments, self.agents, self.rooms, self.inquiries)
        )

    # --- changes --------------------------------------------------------------------------

    def add_department(
        self, name: str, *, id: str | None = None, enabled: bool = True
    ) -> Department:
        department = Department(id=id or self.new_id(), name=name, enabled=enabled)
        self.departments[department.id] = department
        return department

    def add_agent(
        self,
        username: str,
        *,
        name: str | None = None,
        status: AgentStatus = "online",
        status_livechat: LivechatStatus = "available",
        department_ids: Iterable[str] = (),
        max_chats: int = 0,
        id: str | None = None,
    ) -> Agent:
        agent = Agent(
            id=id or self.new_id(),
            username=username,
            name=name if name is not None else _display_name(username),
            status=status,
            status_livechat=status_livechat,
            department_ids=list(department_ids),
            max_chats=max_chats,
        )
        self.agents[agent.id] = agent
        return agent

    def open_room(
        self,
        agent_id: str | None,
        department_id: str | None = None,
        *,
        on_hold: bool = False,
        ts: float | None = None,
    ) -> Room:
        """An open room served by ``agent_id`` (None: not served yet)."""
        room = Room(
            id=self.new_id(),
            agent_id=agent_id,
            department_id=department_id,
            on_hold=on_hold,
            ts=self.clock() if ts is None else ts,
        )
        self.rooms[room.id] = room
        self.conversations.opened(
            room.id, room.ts, department_id, self._agent_ref(agent_id)
        )  # conv
        return room

    def close_room(
        self, room_id: str, *, forget: bool = False, closer: Closer | None = None
    ) -> None:
        """Close a room; its inquiry leaves the queue. ``forget`` also drops the room record."""
        room = self.rooms[room_id]
        room.open = False
        if room_id in self.conversations.rooms:  # conv
            self.conversations.closed(room_id, closer=closer)
        room.on_hold = False
        for inquiry_id in [i.id for i in self.inquiries.values() if i.room_id == room_id]:
            del self.inquiries[inquiry_id]
        if forget:
            del self.rooms[room_id]

    def queue_inquiry(
        self,
        department_id: str | None = None,
        *,
        ts: float | None = None,
        visitor_name: str | None = None,
    ) -> Inquiry:
        """A visitor starts a chat: an open, unserved room plus a queued inquiry for it."""
        when = self.clock() if ts is None else ts
        room = self.open_room(None, department_id, ts=when)
        if visitor_name is None:
            self._visitors += 1
            visitor_name = f"Visitor {self._visitors}"
        inquiry = Inquiry(
            id=self.new_id(),
            room_id=room.id,
            visitor_name=visitor_name,
            ts=when,
            department_id=department_id,
        )
        self.inquiries[inquiry.id] = inquiry
        return inquiry

    def take_inquiry(self, inquiry_id: str, agent_id: str) -> Room:
        """An agent takes a queued inquiry: its room becomes served by that agent."""
        inquiry = self.inquiries[inquiry_id]
        inquiry.status = "taken"
        room = self.rooms[inquiry.room_id]
        room.agent_id = agent_id
        agent = self._agent_ref(agent_id)
        if agent is not None and room.id in self.conversations.rooms:  # conv
            self.conversations.served(room.id, agent)
        return room

    def _agent_ref(self, agent_id: str | None) -> tuple[str, str] | None:
        """conv: (id, username) as servedBy holds it."""
        if agent_id is None:
            return None
        agent = self.agents.get(agent_id)
        return (agent_id, agent.username if agent is not None else "")

    def remove_agent(self, agent_id: str) -> None:
        """Delete the user. Its rooms keep ``servedBy`` pointing at it, as in reality
        (docs/rocketchat-api.md, "livechat/queue")."""
        del self.agents[agent_id]

    def remove_department(self, department_id: str) -> None:
        """Delete a department. Rooms and inquiries keep pointing at it (docs/rocketchat-api.md,
        "livechat/queue")."""
        del self.departments[department_id]
        for agent in self.agents.values():
            if department_id in agent.department_ids:
                agent.department_ids.remove(department_id)

    # --- the truth that tests compare /metrics with ----------------------------------------

    def served_rooms(self) -> Iterator[Room]:
        """Open rooms with an agent: what ``livechat/queue`` counts (on-hold included,
        docs/rocketchat-api.md, "livechat/queue")."""
        return (r for r in self.rooms.values() if r.open and r.agent_id is not None)

    def chats_per_agent_department(self, *, include_offline: bool = True) -> dict[QueueKey, int]:
        """Open served chats per (agent, department) for agents that still exist.

        ``include_offline=False`` keeps only agents the default queue call shows: presence not
        offline and omnichannel status available (docs/rocketchat-api.md, "livechat/queue").
        """
        counts: dict[QueueKey, int] = {}
        for room in self.served_rooms():
            agent = self.agents.get(room.agent_id or "")
            if agent is None or not (include_offline or is_routable(agent)):
                continue
            key = (agent.id, room.department_id)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def queued_inquiries(self) -> list[Inquiry]:
        return [i for i in self.inquiries.values() if i.status == "queued"]


def is_routable(agent: Agent) -> bool:
    """What ``livechat/queue`` requires without includeOfflineAgents=true (docs/rocketchat-api.md,
    "livechat/queue")."""
    return agent.status != "offline" and agent.status_livechat == "available"


def _display_name(username: str) -> str:
    return " ".join(part.capitalize() for part in username.replace("_", ".").split("."))


# --- big worlds for benchmarks and paging tests --------------------------------------------

_STATUS_WEIGHTS: tuple[tuple[AgentStatus, int], ...] = (
    ("online", 60),
    ("away", 15),
    ("busy", 10),
    ("offline", 15),
)
_NOT_AVAILABLE_SHARE = 0.15
# Few distinct values, so most rows tie on `chats` (the docs/rocketchat-api.md, "livechat/queue"
# paging hazard).
_CHATS_WEIGHTS: tuple[tuple[int, int], ...] = ((1, 50), (2, 25), (3, 15), (4, 10))


def make_world(
    rows: int,
    *,
    agents: int | None = None,
    departments: int = 20,
    seed: int = 0,
    now: float | None = None,
) -> World:
    """A world whose full ``livechat/queue?includeOfflineAgents=true`` has exactly ``rows`` rows.

    Every (agent, department-or-none) pair is a possible row, so ``agents * (departments + 1)``
    must be at least ``rows``; by default there are enough agents for 80% occupancy. Rows
    carry 1-4 chats, so ``chats`` ties abound; about one row in ``departments + 1`` has no
    department; 15% of agents are offline and 15% not available, and they hold chats too.
    """
    if rows < 0 or departments < 0:
        raise ValueError("rows and departments must not be negative")
    slots = departments + 1
    agent_count = agents if agents is not None else max(1, math.ceil(rows / slots / 0.8))
    if agent_count * slots < rows:
        raise ValueError(f"{agent_count} agents x {slots} department slots < {rows} rows")
    world = World(seed=seed)
    when = time.time() if now is None else now
    department_ids = [world.add_department(f"Department {i + 1}").id for i in range(departments)]
    agent_ids = _add_many_agents(world, agent_count, department_ids)
    chats = world.rng.choices(
        [c for c, _ in _CHATS_WEIGHTS], weights=[w for _, w in _CHATS_WEIGHTS], k=rows
    )
    for slot, n in zip(world.rng.sample(range(agent_count * slots), rows), chats, strict=True):
        agent_id = agent_ids[slot // slots]
        index = slot % slots
        department_id = department_ids[index] if index < departments else None
        for _ in range(n):
            room_id = world.new_id()
            world.rooms[room_id] = Room(room_id, agent_id, department_id, ts=when)
    return world


def _add_many_agents(world: World, count: int, department_ids: list[str]) -> list[str]:
    statuses = world.rng.choices(
        [s for s, _ in _STATUS_WEIGHTS], weights=[w for _, w in _STATUS_WEIGHTS], k=count
    )
    ids = []
    for i, status in enumerate(statuses):
        available = world.rng.random() >= _NOT_AVAILABLE_SHARE
        memberships = world.rng.sample(department_ids, min(2, len(department_ids)))
        agent = world.add_agent(
            f"agent.{i + 1:05d}",
            status=status,
            status_livechat="available" if available else "not-available",
            department_ids=memberships,
        )
        ids.append(agent.id)
    return ids
