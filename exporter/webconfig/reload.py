"""The running web config, reloaded when its files change (docs/web-config.md, "Reload")."""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from exporter.webconfig import loader
from exporter.webconfig.basic_auth import BasicAuth
from exporter.webconfig.schema import TLSServerConfig, WebConfig, WebConfigError
from exporter.webconfig.tls import build_ssl_context, load_client_ca, load_server_certificate

logger = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int, int] | None, ...]


def _stamp(paths: Iterable[str]) -> _Stamp:
    """What tells a changed file: inode (atomic replaces, Kubernetes secret symlink swaps),
    size and mtime. os.stat follows symlinks, as those swaps need."""
    stamps: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
            continue
        stamps.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class WebConfigWatcher:
    """Loads the file strictly at construction (raises WebConfigError); afterwards nothing
    raises. Pass `ssl_context` to the server once: reloads update that same object."""

    def __init__(
        self,
        path: str,
        *,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._min_interval = min_interval
        self._clock = clock
        self._config = loader.load_web_config(path)
        self._running_tls = self._config.tls  # what the live SSLContext holds
        self._ssl_context = build_ssl_context(self._config)
        self._basic_auth = BasicAuth(self._config.basic_auth_users)
        self._stamp = _stamp(self._config.files)
        self._next_check = clock() + min_interval

    @property
    def config(self) -> WebConfig:
        """The config in force: the last one loaded, but with the users of the running server
        when the file would take authentication away, and TLS settings that await a restart."""
        return self._config

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context

    @property
    def basic_auth(self) -> BasicAuth:
        return self._basic_auth

    def maybe_reload(self, *, force: bool = False) -> bool:
        """Reloads if a file changed (at most once per min_interval unless `force`, e.g. on
        SIGHUP); True when a new config was applied. Never raises."""
        now = self._clock()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self._min_interval
        try:
            return self._reload_if_changed(force)
        except Exception as error:  # a reload must never break the request that triggered it
            logger.error(
                "web config %s: reload failed: %s: %s", self._path, type(error).__name__, error
            )
            return False

    def reload(self) -> str | None:
        """Reloads now, for `POST /-/reload`: None when the file is in force, else the one-line
        reason it is not."""
        self._next_check = self._clock() + self._min_interval
        self._stamp = _stamp(self._config.files)
        try:
            new = loader.load_web_config(self._path)
        except WebConfigError as error:
            logger.error("keeping the previous web config: %s", error)
            return str(error)
        self._apply(new)
        return None

    def close(self) -> None:
        self._basic_auth.close()

    def _reload_if_changed(self, force: bool) -> bool:
        # Stamped before loading, so that a change made during the load is seen next time.
        before = _stamp(self._config.files)
        if before == self._stamp and not force:
            return False
        self._stamp = before  # a broken file is reported once, not every second
        try:
            new = loader.load_web_config(self._path)
        except WebConfigError as error:
            logger.error("keeping the previous web config: %s", error)
            return False
        if new.files != self._config.files:
            self._stamp = _stamp(new.files)
        self._apply(new)
        return True

    def _apply(self, new: WebConfig) -> None:
        self._apply_tls(new)  # first: should it fail, nothing of the new file is in use
        users = dict(new.basic_auth_users)
        if not users and self._basic_auth.enabled:
            # A file caught mid-write (or emptied) must not switch authentication off.
            logger.warning(
                "web config %s: the file lists no basic_auth_users; keeping the %d running "
                "users: removing authentication needs a restart",
                self._path,
                len(self._config.basic_auth_users),
            )
            new = replace(new, basic_auth_users=self._config.basic_auth_users)
        elif users != dict(self._config.basic_auth_users):
            self._basic_auth.replace_users(users)
            logger.info("web config %s: basic auth users reloaded (%d)", self._path, len(users))
        self._config = new

    def _apply_tls(self, new: WebConfig) -> None:
        running, wanted = self._running_tls, new.tls
        if running is None or wanted is None:
            if (running is None) != (wanted is None):
                state = "on" if running else "off"
                logger.warning(
                    "web config %s: turning TLS on or off needs a restart; TLS stays %s",
                    self._path,
                    state,
                )
            return
        self._warn_about_restart_settings(running, wanted)
        if (wanted.certificate, wanted.private_key) != (running.certificate, running.private_key):
            assert self._ssl_context is not None  # running TLS implies a context
            load_server_certificate(self._ssl_context, wanted, new.path)
            logger.info("web config %s: new TLS certificate loaded", self._path)
        if wanted.client_ca != running.client_ca and wanted.client_ca:
            self._add_client_cas(wanted, new.path)
        self._running_tls = replace(
            running,
            certificate=wanted.certificate,
            private_key=wanted.private_key,
            client_ca=wanted.client_ca or running.client_ca,
        )

    def _warn_about_restart_settings(
        self, running: TLSServerConfig, wanted: TLSServerConfig
    ) -> None:
        before = running.restart_settings()
        changed = [
            f"tls_server_config.{name}"
            for name, value in wanted.restart_settings().items()
            if before[name] != value
        ]
        if changed:
            logger.warning(
                "web config %s: %s changed; restart to apply", self._path, ", ".join(changed)
            )

    def _add_client_cas(self, wanted: TLSServerConfig, path: str) -> None:
        assert self._ssl_context is not None
        fresh = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        load_client_ca(fresh, wanted, path)
        new_cas = set(fresh.get_ca_certs(binary_form=True))
        removed = set(self._ssl_context.get_ca_certs(binary_form=True)) - new_cas
        load_client_ca(self._ssl_context, wanted, path)  # additive: OpenSSL cannot forget a CA
        logger.info("web config %s: client CAs reloaded", self._path)
        if removed:
            logger.warning(
                "web config %s: %d client CA certificate(s) removed from the file stay trusted "
                "until a restart",
                self._path,
                len(removed),
            )
