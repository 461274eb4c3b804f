"""Configuration: every documented key (docs/configuration.md), strict checks, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter.config import Config, ConfigError, load_config, parse_config, redacted_dump
from exporter.durations import MAX_TEXT, format_duration, parse_duration

TESTDATA = Path(__file__).parent.parent / "testdata" / "config"

CREDENTIALS = {"url": "https://chat.example.com", "user_id": "u1", "auth_token": "tok-123456"}


def parse(raw: object, env: dict[str, str] | None = None) -> Config:
    return parse_config(raw, env or {}, "test.yaml")


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


@pytest.mark.parametrize(
    "text",
    [
        "",
        "30",
        "5 m",
        "1.5s",
        "-1s",
        "1s1m",
        "abc",
        "\u0663\u0660s",
        "\uff13\uff10s",
        "1" * 310 + "s",
    ],
)
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"^.*$"):
        parse_duration(text)


def test_durations_are_bounded() -> None:
    with pytest.raises(ValueError, match="longer than"):
        parse_duration("1" * (MAX_TEXT + 1) + "s")
    with pytest.raises(ValueError, match="more than ten years"):
        parse_duration("9999y")


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


def _fixtures(kind: str) -> list[Path]:
    return sorted(TESTDATA.glob(f"*.{kind}.yml"))


@pytest.mark.parametrize("path", _fixtures("good"), ids=lambda p: p.name)
def test_good_fixtures_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTDATA)
    config = load_config(path.name, env={})
    assert config.source == path.name
    assert config.collectors.enabled_names()


@pytest.mark.parametrize("path", _fixtures("bad"), ids=lambda p: p.name)
def test_bad_fixtures_name_the_key(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each bad file starts with `# error: <the start of the expected one-line error>`."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    expected = first.removeprefix("# error: ")
    assert expected != first, f"{path.name} lacks its expected error"
    monkeypatch.chdir(TESTDATA)
    with pytest.raises(ConfigError) as caught:
        load_config(path.name, env={})
    message = str(caught.value)
    assert "\n" not in message
    assert expected in message


def test_there_are_fixtures_of_both_kinds() -> None:
    assert len(_fixtures("good")) >= 3
    assert len(_fixtures("bad")) >= 20


def test_every_key_fixture_reads_every_value() -> None:
    config = load_config(str(TESTDATA / "every-key.good.yml"), env={})
    conv = config.collectors.conversations
    assert conv.enabled
    assert conv.interval == 30
    assert conv.first_response_buckets == (10, 60, 600)
    assert conv.duration_buckets == (300, 3600)
    assert (conv.lookback, conv.max_catch_up) == (120, 1800)
    assert config.interval_of("inquiries") == 120
    assert config.collectors.department_refresh == 900
    assert config.collectors.enabled_names() == ("queue", "inquiries", "conversations")


def test_conversations_defaults_follow_the_contract() -> None:
    config = parse({"rocketchat": CREDENTIALS, "collectors": {"conversations": True}})
    conv = config.collectors.conversations
    assert config.interval_of("conversations") == 60
    assert conv.first_response_buckets == (15, 30, 60, 120, 300, 600, 1800, 3600)
    assert conv.duration_buckets == (60, 300, 900, 1800, 3600, 7200, 14400, 28800)
    assert (conv.lookback, conv.max_catch_up) == (300, 3600)


def test_an_alias_bomb_at_a_bool_key_is_refused_quickly() -> None:
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    raw = bomb + "poll: {include_offline_agents: *i}\n"
    from exporter.yamlfile import YamlError, parse_yaml

    with pytest.raises(YamlError, match="expand"):
        parse_yaml(raw.encode())


def test_a_long_bad_value_is_quoted_short() -> None:
    message = error_of({"rocketchat": CREDENTIALS, "poll": {"interval": "x" * 5000}})
    assert len(message) < 200


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


def test_secrets_never_show_in_repr_or_dump() -> None:
    config = parse({"rocketchat": CREDENTIALS}, {"ROCKETCHAT_PASSWORD": "hunter2"})
    assert "tok-123456" not in repr(config)
    assert "tok-123456" not in str(redacted_dump(config))
    assert redacted_dump(config)["rocketchat"]["auth_token"] == "<redacted>"
    assert redacted_dump(config)["rocketchat"]["password"] == "<redacted>"
    assert "hunter2" not in yaml.safe_dump(redacted_dump(config))


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
    env = {"LIVECHAT_EXPORTER_CONFIG": str(path), "ROCKETCHAT_URL": "https://c.example"}
    config = load_config(None, env={**env, "ROCKETCHAT_USER_ID": "u", "ROCKETCHAT_AUTH_TOKEN": "t"})
    assert config.poll.interval == 60


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'config file ".*missing.yaml": cannot read'):
        load_config(str(tmp_path / "missing.yaml"), env={})


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("poll: {department_id: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(path), env={})


def test_yaml_nested_very_deep_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested deeper"):
        load_config(str(path), env={})


@pytest.mark.parametrize(
    ("problem", "words"),
    [
        ("expected `int`, got `str`", "must be a whole number, not a string"),
        ("expected `bool`, got `int`", "must be true or false, not a number"),
        ("expected `object`, got `array`", "must be a mapping, not a list"),
        ("expected `int` >= 0", "must be 0 or more"),
        ("expected `int` <= 5", "must be a whole number <= 5"),
        ("unknown key", "unknown key"),
    ],
)
def test_decode_problems_read_as_words(problem: str, words: str) -> None:
    from exporter.yamlfile import in_words

    assert in_words(problem) == words


def test_did_you_mean_walks_the_schema() -> None:
    from exporter.yamlfile import did_you_mean

    assert did_you_mean(Config, "collectors.conversations.lookbak") == ' (did you mean "lookback"?)'
    assert did_you_mean(Config, "rocketchat.tls.cafile") == ' (did you mean "ca_file"?)'
    assert did_you_mean(Config, "zzz") == ""


def test_empty_values_take_their_default_but_keys_must_be_strings() -> None:
    from exporter.yamlfile import DecodeError, drop_empty

    assert drop_empty({"a": None, "b": [{"c": None, "d": 1}]}) == {"b": [{"d": 1}]}
    with pytest.raises(DecodeError, match=r"^a\.b: keys must be strings, not 1$"):
        drop_empty({"a": {"b": {1: "x"}}})
