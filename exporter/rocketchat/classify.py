"""From an HTTP answer of Rocket.Chat to a `Result`: status and body to an `Outcome`, the
error text for the log, the X-RateLimit-* headers.

Everything in an answer is untrusted: a body nested 200,000 levels deep, one that is not UTF-8,
a header of 400 digits all come back as INVALID_RESPONSE with a one-line message, never as an
exception. An answer's message quotes the server (an error body, the start of a body that is
not JSON); a credential the server or a proxy echoes back is replaced by <redacted> before the
quote is cut, so not even a part of one gets through.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from multidict import CIMultiDictProxy

from exporter.rocketchat.outcome import Outcome, RateLimit, Result

T = TypeVar("T")

REDACTED = "<redacted>"
# How much of an answer is searched for echoed credentials before a quote of it is cut.
_QUOTED_PREFIX_BYTES = 4096
# A header number longer than this is not a count or a millisecond time: refused, unparsed.
_MAX_HEADER_DIGITS = 16
_HEADER_NUMBER_RE = re.compile(rf"[0-9]{{1,{_MAX_HEADER_DIGITS}}}")
# When a 429 carries no usable reset time: the default window is one minute.
DEFAULT_RATE_LIMIT_WAIT = 60.0
MAX_RATE_LIMIT_WAIT = 3600.0
_WAIT_SECONDS_RE = re.compile(r"wait (\d{1,6}) seconds")
# What msgspec raises for a body it cannot read at all.
_UNREADABLE = (msgspec.DecodeError, RecursionError, UnicodeDecodeError, OverflowError)


@dataclass(frozen=True, slots=True)
class HttpReply:
    """One HTTP answer as read off the wire (the body capped in size)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes | bytearray


class UnreadableHeaderError(ValueError):
    pass


def classify(reply: HttpReply, model: type[T], secrets: Sequence[str]) -> Result[T]:
    """`secrets`: what the request carried, never to be quoted from the answer."""
    status = reply.status
    try:
        limit = rate_limit_of(reply.headers)
    except UnreadableHeaderError as error:
        return Result(Outcome.INVALID_RESPONSE, None, str(error), status)
    if 200 <= status < 300:
        return _decode(reply, model, limit, secrets)
    quoted_error, error_type = error_fields(reply.body, secrets)
    outcome, message = status_outcome(status, quoted_error)
    return Result(outcome, None, message, status, limit, error_type=error_type)


def _decode(
    reply: HttpReply, model: type[T], limit: RateLimit | None, secrets: Sequence[str]
) -> Result[T]:
    def invalid(message: str) -> Result[T]:
        return Result(Outcome.INVALID_RESPONSE, None, message, reply.status, limit)

    try:
        data = msgspec.json.decode(reply.body, type=model)
    except msgspec.ValidationError as error:
        return invalid(f"unexpected answer: {_one_line(_redact(str(error), secrets))}")
    except RecursionError:
        return invalid("answer is nested too deeply to read")
    except _UNREADABLE:
        return invalid(f"answer is not JSON: {_one_line(quoted(reply.body, secrets), 80)!r}")
    if getattr(data, "success", True) is False:
        return invalid("answer says success: false")
    return Result(Outcome.SUCCESS, data, "", reply.status, limit)


def status_outcome(status: int, error: str) -> tuple[Outcome, str]:
    """The outcome of a non-2xx answer, and its log line quoting the server's `error`."""
    detail = f": {error}" if error else ""
    if status == 401:
        return Outcome.UNAUTHORIZED, f"credentials rejected (401){detail}"
    if status == 403:
        return Outcome.FORBIDDEN, f"permission missing (403){detail}"
    if status == 429:
        return Outcome.RATE_LIMITED, f"rate limited (429){detail}"
    if status == 400 and "error-not-authorized" in error:
        # The oldest servers check the permission inside the route and answer 400
        # (docs/rocketchat-api.md, "Permissions").
        return Outcome.FORBIDDEN, f"permission missing (400){detail}"
    if status == 404:
        return (
            Outcome.BAD_REQUEST,
            f"not found (404): is rocketchat.url right, and is the server 2.4 or newer?{detail}",
        )
    if 400 <= status < 500:
        return Outcome.BAD_REQUEST, f"request refused ({status}){detail}"
    if status >= 500:
        return Outcome.SERVER_ERROR, f"server error ({status}){detail}"
    return Outcome.INVALID_RESPONSE, f"unexpected HTTP status {status}"


def error_fields(body: bytes | bytearray, secrets: Sequence[str]) -> tuple[str, str | None]:
    """The `error` (or `message`) of an error body in any era's shape, cut to one line, and its
    `errorType` ("" when absent; None unless the body is a `success: false` object)
    (docs/rocketchat-api.md, "Error bodies")."""
    try:
        decoded = msgspec.json.decode(body)
    except _UNREADABLE:
        return _one_line(quoted(body, secrets), 120), None
    if not isinstance(decoded, dict):
        return "", None
    text = ""
    for key in ("error", "message"):
        if isinstance(decoded.get(key), str) and decoded[key]:
            text = _one_line(_redact(decoded[key], secrets))
            break
    error_type = decoded.get("errorType")
    if decoded.get("success") is not False:
        return text, None
    return text, error_type if isinstance(error_type, str) else ""


def quoted(body: bytes | bytearray, secrets: Sequence[str]) -> str:
    """The start of a body as text, echoed credentials redacted before it is cut: one that
    begins in the prefix is read whole, so no piece of one is left at the cut."""
    longest = max((len(secret) for secret in secrets), default=0)
    text = bytes(body[: _QUOTED_PREFIX_BYTES + longest]).decode("utf-8", "replace")
    return _redact(text, secrets)[:_QUOTED_PREFIX_BYTES]


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- X-RateLimit-* (docs/rocketchat-api.md, "Rate limits") ---------------------------------


def rate_limit_of(headers: CIMultiDictProxy[str]) -> RateLimit | None:
    """The rate-limit headers, or None when the server sends none (the user bypasses the
    limiter, or it is off). Raises UnreadableHeaderError for one that is not a bounded number."""
    limit = header_number(headers, "X-RateLimit-Limit")
    remaining = header_number(headers, "X-RateLimit-Remaining")
    reset_ms = header_number(headers, "X-RateLimit-Reset")
    if limit is None and remaining is None and reset_ms is None:
        return None
    reset_in = None
    if reset_ms is not None:
        # An absolute time in *milliseconds* on the server's clock. Measured against the
        # server's own Date header, a skewed local clock cannot shorten the wait.
        reset_in = max(0.0, reset_ms / 1000 - _server_now(headers))
    return RateLimit(limit, remaining, reset_in)


def header_number(headers: CIMultiDictProxy[str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    text = value.strip()
    if _HEADER_NUMBER_RE.fullmatch(text) is None:
        shown = text if len(text) <= 20 else f"{text[:20]}… ({len(text)} characters)"
        raise UnreadableHeaderError(f"unreadable {name} header: {shown!r}")
    return int(text)


def _server_now(headers: CIMultiDictProxy[str]) -> float:
    date = headers.get("Date")
    if date:
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, OverflowError, IndexError):
            pass
    return time.time()


def rate_limit_wait(result: Result[Any]) -> float | None:
    """How long the server asks to be left alone after `result`, or None: after a 429, or an
    answer saying no calls remain (the next one would be refused)."""
    limit = result.rate_limit
    if result.outcome is Outcome.RATE_LIMITED:
        reset_in = limit.reset_in if limit is not None else None
        wait = reset_in if reset_in is not None else _wait_from_message(result.message)
    elif limit is not None and limit.remaining == 0 and limit.reset_in is not None:
        wait = limit.reset_in
    else:
        return None
    return min(wait, MAX_RATE_LIMIT_WAIT)


def _wait_from_message(message: str) -> float:
    """A 429 without a usable reset header: the body says 'You must wait N seconds'."""
    match = _WAIT_SECONDS_RE.search(message)
    return float(match.group(1)) if match else DEFAULT_RATE_LIMIT_WAIT
