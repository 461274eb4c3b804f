"""What one client may cost the exporter: a connection cap that frees idle connections, a
deadline for the TLS handshake and the request headers, and quiet logs for malformed requests.

aiohttp has no public per-connection hook, so `GuardedSite` (a `web.TCPSite`) creates the
listening server itself with a protocol factory that wraps aiohttp's. The only aiohttp internals
it relies on are `BaseSite`'s `_runner`/`_server` attributes, which `TCPSite` itself uses; the
test tests/unit/test_web_limits.py::test_aiohttp_site_internals_are_as_expected fails when
they change. TLS is started by the wrapper (`loop.start_tls`), after the connection is counted,
so connections that never finish the handshake are bounded like any other.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 21\r\nRetry-After: 1\r\nConnection: close\r\n\r\nToo many connections\n"
)
# Over-cap TLS connections get a handshake so that they can be told 503; at most this many.
_TLS_REFUSALS = 16


@dataclass(frozen=True)
class ConnectionLimits:
    """aiohttp bounds the request line and each header to 8 KiB and a request to 128 headers
    (answering 400); these bound the rest."""

    # The TLS handshake and the request's headers must arrive within this long: a client that
    # trickles them, or connects and says nothing, is cut, as Go's ReadHeaderTimeout does.
    header_timeout: float = 10.0
    handshake_timeout: float = 10.0
    # TLS handshakes under way at once: each holds ~300 KB (asyncio's 256 KiB TLS read buffer
    # and OpenSSL's state). Beyond, the oldest is closed for the new one.
    max_handshakes: int = 32
    # Connections open at once. At the cap the least recently active connection that is not
    # being answered is closed for the new one; when every one is busy, the new one gets 503.
    max_connections: int = 128
    # Of which one address may hold: the kubelet's probes and Prometheus keep room even when
    # another address has its share busy.
    max_per_address: int = 96
    keepalive_timeout: float = 75.0
    # A response must be written within this long: a client that stops reading is cut.
    write_timeout: float = 60.0


class Connections:
    """The open connections, least recently active first."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.guards: OrderedDict[ConnectionGuard, None] = OrderedDict()
        self.by_transport: dict[object, ConnectionGuard] = {}  # as the request sees it
        self.refusing = 0  # over-cap TLS connections being told 503

    def admit(self, tls: bool, peer: str) -> bool:
        """Whether a new connection from `peer` fits, after closing the oldest idle one (of
        that peer first, when it holds its share) if needed."""
        if tls:
            handshaking = [guard for guard in self.guards if guard.handshaking]
            excess = len(handshaking) - self.limits.max_handshakes + 1
            for guard in handshaking[: max(excess, 0)]:
                guard.close()  # the oldest first: a real client's handshake takes milliseconds
        own = [guard for guard in self.guards if guard.peer == peer]
        if len(own) >= self.limits.max_per_address:
            return _close_oldest_idle(own)  # one address cannot crowd out the others
        if len(self.guards) < self.limits.max_connections:
            return True
        return _close_oldest_idle(self.guards)


def _close_oldest_idle(guards: Iterable[ConnectionGuard]) -> bool:
    for guard in guards:
        if not guard.in_request:
            guard.close()
            return True
    return False


class ConnectionGuard(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: counts it, starts TLS, and closes it when
    the handshake or the headers of a request do not arrive in time."""

    def __init__(
        self,
        make_inner: Callable[[], asyncio.Protocol],
        connections: Connections,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self._connections = connections
        self._ssl_context = ssl_context
        self._transport: asyncio.BaseTransport | None = None  # raw, then TLS
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._early: list[bytes] = []
        self._early_eof = False
        self.in_request = False
        self.handshaking = False
        self.peer = ""
        self._handshake_task: asyncio.Task[None] | None = None

    # --- events from the raw socket, then from the TLS layer ---------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        connections = self._connections
        if not connections.admit(self._ssl_context is not None, self.peer):
            self._refuse(transport)
            return
        connections.guards[self] = None
        self._arm()
        if self._ssl_context is None:
            self._connect_inner(transport)
        else:
            self._start_tls(transport)

    def data_received(self, data: bytes) -> None:
        if self in self._connections.guards:
            self._connections.guards.move_to_end(self)
        if not self.in_request and self._timer is None:
            self._arm()  # the first bytes of the next request on a kept-alive connection
        if self._inner is not None:
            self._inner.data_received(data)
        else:  # TLS delivers the first bytes before start_tls returns: keep them for aiohttp
            self._early.append(data)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            self._early_eof = True
            return True  # keep the transport open until the early bytes are answered
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._connections.guards.pop(self, None)
        self._connections.by_transport.pop(self._transport, None)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # --- from the middleware --------------------------------------------------------------

    def request_started(self) -> None:
        self.in_request = True
        self._disarm()

    def request_finished(self) -> None:
        self.in_request = False

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._connections.guards.pop(self, None)  # counted out at once, not at connection_lost

    # --- internals -------------------------------------------------------------------------

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        if self._ssl_context is None:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_BUSY)
            transport.close()
        elif self._connections.refusing < _TLS_REFUSALS:
            self._refused = True
            self._connections.refusing += 1
            self._arm()
            self._start_tls(transport)
        else:
            _abort(transport)

    def _start_tls(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # nothing reaches us in clear text before start_tls
        self.handshaking = True  # now: accepts come in bursts, before the task runs
        # Held here: the loop keeps only a weak reference to a task.
        self._handshake_task = asyncio.get_running_loop().create_task(self._handshake(transport))

    async def _handshake(self, transport: asyncio.Transport) -> None:
        assert self._ssl_context is not None
        loop = asyncio.get_running_loop()
        if transport.is_closing():  # closed for a newer connection before this task ran
            self.handshaking = False
            self._done_refusing()
            return
        try:
            secured = await loop.start_tls(
                transport,
                self,
                self._ssl_context,
                server_side=True,
                ssl_handshake_timeout=self._connections.limits.handshake_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError):
            self.handshaking = False
            transport.abort()  # start_tls has reported connection_lost to us, or will
            self._done_refusing()
            return
        self.handshaking = False
        if secured is None:
            transport.abort()
            self._done_refusing()
            return
        self._transport = secured
        if self._refused:
            secured.write(_BUSY)
            secured.close()
            self._done_refusing()
            return
        self._connect_inner(secured)

    def _done_refusing(self) -> None:
        if self._refused:
            self._refused = False
            self._connections.refusing -= 1

    def _connect_inner(self, transport: asyncio.BaseTransport) -> None:
        inner = self._inner = self._make_inner()
        self._connections.by_transport[transport] = self
        inner.connection_made(transport)
        early, self._early = self._early, []
        for data in early:
            inner.data_received(data)
        if self._early_eof and not inner.eof_received():
            transport.close()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._connections.limits.header_timeout, self._cut)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cut(self) -> None:
        self._timer = None
        if self._transport is not None and not self.in_request:
            _abort(self._transport)


def _abort(transport: asyncio.BaseTransport) -> None:
    """Closes at once, dropping what is buffered: nothing of value is queued for this peer."""
    if isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


CONNECTIONS = web.AppKey("connections", Connections)


def bounded_requests(connections: Connections) -> Middleware:
    """Tells the connection's guard a request is being answered (its headers are in), and
    writes the response within `write_timeout`."""

    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = connections.by_transport.get(request.transport)
        if guard is not None:
            guard.request_started()
        try:
            response = await handler(request)
            try:
                async with asyncio.timeout(connections.limits.write_timeout):
                    await response.prepare(request)
                    await response.write_eof()
            except TimeoutError:
                if request.transport is not None:
                    request.transport.abort()  # the client stopped reading
            except ConnectionError:
                pass  # the client hung up: nothing to answer, nothing to log
            return response
        finally:
            if guard is not None:
                guard.request_finished()

    return bounded


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections are bounded by the runner's app's `Connections`."""

    __slots__ = ("_connections",)

    def __init__(
        self,
        runner: web.AppRunner,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._connections = runner.app[CONNECTIONS]

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        server = self._runner.server
        assert server is not None
        context = self._ssl_context
        connections = self._connections
        self._server = await asyncio.get_running_loop().create_server(
            lambda: ConnectionGuard(server, connections, context), self._host, self._port
        )


class BadRequestLogFilter(logging.Filter):
    """aiohttp logs every malformed request at ERROR with a traceback; one client can make
    thousands a second. This turns them into one debug line, at most one per second."""

    def __init__(self, every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._every = every
        self._clock = clock
        self._next = 0.0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        now = self._clock()
        if now < self._next or not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            self._dropped += 1
            return False
        self._next = now + self._every
        reason = str(error.message or type(error).__name__).splitlines()[0][:120]
        record.msg, record.args = (
            "malformed HTTP request: %s (%d more not logged)",
            (
                reason,
                self._dropped,
            ),
        )
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        self._dropped = 0
        return True


BAD_REQUESTS = BadRequestLogFilter()


def quiet_bad_requests() -> None:
    logging.getLogger("aiohttp.server").addFilter(BAD_REQUESTS)  # a no-op when already added
