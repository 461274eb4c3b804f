"""The Rocket.Chat REST client: one aiohttp session, every answer mapped to an `Outcome`.

It also keeps the server's rate limit (docs/rocketchat-api.md, "Rate limits"): after a 429, or
an answer saying no calls remain, nothing is sent to that endpoint before the window resets.

An answer's message quotes the server (an error body, the start of a body that is not JSON),
for the log and the landing page; a credential the server or a proxy echoes back is replaced
by <redacted> before the quote is cut, so not even a part of one gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec
from multidict import CIMultiDictProxy

from exporter import __version__
from exporter.rocketchat.answers import Answer, Outcome, RateLimit, Request
from exporter.rocketchat.auth import Authenticator, Credentials, Login, fits_in_a_header
from exporter.rocketchat.models import LoginAnswer

log = logging.getLogger(__name__)

T = TypeVar("T")

USER_AGENT = f"rocketchat-livechat-exporter/{__version__}"
# The largest answer read: ~15x a 50,000-row queue. A larger one is refused, not buffered.
MAX_BODY_BYTES = 128 * 1024 * 1024
# Decoding holds the GIL, ~2 ms a MB: a larger answer is decoded in a worker thread, so that
# the event loop serves the scrapes waiting right before and right after it.
DECODE_IN_THREAD_ABOVE = 1024 * 1024
# Error answers are only read for their message.
MAX_ERROR_BODY_BYTES = 64 * 1024
# Sent after the reset instant, never at it: the server resets its window lazily, on the first
# request that comes *more* than a window after the last reset (docs/rocketchat-api.md,
# "Rate limits").
RESET_MARGIN = 0.25
# When a 429 carries no usable reset time: the default window is one minute ("Rate limits").
DEFAULT_RATE_LIMIT_WAIT = 60.0
MAX_RATE_LIMIT_WAIT = 3600.0
_WAIT_SECONDS_RE = re.compile(r"wait (\d+) seconds")
REDACTED = "<redacted>"
# How much of an answer is searched for echoed credentials before a quote of it is cut.
_QUOTED_PREFIX_BYTES = 4096


def tls_context(ca_file: str = "", insecure_skip_verify: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes | bytearray


class _BodyTooLargeError(Exception):
    pass


class RocketChatClient:
    def __init__(
        self,
        base_url: str,
        auth: Authenticator,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._tls = tls
        self._max_body = max_body_bytes
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._gates: dict[str, float] = {}  # endpoint -> clock() before which nothing is sent
        # Server Date minus local time.time(), from the latest answer: windows on the server's
        # clock (the conversations collector). None until an answer with a Date came.
        self.server_clock_offset: float | None = None

    async def __aenter__(self) -> RocketChatClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._tls if self._tls is not None else True),
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def ready_at(self, endpoint: str) -> float:
        """The `clock()` time from which `endpoint` may be called again (rate limit)."""
        return self._gates.get(endpoint, 0.0)

    async def get(
        self, endpoint: str, params: Mapping[str, str], model: type[T], *, max_wait: float = 0.0
    ) -> Answer[T]:
        """GET /api/v1/<endpoint>, decoded as `model`. Waits up to `max_wait` seconds for the
        endpoint's rate-limit window; a longer wait is an immediate RATE_LIMITED answer."""
        wait = self.ready_at(endpoint) - self._clock()
        if wait > max_wait:
            return Answer(Outcome.RATE_LIMITED, None, f"rate limited for {wait:.0f}s more")
        if wait > 0:
            await asyncio.sleep(wait)
        requests: list[Request] = []
        tokens: list[str] = []  # sent with this request: never quoted back
        reply = await self._authenticated_get(endpoint, params, requests, tokens)
        if isinstance(reply, Answer):
            return Answer(reply.outcome, None, reply.message, reply.status, None, tuple(requests))
        if len(reply.body) > DECODE_IN_THREAD_ABOVE:
            answer = await asyncio.to_thread(_classify, reply, model, tuple(requests), tokens)
        else:
            answer = _classify(reply, model, tuple(requests), tokens)
        self._update_gate(endpoint, answer)
        return answer

    async def _authenticated_get(
        self, endpoint: str, params: Mapping[str, str], requests: list[Request], tokens: list[str]
    ) -> _Reply | Answer[None]:
        url = f"{self.base_url}/api/v1/{endpoint}"
        credentials: Credentials | Answer[None] = await self._auth.credentials(
            self._login(requests)
        )
        for attempt in (1, 2):
            if isinstance(credentials, Answer):
                return credentials
            tokens.append(credentials.token)
            reply = await self._exchange(
                "GET", url, (endpoint, requests), credentials.headers(), params=params
            )
            if isinstance(reply, Answer):
                return reply
            if reply.status != 401:
                if 200 <= reply.status < 300:
                    self._auth.accepted(credentials)
                return reply
            # Told even on the retry: a fresh session refused at once must not be renewed
            # at every poll.
            if not self._auth.rejected(credentials) or attempt == 2:
                return reply
            credentials = await self._auth.credentials(self._login(requests))
        raise AssertionError("unreachable")

    def _login(self, requests: list[Request]) -> Login:
        async def login(username: str, password: str) -> Credentials | Answer[None]:
            url = f"{self.base_url}/api/v1/login"
            body = {"user": username, "password": password}
            reply = await self._exchange("POST", url, ("login", requests), {}, json_body=body)
            if isinstance(reply, Answer):
                return reply
            if reply.status == 401 and b"totp-required" in reply.body:
                return Answer(
                    Outcome.UNAUTHORIZED,
                    None,
                    "login needs a two-factor code: use a "
                    "Personal Access Token (rocketchat.auth_token) instead",
                    401,
                )
            answer = _classify(reply, LoginAnswer, (), [password])
            if answer.data is None:
                return Answer(answer.outcome, None, f"login failed: {answer.message}", reply.status)
            session = Credentials(answer.data.data.user_id, answer.data.data.auth_token)
            if not (fits_in_a_header(session.user_id) and fits_in_a_header(session.token)):
                message = "login answer holds a user id or token that cannot be sent in a header"
                return Answer(Outcome.INVALID_RESPONSE, None, message, reply.status)
            return session

        return login

    async def _exchange(
        self,
        method: str,
        url: str,
        log: tuple[str, list[Request]],
        headers: Mapping[str, str],
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
    ) -> _Reply | Answer[None]:
        """One HTTP request, noted in `log` (endpoint, list); transport failures come back as
        an Answer."""
        if self._session is None:
            raise RuntimeError("RocketChatClient used outside `async with`")
        endpoint, requests = log
        sent = len(requests)
        try:
            async with self._session.request(
                method, url, params=params, headers=headers, json=json_body, allow_redirects=False
            ) as response:
                requests.append((endpoint, str(response.status)))
                self._note_server_date(response.headers)
                limit = self._max_body if response.status < 300 else MAX_ERROR_BODY_BYTES
                body = await _read_body(response, limit, strict=response.status < 300)
                return _Reply(response.status, response.headers, body)
        except _BodyTooLargeError:
            return Answer(
                Outcome.INVALID_RESPONSE,
                None,
                f"answer larger than {self._max_body // 2**20} MiB; refused",
            )
        except TimeoutError:
            _note_no_answer(endpoint, requests, sent)
            return Answer(Outcome.TIMEOUT, None, f"no answer within {self._timeout.total:g}s")
        except aiohttp.ClientResponseError as error:
            _note_no_answer(endpoint, requests, sent)
            return Answer(Outcome.INVALID_RESPONSE, None, f"malformed HTTP answer: {error.message}")
        except aiohttp.ClientPayloadError:
            _note_no_answer(endpoint, requests, sent)
            return Answer(Outcome.NETWORK_ERROR, None, "connection broken while reading the answer")
        except aiohttp.ClientConnectorError as error:
            _note_no_answer(endpoint, requests, sent)
            return Answer(Outcome.NETWORK_ERROR, None, f"cannot connect: {_reason(error)}")
        except (aiohttp.ClientError, OSError) as error:
            _note_no_answer(endpoint, requests, sent)
            return Answer(Outcome.NETWORK_ERROR, None, _reason(error))

    def server_time(self) -> float | None:
        """Now on the server's clock, from its last Date header (1 s resolution, so this lags
        by up to a second); None before any answer carried one."""
        if self.server_clock_offset is None:
            return None
        return time.time() + self.server_clock_offset

    def _note_server_date(self, headers: CIMultiDictProxy[str]) -> None:
        date = headers.get("Date")
        if not date:
            return
        with contextlib.suppress(TypeError, ValueError):  # a broken Date keeps the last offset
            self.server_clock_offset = (
                email.utils.parsedate_to_datetime(date).timestamp() - time.time()
            )

    def _update_gate(self, endpoint: str, answer: Answer[Any]) -> None:
        limit = answer.rate_limit
        if answer.outcome is Outcome.RATE_LIMITED:
            reset_in = limit.reset_in if limit and limit.reset_in is not None else None
            wait = reset_in if reset_in is not None else _wait_from_message(answer.message)
        elif limit is not None and limit.remaining == 0 and limit.reset_in is not None:
            wait = limit.reset_in  # the next call would be refused: don't make it
        else:
            return
        self._gates[endpoint] = self._clock() + min(wait, MAX_RATE_LIMIT_WAIT) + RESET_MARGIN


def _note_no_answer(endpoint: str, requests: list[Request], sent: int) -> None:
    """A request that got no HTTP status counts as code "none"; one that got a status and broke
    while its body was read was counted already."""
    if len(requests) == sent:
        requests.append((endpoint, "none"))


async def _read_body(
    response: aiohttp.ClientResponse, limit: int, strict: bool
) -> bytes | bytearray:
    """Reads at most `limit` bytes (after decompression): too large is an error when `strict`,
    else the body is cut (error answers are only read for their message). The buffer itself is
    returned, not a copy: msgspec decodes from it, and a 50,000-row answer is 7.5 MB."""
    if strict and response.content_length is not None and response.content_length > limit:
        raise _BodyTooLargeError
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            if strict:
                raise _BodyTooLargeError
            return bytes(body[:limit])
    return body


def _reason(error: BaseException) -> str:
    os_error = getattr(error, "os_error", None)
    text = (
        str(os_error.strerror if isinstance(os_error, OSError) else error) or type(error).__name__
    )
    return " ".join(text.split())


# --- mapping an HTTP answer to an Outcome --------------------------------------------------


def _classify(
    reply: _Reply, model: type[T], requests: tuple[Request, ...], secrets: Sequence[str]
) -> Answer[T]:
    """`secrets`: what the request carried, never to be quoted from the answer."""
    limit = _rate_limit(reply.headers)
    status = reply.status
    if 200 <= status < 300:
        return _decode(reply, model, limit, requests, secrets)
    error = _error_text(reply.body, secrets)
    outcome, message = _failure(status, error)
    return Answer(outcome, None, message, status, limit, requests)


def _decode(
    reply: _Reply,
    model: type[T],
    limit: RateLimit | None,
    requests: tuple[Request, ...],
    secrets: Sequence[str],
) -> Answer[T]:
    try:
        data = msgspec.json.decode(reply.body, type=model)
    except msgspec.ValidationError as error:
        return Answer(
            Outcome.INVALID_RESPONSE,
            None,
            f"unexpected answer: {_redact(str(error), secrets)}",
            reply.status,
            limit,
            requests,
        )
    except msgspec.DecodeError:
        snippet = _one_line(_quoted(reply.body, secrets), 80)
        return Answer(
            Outcome.INVALID_RESPONSE,
            None,
            f"answer is not JSON: {snippet!r}",
            reply.status,
            limit,
            requests,
        )
    if getattr(data, "success", True) is False:
        return Answer(
            Outcome.INVALID_RESPONSE,
            None,
            "answer says success: false",
            reply.status,
            limit,
            requests,
        )
    return Answer(Outcome.SUCCESS, data, "", reply.status, limit, requests)


def _failure(status: int, error: str) -> tuple[Outcome, str]:
    detail = f": {error}" if error else ""
    if status == 401:
        return Outcome.UNAUTHORIZED, f"credentials rejected (401){detail}"
    if status == 403:
        return Outcome.FORBIDDEN, f"permission missing (403){detail}"
    if status == 429:
        return Outcome.RATE_LIMITED, f"rate limited (429){detail}"
    if status == 400 and "error-not-authorized" in error:
        # Servers before 4.x check the permission inside the route and answer 400
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


def _error_text(body: bytes | bytearray, secrets: Sequence[str]) -> str:
    """The `error` or `message` of an error body in any era's shape, cut to one line
    (docs/rocketchat-api.md, "Error bodies")."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return _one_line(_quoted(body, secrets), 120)
    if isinstance(decoded, dict):
        for key in ("error", "message"):
            if isinstance(decoded.get(key), str) and decoded[key]:
                return _one_line(_redact(decoded[key], secrets))
    return ""


def _quoted(body: bytes | bytearray, secrets: Sequence[str]) -> str:
    """The start of a body as text, echoed credentials redacted before it is cut: one that
    begins in the prefix is read whole, so no piece of one is left at the cut."""
    longest = max((len(secret) for secret in secrets), default=0)
    text = body[: _QUOTED_PREFIX_BYTES + longest].decode("utf-8", "replace")
    return _redact(text, secrets)[:_QUOTED_PREFIX_BYTES]


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rate_limit(headers: CIMultiDictProxy[str]) -> RateLimit | None:
    limit = _int_header(headers, "X-RateLimit-Limit")
    remaining = _int_header(headers, "X-RateLimit-Remaining")
    reset_ms = _int_header(headers, "X-RateLimit-Reset")
    if limit is None and remaining is None and reset_ms is None:
        return None  # the user bypasses the limiter, or it is off
    reset_in = None
    if reset_ms is not None:
        # The reset is an absolute time in *milliseconds* on the server's clock ("Rate
        # limits"). Measured against the server's own Date header, a skewed local clock cannot
        # shorten the wait.
        reset_in = max(0.0, reset_ms / 1000 - _server_now(headers))
    return RateLimit(limit, remaining, reset_in)


def _server_now(headers: CIMultiDictProxy[str]) -> float:
    date = headers.get("Date")
    if date:
        try:
            return email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            pass
    return time.time()


def _int_header(headers: CIMultiDictProxy[str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _wait_from_message(message: str) -> float:
    """A 429 without a usable reset header: the body says 'You must wait N seconds'
    (docs/rocketchat-api.md, "Rate limits")."""
    match = _WAIT_SECONDS_RE.search(message)
    return float(match.group(1)) if match else DEFAULT_RATE_LIMIT_WAIT
