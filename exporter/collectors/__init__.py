"""Collectors: one per Rocket.Chat endpoint. Each turns one poll into the families it exports.

A collector does its HTTP through the injected `RocketChatClient` and returns an `Answer`:
the outcome of the whole poll and, on success, the complete set of its families. It keeps no
series of its own between polls; the snapshot does.
"""

from __future__ import annotations

from typing import Any, Protocol

from exporter.rocketchat.answers import Answer, Outcome
from exporter.snapshot import Families


class Collector(Protocol):
    name: str  # the `collector` label value: queue, inquiries, agents
    endpoint: str  # the main endpoint, whose rate-limit window paces the polls

    async def poll(self) -> Answer[Families]: ...


def poll_failed(answer: Answer[Any], permission: str) -> Answer[Families]:
    """A failed read as the poll's answer; a 403 names the permission the user lacks."""
    failed: Answer[Families] = answer.failed(answer.outcome, answer.message)
    if answer.outcome is Outcome.FORBIDDEN:
        failed = failed.with_hint(f"the exporter's user needs {permission}")
    return failed
