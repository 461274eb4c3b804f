"""The Rocket.Chat REST client: one aiohttp session, GET with credentials, the login POST.

It also keeps the server's rate limit (docs/rocketchat-api.md, "Rate limits"): after a 429, or
an answer saying no calls remain, nothing is sent to that endpoint before the window resets.
What an answer means is decided in `classify.py`; `_exchange`, the one place that sends,
counts each request (`tally.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDictProxy

from exporter import __version__
from exporter.rocketchat.auth import Authenticator, Credentials, fits_in_a_header
from exporter.rocketchat.classify import HttpReply, classify, rate_limit_wait
from exporter.rocketchat.models import LoginSuccess
from exporter.rocketchat.outcome import Outcome, Result
from exporter.rocketchat.tally import NO_ANSWER, note_request

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
# request that comes *more* than a window after the last reset.
RESET_MARGIN = 0.25


def tls_context(ca_file: str = "", insecure_skip_verify: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file or None)
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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
        # Endpoints that answered count=0 with a 400 (docs/rocketchat-api.md, "Paging"): the
        # paging reads them page by page for the rest of the process.
        self.unlimited_count_refused: set[str] = set()
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
    ) -> Result[T]:
        """GET /api/v1/<endpoint>, decoded as `model`. Waits up to `max_wait` seconds for the
        endpoint's rate-limit window; a longer wait is an immediate RATE_LIMITED result."""
        wait = self.ready_at(endpoint) - self._clock()
        if wait > max_wait:
            return Result(Outcome.RATE_LIMITED, None, f"rate limited for {wait:.0f}s more")
        if wait > 0:
            await asyncio.sleep(wait)
        tokens: list[str] = []  # sent with this request: never quoted back
        reply = await self._authenticated_get(endpoint, params, tokens)
        if isinstance(reply, Result):
            return reply
        if len(reply.body) > DECODE_IN_THREAD_ABOVE:
            result = await asyncio.to_thread(classify, reply, model, tokens)
        else:
            result = classify(reply, model, tokens)
        self._update_gate(endpoint, result)
        return result

    async def _authenticated_get(
        self, endpoint: str, params: Mapping[str, str], tokens: list[str]
    ) -> HttpReply | Result[Any]:
        url = f"{self.base_url}/api/v1/{endpoint}"
        credentials: Credentials | Result[None] = await self._auth.credentials(self._login)
        for attempt in (1, 2):
            if isinstance(credentials, Result):
                return credentials
            tokens.append(credentials.token)
            reply = await self._exchange("GET", url, endpoint, credentials.headers(), params=params)
            if isinstance(reply, Result):
                return reply
            if reply.status != 401:
                if 200 <= reply.status < 300:
                    self._auth.accepted(credentials)
                return reply
            # Told even on the retry: a fresh session refused at once must not be renewed
            # at every poll.
            if not self._auth.rejected(credentials) or attempt == 2:
                return reply
            credentials = await self._auth.credentials(self._login)
        raise AssertionError("unreachable")

    async def _login(self, username: str, password: str) -> Credentials | Result[None]:
        """POST /api/v1/login (docs/rocketchat-api.md, "Login and tokens")."""
        url = f"{self.base_url}/api/v1/login"
        body = {"user": username, "password": password}
        reply = await self._exchange("POST", url, "login", {}, json_body=body)
        if isinstance(reply, Result):
            return Result(reply.outcome, None, f"login failed: {reply.message}", at_login=True)
        if reply.status == 401 and b"totp-required" in reply.body:
            message = (
                "login needs a two-factor code: use a "
                "Personal Access Token (rocketchat.auth_token) instead"
            )
            return Result(Outcome.UNAUTHORIZED, None, message, 401, at_login=True)
        result = classify(reply, LoginSuccess, [password])
        if result.data is None:
            return _login_failure(result)
        session = Credentials(result.data.data.user_id, result.data.data.auth_token)
        if not (fits_in_a_header(session.user_id) and fits_in_a_header(session.token)):
            message = "login answer holds a user id or token that cannot be sent in a header"
            return Result(Outcome.INVALID_RESPONSE, None, message, reply.status, at_login=True)
        return session

    async def _exchange(
        self,
        method: str,
        url: str,
        endpoint: str,
        headers: Mapping[str, str],
        *,
        params: Mapping[str, str] | None = None,
        json_body: object = None,
    ) -> HttpReply | Result[Any]:
        """One HTTP request to `endpoint`, counted; transport failures come back as a Result."""
        if self._session is None:
            raise RuntimeError("RocketChatClient used outside `async with`")
        answered = False  # a request that broke while its body was read counts with its status
        try:
            async with self._session.request(
                method, url, params=params, headers=headers, json=json_body, allow_redirects=False
            ) as response:
                answered = True
                note_request(endpoint, str(response.status))
                self._note_server_date(response.headers)
                limit = self._max_body if response.status < 300 else MAX_ERROR_BODY_BYTES
                body = await _read_body(response, limit, strict=response.status < 300)
                return HttpReply(response.status, response.headers, body)
        except _BodyTooLargeError:
            message = f"answer larger than {self._max_body // 2**20} MiB; refused"
            return Result(Outcome.INVALID_RESPONSE, None, message)
        except TimeoutError:
            return Result(Outcome.TIMEOUT, None, f"no answer within {self._timeout.total:g}s")
        except aiohttp.ClientResponseError as error:
            return Result(Outcome.INVALID_RESPONSE, None, f"malformed HTTP answer: {error.message}")
        except aiohttp.ClientPayloadError:
            message = "connection broken while reading the answer"
            return Result(Outcome.NETWORK_ERROR, None, message)
        except aiohttp.ClientConnectorError as error:
            return Result(Outcome.NETWORK_ERROR, None, f"cannot connect: {_reason(error)}")
        except (aiohttp.ClientError, OSError, ValueError) as error:
            # ValueError: e.g. a header value aiohttp refuses to send or to parse.
            return Result(Outcome.NETWORK_ERROR, None, _reason(error))
        finally:
            if not answered:
                note_request(endpoint, NO_ANSWER)

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

    def _update_gate(self, endpoint: str, result: Result[Any]) -> None:
        wait = rate_limit_wait(result)
        if wait is not None:
            self._gates[endpoint] = self._clock() + wait + RESET_MARGIN


def _login_failure(result: Result[Any]) -> Result[None]:
    message = result.message
    if result.status == 403:
        # Not a missing permission of the collector's endpoint: a proxy or the server's
        # login policy refused the login itself.
        message = message.replace("permission missing (403)", "login refused (403)", 1)
    return Result(
        result.outcome, None, f"login failed: {message}", result.status, result.rate_limit, True
    )


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
