"""What a poll or a request to Rocket.Chat came to: an `Outcome` and the data, as a `Result`.

The client never raises for anything the server or the network does; collectors and the poller
branch on `Result.outcome`. The outcome names are the `result` label values of
`rocketchat_livechat_exporter_polls_total`. Requests are counted elsewhere, as they are sent
(`exporter/rocketchat/tally.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


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
    """The X-RateLimit-* headers of one answer (docs/rocketchat-api.md, "Rate limits")."""

    limit: int | None
    remaining: int | None
    reset_in: float | None  # seconds from the answer to the window's reset, by the server's clock


@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    outcome: Outcome
    data: T | None = None
    message: str = ""  # one line, for the log; never holds a credential
    status: int | None = None  # HTTP status of the last request; None when nothing came back
    rate_limit: RateLimit | None = None
    # The failure came from POST /api/v1/login, not from the collector's own endpoint: a 403
    # there says nothing about the endpoint's permission.
    at_login: bool = False
    # The `errorType` of a Rocket.Chat error body: "" for a `failure()` of a plain exception
    # (e.g. MongoDB refusing the query), None when the body is no Rocket.Chat error object
    # (a proxy's page, say). docs/rocketchat-api.md, "Error bodies".
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    def failed(self, outcome: Outcome, message: str) -> Result[Any]:
        """This result re-labelled as a failure (e.g. a page that breaks paging)."""
        return Result(
            outcome, None, message, self.status, self.rate_limit, self.at_login, self.error_type
        )

    def carrying(self, data: U) -> Result[U]:
        """This result's outcome and headers, with other data (what a collector made of it)."""
        return Result(self.outcome, data, self.message, self.status, self.rate_limit, self.at_login)

    def with_hint(self, hint: str) -> Result[T]:
        return replace(self, message=f"{self.message}; {hint}")
