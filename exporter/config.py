"""The exporter's configuration: the schema, loading from YAML and the environment, validation.

The file is decoded strictly in one call (exporter/yamlfile.py): unknown keys, wrong types and
duplicate keys are errors. Cross-field rules live in `validate`. Every problem raises
`ConfigError`, whose text is one line naming the key; the command line turns it into exit code 2.
docs/configuration.md describes every key.
"""

from __future__ import annotations

import itertools
import os
import ssl
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec

from exporter import yamlfile
from exporter.durations import Seconds, decode_seconds, format_duration, parse_duration
from exporter.logs import REDACTED

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
        return f"Secret('{REDACTED}')" if self._value else "Secret('')"

    __str__ = __repr__


def _no_secret() -> Secret:
    return Secret("")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class ClientTLSConfig(_Strict, frozen=True):
    ca_file: str = ""
    insecure_skip_verify: bool = False


class RocketChatConfig(_Strict, frozen=True):
    url: str = ""
    user_id: str = ""
    auth_token: Secret = msgspec.field(default_factory=_no_secret)
    auth_token_file: str = ""
    username: str = ""
    password_file: str = ""
    password: Secret = msgspec.field(default_factory=_no_secret)  # only from ROCKETCHAT_PASSWORD
    timeout: Seconds = Seconds(10)
    tls: ClientTLSConfig = msgspec.field(default_factory=ClientTLSConfig)

    @property
    def uses_password_login(self) -> bool:
        return bool(self.username)


class PollConfig(_Strict, frozen=True):
    interval: Seconds = Seconds(30)
    page_size: Annotated[int, msgspec.Meta(ge=0)] = 0
    include_offline_agents: bool = True
    department_id: str = ""
    agent_id: str = ""
    max_staleness: Seconds = Seconds(300)


class CollectorConfig(_Strict, frozen=True):
    enabled: bool = True
    interval: Seconds | None = None  # None: poll.interval


def _seconds(*texts: str) -> tuple[Seconds, ...]:
    return tuple(Seconds(parse_duration(text)) for text in texts)


class ConversationsConfig(CollectorConfig, frozen=True):
    interval: Seconds | None = Seconds(60)
    first_response_buckets: tuple[Seconds, ...] = _seconds(
        "15s", "30s", "1m", "2m", "5m", "10m", "30m", "1h"
    )
    duration_buckets: tuple[Seconds, ...] = _seconds(
        "1m", "5m", "15m", "30m", "1h", "2h", "4h", "8h"
    )
    # Each poll re-reads rooms closed this long before its window: a late close counts once.
    lookback: Seconds = Seconds(300)
    max_catch_up: Seconds = Seconds(3600)  # after failed polls, read back at most this far


class CollectorsConfig(_Strict, frozen=True):
    queue: CollectorConfig = CollectorConfig(enabled=True)
    inquiries: CollectorConfig = CollectorConfig(enabled=False)
    agents: CollectorConfig = CollectorConfig(enabled=False)
    conversations: ConversationsConfig = ConversationsConfig(enabled=False)
    # How often inquiries refreshes department names from livechat/department (slow on purpose).
    department_refresh: Seconds = Seconds(600)

    def enabled_names(self) -> tuple[str, ...]:
        return tuple(name for name in COLLECTOR_NAMES if self.of(name).enabled)

    def of(self, name: str) -> CollectorConfig:
        own: CollectorConfig = getattr(self, name)
        return own


class Config(_Strict, frozen=True):
    rocketchat: RocketChatConfig = msgspec.field(default_factory=RocketChatConfig)
    poll: PollConfig = msgspec.field(default_factory=PollConfig)
    collectors: CollectorsConfig = msgspec.field(default_factory=CollectorsConfig)
    source: str = "(defaults)"  # not a key of the file: where the config came from

    def interval_of(self, collector: str) -> float:
        own = self.collectors.of(collector).interval
        return own if own is not None else self.poll.interval

    def secrets(self) -> tuple[str, ...]:
        """Every credential text, for the log redaction filter."""
        values = (self.rocketchat.auth_token.reveal(), self.rocketchat.password.reveal())
        return tuple(v for v in values if v)


# Fields of the structs above that the file must not set.
_NOT_IN_FILE = {
    ("source",): "",
    ("rocketchat", "password"): f" (use password_file or {ENV_PASSWORD})",
}


# --- decoding ---------------------------------------------------------------------------------


def _dec_hook(type_: type, value: Any) -> Any:
    if type_ is Seconds:
        return decode_seconds(value)
    if type_ is Secret:
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {yamlfile.kind(value)}")  # value not shown
        return Secret(value)
    raise NotImplementedError(type_)


def _decode(raw: object) -> Config:
    try:
        raw = _prepare(yamlfile.drop_empty({} if raw is None else raw))
        return yamlfile.decode(raw, Config, dec_hook=_dec_hook)
    except yamlfile.DecodeError as error:
        problem = yamlfile.in_words(error.problem)
        if problem == "unknown key":
            problem += yamlfile.did_you_mean(Config, error.key)
        raise ConfigError(error.key, problem) from None


def _prepare(raw: object) -> object:
    """Plain YAML values as the schema reads them: `queue: true` is short for
    `queue: {enabled: true}`, and keys the file must not set are refused."""
    if not isinstance(raw, dict):
        return raw
    for path, hint in _NOT_IN_FILE.items():
        section: object = raw
        for part in path[:-1]:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict) and path[-1] in section:
            raise ConfigError(".".join(path), f"unknown key{hint}")
    collectors = raw.get("collectors")
    if isinstance(collectors, dict):
        for name in COLLECTOR_NAMES:
            value = collectors.get(name)
            if isinstance(value, bool):
                collectors[name] = {"enabled": value}
            elif name in collectors and not isinstance(value, dict):
                raise ConfigError(
                    f"collectors.{name}",
                    f"must be true, false or a mapping with enabled and interval, "
                    f"not {yamlfile.kind(value)}",
                )
    return raw


def _fill_from_env(config: Config, env: Mapping[str, str], source: str) -> Config:
    rc = config.rocketchat
    rc = msgspec.structs.replace(
        rc,
        url=rc.url or env.get(ENV_URL, ""),
        user_id=rc.user_id or env.get(ENV_USER_ID, ""),
        auth_token=rc.auth_token or Secret(env.get(ENV_AUTH_TOKEN, "")),
        password=Secret(env.get(ENV_PASSWORD, "")),
    )
    return msgspec.structs.replace(config, rocketchat=rc, source=source)


# --- cross-field checks -----------------------------------------------------------------------


def validate(config: Config) -> None:
    """Everything a type cannot say; raises ConfigError for the first problem."""
    poll, rc, collectors = config.poll, config.rocketchat, config.collectors
    _check_interval("poll.interval", poll.interval)
    for name in COLLECTOR_NAMES:
        own = collectors.of(name).interval
        if own is not None:
            _check_interval(f"collectors.{name}.interval", own)
    if collectors.department_refresh < 10:
        raise ConfigError("collectors.department_refresh", "must be 10s or more")
    if rc.timeout <= 0:
        raise ConfigError("rocketchat.timeout", "must be more than 0s")
    if not collectors.enabled_names():
        raise ConfigError("collectors", "every collector is off; turn on at least one")
    _check_conversations(collectors.conversations)
    _check_url(rc.url)
    _check_credentials(rc)
    for key, path in (
        ("rocketchat.auth_token_file", rc.auth_token_file),
        ("rocketchat.password_file", rc.password_file),
    ):
        if path and not os.access(path, os.R_OK):
            # The path is not quoted: a credential pasted here by mistake must not be echoed.
            raise ConfigError(key, "cannot read the file it names (missing, or no permission)")
        if path and os.path.isdir(path):
            raise ConfigError(key, "names a directory, not a file")
    _check_ca_file(rc.tls.ca_file)


def _check_interval(key: str, seconds: float) -> None:
    if seconds < 1:
        raise ConfigError(key, f"must be 1s or more, not {format_duration(seconds)}")


def _check_conversations(own: ConversationsConfig) -> None:
    key = "collectors.conversations"
    for name in ("first_response_buckets", "duration_buckets"):
        buckets: tuple[Seconds, ...] = getattr(own, name)
        if not buckets:
            raise ConfigError(f"{key}.{name}", "needs at least one bucket")
        if buckets[0] <= 0:
            raise ConfigError(f"{key}.{name}", "buckets must be more than 0s")
        for low, high in itertools.pairwise(buckets):
            if high <= low:
                raise ConfigError(
                    f"{key}.{name}",
                    f"buckets must increase strictly ({format_duration(low)} is followed by "
                    f"{format_duration(high)})",
                )
    if own.max_catch_up < 1:
        raise ConfigError(f"{key}.max_catch_up", "must be 1s or more")


def _check_url(url: str) -> None:
    key = "rocketchat.url"
    if not url:
        raise ConfigError(key, f"is required (or set {ENV_URL})")
    not_a_url = f"{yamlfile.quote(url)} is not an http(s) URL such as https://chat.example.com"
    try:
        parts = urlsplit(url)
        has_user = parts.username is not None or parts.password is not None
        hostname, _ = parts.hostname, parts.port  # .port raises on a bad port
    except ValueError:  # e.g. "http://[::1": an unclosed IPv6 address
        raise ConfigError(key, not_a_url) from None
    if has_user:
        # Not echoed: the user info may hold a password.
        raise ConfigError(
            key,
            "must not hold a user or password; use user_id with "
            "auth_token(_file), or username with password_file",
        )
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigError(key, not_a_url)
    if parts.query or parts.fragment:
        raise ConfigError(key, "must not have a query or fragment")


def _check_ca_file(path: str) -> None:
    """Loads the CA file now, so that --check-config catches what the first poll would."""
    key = "rocketchat.tls.ca_file"
    if not path:
        return
    if os.path.isdir(path):
        raise ConfigError(key, "names a directory; give a PEM file of CA certificates")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError):  # SSLError first: it is an OSError too
        raise ConfigError(key, "is not a PEM file of CA certificates") from None
    except OSError as error:
        raise ConfigError(key, f"cannot read the file it names ({error.strerror})") from None


def _check_credentials(rc: RocketChatConfig) -> None:
    token = bool(rc.auth_token) or bool(rc.auth_token_file)
    if rc.auth_token and rc.auth_token_file:
        raise ConfigError(
            "rocketchat.auth_token_file", "set auth_token or auth_token_file, not both"
        )
    if token and rc.username:
        raise ConfigError(
            "rocketchat.username",
            "set either a token (auth_token, auth_token_file) or username with a password, "
            "not both",
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
        f"no credentials: set user_id with auth_token or auth_token_file "
        f"(or {ENV_USER_ID}/{ENV_AUTH_TOKEN}), or username with password_file",
    )


# --- entry points -----------------------------------------------------------------------------


def parse_config(raw: object, env: Mapping[str, str], source: str) -> Config:
    """Plain YAML values (a parsed file) as a validated Config."""
    config = _fill_from_env(_decode(raw), env, source)
    validate(config)
    return config


def load_config(path: str | None, env: Mapping[str, str] | None = None) -> Config:
    """Reads the YAML file at `path` (or none: defaults and the environment) and validates it."""
    env = os.environ if env is None else env
    return parse_config(read_config_file(path, env), env, config_source(path, env))


def config_path(path: str | None, env: Mapping[str, str]) -> str | None:
    return path or env.get(ENV_CONFIG_FILE) or None


def config_source(path: str | None, env: Mapping[str, str]) -> str:
    return config_path(path, env) or "(no config file)"


def read_config_file(path: str | None, env: Mapping[str, str]) -> object:
    """The file's YAML values (an empty mapping without a file); ConfigError if unreadable."""
    path = config_path(path, env)
    if path is None:
        return {}
    try:
        return yamlfile.load_yaml(path)
    except yamlfile.YamlError as error:
        raise ConfigError("", f"config file {yamlfile.quote(path, 240)}: {error}") from None


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
    return f"{config.source}: {rc.url} with {auth}; {collectors}"


def _enc_hook(value: object) -> object:
    if isinstance(value, Secret):
        return REDACTED if value else ""
    if isinstance(value, Seconds):
        return format_duration(value)
    raise NotImplementedError(type(value))


def redacted_dump(config: Config) -> dict[str, Any]:
    """The effective configuration as plain values, credentials replaced by "<redacted>"."""
    # Through JSON rather than to_builtins, so that tuples come out as lists (yaml.safe_dump).
    dump: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(config, enc_hook=_enc_hook))
    return dump
