"""Collectors: one per Rocket.Chat endpoint. Each turns one poll into the families it exports.

A collector does its HTTP through the injected `RocketChatClient` and returns a `Result`:
the outcome of the whole poll and, on success, the complete set of its families. It keeps no
series of its own between polls; the snapshot does.
"""

from __future__ import annotations

from typing import Any, Protocol

from exporter.rocketchat.outcome import Outcome, Result
from exporter.snapshot import Families


class Collector(Protocol):
    name: str  # the `collector` label value: queue, inquiries, agents
    endpoint: str  # the main endpoint, whose rate-limit window paces the polls

    async def poll(self) -> Result[Families]: ...


def poll_failed(result: Result[Any], permission: str) -> Result[Families]:
    """A failed read as the poll's result; a 403 of the endpoint (not of the login) names the
    permission the user lacks."""
    failed: Result[Families] = result.failed(result.outcome, result.message)
    if result.outcome is Outcome.FORBIDDEN and not result.at_login:
        failed = failed.with_hint(f"the exporter's user needs {permission}")
    return failed
