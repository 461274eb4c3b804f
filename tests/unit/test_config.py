"""The configuration: every key of contract.md, strict validation, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import (
    Config,
    ConfigError,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
    redacted_dump,
)

CREDENTIALS = {"url": "https://chat.example.com", "user_id": "u1", "auth_token": "tok-123456"}


def parse(raw: object, env: dict[str, str] | None = None, demo: bool = False) -> Config:
    return parse_config(raw, env or {}, "test.yaml", demo)


def error_of(raw: object, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(raw, env)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1d", 86400),
        ("0", 0),
        ("2w", 1209600),
        ("1m30s500ms", 90.5),
    ],
)
def test_prometheus_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "5 m", "1.5s", "-1s", "1s1m", "abc"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"^.*$"):
        parse_duration(text)


def test_durations_format_back() -> None:
    assert [format_duration(s) for s in (0.5, 30, 300, 5400, 0)] == [
        "500ms",
        "30s",
        "5m",
        "1h30m",
        "0s",
    ]


def test_defaults_follow_the_contract() -> None:
    config = parse({"rocketchat": CREDENTIALS})
    assert config.rocketchat.timeout == 10
    assert config.poll.interval == 30
    assert config.poll.page_size == 0
    assert config.poll.include_offline_agents is True
    assert config.poll.max_staleness == 300
    assert config.collectors.enabled_names() == ("queue",)


def test_every_contract_key_is_read() -> None:
    raw = {
        "rocketchat": {
            **CREDENTIALS,
            "timeout": "5s",
            "tls": {"ca_file": "", "insecure_skip_verify": True},
        },
        "poll": {
            "interval": "1m",
            "page_size": 100,
            "include_offline_agents": False,
            "department_id": "d1",
            "agent_id": "a1",
            "max_staleness": "10m",
        },
        "collectors": {"queue": True, "inquiries": True, "agents": False},
    }
    config = parse(raw)
    assert config.rocketchat.tls.insecure_skip_verify is True
    assert config.rocketchat.timeout == 5
    assert (config.poll.interval, config.poll.page_size, config.poll.max_staleness) == (
        60,
        100,
        600,
    )
    assert (config.poll.department_id, config.poll.agent_id) == ("d1", "a1")
    assert config.poll.include_offline_agents is False
    assert config.collectors.enabled_names() == ("queue", "inquiries")


def test_a_collector_can_have_its_own_interval() -> None:
    raw = {
        "rocketchat": CREDENTIALS,
        "collectors": {"queue": {"interval": "1m"}, "agents": {"enabled": True}},
    }
    config = parse(raw)
    assert config.interval_of("queue") == 60
    assert config.interval_of("agents") == 30


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"poll": {"intervall": "30s"}}, 'poll.intervall: unknown key (did you mean "interval"?)'),
        ({"pol": {}}, 'pol: unknown key (did you mean "poll"?)'),
        ({"poll": {"interval": 30}}, "poll.interval: must be a duration such as 30s or 5m"),
        ({"poll": {"interval": "30x"}}, 'poll.interval: "30x" is not a duration'),
        ({"poll": {"interval": "500ms"}}, "poll.interval: must be 1s or more"),
        ({"poll": {"page_size": -1}}, "poll.page_size: must be 0 or more"),
        ({"poll": {"page_size": "100"}}, "poll.page_size: must be a whole number"),
        ({"poll": {"page_size": True}}, "poll.page_size: must be a whole number"),
        (
            {"poll": {"include_offline_agents": "yes"}},
            "poll.include_offline_agents: must be true or false",
        ),
        ({"poll": []}, "poll: must be a mapping"),
        ({"collectors": {"queue": "on"}}, "collectors.queue: must be true, false or a mapping"),
        ({"collectors": {"queue": {"every": "1m"}}}, "collectors.queue.every: unknown key"),
        ({"collectors": {"queue": False}}, "collectors: every collector is off"),
        ({"rocketchat": {**CREDENTIALS, "timeout": "0s"}}, "rocketchat.timeout: must be more"),
        ({"rocketchat": {**CREDENTIALS, "tls": {"ca": "x"}}}, "rocketchat.tls.ca: unknown key"),
        (
            {"rocketchat": {**CREDENTIALS, "url": "chat.example.com"}},
            'rocketchat.url: "chat.example.com" is not an http(s) URL',
        ),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, object], expected: str) -> None:
    raw = {"rocketchat": CREDENTIALS, **raw}
    assert error_of(raw).startswith(expected)


def test_a_password_in_the_url_is_refused_without_echoing_it() -> None:
    message = error_of({"rocketchat": {**CREDENTIALS, "url": "https://bot:hunter2@chat.example"}})
    assert message.startswith("rocketchat.url: must not hold a user or password")
    assert "hunter2" not in message


def test_missing_credentials_are_explained() -> None:
    message = error_of({"rocketchat": {"url": "https://chat.example.com"}})
    assert message.startswith("rocketchat.auth_token: no credentials")


def test_a_token_needs_a_user_id() -> None:
    message = error_of({"rocketchat": {"url": "https://c.example", "auth_token": "t"}})
    assert message.startswith("rocketchat.user_id: is required with a token")


def test_token_and_password_login_together_are_refused() -> None:
    raw = {"rocketchat": {**CREDENTIALS, "username": "bot", "password_file": "/p"}}
    assert error_of(raw).startswith("rocketchat.username: set either a token")


def test_an_unreadable_token_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    raw = {
        "rocketchat": {"url": "https://c.example", "user_id": "u", "auth_token_file": str(missing)}
    }
    assert error_of(raw).startswith("rocketchat.auth_token_file: cannot read the file")


def test_environment_fills_url_and_secrets() -> None:
    env = {
        "ROCKETCHAT_URL": "https://env.example",
        "ROCKETCHAT_USER_ID": "envuser",
        "ROCKETCHAT_AUTH_TOKEN": "envtoken",
    }
    config = parse({}, env)
    assert config.rocketchat.url == "https://env.example"
    assert config.rocketchat.user_id == "envuser"
    assert config.rocketchat.auth_token.reveal() == "envtoken"


def test_the_file_wins_over_the_environment() -> None:
    config = parse({"rocketchat": CREDENTIALS}, {"ROCKETCHAT_AUTH_TOKEN": "envtoken"})
    assert config.rocketchat.auth_token.reveal() == "tok-123456"


def test_password_login_takes_the_password_from_the_environment() -> None:
    env = {"ROCKETCHAT_PASSWORD": "hunter2"}
    config = parse({"rocketchat": {"url": "https://c.example", "username": "bot"}}, env)
    assert config.rocketchat.uses_password_login
    assert config.rocketchat.password.reveal() == "hunter2"


def test_demo_needs_no_server_or_credentials() -> None:
    assert parse({}, demo=True).rocketchat.url == ""


def test_secrets_never_show_in_repr_or_dump() -> None:
    config = parse({"rocketchat": CREDENTIALS}, {"ROCKETCHAT_PASSWORD": "hunter2"})
    assert "tok-123456" not in repr(config)
    assert "tok-123456" not in str(redacted_dump(config))
    assert redacted_dump(config)["rocketchat"]["auth_token"] == "<redacted>"


def test_load_reads_yaml_and_reports_syntax_errors_with_a_line(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("rocketchat:\n  url: https://c.example\n  user_id: u\n  auth_token: t\n")
    assert load_config(str(good), env={}).rocketchat.user_id == "u"
    bad = tmp_path / "bad.yaml"
    bad.write_text("poll:\n  interval: [30s\n")
    with pytest.raises(ConfigError, match=r"at line \d+, column \d+"):
        load_config(str(bad), env={})


def test_the_config_path_can_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("poll: {interval: 1m}\n")
    config = load_config(None, env={"LIVECHAT_EXPORTER_CONFIG": str(path)}, demo=True)
    assert config.poll.interval == 60


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "missing.yaml"), env={})
