"""A faithful fake of Rocket.Chat's livechat REST API, and a simulated team to serve with it.

- :mod:`~exporter.fake.world`: the data (departments, agents, rooms, inquiries) that tests change
  between polls, plus :func:`make_world` for large worlds;
- :mod:`~exporter.fake.settings`: which server it plays (model era, API framework, switches);
- :mod:`~exporter.fake.server`: :class:`FakeRocketChat`, the aiohttp app, with the order of
  checks; the routes live in :mod:`~exporter.fake.queue`, :mod:`~exporter.fake.directory` and
  :mod:`~exporter.fake.login`, the parsing in :mod:`~exporter.fake.query`,
  :mod:`~exporter.fake.sorting` and :mod:`~exporter.fake.ratelimit`;
- :mod:`~exporter.fake.simulation`: :func:`build_demo_world`, :class:`Simulation` and
  :func:`start_demo_server` for the exporter's demo mode.

docs/fake.md describes the settings and the sources they follow.
"""

from exporter.fake.routes import Call, Route
from exporter.fake.server import FakeRocketChat, default_routes
from exporter.fake.settings import FRAMEWORKS, MODEL_ERAS, Framework, ModelEra, ServerSettings
from exporter.fake.simulation import DemoServer, Simulation, build_demo_world, start_demo_server
from exporter.fake.users import ALL_PERMISSIONS, SUPERVISOR_PERMISSIONS, ApiUser
from exporter.fake.world import Agent, Department, Inquiry, Room, World, make_world

__all__ = [
    "ALL_PERMISSIONS",
    "FRAMEWORKS",
    "MODEL_ERAS",
    "SUPERVISOR_PERMISSIONS",
    "Agent",
    "ApiUser",
    "Call",
    "DemoServer",
    "Department",
    "FakeRocketChat",
    "Framework",
    "Inquiry",
    "ModelEra",
    "Room",
    "Route",
    "ServerSettings",
    "Simulation",
    "World",
    "build_demo_world",
    "default_routes",
    "make_world",
    "start_demo_server",
]
