"""Operator mistakes and hostile files against the real process: one line on stderr, exit 2,
never a traceback or a hang; SIGHUP never kills; credentials a server echoes in another form
are redacted in the log and on the landing page."""

from __future__ import annotations

import asyncio
import html
import signal
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from exporter.fake import ApiUser, ServerSettings
from tests.e2e.conftest import small_world
from tests.e2e.harness import exporter_config, run_cli, start_exporter
from tests.support.faults import InstrumentedFake, Reply

GOOD = {"url": "https://chat.example.com", "user_id": "u1", "auth_token": "tok-123456"}
# 9 levels of 9 aliases: 387 million values once expanded, from about 600 bytes.
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _file(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def _config(tmp_path: Path, **rocketchat: object) -> str:
    return _file(tmp_path, "config.yaml", yaml.safe_dump({"rocketchat": {**GOOD, **rocketchat}}))


async def _refused(*args: str) -> str:
    """Runs the exporter with `args`, both as --check-config and for real: each must exit 2
    with one line on stderr. Returns that line."""
    lines = []
    for extra in (("--check-config",), ("--web.listen-address=127.0.0.1:0",)):
        code, out, err = await run_cli(*extra, *args, within=20)
        assert code == 2, (code, err[-300:])
        assert out == ""
        assert err.count("\n") == 1, err[-300:]
        assert "Traceback" not in err
        lines.append(err.strip())
    return lines[0]


async def test_a_ca_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    ca = _file(tmp_path, "ca.pem", "not a certificate\n")
    line = await _refused("--config.file", _config(tmp_path, tls={"ca_file": ca}))
    assert "rocketchat.tls.ca_file: is not a PEM file" in line


async def test_a_ca_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    line = await _refused("--config.file", _config(tmp_path, tls={"ca_file": str(tmp_path)}))
    assert "rocketchat.tls.ca_file: names a directory" in line


async def test_an_unclosed_ipv6_url_is_refused(tmp_path: Path) -> None:
    line = await _refused("--config.file", _config(tmp_path, url="http://[::1"))
    assert 'rocketchat.url: "http://[::1" is not an http(s) URL' in line


async def test_a_310_digit_duration_is_refused(tmp_path: Path) -> None:
    line = await _refused("--config.file", _config(tmp_path, timeout="9" * 310 + "s"))
    assert "rocketchat.timeout:" in line
    assert len(line) < 250


async def test_non_ascii_digits_in_a_duration_are_refused(tmp_path: Path) -> None:
    line = await _refused("--config.file", _config(tmp_path, timeout="\u0663\u0660s"))
    assert "rocketchat.timeout:" in line
    assert "is not a duration" in line


async def test_a_config_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path, "latin1.yaml", "poll: {department_id: caf\xe9}\n".encode("latin-1"))
    assert "not UTF-8" in await _refused("--config.file", path)


@pytest.mark.parametrize("flag", ["--config.file", "--web.config.file"])
async def test_yaml_nested_100000_deep_is_refused(tmp_path: Path, flag: str) -> None:
    deep = _file(tmp_path, "deep.yaml", "[" * 100_000 + "]" * 100_000)
    args = [flag, deep] if flag == "--config.file" else ["--demo", flag, deep]
    await _refused(*args)


@pytest.mark.parametrize("path", ["/{x:.*}", "/metrics{tail}", "/me trics", "/-/metrics"])
async def test_the_telemetry_path_must_be_a_literal_path(path: str) -> None:
    line = await _refused("--demo", f"--web.telemetry-path={path}")
    assert "--web.telemetry-path:" in line


@pytest.mark.parametrize(
    ("key", "section"),
    [("include_offline_agents", "poll"), ("page_size", "poll"), ("interval", "poll")],
)
async def test_an_alias_bomb_is_refused_at_once(tmp_path: Path, key: str, section: str) -> None:
    text = BOMB + f"{section}: {{{key}: *i}}\n"
    assert len(text) < 700
    started = time.monotonic()
    line = await _refused("--demo", "--config.file", _file(tmp_path, "bomb.yaml", text))
    assert time.monotonic() - started < 15  # both runs; it hung and grew to 1.5 GB
    assert "aliases expand" in line
    assert len(line) < 250


async def test_duplicate_keys_in_the_config_are_refused(tmp_path: Path) -> None:
    text = "poll:\n  interval: 30s\n  interval: 1m\n"
    line = await _refused("--demo", "--config.file", _file(tmp_path, "dup.yaml", text))
    assert 'duplicate key "interval"' in line


async def test_sighup_reloads_and_never_kills(tmp_path: Path) -> None:
    """Without --web.config.file, SIGHUP used to end the process (exit 129, no log line)."""
    exporter = await start_exporter(None, tmp_path, "--demo")
    try:
        for _ in range(3):
            exporter.process.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.3)
        status, _, _ = await exporter.get("/-/healthy")
        assert status == 200
        assert exporter.process.returncode is None
        assert exporter.messages().count("config reloaded") == 3
    finally:
        assert await exporter.stop() == 0


SPECIAL_TOKEN = 'tok<en>&"quoted" +/value=0123456789abcdef'


def _echoed_forms(secret: str) -> list[str]:
    return [html.escape(secret), quote(secret, safe=""), secret[:16] + "..."]


async def test_secrets_echoed_in_other_forms_are_redacted(tmp_path: Path) -> None:
    bot = ApiUser.supervisor(token=SPECIAL_TOKEN, bypass_rate_limit=True)
    async with InstrumentedFake(small_world(), ServerSettings(), [bot]) as fake:
        config = exporter_config(fake, token=SPECIAL_TOKEN)
        exporter = await start_exporter(config, tmp_path)
        try:
            await exporter.wait_for_polls("queue", "success")
            pages: list[str] = []
            for form in _echoed_forms(SPECIAL_TOKEN):
                fake.inject(
                    Reply(400, f"Bad Request: token {form}".encode(), {}, "text/plain"),
                    path="livechat/queue",
                )
                await exporter.wait_for_polls("queue", "bad_request", more_than=len(pages))
                _, _, page = await exporter.get("/")
                pages.append(page.decode())
        finally:
            await exporter.stop()
    seen = "\n".join(exporter.raw_log + pages)
    assert "&lt;redacted&gt;" in "\n".join(pages)
    for form in [*_echoed_forms(SPECIAL_TOKEN), SPECIAL_TOKEN[:12]]:
        assert form not in seen
        assert html.escape(form) not in seen
