"""The running collectors built from a config, and reloading that config (SIGHUP, /-/reload).

A reload reads the config file (and the web config) again. A file that fails validation
changes nothing: the error is logged in one line and returned, and
`..._config_last_reload_successful` drops to 0. A valid one takes effect at once: collectors
whose settings did not change keep polling on their schedule with their series; changed ones
restart with the new settings; removed ones stop and their series vanish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge

from exporter.collectors import Collector
from exporter.collectors.agents import AgentsCollector
from exporter.collectors.conversations import ConversationsCollector
from exporter.collectors.departments import DepartmentDirectory
from exporter.collectors.inquiries import InquiriesCollector
from exporter.collectors.queue import QueueCollector
from exporter.config import Config, ConfigError
from exporter.logs import RedactingFilter
from exporter.poller import Poller, Schedule, rate_limit_warnings
from exporter.rocketchat.auth import Authenticator, PasswordAuth, TokenAuth
from exporter.rocketchat.client import RocketChatClient, tls_context
from exporter.selfmetrics import SelfMetrics
from exporter.webconfig import WebConfigError, WebConfigWatcher, load_web_config

log = logging.getLogger(__name__)

_USES_DEPARTMENTS = ("queue", "inquiries", "agents", "conversations")


def make_auth(config: Config, redactor: RedactingFilter) -> Authenticator:
    rc = config.rocketchat

    def on_secret(secret: str) -> None:
        redactor.add([secret])

    if rc.uses_password_login:
        return PasswordAuth(rc.username, rc.password.reveal(), rc.password_file, on_secret)
    return TokenAuth(rc.user_id, rc.auth_token.reveal(), rc.auth_token_file, on_secret)


def make_client(config: Config, redactor: RedactingFilter) -> RocketChatClient:
    rc = config.rocketchat
    tls = None
    if rc.url.startswith("https:"):
        tls = tls_context(rc.tls.ca_file, rc.tls.insecure_skip_verify)
    return RocketChatClient(rc.url, make_auth(config, redactor), rc.timeout, tls)


def make_collector(
    name: str, config: Config, client: RocketChatClient, departments: DepartmentDirectory
) -> Collector:
    if name == "queue":
        return QueueCollector(client, config.poll, departments)
    if name == "inquiries":
        return InquiriesCollector(client, config.poll, departments)
    if name == "agents":
        return AgentsCollector(client, config.poll, departments)
    if name == "conversations":  # conv
        own = config.collectors.conversations
        return ConversationsCollector(client, config.poll, own, departments)
    raise ConfigError(f"collectors.{name}", "this build has no such collector")


def settings_of(config: Config, name: str) -> tuple[Any, ...]:
    """Everything collector `name` is built from: equal settings mean "keep it running"."""
    shared = config.collectors.department_refresh if name in _USES_DEPARTMENTS else None
    return (
        config.rocketchat,
        config.poll,
        config.collectors.of(name),
        config.interval_of(name),
        shared,
    )


class ReloadMetrics:
    def __init__(self, metrics: SelfMetrics) -> None:
        self.successful = Gauge(
            "rocketchat_livechat_exporter_config_last_reload_successful",
            "1 if the last configuration (re)load succeeded, else 0.",
            registry=metrics.registry,
        )
        self.success_time = Gauge(
            "rocketchat_livechat_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration (re)load.",
            registry=metrics.registry,
        )

    def succeeded(self) -> None:
        self.successful.set(1)
        self.success_time.set(time.time())


class Collectors:
    """The client and the collectors polling through it, kept in step with the config.

    One client at a time: every collector's settings include `rocketchat`, so a change there
    restarts all of them on a new client, and the old one closes once they have stopped."""

    def __init__(
        self, config: Config, poller: Poller, metrics: SelfMetrics, redactor: RedactingFilter
    ) -> None:
        self.config = config
        self._poller = poller
        self._metrics = metrics
        self._redactor = redactor
        self._client: RocketChatClient | None = None
        self._departments = DepartmentDirectory(config.collectors.department_refresh)

    async def start(self) -> None:
        """Opens the client and schedules every enabled collector (before poller.run())."""
        client = await make_client(self.config, self._redactor).__aenter__()
        self._client = client
        names = self.config.collectors.enabled_names()
        self._start(self._schedules(self.config, names, client, self._departments))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def apply(self, new: Config) -> tuple[list[str], list[str], list[str]]:
        """Switches to `new`; returns the collectors (started, restarted, stopped). Everything
        new is built before anything stops: should that fail (ConfigError), nothing changed."""
        old = self.config
        before, after = set(old.collectors.enabled_names()), set(new.collectors.enabled_names())
        kept = {n for n in before & after if settings_of(old, n) == settings_of(new, n)}
        stopped, restarted = sorted(before - after), sorted((before & after) - kept)
        started = sorted(after - before)
        client, departments = self._client, self._departments
        if new.rocketchat != old.rocketchat:
            client = await make_client(new, self._redactor).__aenter__()
        if client is not self._client or (
            new.collectors.department_refresh != old.collectors.department_refresh
        ):
            departments = DepartmentDirectory(new.collectors.department_refresh)
        try:
            assert client is not None, "start() first"
            names = [n for n in new.collectors.enabled_names() if n not in kept]
            schedules = self._schedules(new, names, client, departments)
        except BaseException:
            if client is not self._client and client is not None:
                await client.close()
            raise
        for name in [*stopped, *restarted]:
            await self._poller.stop(name)
        for name in stopped:
            self._metrics.remove_collector(name)
        for name in started:
            self._metrics.add_collector(name)
        old_client, self._client, self._departments = self._client, client, departments
        self._poller.max_staleness = new.poll.max_staleness
        self.config = new
        self._start(schedules)
        if old_client is not None and old_client is not client:
            await old_client.close()
        return started, restarted, stopped

    @staticmethod
    def _schedules(
        config: Config,
        names: list[str] | tuple[str, ...],
        client: RocketChatClient,
        departments: DepartmentDirectory,
    ) -> list[Schedule]:
        return [
            Schedule(
                make_collector(name, config, client, departments),
                config.interval_of(name),
                client.ready_at,
            )
            for name in names
        ]

    def _start(self, schedules: list[Schedule]) -> None:
        for warning in rate_limit_warnings(schedules):
            log.warning(warning)
        for schedule in schedules:
            self._poller.start(schedule)


class Reloader:
    """Serialises reloads and reports each in one log line and the reload metrics."""

    def __init__(
        self,
        load: Callable[[], Config],
        collectors: Collectors,
        metrics: ReloadMetrics,
        redactor: RedactingFilter,
        web_config: WebConfigWatcher | None = None,
        web_config_file: str | None = None,
    ) -> None:
        self._load = load
        self._collectors = collectors
        self._metrics = metrics
        self._redactor = redactor
        self._web_config = web_config
        self._web_config_file = web_config_file
        self._lock = asyncio.Lock()
        metrics.succeeded()  # the config at start is the first successful load

    async def reload(self) -> str | None:
        """None when the new config is in force, else the one-line reason it was refused."""
        async with self._lock:
            try:
                new = self._load()
                if self._web_config is not None and self._web_config_file:
                    load_web_config(self._web_config_file)  # refused before anything changes
            except (ConfigError, WebConfigError) as error:
                return self._failed(str(error))
            except Exception as error:  # a bug met by odd input must not end the reload task
                return self._failed(f"{type(error).__name__}: {error}"[:200])
            self._redactor.add(new.secrets())
            try:
                started, restarted, stopped = await self._collectors.apply(new)
            except ConfigError as error:
                return self._failed(str(error))
            except (OSError, ValueError) as error:  # e.g. a CA file changed since it was read
                return self._failed(f"{type(error).__name__}: {error}"[:200])
            if self._web_config is not None:
                self._web_config.maybe_reload(force=True)
            self._metrics.succeeded()
            log.info(
                "config reloaded",
                extra={
                    "kv": {
                        "started": ",".join(started),
                        "restarted": ",".join(restarted),
                        "stopped": ",".join(stopped),
                    }
                },
            )
            return None

    def _failed(self, error: str) -> str:
        message = self._redactor.clean(error)
        self._metrics.successful.set(0)
        log.error(
            "config reload failed; the previous config stays in force",
            extra={"kv": {"error": message}},
        )
        return message
