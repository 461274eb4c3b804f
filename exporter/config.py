"""The exporter's configuration: schema, loading from YAML and the environment, validation.

Everything is checked before anything starts. A problem raises `ConfigError`, whose text is one
line naming the key and what is wrong; the command line turns it into exit code 2.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

ENV_CONFIG_FILE = "LIVECHAT_EXPORTER_CONFIG"
ENV_URL = "ROCKETCHAT_URL"
ENV_USER_ID = "ROCKETCHAT_USER_ID"
ENV_AUTH_TOKEN = "ROCKETCHAT_AUTH_TOKEN"
ENV_PASSWORD = "ROCKETCHAT_PASSWORD"

COLLECTOR_NAMES = ("queue", "inquiries", "agents", "conversations")


class ConfigError(Exception):
    """A configuration problem; str() is one line naming the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key


class Secret:
    """A credential. Its text is only reachable through `reveal()`, so that printing, logging or
    repr() of a config object can never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('<redacted>')" if self._value else "Secret('')"

    __str__ = __repr__


@dataclass(frozen=True)
class ClientTLSConfig:
    ca_file: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class RocketChatConfig:
    url: str = ""
    user_id: str = ""
    auth_token: Secret = field(default_factory=lambda: Secret(""))
    auth_token_file: str = ""
    username: str = ""
    password_file: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))  # only from ROCKETCHAT_PASSWORD
    timeout: float = 10.0
    tls: ClientTLSConfig = field(default_factory=ClientTLSConfig)

    @property
    def uses_password_login(self) -> bool:
        return bool(self.username)


@dataclass(frozen=True)
class PollConfig:
    interval: float = 30.0
    page_size: int = 0
    include_offline_agents: bool = True
    department_id: str = ""
    agent_id: str = ""
    max_staleness: float = 300.0


@dataclass(frozen=True)
class CollectorConfig:
    enabled: bool
    interval: float | None = None  # None: poll.interval


# Histogram upper bounds in seconds (contract.md): answered-within-T needs T to be a bound.
FIRST_RESPONSE_BUCKETS = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
DURATION_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)


@dataclass(frozen=True)
class ConversationsConfig(CollectorConfig):
    """The conversations collector: off by default, its own 1m interval (conversations.md)."""

    enabled: bool = False
    interval: float | None = 60.0
    first_response_buckets: tuple[float, ...] = FIRST_RESPONSE_BUCKETS
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS
    lookback: float = 300.0  # re-read this long before each window: late closes count once
    max_catch_up: float = 3600.0  # after failed polls, read back at most this far


@dataclass(frozen=True)
class CollectorsConfig:
    queue: CollectorConfig = field(default_factory=lambda: CollectorConfig(True))
    inquiries: CollectorConfig = field(default_factory=lambda: CollectorConfig(False))
    agents: CollectorConfig = field(default_factory=lambda: CollectorConfig(False))
    conversations: ConversationsConfig = field(default_factory=ConversationsConfig)
    # How often inquiries refreshes department names from livechat/department (slow on purpose).
    department_refresh: float = 600.0

    def enabled_names(self) -> tuple[str, ...]:
        return tuple(name for name in COLLECTOR_NAMES if getattr(self, name).enabled)


@dataclass(frozen=True)
class Config:
    rocketchat: RocketChatConfig = field(default_factory=RocketChatConfig)
    poll: PollConfig = field(default_factory=PollConfig)
    collectors: CollectorsConfig = field(default_factory=CollectorsConfig)
    source: str = "(defaults)"

    def interval_of(self, collector: str) -> float:
        own: CollectorConfig = getattr(self.collectors, collector)
        return own.interval if own.interval is not None else self.poll.interval

    def secrets(self) -> tuple[str, ...]:
        """Every credential text, for the log redaction filter."""
        values = (self.rocketchat.auth_token.reveal(), self.rocketchat.password.reveal())
        return tuple(v for v in values if v)


# --- durations ------------------------------------------------------------------------------

_DURATION_UNITS = (
    ("y", 365 * 86400.0),
    ("w", 7 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)
_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)


def parse_duration(text: str) -> float:
    """A Prometheus duration (`500ms`, `30s`, `1h30m`) in seconds; ValueError if malformed."""
    if text == "0":
        return 0.0
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(text)
    return sum(
        int(n) * unit for n, (_, unit) in zip(match.groups(), _DURATION_UNITS, strict=True) if n
    )


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    parts = []
    for suffix, unit in (("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts) or "0s"


# --- reading a YAML mapping strictly ---------------------------------------------------------

T = TypeVar("T")


class _Section:
    """One mapping of the YAML file, read key by key; unknown keys are errors."""

    def __init__(self, raw: object, path: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(path, f"must be a mapping, not {_kind(raw)}")
        self.raw: Mapping[object, object] = raw
        self.path = path
        self.read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def take(self, name: str, default: T, convert: Callable[[object, str], T]) -> T:
        self.read.add(name)
        if name not in self.raw or self.raw[name] is None:
            return default
        return convert(self.raw[name], self.key(name))

    def section(self, name: str) -> _Section:
        self.read.add(name)
        return _Section(self.raw.get(name), self.key(name))

    def finish(self) -> None:
        for name in self.raw:
            if not isinstance(name, str):
                raise ConfigError(self.path, f"keys must be strings, got {name!r}")
            if name not in self.read:
                near = difflib.get_close_matches(name, sorted(self.read), n=1)
                hint = f' (did you mean "{near[0]}"?)' if near else ""
                raise ConfigError(self.key(name), f"unknown key{hint}")


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _string(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, not {_kind(value)}")
    return value


def _boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, not {_kind(value)} ({value!r})")
    return value


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be a whole number, not {_kind(value)} ({value!r})")
    if value < 0:
        raise ConfigError(key, f"must be 0 or more, not {value}")
    return value


def _duration(value: object, key: str) -> float:
    if not isinstance(value, str):
        raise ConfigError(
            key, f"must be a duration such as 30s or 5m, not {_kind(value)} ({value!r}); add a unit"
        )
    try:
        return parse_duration(value.strip())
    except ValueError:
        raise ConfigError(
            key, f'"{value}" is not a duration (want e.g. 500ms, 30s, 5m, 1h30m)'
        ) from None


def _secret(value: object, key: str) -> Secret:
    return Secret(_string(value, key))


# --- the schema ------------------------------------------------------------------------------


def _read_tls(section: _Section) -> ClientTLSConfig:
    tls = ClientTLSConfig(
        ca_file=section.take("ca_file", "", _string),
        insecure_skip_verify=section.take("insecure_skip_verify", False, _boolean),
    )
    section.finish()
    return tls


def _read_rocketchat(section: _Section, env: Mapping[str, str]) -> RocketChatConfig:
    def env_fills(value: str, name: str) -> str:
        return value or env.get(name, "")

    config = RocketChatConfig(
        url=env_fills(section.take("url", "", _string), ENV_URL),
        user_id=env_fills(section.take("user_id", "", _string), ENV_USER_ID),
        auth_token=section.take("auth_token", Secret(""), _secret)
        or Secret(env.get(ENV_AUTH_TOKEN, "")),
        auth_token_file=section.take("auth_token_file", "", _string),
        username=section.take("username", "", _string),
        password_file=section.take("password_file", "", _string),
        password=Secret(env.get(ENV_PASSWORD, "")),
        timeout=section.take("timeout", 10.0, _duration),
        tls=_read_tls(section.section("tls")),
    )
    section.finish()
    return config


def _read_poll(section: _Section) -> PollConfig:
    poll = PollConfig(
        interval=section.take("interval", 30.0, _duration),
        page_size=section.take("page_size", 0, _count),
        include_offline_agents=section.take("include_offline_agents", True, _boolean),
        department_id=section.take("department_id", "", _string),
        agent_id=section.take("agent_id", "", _string),
        max_staleness=section.take("max_staleness", 300.0, _duration),
    )
    section.finish()
    return poll


def _read_collector(parent: _Section, name: str, default: CollectorConfig) -> CollectorConfig:
    """`queue: true`, or `queue: {enabled: true, interval: 1m}`."""
    raw = parent.raw.get(name)
    if raw is None or isinstance(raw, bool):
        return parent.take(name, default, lambda v, k: CollectorConfig(_boolean(v, k)))
    if not isinstance(raw, Mapping):
        parent.read.add(name)
        raise ConfigError(
            parent.key(name),
            f"must be true, false or a mapping with enabled and interval, not {_kind(raw)}",
        )
    section = parent.section(name)
    config = CollectorConfig(
        enabled=section.take("enabled", True, _boolean),
        interval=section.take("interval", None, _duration),
    )
    section.finish()
    return config


def _read_conversations(parent: _Section, default: ConversationsConfig) -> ConversationsConfig:
    """`conversations: true`, or the long form with its own keys (contract.md)."""
    raw = parent.raw.get("conversations")
    if raw is None or isinstance(raw, bool):
        return parent.take(
            "conversations", default, lambda v, k: ConversationsConfig(enabled=_boolean(v, k))
        )
    if not isinstance(raw, Mapping):
        parent.read.add("conversations")
        raise ConfigError(
            parent.key("conversations"), f"must be true, false or a mapping, not {_kind(raw)}"
        )
    section = parent.section("conversations")
    config = ConversationsConfig(
        enabled=section.take("enabled", True, _boolean),
        interval=section.take("interval", default.interval, _duration),
        first_response_buckets=section.take(
            "first_response_buckets", default.first_response_buckets, _buckets
        ),
        duration_buckets=section.take("duration_buckets", default.duration_buckets, _buckets),
        lookback=section.take("lookback", default.lookback, _duration),
        max_catch_up=section.take("max_catch_up", default.max_catch_up, _duration),
    )
    section.finish()
    return config


def _buckets(value: object, key: str) -> tuple[float, ...]:
    """A non-empty list of durations in increasing order: histogram upper bounds."""
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty list of durations, not {_kind(value)}")
    bounds = tuple(_duration(item, f"{key}[{n}]") for n, item in enumerate(value))
    if any(b <= 0 for b in bounds) or any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ConfigError(key, "must be durations above 0s in increasing order")
    return bounds


def _read_collectors(section: _Section) -> CollectorsConfig:
    defaults = CollectorsConfig()
    collectors = CollectorsConfig(
        queue=_read_collector(section, "queue", defaults.queue),
        inquiries=_read_collector(section, "inquiries", defaults.inquiries),
        agents=_read_collector(section, "agents", defaults.agents),
        conversations=_read_conversations(section, defaults.conversations),
        department_refresh=section.take("department_refresh", 600.0, _duration),
    )
    section.finish()
    return collectors


def _check_values(config: Config, demo: bool) -> None:
    poll, rc = config.poll, config.rocketchat
    _check_interval("poll.interval", poll.interval)
    for name in COLLECTOR_NAMES:
        own = getattr(config.collectors, name).interval
        if own is not None:
            _check_interval(f"collectors.{name}.interval", own)
    conversations = config.collectors.conversations
    if conversations.lookback < 0:
        raise ConfigError("collectors.conversations.lookback", "must be 0s or more")
    if conversations.max_catch_up < config.interval_of("conversations"):
        raise ConfigError(
            "collectors.conversations.max_catch_up", "must be at least the collector's interval"
        )
    if config.collectors.department_refresh < 10:
        raise ConfigError("collectors.department_refresh", "must be 10s or more")
    if rc.timeout <= 0:
        raise ConfigError("rocketchat.timeout", "must be more than 0s")
    if not config.collectors.enabled_names():
        raise ConfigError("collectors", "every collector is off; turn on at least one")
    if demo:
        return  # the demo brings its own server and credentials
    _check_url(rc.url)
    _check_credentials(rc)
    for key, path in (
        ("rocketchat.tls.ca_file", rc.tls.ca_file),
        ("rocketchat.auth_token_file", rc.auth_token_file),
        ("rocketchat.password_file", rc.password_file),
    ):
        if path and not os.access(path, os.R_OK):
            # The path is not quoted: a credential pasted here by mistake must not be echoed.
            raise ConfigError(key, "cannot read the file it names (missing, or no permission)")


def _check_interval(key: str, seconds: float) -> None:
    if seconds < 1:
        raise ConfigError(key, f"must be 1s or more, not {format_duration(seconds)}")


def _check_url(url: str) -> None:
    key = "rocketchat.url"
    if not url:
        raise ConfigError(key, f"is required (or set {ENV_URL})")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # Not echoed: the user info may hold a password.
        raise ConfigError(
            key,
            "must not hold a user or password; use user_id with "
            "auth_token(_file), or username with password_file",
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f'"{url}" is not an http(s) URL such as https://chat.example.com')
    if parts.query or parts.fragment:
        raise ConfigError(key, "must not have a query or fragment")


def _check_credentials(rc: RocketChatConfig) -> None:
    token = bool(rc.auth_token) or bool(rc.auth_token_file)
    if rc.auth_token and rc.auth_token_file:
        raise ConfigError(
            "rocketchat.auth_token_file", "set auth_token or auth_token_file, not both"
        )
    if token and rc.username:
        raise ConfigError(
            "rocketchat.username",
            "set either a token (auth_token, "
            "auth_token_file) or username with a password, not both",
        )
    if token:
        if not rc.user_id:
            raise ConfigError(
                "rocketchat.user_id", f"is required with a token (or set {ENV_USER_ID})"
            )
        return
    if rc.username:
        if not rc.password and not rc.password_file:
            raise ConfigError(
                "rocketchat.password_file", f"is required with username (or set {ENV_PASSWORD})"
            )
        return
    raise ConfigError(
        "rocketchat.auth_token",
        f"no credentials: set user_id with auth_token or "
        f"auth_token_file (or {ENV_USER_ID}/{ENV_AUTH_TOKEN}), or username "
        "with password_file",
    )


def parse_config(raw: object, env: Mapping[str, str], source: str, demo: bool = False) -> Config:
    top = _Section(raw, "")
    config = Config(
        rocketchat=_read_rocketchat(top.section("rocketchat"), env),
        poll=_read_poll(top.section("poll")),
        collectors=_read_collectors(top.section("collectors")),
        source=source,
    )
    top.finish()
    _check_values(config, demo)
    return config


def load_config(
    path: str | None, env: Mapping[str, str] | None = None, demo: bool = False
) -> Config:
    """Reads the YAML file at `path` (or none: defaults and the environment) and validates it."""
    env = os.environ if env is None else env
    path = path or env.get(ENV_CONFIG_FILE) or None
    if path is None:
        return parse_config({}, env, "(no config file)", demo)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError("", f'cannot read config file "{path}": {error.strerror}') from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError("", f'config file "{path}"{where}: {problem}') from None
    return parse_config(raw, env, path, demo)


def describe(config: Config) -> str:
    """A one-line summary for --check-config and the start-up log (no secrets)."""
    rc = config.rocketchat
    auth = (
        f"password login as {rc.username}"
        if rc.uses_password_login
        else f"token of user {rc.user_id}"
    )
    collectors = ", ".join(
        f"{name} every {format_duration(config.interval_of(name))}"
        for name in config.collectors.enabled_names()
    )
    return f"{config.source}: {rc.url or '(demo)'} with {auth}; {collectors}"


def redacted_dump(config: Config) -> dict[str, Any]:
    """The effective configuration as a mapping, credentials replaced by "<redacted>"."""
    rc, poll, col = config.rocketchat, config.poll, config.collectors

    def hide(secret: Secret) -> str:
        return "<redacted>" if secret else ""

    def collector(own: CollectorConfig) -> dict[str, Any]:
        interval = format_duration(own.interval) if own.interval is not None else None
        return {"enabled": own.enabled, "interval": interval}

    return {
        "rocketchat": {
            "url": rc.url,
            "user_id": rc.user_id,
            "auth_token": hide(rc.auth_token),
            "auth_token_file": rc.auth_token_file,
            "username": rc.username,
            "password_file": rc.password_file,
            "password (env)": hide(rc.password),
            "timeout": format_duration(rc.timeout),
            "tls": {"ca_file": rc.tls.ca_file, "insecure_skip_verify": rc.tls.insecure_skip_verify},
        },
        "poll": {
            "interval": format_duration(poll.interval),
            "page_size": poll.page_size,
            "include_offline_agents": poll.include_offline_agents,
            "department_id": poll.department_id,
            "agent_id": poll.agent_id,
            "max_staleness": format_duration(poll.max_staleness),
        },
        "collectors": {
            "queue": collector(col.queue),
            "inquiries": collector(col.inquiries),
            "agents": collector(col.agents),
            "conversations": {
                **collector(col.conversations),
                "first_response_buckets": [
                    format_duration(b) for b in col.conversations.first_response_buckets
                ],
                "duration_buckets": [
                    format_duration(b) for b in col.conversations.duration_buckets
                ],
                "lookback": format_duration(col.conversations.lookback),
                "max_catch_up": format_duration(col.conversations.max_catch_up),
            },
            "department_refresh": format_duration(col.department_refresh),
        },
    }
