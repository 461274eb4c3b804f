"""The fake's livechat room history: each conversation's lifecycle and the KPI fields Rocket.Chat
writes on the way (docs/conversations.md, "Room fields").

The world calls the lifecycle hooks (a room opens, is taken, closes); tests and the demo call
the finer ones (messages, transfers, return to the queue). Closed conversations stay here
after the world forgets their room, because livechat/rooms lists closed rooms for ever.
Times are Unix seconds on the world's clock; the documents show them in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from exporter.fake.world import World

Closer: TypeAlias = Literal["user", "visitor"]
AgentRef: TypeAlias = tuple[str, str]  # (_id, username)


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(slots=True)
class Conversation:
    """One livechat room as Rocket.Chat's rocketchat_room document tracks it."""

    id: str
    ts: float  # creation
    department_id: str | None
    visitor: int  # number of the guest (guest-N), for the visitor fields
    queued_at: float = 0.0  # creation, and again on every return to the queue
    served_by: AgentRef | None = None  # the current (or last) agent
    served_ts: float | None = None  # servedBy.ts: when the current agent got the room
    first_reply: float | None = None  # the first agent message ever
    response_ft: float | None = None  # metrics.response.ft, frozen at the first reply
    reaction_ft: float | None = None  # metrics.reaction.ft, frozen at the first reply
    visitor_query: float | None = None  # metrics.v.lq: the visitor's turn that waits
    last_reply: float | None = None  # metrics.servedBy.lr
    replies: int = 0
    waiting_response: bool = True
    on_hold: bool = False
    closed_at: float | None = None
    closer: Closer | None = None
    closed_by: AgentRef | None = None
    visible_at: float = 0.0  # a close is listed from then on (a late write)
    tags: list[str] = field(default_factory=list)
    messages: int = 0

    @property
    def open(self) -> bool:
        return self.closed_at is None

    @property
    def served(self) -> bool:
        return self.served_by is not None or self.first_reply is not None

    @property
    def chat_duration(self) -> float | None:
        return None if self.closed_at is None else self.closed_at - self.ts


class ConversationStore:
    """Every room by id, open and closed, with the lifecycle operations."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.rooms: dict[str, Conversation] = {}
        self._visitors = 0

    def _now(self, at: float | None) -> float:
        return self.clock() if at is None else at

    def opened(
        self, room_id: str, ts: float, department_id: str | None, agent: AgentRef | None
    ) -> Conversation:
        self._visitors += 1
        room = Conversation(room_id, ts, department_id, self._visitors, queued_at=ts)
        room.visitor_query = ts  # the widget's first message opens the room
        room.messages = 1
        if agent is not None:
            room.served_by, room.served_ts = agent, ts
        self.rooms[room_id] = room
        return room

    def served(self, room_id: str, agent: AgentRef, at: float | None = None) -> None:
        """A take or a transfer: servedBy is overwritten with a new ts."""
        room = self.rooms[room_id]
        room.served_by, room.served_ts = agent, self._now(at)

    def returned_to_queue(self, room_id: str, at: float | None = None) -> None:
        room = self.rooms[room_id]
        room.served_by = room.served_ts = None
        room.queued_at = self._now(at)

    def visitor_message(self, room_id: str, at: float | None = None) -> None:
        room = self.rooms[room_id]
        room.messages += 1
        if not room.waiting_response:  # a new turn after an agent reply
            room.waiting_response = True
            room.visitor_query = self._now(at)

    def agent_reply(self, room_id: str, at: float | None = None) -> None:
        room = self.rooms[room_id]
        now = self._now(at)
        room.messages += 1
        if room.first_reply is None:
            room.first_reply = now
            room.response_ft = now - (room.visitor_query or room.ts)
            room.reaction_ft = now - (room.served_ts or room.ts)
        if room.waiting_response:
            room.replies += 1
            room.last_reply = now
        room.waiting_response = False

    def closed(
        self,
        room_id: str,
        at: float | None = None,
        *,
        closer: Closer | None = None,
        visible_at: float | None = None,
    ) -> Conversation:
        room = self.rooms[room_id]
        room.closed_at = self._now(at)
        room.on_hold = False
        room.closer = closer or ("user" if room.served_by is not None else "visitor")
        if room.closer == "visitor":
            room.closed_by = (f"vis-{room.visitor}", f"guest-{room.visitor}")
        else:
            room.closed_by = room.served_by or ("rocket.cat", "rocket.cat")
        room.visible_at = room.closed_at if visible_at is None else visible_at
        return room

    def forget_closed_before(self, moment: float) -> None:
        """Keeps a long demo's memory flat."""
        for room_id in [r.id for r in self.rooms.values() if (r.closed_at or moment) < moment]:
            del self.rooms[room_id]

    def closed_between(self, start: float, end: float) -> Iterator[Conversation]:
        """The truth: rooms whose close falls in [start, end] (milliseconds, inclusive)."""
        low, high = to_ms(start), to_ms(end)
        return (
            r
            for r in self.rooms.values()
            if r.closed_at is not None and low <= to_ms(r.closed_at) <= high
        )


class ConversationLife:
    """The demo's conversations between a take and a close: agents answer (so the first
    response histogram fills), visitors write again, a few chats are transferred, and old
    history is dropped. The world's own steps open, route and close the rooms."""

    RETENTION = 2 * 3600.0

    def __init__(
        self,
        world: World,
        random: Callable[[], float],
        reply_probability: float = 0.45,
        visitor_probability: float = 0.15,
        transfer_probability: float = 0.01,
    ) -> None:
        self._world = world
        self._random = random
        self._reply = reply_probability
        self._visitor = visitor_probability
        self._transfer = transfer_probability

    def step(self) -> None:
        store = self._world.conversations
        for room in [r for r in store.rooms.values() if r.open and r.served_by]:
            if room.waiting_response and self._random() < self._reply:
                store.agent_reply(room.id)
            elif not room.waiting_response and self._random() < self._visitor:
                store.visitor_message(room.id)
            if self._random() < self._transfer:
                self._transfer_room(room)
        store.forget_closed_before(store.clock() - self.RETENTION)

    def _transfer_room(self, room: Conversation) -> None:
        """Forward to another online agent of the department: servedBy gets a new ts."""
        live = self._world.rooms.get(room.id)
        others = [
            agent
            for agent in self._world.agents.values()
            if agent.status == "online"
            and agent.id != (room.served_by or ("", ""))[0]
            and (room.department_id is None or room.department_id in agent.department_ids)
        ]
        if live is None or not others:
            return
        agent = others[int(self._random() * len(others)) % len(others)]
        live.agent_id = agent.id
        self._world.conversations.served(room.id, (agent.id, agent.username))
