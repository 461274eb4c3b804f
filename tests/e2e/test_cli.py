"""The command line and the HTTP endpoints of the real process."""

from __future__ import annotations

import gzip
import signal
import socket
import time
from pathlib import Path

import pytest

from exporter import __version__
from tests.e2e.harness import (
    exporter_config,
    exporter_running,
    parse_text,
    run_cli,
    start_exporter,
    write_config,
)
from tests.support.faults import InstrumentedFake

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


async def test_version() -> None:
    code, out, _ = await run_cli("--version")
    assert code == 0
    assert out.startswith(f"rocketchat-livechat-exporter {__version__}")


async def test_check_config_accepts_a_good_file(fake: InstrumentedFake, tmp_path: Path) -> None:
    code, out, err = await run_cli(
        "--check-config", "--config.file", write_config(tmp_path, exporter_config(fake))
    )
    assert code == 0, err
    assert out.startswith("config OK: ")
    assert out.count("\n") == 1
    assert next(iter(fake.users.values())).token not in out


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"poll": {"interval": "fast"}}, 'poll.interval: "fast" is not a duration'),
        ({"poll": {"intervall": "1m"}}, "poll.intervall: unknown key"),
        ({"collectors": {"queue": "yes"}}, "collectors.queue: must be true, false or a mapping"),
    ],
)
async def test_check_config_refuses_a_bad_file_in_one_line(
    fake: InstrumentedFake, tmp_path: Path, config: dict[str, object], expected: str
) -> None:
    bad = {**exporter_config(fake), **config}
    code, out, err = await run_cli("--check-config", "--config.file", write_config(tmp_path, bad))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert expected in err
    assert "Traceback" not in err


async def test_a_bad_config_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    code, _, err = await run_cli("--config.file", write_config(tmp_path, {"nope": 1}))
    assert code == 2
    assert "nope: unknown key" in err


@pytest.mark.parametrize(
    "flag",
    [
        "--web.listen-address=9776",
        "--web.telemetry-path=metrics",
        "--log.level=verbose",
        "--no-such-flag",
    ],
)
async def test_bad_flags_exit_2(flag: str) -> None:
    code, _, err = await run_cli("--demo", flag)
    assert code == 2
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_it_cleanly_within_2s(
    fake: InstrumentedFake, tmp_path: Path, sig: int
) -> None:
    exporter = await start_exporter(exporter_config(fake), tmp_path)
    await exporter.wait_for_polls()
    started = time.monotonic()
    code = await exporter.stop(sig)
    assert code == 0
    assert time.monotonic() - started < 2.0
    assert "shutting down" in exporter.messages()


async def test_a_taken_port_is_one_clear_error(fake: InstrumentedFake, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, exporter_config(fake))
        code, _, err = await run_cli(
            "--config.file", config, "--log.format=json", f"--web.listen-address=127.0.0.1:{port}"
        )
    assert code == 1
    assert '"msg": "cannot listen"' in err
    assert "Traceback" not in err


async def test_health_readiness_and_landing_page(fake: InstrumentedFake, tmp_path: Path) -> None:
    async with exporter_running(exporter_config(fake), tmp_path) as exporter:
        assert (await exporter.get("/-/healthy"))[0] == 200
        assert (await exporter.get("/-/ready"))[0] == 200
        # Rocket.Chat down does not make the exporter unready (a sidecar must not take the
        # pod out of service).
        await fake.stop()
        await exporter.wait_for_polls(result="network_error")
        assert (await exporter.get("/-/ready"))[0] == 200
        status, headers, body = await exporter.get("/")
        assert (await exporter.get("/nope"))[0] == 404
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b'href="/metrics"' in body
    assert b"network_error" in body


async def test_a_custom_telemetry_path(fake: InstrumentedFake, tmp_path: Path) -> None:
    async with exporter_running(
        exporter_config(fake), tmp_path, "--web.telemetry-path=/stats"
    ) as exporter:
        status, _, body = await exporter.get("/stats", **{"Accept-Encoding": "identity"})
        assert (await exporter.get("/metrics"))[0] == 404
    assert status == 200
    assert b"rocketchat_livechat_exporter_build_info" in body


async def test_prometheus_gets_gzipped_openmetrics(fake: InstrumentedFake, tmp_path: Path) -> None:
    async with exporter_running(exporter_config(fake), tmp_path) as exporter:
        await exporter.wait_for_polls()
        status, headers, body = await exporter.get(
            "/metrics", Accept=PROMETHEUS_ACCEPT, **{"Accept-Encoding": "gzip"}
        )
        plain = (await exporter.scrape()).text
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n")
    assert "rocketchat_livechat_queue_chats{" in text
    assert "rocketchat_livechat_queue_chats{" in plain


async def test_wrong_credentials_are_counted_and_the_token_never_logged(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    config = exporter_config(fake, token="wrong-token-0123456789")
    async with exporter_running(config, tmp_path) as exporter:
        scrape = await exporter.wait_for_polls(result="unauthorized")
        _, _, landing = await exporter.get("/")
    assert scrape.value("rocketchat_livechat_up", collector="queue") == 0
    refused = scrape.value(
        "rocketchat_livechat_exporter_requests_total", collector="queue", code="401"
    )
    assert refused is not None
    assert refused >= 1
    assert "rocketchat_livechat_queue_chats{" not in scrape.text
    everything = "\n".join(exporter.raw_log) + scrape.text + landing.decode()
    assert "wrong-token-0123456789" not in everything
    assert any(e.get("outcome") == "unauthorized" for e in exporter.logs)


async def test_polling_faster_than_the_default_limit_warns_at_start(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    async with exporter_running(exporter_config(fake), tmp_path) as exporter:
        await exporter.wait_for_polls()
    warnings = [m for m in exporter.messages() if "over Rocket.Chat's default limit" in m]
    assert len(warnings) == 1
    assert "bot role" in warnings[0]


async def test_the_demo_serves_every_collector(tmp_path: Path) -> None:
    async with exporter_running(None, tmp_path, "--demo") as exporter:
        scrape = None
        for collector in ("queue", "inquiries", "agents"):
            scrape = await exporter.wait_for_polls(collector)
    assert scrape is not None
    series = parse_text(scrape.text)
    names = {name for name, _ in series}
    assert {
        "rocketchat_livechat_queue_chats",
        "rocketchat_livechat_inquiries_queued",
        "rocketchat_livechat_agent_status",
    } <= names
    # The demo's chats have departments, as on a real server (rooms go without one only when
    # no department could take them).
    queue_departments = {
        dict(labels).get("department_id")
        for n, labels in series
        if n == "rocketchat_livechat_queue_chats"
    }
    assert queue_departments
    assert "" not in queue_departments


async def test_the_demo_reads_the_config_file_but_not_its_credentials(tmp_path: Path) -> None:
    config = {
        "rocketchat": {"url": "https://elsewhere.example", "username": "x", "timeout": "3s"},
        "poll": {"interval": "20s"},
        "collectors": {"queue": True, "agents": {"interval": "40s"}},
    }
    code, out, err = await run_cli(
        "--demo", "--check-config", "--config.file", write_config(tmp_path, config)
    )
    assert code == 0, err
    assert "queue every 20s, agents every 40s" in out
    assert "elsewhere" not in out


async def test_the_demo_refuses_a_bad_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"poll": {"interval": "soon"}})
    code, _, err = await run_cli("--demo", "--config.file", path)
    assert code == 2
    assert 'poll.interval: "soon" is not a duration' in err
