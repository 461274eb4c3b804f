"""A small omnichannel team whose day goes on by itself, for ``--demo``.

:func:`build_demo_world` makes the starting picture, :class:`Simulation` moves it on one random
(seeded) step at a time, and :func:`start_demo_server` serves it with the fake Rocket.Chat on
loopback, the way the exporter's demo mode needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

from exporter.fake.conversations import ConversationLife
from exporter.fake.server import FakeRocketChat
from exporter.fake.settings import ServerSettings
from exporter.fake.users import ALL_PERMISSIONS, ApiUser
from exporter.fake.world import Agent, AgentStatus, Inquiry, World, is_routable

DEMO_USER_ID = "DemoSupervisor001"
DEMO_TOKEN = "demo-personal-access-token-not-a-secret-000"

_DEPARTMENTS = ("Sales", "Support", "Billing", "Onboarding")

# (username, presence, omnichannel status, departments by index, chat limit)
_AGENTS: tuple[tuple[str, AgentStatus, bool, tuple[int, ...], int], ...] = (
    ("alice.martin", "online", True, (0, 1), 4),
    ("bruno.silva", "online", True, (0,), 3),
    ("chen.wei", "online", True, (1,), 4),
    ("dana.cohen", "online", True, (1, 2), 3),
    ("emeka.obi", "online", True, (2,), 3),
    ("fatima.zahra", "online", True, (3,), 3),
    ("gustav.berg", "online", True, (1, 3), 4),
    ("hana.sato", "away", True, (0,), 3),
    ("ivan.petrov", "busy", True, (1,), 3),
    ("julia.rossi", "offline", True, (2,), 3),  # went offline still holding a chat
    ("karim.haddad", "online", False, (1,), 3),  # online but not available for omnichannel
    ("lena.fischer", "online", True, (3,), 2),
)

# (agent index, department index or None: no department)
_OPEN_CHATS: tuple[tuple[int, int | None], ...] = (
    (0, 0),
    (0, 1),
    (1, 0),
    (2, 1),
    (2, 1),
    (3, 2),
    (4, 2),
    (6, 3),
    (7, 0),
    (8, 1),
    (9, 2),
    (10, 1),
    (11, 3),
)
_QUEUED: tuple[int | None, ...] = (1, 1, 0, 3)
_PICKS_A_DEPARTMENT = 0.8  # the share of visitors who choose one in the widget

_MAX_QUEUED = 12
_PAUSE_SHARE = 0.25
_PRESENCE_WEIGHTS: tuple[tuple[AgentStatus, int], ...] = (
    ("online", 70),
    ("away", 12),
    ("busy", 10),
    ("offline", 8),
)


def build_demo_world(seed: int = 0) -> World:
    """Twelve agents in four departments, with a dozen chats and a few waiting visitors.

    It includes the cases the exporter must get right: an away and a busy agent, an offline
    agent and a not-available agent who still hold chats. Every chat has a department, as on a
    real server where rooms without one appear only when no department could take them.
    """
    world = World(seed=seed)
    now = world.clock()
    departments = [world.add_department(name).id for name in _DEPARTMENTS]
    agents = [
        world.add_agent(
            username,
            status=status,
            status_livechat="available" if available else "not-available",
            department_ids=[departments[i] for i in memberships],
            max_chats=max_chats,
        )
        for username, status, available, memberships, max_chats in _AGENTS
    ]
    for agent_index, department_index in _OPEN_CHATS:
        department = departments[department_index] if department_index is not None else None
        started = now - world.rng.uniform(60, 1800)
        world.open_room(agents[agent_index].id, department, ts=started)
    for department_index in _QUEUED:
        department = departments[department_index] if department_index is not None else None
        world.queue_inquiry(department, ts=now - world.rng.uniform(5, 240))
    return world


@dataclass
class Simulation:
    """Random but plausible evolution of a world: visitors arrive and wait (some give up),
    available agents take them up to their chat limit, chats end, agents come and go."""

    world: World
    rng: random.Random = field(default_factory=random.Random)
    arrival_probability: float = 0.6
    close_probability: float = 0.06  # per open chat and step
    abandon_probability: float = 0.02  # per waiting visitor and step
    presence_change_probability: float = 0.12
    availability_change_probability: float = 0.08
    hold_toggle_probability: float = 0.05
    transfer_probability: float = 0.01  # conv: per served chat and step
    _conversations: ConversationLife = field(init=False)  # conv

    def __post_init__(self) -> None:
        self._conversations = ConversationLife(  # conv
            self.world, self.rng.random, transfer_probability=self.transfer_probability
        )

    def step(self) -> None:
        self._conversations.step()  # conv: replies, transfers (exporter/fake/conversations.py)
        self._visitor_arrives()
        self._some_visitors_give_up()
        self._route_waiting_visitors()
        self._end_some_chats()
        self._agents_come_and_go()
        self._toggle_hold()

    async def run(self, interval: float) -> None:
        """Step every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.step()

    def _visitor_arrives(self) -> None:
        if self.rng.random() >= self.arrival_probability:
            return
        if len(self.world.queued_inquiries()) >= _MAX_QUEUED:
            return
        enabled = [d.id for d in self.world.departments.values() if d.enabled]
        if enabled and self.rng.random() < _PICKS_A_DEPARTMENT:
            self.world.queue_inquiry(self.rng.choice(enabled))
        else:
            self.world.queue_inquiry(self._required_department(enabled))

    def _required_department(self, enabled: list[str]) -> str | None:
        """``getRequiredDepartment()``: the first enabled department with an online agent;
        a room goes without a department only when there is none."""
        online = [a for a in self.world.agents.values() if is_routable(a) and a.status == "online"]
        return next((d for d in enabled if any(d in a.department_ids for a in online)), None)

    def _some_visitors_give_up(self) -> None:
        for inquiry in self.world.queued_inquiries():
            if self.rng.random() < self.abandon_probability:
                self.world.close_room(inquiry.room_id, forget=True)

    def _route_waiting_visitors(self) -> None:
        for inquiry in sorted(self.world.queued_inquiries(), key=lambda i: i.ts):
            if self.rng.random() < 0.5:
                continue  # routing takes a while
            agent = self._free_agent_for(inquiry)
            if agent is not None:
                self.world.take_inquiry(inquiry.id, agent.id)

    def _free_agent_for(self, inquiry: Inquiry) -> Agent | None:
        load = self._load()
        candidates = [
            agent
            for agent in self.world.agents.values()
            if agent.status == "online"
            and agent.status_livechat == "available"
            and (inquiry.department_id is None or inquiry.department_id in agent.department_ids)
            and (agent.max_chats == 0 or load.get(agent.id, 0) < agent.max_chats)
        ]
        return self.rng.choice(candidates) if candidates else None

    def _load(self) -> dict[str, int]:
        load: dict[str, int] = {}
        for room in self.world.served_rooms():
            if room.agent_id is not None:
                load[room.agent_id] = load.get(room.agent_id, 0) + 1
        return load

    def _end_some_chats(self) -> None:
        for room in list(self.world.served_rooms()):
            if self.rng.random() < self.close_probability:
                self.world.close_room(room.id, forget=True)  # keeps a long demo's memory flat

    def _agents_come_and_go(self) -> None:
        agents = list(self.world.agents.values())
        if not agents:
            return
        if self.rng.random() < self.presence_change_probability:
            agent = self.rng.choice(agents)
            statuses = [status for status, _ in _PRESENCE_WEIGHTS]
            weights = [weight for _, weight in _PRESENCE_WEIGHTS]
            agent.status = self.rng.choices(statuses, weights=weights)[0]
        if self.rng.random() < self.availability_change_probability:
            agent = self.rng.choice(agents)
            if agent.status_livechat == "not-available":
                agent.status_livechat = "available"
            elif self.rng.random() < _PAUSE_SHARE:  # biased so that ~80% stay available
                agent.status_livechat = "not-available"

    def _toggle_hold(self) -> None:
        if self.rng.random() >= self.hold_toggle_probability:
            return
        rooms = list(self.world.served_rooms())
        if rooms:
            room = self.rng.choice(rooms)
            room.on_hold = not room.on_hold


@dataclass
class DemoServer:
    """A running demo: the fake Rocket.Chat on loopback plus the simulation moving it."""

    url: str
    user_id: str
    token: str
    world: World
    fake: FakeRocketChat
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.fake.stop()


def demo_user() -> ApiUser:
    """Every permission the exporter can use, but NOT a rate-limit bypass: the demo shows
    the ``X-RateLimit-*`` headers (docs/rocketchat-api.md, "Rate limits") at the default 10 calls
    per minute."""
    return ApiUser(DEMO_USER_ID, DEMO_TOKEN, "demo.supervisor", set(ALL_PERMISSIONS))


async def start_demo_server(
    seed: int | None = None,
    interval: float = 2.0,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: ServerSettings | None = None,
) -> DemoServer:
    """Serve a simulated Rocket.Chat on ``host:port`` (0: a free port) until ``stop()``."""
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    world = build_demo_world(seed)
    user = demo_user()
    fake = FakeRocketChat(world, settings, [user], shuffle_seed=seed)
    url = await fake.start(host, port)
    simulation = Simulation(world, random.Random(seed))
    task = asyncio.create_task(simulation.run(interval), name="demo-simulation")
    return DemoServer(url, user.user_id, user.token, world, fake, task)
