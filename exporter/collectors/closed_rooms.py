"""Which closed rooms a conversations poll reads, and counting each one exactly once.

Times are integer milliseconds on the server's clock, as Rocket.Chat stores `closedAt`, so a
room closed exactly on a window's edge compares exactly (docs/conversations.md, "Windows").
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from exporter.snapshot import Sample


def to_ms(iso: str) -> int:
    """An ISO 8601 date as the REST API writes it ("2026-05-04T10:05:00.012Z"), in Unix ms."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    """Unix ms as the ISO 8601 the server's `new Date(...)` reads, always in UTC."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Window:
    """closedAt from `start_ms` to `end_ms`, both inclusive (the server's $gte/$lte)."""

    start_ms: int
    end_ms: int
    skipped_ms: int = 0  # history given up because of max_catch_up

    def holds(self, closed_ms: int) -> bool:
        return self.start_ms <= closed_ms <= self.end_ms


class CloseLedger:
    """How far the counted history reaches, and the rooms seen within the lookback.

    The first window starts at the server time of the first poll: rooms closed before the
    exporter started are not counted. Each later window starts `lookback` before the end of
    the history counted so far, so a close that becomes visible late is still read; the room
    ids seen since that point stop it from being counted twice. Older ids are forgotten.
    """

    def __init__(self, lookback: float, max_catch_up: float) -> None:
        self._lookback_ms = round(lookback * 1000)
        self._catch_up_ms = round(max_catch_up * 1000)
        self.origin_ms: int | None = None
        self.covered_ms: int | None = None  # every close up to here has been read
        self._seen: dict[str, int] = {}  # room id -> closedAt

    def window(self, now_ms: int) -> Window:
        if self.origin_ms is None or self.covered_ms is None:
            self.origin_ms = self.covered_ms = now_ms
            return Window(now_ms, now_ms)
        end = max(now_ms, self.covered_ms)  # a server clock that steps back reads no less
        since, skipped = self.covered_ms, 0
        if end - since > self._catch_up_ms:
            skipped = end - self._catch_up_ms - since
            since = end - self._catch_up_ms
        return Window(max(self.origin_ms, since - self._lookback_ms), end, skipped)

    def seen_in(self, window: Window) -> int:
        """How many rooms already counted the window holds: they sort first in it."""
        return sum(1 for closed in self._seen.values() if window.holds(closed))

    def is_new(self, room_id: str) -> bool:
        return room_id not in self._seen

    def record(self, room_id: str, closed_ms: int) -> None:
        self._seen[room_id] = closed_ms

    def forget_missing(self, window: Window, present: set[str]) -> None:
        """Seen rooms that a full read of `window` no longer lists (deleted, or an e-mail room
        re-opened): their next close counts again, and they no longer skew `seen_in`."""
        for room_id in [r for r, c in self._seen.items() if window.holds(c) and r not in present]:
            del self._seen[room_id]

    def advance(self, covered_ms: int) -> None:
        """Everything up to `covered_ms` has been read; ids older than any future window go."""
        if self.covered_ms is not None and covered_ms <= self.covered_ms:
            return
        self.covered_ms = covered_ms
        # A later window never starts before covered_ms - lookback (catch-up only moves it on).
        horizon = covered_ms - self._lookback_ms
        for room_id in [r for r, c in self._seen.items() if c < horizon]:
            del self._seen[room_id]

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(slots=True)
class Histogram:
    """A cumulative histogram: count per upper bound (+Inf implied), sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)  # le is inclusive
        if index < len(self.counts):
            self.counts[index] += 1
        self.count += 1
        self.total += value

    def samples(self, labels: tuple[str, ...]) -> Iterable[Sample]:
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            yield (*labels, "_bucket", _le(bound)), float(running)
        yield (*labels, "_bucket", "+Inf"), float(self.count)
        yield (*labels, "_sum", ""), self.total
        yield (*labels, "_count", ""), float(self.count)


def _le(bound: float) -> str:
    """The `le` text prometheus-client writes for a bound (e.g. "15.0", "3600.0")."""
    return repr(float(bound))
