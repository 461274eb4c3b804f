"""--web.config.file on the real process: basic auth, TLS, and bad files."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
import yaml

from tests.e2e.harness import exporter_config, exporter_running, run_cli, write_config
from tests.support.faults import InstrumentedFake

USER, PASSWORD = "prometheus", "scrape-secret-42"


def web_config(tmp_path: Path, tls: bool) -> str:
    config: dict[str, object] = {
        "basic_auth_users": {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()},
    }
    if tls:
        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        config["tls_server_config"] = {"cert_file": "server.pem", "key_file": "server.pem"}
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def status(url: str, auth: str | None = None, tls: ssl.SSLContext | None = None) -> int:
    connector = aiohttp.TCPConnector(ssl=tls) if tls is not None else None
    headers = {"Authorization": auth} if auth else {}
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, headers=headers) as answer,
    ):
        return answer.status


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_metrics_need_credentials_probes_do_not(
    fake: InstrumentedFake, tmp_path: Path, tls: bool
) -> None:
    path = web_config(tmp_path, tls)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem")) if tls else None
    async with exporter_running(
        exporter_config(fake), tmp_path, f"--web.config.file={path}"
    ) as exporter:
        base = exporter.url.replace("http://", "https://") if tls else exporter.url
        good, bad = basic(USER, PASSWORD), basic(USER, "wrong")
        assert await status(base + "/metrics", tls=context) == 401
        assert await status(base + "/metrics", bad, tls=context) == 401
        assert await status(base + "/metrics", good, tls=context) == 200
        assert await status(base + "/", tls=context) == 401
        assert await status(base + "/-/healthy", tls=context) == 200
        assert await status(base + "/-/ready", tls=context) == 200
        if tls:
            with pytest.raises(aiohttp.ClientError):
                await status(exporter.url + "/-/healthy")  # plain HTTP to the TLS port
    logs = "\n".join(exporter.raw_log)
    assert PASSWORD not in logs


async def test_a_bad_web_config_stops_the_start(fake: InstrumentedFake, tmp_path: Path) -> None:
    bad = tmp_path / "web.yaml"
    bad.write_text("basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n")
    config = write_config(tmp_path, exporter_config(fake))
    for extra in ([], ["--check-config"]):
        code, out, err = await run_cli("--config.file", config, f"--web.config.file={bad}", *extra)
        assert code == 2
        assert err.count("\n") == 1
        assert "basic_auth_users" in err
        assert "not-a-bcrypt-hash" not in err + out


async def test_check_config_reads_the_web_config(fake: InstrumentedFake, tmp_path: Path) -> None:
    config = write_config(tmp_path, exporter_config(fake))
    path = web_config(tmp_path, tls=True)
    code, out, _ = await run_cli(
        "--config.file", config, f"--web.config.file={path}", "--check-config"
    )
    assert code == 0
    assert "web config" in out
