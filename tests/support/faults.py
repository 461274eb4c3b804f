"""Fault injection and the request log for tests: an aiohttp middleware around the fake.

The shipped fake (exporter/fake) answers like a healthy server; tests that need a broken one,
or want to see what the exporter sent, use :class:`InstrumentedFake`, a
:class:`~exporter.fake.FakeRocketChat` with a :class:`FaultInjector` installed, or install a
:class:`FaultInjector` on any aiohttp app themselves.

A fault applies before the fake sees the request (before authentication and the rate
limiter); faults are consumed in the order injected. The log never holds a token or password.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiohttp import web
from aiohttp.typedefs import Handler

from exporter.fake import ApiUser, FakeRocketChat, ServerSettings, World
from exporter.fake.routes import endpoint_name
from exporter.fake.server import client_ip


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the fake received, logged once answered (or abandoned).

    Never holds a token or a password.
    """

    method: str
    path: str  # e.g. "/api/v1/livechat/queue"
    query: tuple[tuple[str, str], ...]  # (name, value) pairs, in the order sent
    status: int | None  # status sent; None: closed without an answer, or the client gave up
    user_id: str | None  # the X-User-Id header as sent
    client_ip: str
    monotonic: float  # time.monotonic() on arrival
    wall: float  # the fake's clock (Unix seconds) on arrival
    fault: str | None = None  # the injected fault that answered, if any

    @property
    def endpoint(self) -> str:
        """The path below /api/v1/, e.g. "livechat/queue"."""
        return endpoint_name(self.path)

    @property
    def param_names(self) -> set[str]:
        return {name for name, _ in self.query}

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.query if key == name), None)


@dataclass(frozen=True)
class Reply:
    """Answer with exactly this status, body and headers (any body: JSON or not)."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        """A JSON body; use it for wrong field types, e.g. ``{"queue": "nope"}``."""
        return cls(status, json.dumps(value).encode(), dict(headers or {}))


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds``, then answer normally (slow server; client timeouts)."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without sending a byte.

    Note: aiohttp's client silently retries an idempotent request once when the server
    disconnects before answering; inject with ``times=2`` to make a GET really fail there.
    """


@dataclass(frozen=True)
class ResetMidBody:
    """Send the status line, headers and ``body``, then close the connection.

    ``declared_length`` is the Content-Length announced (None: chunked encoding, ended
    without its final chunk).
    """

    body: bytes = b'{"queue":[{"chats":1,"user":{"_id":"'
    status: int = 200
    declared_length: int | None = 4096


@dataclass(frozen=True)
class HugeBody:
    """A valid JSON body of exactly ``size`` bytes, streamed in chunks (never held whole).

    It is a well-formed, empty livechat/queue answer padded with a long string field, so a
    client that reads it all would parse it: only a body-size limit stops it.
    """

    size: int
    status: int = 200
    chunk_size: int = 64 * 1024
    chunked: bool = False  # True: no Content-Length, chunked transfer encoding


Fault: TypeAlias = Reply | Delay | Drop | ResetMidBody | HugeBody


@dataclass
class _PendingFault:
    fault: Fault
    remaining: int | None  # None: until clear_faults()
    endpoint: str | None  # None: any path


@dataclass
class _Seen:
    """What the middleware learnt about one answer."""

    status: int | None = None
    fault: str | None = None


class FaultInjector:
    """The middleware: answers from injected faults first, and logs every request."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.requests: list[RequestRecord] = []
        self._faults: list[_PendingFault] = []
        self._clock = clock

    def install(self, app: web.Application) -> None:
        """Add the middleware; before the app starts (aiohttp freezes the list then)."""
        app.middlewares.append(self.middleware)

    def inject(self, fault: Fault, times: int | None = 1, path: str | None = None) -> None:
        """Answer the next ``times`` matching requests with ``fault`` (None: until cleared).

        ``path`` ("livechat/queue" or "/api/v1/livechat/queue") limits it to one path.
        """
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        endpoint = endpoint_name(path) if path is not None else None
        self._faults.append(_PendingFault(fault, times, endpoint))

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return [pending.fault for pending in self._faults]

    def requests_to(self, path: str) -> list[RequestRecord]:
        """The logged requests for one path ("livechat/queue" or "/api/v1/livechat/queue")."""
        endpoint = endpoint_name(path)
        return [record for record in self.requests if record.endpoint == endpoint]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived_monotonic, arrived_wall = time.monotonic(), self._clock()
        outcome = _Seen()
        try:
            return await self._answer(request, handler, outcome)
        finally:
            self.requests.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    query=tuple(request.query.items()),
                    status=outcome.status,
                    user_id=request.headers.get("X-User-Id"),
                    client_ip=client_ip(request),
                    monotonic=arrived_monotonic,
                    wall=arrived_wall,
                    fault=outcome.fault,
                )
            )

    async def _answer(
        self, request: web.Request, handler: Handler, outcome: _Seen
    ) -> web.StreamResponse:
        fault = self._take_fault(request.path)
        if fault is not None:
            outcome.fault = type(fault).__name__
            if not isinstance(fault, Delay):
                return await _send_fault(fault, request, outcome)
            await asyncio.sleep(fault.seconds)
        response = await handler(request)
        outcome.status = response.status
        return response

    def _take_fault(self, path: str) -> Fault | None:
        endpoint = endpoint_name(path)
        for pending in self._faults:
            if pending.endpoint is None or pending.endpoint == endpoint:
                if pending.remaining is not None:
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        self._faults.remove(pending)
                return pending.fault
        return None


class InstrumentedFake(FakeRocketChat):
    """The fake with a :class:`FaultInjector` installed: ``inject``, ``requests`` and the
    rest are the injector's."""

    def __init__(
        self,
        world: World,
        settings: ServerSettings | None = None,
        users: Iterable[ApiUser] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(world, settings, users, **options)
        self.faults = FaultInjector(options.get("clock", time.time))
        self.faults.install(self.app)
        self.requests = self.faults.requests
        self.inject = self.faults.inject
        self.clear_faults = self.faults.clear_faults
        self.requests_to = self.faults.requests_to

    @property
    def pending_faults(self) -> list[Fault]:
        return self.faults.pending_faults


async def _send_fault(
    fault: Reply | Drop | ResetMidBody | HugeBody, request: web.Request, outcome: _Seen
) -> web.StreamResponse:
    transport = request.transport
    if isinstance(fault, Drop):
        if transport is not None:
            transport.abort()
        return web.Response()  # never sent: the connection is gone
    if isinstance(fault, Reply):
        outcome.status = fault.status
        content_type = None if "Content-Type" in fault.headers else fault.content_type
        return web.Response(
            status=fault.status, body=fault.body, headers=fault.headers, content_type=content_type
        )
    outcome.status = fault.status
    response = web.StreamResponse(status=fault.status)
    response.content_type = "application/json"
    if isinstance(fault, ResetMidBody):
        return await _reset_mid_body(fault, request, response)
    return await _stream_huge_body(fault, request, response)


async def _reset_mid_body(
    fault: ResetMidBody, request: web.Request, response: web.StreamResponse
) -> web.StreamResponse:
    if fault.declared_length is None:
        response.enable_chunked_encoding()
    else:
        response.content_length = fault.declared_length
    await response.prepare(request)
    await response.write(fault.body)
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then closes: a short body
    return response


async def _stream_huge_body(
    fault: HugeBody, request: web.Request, response: web.StreamResponse
) -> web.StreamResponse:
    if fault.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = fault.size
    await response.prepare(request)
    try:
        for chunk in huge_body_chunks(fault.size, fault.chunk_size):
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up reading, which is what a body-size limit does
    return response


_HUGE_PREFIX = b'{"queue":[],"count":0,"offset":0,"total":0,"success":true,"padding":"'
_HUGE_SUFFIX = b'"}'


def huge_body_chunks(size: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """The body of :class:`HugeBody`: valid JSON of exactly ``size`` bytes, lazily."""
    if size < len(_HUGE_PREFIX) + len(_HUGE_SUFFIX):
        yield b" " * size  # too small for the JSON frame; only its size matters
        return
    yield _HUGE_PREFIX
    padding = size - len(_HUGE_PREFIX) - len(_HUGE_SUFFIX)
    block = b"x" * chunk_size
    while padding > 0:
        piece = block if padding >= chunk_size else block[:padding]
        padding -= len(piece)
        yield piece
    yield _HUGE_SUFFIX
