"""Credentials for Rocket.Chat's REST API (docs/rocketchat-api.md, "Login and tokens").

Two ways in:
- `TokenAuth`: a Personal Access Token (recommended: it never expires and needs no 2FA),
  inline, from the environment, or from a file such as a mounted Kubernetes Secret. The file is
  re-read when it changes, so a rotated Secret is picked up without a restart.
- `PasswordAuth`: POST /api/v1/login with a username and password. After a 401 on a data
  request it logs in again once and retries. One login serves every collector, and a failed
  one is not repeated by each of them: a refused password (401) waits 15 minutes, because
  Rocket.Chat can block an IP after repeated failed logins; any other failure (429, 5xx, 403,
  an unreadable answer) waits for the server's X-RateLimit-Reset and a backoff that doubles
  up to 5 minutes. Nor is a login repeated whose token is refused before it served one answer
  (e.g. a proxy drops the auth headers): every REST login adds a token to the user's
  document, so that would pile them up at every poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from exporter.rocketchat.classify import rate_limit_wait
from exporter.rocketchat.outcome import Outcome, Result

log = logging.getLogger(__name__)

# After a refused login, wait this long before logging in again (unless the password changes).
LOGIN_RETRY_AFTER = 900.0
# After a login that failed otherwise (429, 5xx, 403, garbage): the first wait, doubled after
# each further failure up to the last; never shorter than the server's rate-limit reset.
LOGIN_BACKOFF_FIRST = 5.0
LOGIN_BACKOFF_MAX = 300.0
# What an HTTP header value must not hold (RFC 9110, section 5.5; aiohttp raises on them).
_NOT_IN_A_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def fits_in_a_header(text: str) -> bool:
    """False for a line break or another control character inside, e.g. a token file of two
    lines: such a value cannot be sent as X-Auth-Token or X-User-Id."""
    return _NOT_IN_A_HEADER.search(text) is None


@dataclass(frozen=True, slots=True)
class Credentials:
    user_id: str
    token: str

    def headers(self) -> dict[str, str]:
        return {"X-User-Id": self.user_id, "X-Auth-Token": self.token}

    def __repr__(self) -> str:
        return f"Credentials(user_id={self.user_id!r}, token='<redacted>')"


# Posts the login; the client supplies it so that auth does no HTTP of its own.
Login = Callable[[str, str], Awaitable["Credentials | Result[None]"]]
# Registers a credential with the log redactor.
SecretSink = Callable[[str], None]


class Authenticator(Protocol):
    async def credentials(self, login: Login) -> Credentials | Result[None]:
        """Credentials for the next request, or the failure that prevents one."""
        ...

    def rejected(self, credentials: Credentials) -> bool:
        """Told of a 401 with `credentials`; True if fresh ones are worth one retry."""
        ...

    def accepted(self, credentials: Credentials) -> None:
        """Told of a successful (2xx) answer to a request sent with `credentials`."""
        ...


class _WatchedFile:
    """A small secret file, re-read only when its stat changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self.text = ""

    def refresh(self) -> bool:
        """Re-reads the file if it changed; False if it cannot be read (the old text stays)."""
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
            if stamp != self._stamp:
                with open(self.path, encoding="utf-8") as handle:
                    self.text = handle.read().strip()
                self._stamp = stamp
        except OSError as error:
            log.warning(
                "cannot read credential file",
                extra={"kv": {"file": self.path, "error": error.strerror}},
            )
            return False
        return True


class TokenAuth:
    def __init__(
        self,
        user_id: str,
        token: str = "",
        token_file: str = "",
        on_secret: SecretSink = lambda _: None,
    ) -> None:
        self.user_id = user_id
        self._token = token
        self._file = _WatchedFile(token_file) if token_file else None
        self._on_secret = on_secret

    def _current_token(self) -> str:
        if self._file is not None:
            self._file.refresh()
            if self._file.text:
                self._on_secret(self._file.text)
            return self._file.text
        return self._token

    async def credentials(self, login: Login) -> Credentials | Result[None]:
        token = self._current_token()
        where = f"the file {self._file.path}" if self._file else "the configuration"
        if not token:
            return Result(Outcome.UNAUTHORIZED, None, f"no auth token in {where}")
        if not fits_in_a_header(token):
            message = f"the auth token in {where} has a line break or control character inside"
            return Result(Outcome.UNAUTHORIZED, None, message)
        if not fits_in_a_header(self.user_id):
            message = "the user id has a line break or control character inside"
            return Result(Outcome.UNAUTHORIZED, None, message)
        return Credentials(self.user_id, token)

    def rejected(self, credentials: Credentials) -> bool:
        # A rotated Secret may already hold the new token: worth one retry if it changed.
        return self._file is not None and self._current_token() not in ("", credentials.token)

    def accepted(self, credentials: Credentials) -> None:
        pass


class PasswordAuth:
    def __init__(
        self,
        username: str,
        password: str = "",
        password_file: str = "",
        on_secret: SecretSink = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.username = username
        self._password = password
        self._file = _WatchedFile(password_file) if password_file else None
        self._on_secret = on_secret
        self._clock = clock
        self._current: Credentials | None = None
        self._password_used = ""  # for the current credentials
        self._proven = False  # the current credentials have had a successful answer
        self._refused: tuple[float, str, Result[None]] | None = None  # until, password, result
        self._backoff = LOGIN_BACKOFF_FIRST
        self._lock = asyncio.Lock()  # collectors poll concurrently; one login serves them all

    def _current_password(self) -> str:
        if self._file is not None:
            self._file.refresh()
            self._on_secret(self._file.text)
            return self._file.text
        return self._password

    async def credentials(self, login: Login) -> Credentials | Result[None]:
        async with self._lock:
            return await self._credentials(login)

    async def _credentials(self, login: Login) -> Credentials | Result[None]:
        if self._current is not None:
            return self._current
        password = self._current_password()
        if not password:
            return Result(Outcome.UNAUTHORIZED, None, "no password to log in with")
        if self._refused is not None:
            until, refused_password, refusal = self._refused
            if self._clock() < until and password == refused_password:
                return refusal  # shared by every collector, without a request
        result = await login(self.username, password)
        if isinstance(result, Credentials):
            self._current, self._refused = result, None
            self._password_used, self._proven = password, False
            self._backoff = LOGIN_BACKOFF_FIRST
            self._on_secret(result.token)
        elif result.outcome is Outcome.UNAUTHORIZED:
            self._refuse(password, result)
        else:
            self._back_off(password, result)
        return result

    def _refuse(
        self, password: str, refusal: Result[None], wait: float = LOGIN_RETRY_AFTER
    ) -> None:
        self._refused = (self._clock() + wait, password, refusal)

    def _back_off(self, password: str, result: Result[None]) -> None:
        wait = max(self._backoff, rate_limit_wait(result) or 0.0)
        self._backoff = min(self._backoff * 2, LOGIN_BACKOFF_MAX)
        self._refuse(password, result, wait)

    def rejected(self, credentials: Credentials) -> bool:
        if self._current != credentials:
            # Another collector's request renewed the session meanwhile (or is renewing it,
            # under the lock): one retry with that session, no login of this request's own.
            return True
        self._current = None
        if self._proven:
            return True  # the session expired or was revoked: log in again, once per request
        # Refused before it served one answer: another login would get just such a token.
        minutes = round(LOGIN_RETRY_AFTER / 60)
        self._refuse(
            self._password_used,
            Result(
                Outcome.UNAUTHORIZED,
                None,
                at_login=True,
                message="the session token from the login is refused (401): not logging in again "
                f"for {minutes} minutes; does a proxy drop the X-User-Id or X-Auth-Token "
                "header?",
            ),
        )
        return False

    def accepted(self, credentials: Credentials) -> None:
        if self._current == credentials:
            self._proven = True
