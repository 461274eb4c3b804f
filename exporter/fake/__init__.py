"""A faithful fake of Rocket.Chat's livechat REST API, and a simulated team to serve with it.

- :mod:`exporter.fake.world`: the data (departments, agents, rooms, inquiries) that tests
  change directly between polls, plus :func:`make_world` for large worlds.
- :mod:`exporter.fake.server`: :class:`FakeRocketChat`, an aiohttp app answering
  ``/api/v1/livechat/*`` and ``/api/v1/login`` per era as /work/shared/rocketchat-api.md
  describes, with a request log and fault injection.
- :mod:`exporter.fake.simulation`: :func:`build_demo_world`, :class:`Simulation` and
  :func:`start_demo_server` for the exporter's ``--demo`` mode.
"""

from exporter.fake.server import (
    ALL_PERMISSIONS,
    SUPERVISOR_PERMISSIONS,
    ApiUser,
    Delay,
    Drop,
    Era,
    FakeRocketChat,
    Fault,
    HugeBody,
    Reply,
    RequestRecord,
    ResetMidBody,
    ServerSettings,
)
from exporter.fake.simulation import DemoServer, Simulation, build_demo_world, start_demo_server
from exporter.fake.world import Agent, Department, Inquiry, Room, World, make_world

__all__ = [
    "ALL_PERMISSIONS",
    "SUPERVISOR_PERMISSIONS",
    "Agent",
    "ApiUser",
    "Delay",
    "DemoServer",
    "Department",
    "Drop",
    "Era",
    "FakeRocketChat",
    "Fault",
    "HugeBody",
    "Inquiry",
    "Reply",
    "RequestRecord",
    "ResetMidBody",
    "Room",
    "ServerSettings",
    "Simulation",
    "World",
    "build_demo_world",
    "make_world",
    "start_demo_server",
]
