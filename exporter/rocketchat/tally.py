"""Counting the HTTP requests sent to Rocket.Chat, in one place.

The poller opens a `RequestTally` for each poll and binds it to the poll's task through a
`ContextVar`; the client notes every request it sends in that task (pages, a login, a
department lookup) as it ends, with its status code ("none" when no answer came). Nothing is
threaded through the client, paging or collectors. (The client's `_exchange` is the single
place that sends, so it notes there rather than through an aiohttp TraceConfig: the unit tests
mock aiohttp below the trace hooks.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar

NO_ANSWER = "none"

# Called with (endpoint, code) for each request, e.g. SelfMetrics' requests_total counter.
RequestSink = Callable[[str, str], None]


def _ignore(_endpoint: str, _code: str) -> None:
    pass


class RequestTally:
    """The requests of one poll, by endpoint; each is also passed on to `sink` at once."""

    def __init__(self, sink: RequestSink = _ignore) -> None:
        self._sink = sink
        self.by_endpoint: Counter[str] = Counter()
        self.codes: list[str] = []  # in the order sent

    def note(self, endpoint: str, code: str) -> None:
        self.by_endpoint[endpoint] += 1
        self.codes.append(code)
        self._sink(endpoint, code)

    def requests_to(self, endpoint: str) -> int:
        return self.by_endpoint[endpoint]


_current: ContextVar[RequestTally | None] = ContextVar("rocketchat_request_tally", default=None)


def count_requests_in(tally: RequestTally) -> None:
    """Requests made from now on in the calling task (and tasks it starts) go to `tally`."""
    _current.set(tally)


def note_request(endpoint: str, code: str) -> None:
    tally = _current.get()
    if tally is not None:
        tally.note(endpoint, code)
