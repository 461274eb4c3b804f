"""Credentials never leave the exporter: not in its logs (debug level, logfmt and JSON), not in
any HTTP answer, not in error or exception messages, not in --check-config's output; even
when Rocket.Chat, or a proxy in front of it, echoes them back (README, "Security")."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml

from exporter.config import Secret, load_config, redacted_dump
from exporter.fake import ApiUser, ServerSettings
from exporter.rocketchat.auth import Credentials
from tests.e2e.conftest import small_world
from tests.e2e.harness import clean_env, exporter_config, run_cli, selected, write_config
from tests.support.faults import InstrumentedFake, Reply

TOKEN = "pat-Secret-4f1c2b7e9d0a8c6b5e4f3a2d1c0b9a8e"
ROTATED = "pat-Rotated-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
PASSWORD = "pw-Secret-correct-horse-battery-staple"
WITHIN = 15.0
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;q=0.3"


# --- running the exporter in either log format ---------------------------------------------


@dataclass
class Run:
    """An exporter process: its address, and everything it wrote and answered."""

    process: asyncio.subprocess.Process
    url: str
    stderr: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # every HTTP body it sent us, decoded

    async def get(self, path: str, **headers: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.get(self.url + path, headers=headers) as response,
        ):
            body = await response.read()
            status = response.status
        if response.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = "\n".join(f"{k}: {v}" for k, v in response.headers.items()) + "\n" + body.decode()
        self.answers.append(text)
        return status, text

    async def polls(self, result: str) -> float:
        _, text = await self.get("/metrics")
        prefix = f'rocketchat_livechat_exporter_polls_total{{collector="queue",result="{result}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.removeprefix(prefix))
        return 0.0

    async def wait_for_polls(self, result: str, more_than: float = 0) -> None:
        deadline = time.monotonic() + WITHIN
        while await self.polls(result) <= more_than:
            if time.monotonic() > deadline or self.process.returncode is not None:
                raise AssertionError(f"no {result} poll within {WITHIN}s: {self.stderr[-5:]}")
            await asyncio.sleep(0.1)

    async def visit_everything(self) -> None:
        """Every path the exporter answers, in every variant, and some it does not."""
        for path in ("/", "/metrics", "/-/healthy", "/-/ready", "/nope", f"/{TOKEN}"):
            await self.get(path)
        await self.get("/metrics", Accept=PROMETHEUS_ACCEPT, **{"Accept-Encoding": "gzip"})
        await self.get(f"/metrics?token={TOKEN}")

    def everything(self) -> str:
        return "\n".join([*self.stderr, *self.stdout, *self.answers])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _collect(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    assert stream is not None
    async for raw in stream:
        into.append(raw.decode(errors="replace").rstrip("\n"))


@contextlib.asynccontextmanager
async def exporter_with_logs(
    config: Mapping[str, Any], tmp_path: Path, log_format: str, env: Mapping[str, str]
) -> AsyncIterator[Run]:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(dict(config)))
    address = f"127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exporter",
        f"--config.file={config_file}",
        f"--web.listen-address={address}",
        f"--log.format={log_format}",
        "--log.level=debug",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), **env},
    )
    run = Run(process, f"http://{address}")
    readers = [
        asyncio.create_task(_collect(process.stderr, run.stderr)),
        asyncio.create_task(_collect(process.stdout, run.stdout)),
    ]
    try:
        await _wait_until_ready(run)
        yield run
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 5)


async def _wait_until_ready(run: Run) -> None:
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            if (await run.get("/-/ready"))[0] == 200:
                return
        if time.monotonic() > deadline or run.process.returncode is not None:
            raise AssertionError(f"the exporter did not get ready: {run.stderr[-5:]}")
        await asyncio.sleep(0.05)


def leaked(text: str, secrets: set[str]) -> list[str]:
    """The secrets (or a 12-character piece of one) found in `text`."""
    return sorted(
        secret
        for secret in secrets
        if any(secret[i : i + 12] in text for i in range(0, max(1, len(secret) - 11)))
    )


# --- a token: inline, from the environment, from a file -------------------------------------


@dataclass(frozen=True)
class Setup:
    name: str
    log_format: str
    password_login: bool
    from_env: bool

    def __str__(self) -> str:
        return self.name


SETUPS = [
    Setup("token from a file, logfmt", "logfmt", password_login=False, from_env=False),
    Setup("token from the environment, json", "json", password_login=False, from_env=True),
    Setup("password from a file, json", "json", password_login=True, from_env=False),
    Setup("password from the environment, logfmt", "logfmt", password_login=True, from_env=True),
]


def config_for(
    setup: Setup, fake: InstrumentedFake, bot: ApiUser, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    config = exporter_config(fake, poll={"max_staleness": "1m"})
    rocketchat = config["rocketchat"]
    del rocketchat["auth_token"]
    env: dict[str, str] = {}
    if setup.password_login:
        del rocketchat["user_id"]
        rocketchat["username"] = bot.username
        if setup.from_env:
            env["ROCKETCHAT_PASSWORD"] = PASSWORD
        else:
            (tmp_path / "password").write_text(PASSWORD + "\n")
            rocketchat["password_file"] = str(tmp_path / "password")
    elif setup.from_env:
        env["ROCKETCHAT_AUTH_TOKEN"] = TOKEN
    else:
        (tmp_path / "token").write_text(TOKEN + "\n")
        rocketchat["auth_token_file"] = str(tmp_path / "token")
    return config, env


def echoes(secret: str) -> list[tuple[Reply, str]]:
    """Answers of a server or proxy that quote what it was sent, and the poll result each
    gives."""
    bad_request = Reply(400, f"Bad Request: X-Auth-Token: {secret}".encode(), {}, "text/plain")
    server_error = Reply.json({"success": False, "error": f"Invalid token {secret}"}, 500)
    login_page = Reply(200, f"<html>Log in again ({secret})</html>".encode(), {}, "text/html")
    return [
        (bad_request, "bad_request"),
        (server_error, "server_error"),
        (login_page, "invalid_response"),
    ]


@dataclass
class Exposure:
    """One setup's run: everything the exporter wrote and answered, and every credential."""

    run: Run
    secrets: set[str]


async def expose(setup: Setup, tmp_path: Path) -> Exposure:
    """Runs the exporter through what could leak a credential: good polls, answers that
    quote one back (each then shown on the landing page), a revocation, a rotation or a
    refused login; every path visited after each step."""
    bot = ApiUser.supervisor(token=TOKEN, bypass_rate_limit=True, password=PASSWORD)
    async with InstrumentedFake(small_world(), ServerSettings(), [bot]) as fake:
        config, env = config_for(setup, fake, bot, tmp_path)
        async with exporter_with_logs(config, tmp_path, setup.log_format, env) as run:
            await run.wait_for_polls("success")
            await run.visit_everything()
            sent = bot.token if not setup.password_login else next(iter(bot.login_tokens))
            for fault, result in echoes(sent):
                fake.inject(fault, path="livechat/queue")
                await run.wait_for_polls(result)
                await run.visit_everything()
            if setup.password_login:
                # The session is revoked; the login that would renew it is refused by a page
                # quoting the password it was sent.
                fake.revoke(bot.user_id, sent)
                fake.inject(Reply(401, f"denied: password={PASSWORD}".encode()), path="login")
                await run.wait_for_polls("unauthorized")
            else:
                # The token is revoked; a file-based one is then rotated.
                fake.revoke(bot.user_id, TOKEN)
                await run.wait_for_polls("unauthorized")
                if not setup.from_env:
                    bot.token = ROTATED
                    (tmp_path / "token").write_text(ROTATED + "\n")
                    await run.wait_for_polls("success", more_than=await run.polls("success"))
            await run.visit_everything()
    return Exposure(run, {TOKEN, ROTATED, PASSWORD, *bot.login_tokens})


@pytest.fixture(scope="module")
def exposures(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Exposure]:
    """The runs of the setups the selected tests ask for, side by side, once per module."""
    setups = selected(request, "setup", SETUPS)

    async def all_of_them() -> list[Exposure]:
        where = [tmp_path_factory.mktemp("secrets") for _ in setups]
        return await asyncio.gather(*(expose(s, w) for s, w in zip(setups, where, strict=True)))

    return {s.name: e for s, e in zip(setups, asyncio.run(all_of_them()), strict=True)}


@pytest.fixture
def exposure(exposures: dict[str, Exposure], setup: Setup) -> Exposure:
    return exposures[setup.name]


every_setup = pytest.mark.parametrize("setup", SETUPS, ids=str)


@every_setup
def test_no_credential_is_logged_at_debug_level(exposure: Exposure) -> None:
    stderr = exposure.run.stderr
    assert any("debug" in line for line in stderr)
    assert leaked("\n".join(stderr), exposure.secrets) == []


@every_setup
def test_no_credential_is_in_any_http_answer(exposure: Exposure) -> None:
    answers = exposure.run.answers
    assert len(answers) >= 40
    assert leaked("\n".join(answers), exposure.secrets) == []


@every_setup
def test_credentials_quoted_by_the_server_are_shown_redacted(exposure: Exposure) -> None:
    landing_pages = [a for a in exposure.run.answers if "<html" in a]
    assert any("redacted" in page for page in landing_pages)
    assert any("redacted" in line for line in exposure.run.stderr)


@every_setup
def test_nothing_is_printed_on_stdout_and_no_traceback_logged(exposure: Exposure) -> None:
    assert exposure.run.stdout == []
    assert not any("Traceback" in line for line in exposure.run.stderr)


# --- --check-config and configuration errors -------------------------------------------------


URL = "https://chat.example.com"
TOKEN_CONFIG = {"rocketchat": {"url": URL, "user_id": "u1", "auth_token": TOKEN}}
LOGIN_CONFIG = {"rocketchat": {"url": URL, "username": "bot"}}


@pytest.mark.parametrize(
    ("config", "env"),
    [
        (TOKEN_CONFIG, {}),
        ({"rocketchat": {"url": URL, "user_id": "u1"}}, {"ROCKETCHAT_AUTH_TOKEN": TOKEN}),
        (LOGIN_CONFIG, {"ROCKETCHAT_PASSWORD": PASSWORD}),
    ],
    ids=["token in the file", "token in the environment", "password in the environment"],
)
@pytest.mark.parametrize("level", ["info", "debug"])
async def test_check_config_never_prints_a_credential(
    tmp_path: Path, config: dict[str, Any], env: dict[str, str], level: str
) -> None:
    code, out, err = await run_cli(
        "--check-config",
        f"--log.level={level}",
        "--config.file",
        write_config(tmp_path, config),
        env=env,
    )
    assert code == 0, err
    assert out.startswith("config OK: ")
    assert leaked(out + err, {TOKEN, PASSWORD}) == []


@pytest.mark.parametrize(
    "config",
    [
        {"rocketchat": {**TOKEN_CONFIG["rocketchat"], "auth_token_file": "/nonexistent"}},
        {"rocketchat": {"url": URL, "user_id": "u1", "auth_tokn": TOKEN}},
        {"rocketchat": {"url": URL, "user_id": "u1", "auth_token": [TOKEN]}},
        {"rocketchat": {"url": URL, "user_id": "u1", "auth_token": {"value": TOKEN}}},
        {"rocketchat": {**TOKEN_CONFIG["rocketchat"], "username": "bot"}},
        {"rocketchat": {**LOGIN_CONFIG["rocketchat"], "password": PASSWORD}},
        {"rocketchat": {**LOGIN_CONFIG["rocketchat"], "password_file": PASSWORD}},
        {"rocketchat": {"url": URL, "user_id": "u1", "auth_token_file": TOKEN}},
    ],
    ids=[
        "token and token file",
        "token under a misspelled key",
        "token in a list",
        "token in a mapping",
        "token and username",
        "password inline (not a key)",
        "password in password_file",
        "token in auth_token_file",
    ],
)
async def test_a_config_error_never_quotes_a_credential(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    code, out, err = await run_cli(
        "--check-config", "--config.file", write_config(tmp_path, config)
    )
    assert code == 2
    assert err.count("\n") == 1
    assert leaked(out + err, {TOKEN, PASSWORD}) == []


def test_the_redacted_dump_hides_every_credential() -> None:
    env = {"ROCKETCHAT_URL": URL, "ROCKETCHAT_USER_ID": "u1", "ROCKETCHAT_AUTH_TOKEN": TOKEN}
    with_token = load_config(None, env)
    with_password = msgspec.structs.replace(
        with_token,
        rocketchat=msgspec.structs.replace(
            with_token.rocketchat, auth_token=Secret(""), username="bot", password=Secret(PASSWORD)
        ),
    )
    for config in (with_token, with_password):
        dump = redacted_dump(config)
        text = json.dumps(dump) + yaml.safe_dump(dump) + repr(config) + str(config)
        assert leaked(text, {TOKEN, PASSWORD}) == []
        assert "<redacted>" in json.dumps(dump)


def test_credentials_and_secrets_print_redacted() -> None:
    texts = [
        repr(Credentials("u1", TOKEN)),
        str(Credentials("u1", TOKEN)),
        repr(Secret(PASSWORD)),
        str(Secret(PASSWORD)),
        f"{Secret(PASSWORD)}",
        str(ValueError(Secret(TOKEN))),
    ]
    assert leaked("\n".join(texts), {TOKEN, PASSWORD}) == []


# --- proposed, and bugs for the owners of cli.py, config.py and web.py ---------------------


async def test_check_config_at_debug_level_logs_the_redacted_effective_config(
    tmp_path: Path,
) -> None:
    code, out, err = await run_cli(
        "--check-config",
        "--log.level=debug",
        "--log.format=json",
        "--config.file",
        write_config(tmp_path, TOKEN_CONFIG),
    )
    assert code == 0
    assert out.startswith("config OK: ")
    assert out.count("\n") == 1  # the verdict stays one line (README, "Configuration")
    records = [json.loads(line) for line in err.splitlines()]
    (effective,) = [r for r in records if r.get("msg") == "effective configuration"]
    assert effective["level"] == "debug"
    assert effective["config"]["rocketchat"]["auth_token"] == "<redacted>"
    assert effective["config"]["rocketchat"]["url"] == URL
    assert leaked(out + err, {TOKEN, PASSWORD}) == []


async def test_a_password_in_the_url_is_never_printed(tmp_path: Path) -> None:
    config = {"rocketchat": {**TOKEN_CONFIG["rocketchat"], "url": f"https://bot:{PASSWORD}@chat"}}
    _, out, err = await run_cli("--check-config", "--config.file", write_config(tmp_path, config))
    assert leaked(out + err, {PASSWORD}) == []
