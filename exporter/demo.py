"""`--demo`: a simulated Rocket.Chat on loopback, and a complete Config pointed at it.

The configuration code never hears of the demo: this module rewrites the file's `rocketchat`
credentials to the simulated server's before the ordinary strict parse, so every other key is
read and checked as usual. Without a config file, the demo turns every collector on and polls
at the simulated server's pace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.config import Config, config_path, config_source, parse_config, read_config_file
from exporter.fake import DemoServer, start_demo_server

# The simulated server limits 10 calls a minute per endpoint, like a real one.
DEMO_INTERVAL = "10s"
_CREDENTIAL_KEYS = ("url", "user_id", "auth_token", "auth_token_file", "username", "password_file")


@dataclass(frozen=True)
class DemoTarget:
    """Where the demo's Rocket.Chat listens and whom it accepts."""

    url: str
    user_id: str
    token: str


# Stands in for the server when only the configuration is checked (--check-config --demo).
CHECK_ONLY = DemoTarget("http://127.0.0.1:1", "demo", "demo-token")


def demo_config(path: str | None, env: Mapping[str, str], target: DemoTarget) -> Config:
    """The config file at `path` (or none), pointed at `target`; ConfigError as load_config."""
    raw = read_config_file(path, env)
    has_file = config_path(path, env) is not None
    raw = {} if raw is None else raw
    if isinstance(raw, dict):  # anything else: the parse reports it
        raw = _pointed_at(raw, target, has_file)
    source = config_source(path, env) if has_file else "(demo)"
    return parse_config(raw, env, source)


def _pointed_at(
    raw: dict[object, object], target: DemoTarget, has_file: bool
) -> dict[object, object]:
    section = raw.get("rocketchat")
    kept = (
        {k: v for k, v in section.items() if k not in _CREDENTIAL_KEYS}
        if isinstance(section, dict)
        else {}
    )
    raw = {
        **raw,
        "rocketchat": {
            **kept,
            "url": target.url,
            "user_id": target.user_id,
            "auth_token": target.token,
        },
    }
    if not has_file:
        raw["poll"] = {"interval": DEMO_INTERVAL}
        collectors: dict[str, object] = {name: True for name in ("queue", "inquiries", "agents")}
        collectors["conversations"] = {"enabled": True, "interval": DEMO_INTERVAL}  # conv
        raw["collectors"] = collectors
    return raw


async def start_demo(path: str | None, env: Mapping[str, str]) -> tuple[DemoServer, Config]:
    """Starts the simulated server and returns it with the complete config; the caller stops
    the server. A bad config file stops the server again and raises ConfigError."""
    server = await start_demo_server()
    try:
        return server, demo_config(path, env, target_of(server))
    except BaseException:
        await server.stop()
        raise


def target_of(server: DemoServer) -> DemoTarget:
    return DemoTarget(server.url, server.user_id, server.token)


def browser_url(listen_host: str | None, port: int, scheme: str) -> str:
    """The address to open in a browser for a server listening on `listen_host:port`."""
    host = listen_host or "localhost"
    if host in ("0.0.0.0", "::"):
        host = "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}/"
