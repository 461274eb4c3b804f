"""Meteor's ``rate-limit`` as the REST API uses it (docs/rocketchat-api.md, "Rate limits")."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from exporter.fake.settings import ServerSettings


@dataclass(frozen=True)
class RateVerdict:
    allowed: bool
    limit: int
    remaining: int
    reset_ms: int  # absolute Unix time in MILLISECONDS
    wait_seconds: int

    @property
    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_ms),
        }


@dataclass
class _RateRule:
    last_reset_ms: int
    counters: dict[str, int] = field(default_factory=dict)


class RateLimiter:
    """Meteor's ``rate-limit`` as the REST API uses it.

    One fixed window per endpoint+method rule, shared by all clients and started when the
    rule is created; per-IP counters inside it. The window resets lazily: on the first request
    more than ``window`` after the last reset, which starts the new window. Changing the
    settings re-registers every rule (``settings.watch``), which resets the counters.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rules: dict[str, _RateRule] = {}
        self._config: tuple[int, int] | None = None

    def reset(self) -> None:
        self._rules.clear()
        self._config = None

    def hit(self, rule: str, client_ip: str, settings: ServerSettings) -> RateVerdict | None:
        """Count one call; None when the limiter is off."""
        limit, window = settings.rate_limit_calls, settings.rate_limit_window_ms
        if limit <= 0:
            return None
        now = int(self._clock() * 1000)  # Date.getTime()
        if self._config != (limit, window):
            self._rules.clear()
            self._config = (limit, window)
        state = self._rules.setdefault(rule, _RateRule(last_reset_ms=now))
        if now - state.last_reset_ms > window:
            state.counters.clear()
            state.last_reset_ms = now
        calls = state.counters[client_ip] = state.counters.get(client_ip, 0) + 1
        time_to_reset = window - (now - state.last_reset_ms)
        allowed = calls <= limit  # increment first, then check
        return RateVerdict(
            allowed=allowed,
            limit=limit,
            remaining=limit - calls if allowed else 0,
            reset_ms=now + time_to_reset,
            wait_seconds=math.ceil(time_to_reset / 1000),
        )

    def register(self, rules: Iterable[str], settings: ServerSettings) -> None:
        """Create every rule now: the windows start at server start."""
        now = int(self._clock() * 1000)
        self._config = (settings.rate_limit_calls, settings.rate_limit_window_ms)
        self._rules = {rule: _RateRule(last_reset_ms=now) for rule in rules}
