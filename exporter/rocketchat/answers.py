"""What a request to Rocket.Chat came to: an `Outcome` class and the decoded data, as a value.

The client never raises for anything the server or the network does; collectors and the poller
branch on `Answer.outcome`. The outcome names are the `result` label values of
`rocketchat_livechat_exporter_polls_total` (contract.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")
# One HTTP request an answer took: (endpoint, status code), "none" when no answer came.
Request = tuple[str, str]


class Outcome(StrEnum):
    SUCCESS = "success"
    UNAUTHORIZED = "unauthorized"  # 401: the token or password was rejected
    FORBIDDEN = "forbidden"  # 403, or 400 error-not-authorized on the oldest servers
    RATE_LIMITED = "rate_limited"  # 429
    BAD_REQUEST = "bad_request"  # any other 4xx; Rocket.Chat answers 400 for its own errors too
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"  # refused, reset, TLS, DNS, broken body
    INVALID_RESPONSE = (
        "invalid_response"  # not JSON, wrong shape, too large, paging that never ends
    )


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The X-RateLimit-* headers of one answer (rocketchat-api.md §3)."""

    limit: int | None
    remaining: int | None
    reset_in: float | None  # seconds from the answer to the window's reset, by the server's clock


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    outcome: Outcome
    data: T | None = None
    message: str = ""  # one line, for the log; never holds a credential
    status: int | None = None  # HTTP status of the last request; None when nothing came back
    rate_limit: RateLimit | None = None
    # Every HTTP request this answer took (pages, a login, a retry, a lookup): the
    # requests_total counter, and the rate-limit arithmetic per endpoint.
    requests: tuple[Request, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    def failed(self, outcome: Outcome, message: str) -> Answer[Any]:
        """This answer's requests, re-labelled as a failure (e.g. a page that breaks paging)."""
        return Answer(outcome, None, message, self.status, self.rate_limit, self.requests)

    def carrying(self, data: U) -> Answer[U]:
        """This answer's outcome and requests, with other data (what a collector made of it)."""
        return Answer(self.outcome, data, self.message, self.status, self.rate_limit, self.requests)

    def with_requests(self, earlier: tuple[Request, ...]) -> Answer[T]:
        """This answer, counting also requests made before it (another page, a lookup)."""
        return replace(self, requests=earlier + self.requests)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code for _, code in self.requests)

    def requests_to(self, endpoint: str) -> int:
        return sum(1 for target, _ in self.requests if target == endpoint)

    def with_hint(self, hint: str) -> Answer[T]:
        return replace(self, message=f"{self.message}; {hint}")
