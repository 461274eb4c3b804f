"""Basic auth: the Authorization header, and bcrypt checks that stay bounded under attack.

bcrypt takes tens of milliseconds, so it runs off the event loop in one worker thread, one
check at a time like the toolkit's mutex. The checks wait in a bounded queue; a check whose
client has hung up is dropped before it costs a bcrypt round, so a flood of abandoned wrong
passwords cannot delay a scraper by minutes (docs/web-config.md, "Basic auth").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

import bcrypt

from exporter.webconfig.schema import bcrypt_cost

_BCRYPT_MAX_PASSWORD = 72
_DEFAULT_DUMMY_COST = 10
MAX_WAITING = 32  # bcrypt checks queued at once; beyond, the client is told to retry


class Verdict(Enum):
    ALLOWED = "allowed"
    DENIED = "denied"
    BUSY = "busy"  # too many checks queued: answer 503, the client may retry


def parse_basic_authorization(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None (Go's BasicAuth)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
        user, colon, password = raw.partition(b":")
        return (user.decode("utf-8"), password) if colon else None
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


@dataclass(eq=False)
class _Check:
    password: bytes
    hashed: str
    wanted: Callable[[], bool]  # False once the client has gone
    result: asyncio.Future[bool]


class BasicAuth:
    """Checks credentials against bcrypt hashes, caching the verified ones.

    Cache keys are HMAC-SHA256 (with a per-process random key) of user, password and stored
    hash: no password is kept, and a changed hash or a removed user never matches an old entry.
    Only successes are cached, so failures cannot evict good entries."""

    def __init__(
        self, users: Mapping[str, str], *, cache_size: int = 256, max_waiting: int = MAX_WAITING
    ) -> None:
        self._users: Mapping[str, str] = MappingProxyType({})
        self._dummy_hash = ""
        self.replace_users(users)
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_secret = secrets.token_bytes(32)
        self._max_waiting = max_waiting
        self._waiting: deque[_Check] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._bcrypt_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def replace_users(self, users: Mapping[str, str]) -> None:
        # Old cache entries stay harmless: their keys include the hash they were verified with.
        self._users = MappingProxyType(dict(users))
        self._dummy_hash = _dummy_hash(self._users.values())

    async def authorize(
        self, authorization: str | None, wanted: Callable[[], bool] = lambda: True
    ) -> Verdict:
        """The verdict on an Authorization header value; `wanted` turns False when the client
        hangs up, so that its queued check is dropped."""
        credentials = parse_basic_authorization(authorization)
        if credentials is None:
            return Verdict.DENIED
        return await self.verify(*credentials, wanted=wanted)

    async def verify(
        self, user: str, password: bytes, *, wanted: Callable[[], bool] = lambda: True
    ) -> Verdict:
        stored = self._users.get(user)
        # An unknown user pays a bcrypt round of the highest cost in use: no probing by timing.
        hashed = stored if stored is not None else self._dummy_hash
        key = self._cache_key(user, password, hashed)
        if key in self._cache:
            self._cache.move_to_end(key)
            return Verdict.ALLOWED if stored is not None else Verdict.DENIED
        matches = await self._check(password, hashed, wanted)
        if matches is None:
            return Verdict.BUSY
        if not (matches and stored is not None):
            return Verdict.DENIED
        self._cache[key] = None
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return Verdict.ALLOWED

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._bcrypt_thread.shutdown(wait=False, cancel_futures=True)

    async def _check(self, password: bytes, hashed: str, wanted: Callable[[], bool]) -> bool | None:
        """Whether `password` matches, after the checks queued before it; None when the
        queue is full even without the checks of clients that left."""
        if len(self._waiting) >= self._max_waiting:
            self._shed_abandoned()
        if len(self._waiting) >= self._max_waiting:
            return None
        check = _Check(password, hashed, wanted, asyncio.get_running_loop().create_future())
        self._waiting.append(check)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="bcrypt-queue")
        return await check.result

    def _shed_abandoned(self) -> None:
        kept: deque[_Check] = deque()
        for check in self._waiting:
            if check.result.done():
                continue
            if check.wanted():
                kept.append(check)
            else:
                check.result.set_result(False)
        self._waiting = kept

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            check = self._waiting.popleft()
            if check.result.done():
                continue  # the request was cancelled
            if not check.wanted():
                check.result.set_result(False)  # nobody is waiting for the answer
                continue
            matches = await loop.run_in_executor(
                self._bcrypt_thread, _bcrypt_matches, check.password, check.hashed
            )
            if not check.result.done():
                check.result.set_result(matches)

    def _cache_key(self, user: str, password: bytes, hashed: str) -> bytes:
        mac = hmac.new(self._cache_secret, digestmod=hashlib.sha256)
        for part in (user.encode(), password, hashed.encode()):
            mac.update(len(part).to_bytes(4, "big"))  # length-prefixed: no ambiguous joins
            mac.update(part)
        return mac.digest()


def _bcrypt_matches(password: bytes, hashed: str) -> bool:
    # bcrypt reads 72 bytes at most; Go and htpasswd silently truncate, bcrypt>=5 raises, so we
    # truncate to accept the same passwords. checkpw compares in constant time.
    return bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed.encode("ascii"))


def _dummy_hash(hashes: Iterable[str]) -> str:
    """A well-formed hash no password matches, at the highest configured cost, so a wrong user
    is never cheaper to test than a wrong password."""
    cost = max((bcrypt_cost(h) for h in hashes), default=_DEFAULT_DUMMY_COST)
    return f"$2b${cost:02d}${'.' * 53}"
