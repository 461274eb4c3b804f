"""Command line: parses flags, loads and checks the configuration, wires the parts, runs them.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or a passing --check-config; 1 when the
exporter cannot run (e.g. its port is taken); 2 for a bad flag or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import logging
import platform
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.collectors import Collector
from exporter.collectors.agents import AgentsCollector
from exporter.collectors.departments import DepartmentDirectory
from exporter.collectors.inquiries import InquiriesCollector
from exporter.collectors.queue import QueueCollector
from exporter.config import (
    CollectorConfig,
    CollectorsConfig,
    Config,
    ConfigError,
    PollConfig,
    Secret,
    describe,
    load_config,
    redacted_dump,
)
from exporter.exposition import Exposition
from exporter.logs import LEVELS, RedactingFilter, setup_logging
from exporter.poller import Poller, Schedule, rate_limit_warnings
from exporter.rocketchat.auth import Authenticator, PasswordAuth, TokenAuth
from exporter.rocketchat.client import RocketChatClient, tls_context
from exporter.selfmetrics import SelfMetrics
from exporter.web import ConnectionLimits, GuardedSite, WebOptions, create_app
from exporter.webconfig import WebConfigError, WebConfigWatcher, web_config_middleware

log = logging.getLogger("exporter")

SHUTDOWN_GRACE = 1.0  # seconds for in-flight scrapes; the whole stop stays under 2 s
DEMO_INTERVAL = 10.0
# While a render thread runs, the event loop waits up to the interpreter's switch interval (5 ms
# by default) each time it wants the GIL back, and a scrape wants it dozens of times.
SWITCH_INTERVAL = 0.0005  # the demo server limits 10 calls a minute per endpoint, like the real one


@dataclass(frozen=True)
class Options:
    config_file: str | None
    listen_host: str | None
    listen_port: int
    telemetry_path: str
    web_config_file: str | None
    log_level: str
    log_format: str
    check_config: bool
    demo: bool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rocketchat-livechat-exporter",
        description="Prometheus exporter for Rocket.Chat Omnichannel (livechat).",
    )
    add = parser.add_argument
    add(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        help="YAML configuration file (env LIVECHAT_EXPORTER_CONFIG)",
    )
    add(
        "--web.listen-address",
        dest="listen_address",
        default=":9776",
        metavar="ADDR",
        help="host:port to listen on; :port means every interface (default :9776)",
    )
    add(
        "--web.telemetry-path",
        dest="telemetry_path",
        default="/metrics",
        metavar="PATH",
        help="path of the metrics (default /metrics)",
    )
    add(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="TLS and basic auth for this server, in the exporter-toolkit format",
    )
    add("--log.level", dest="log_level", default="info", choices=list(LEVELS))
    add("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])
    add(
        "--check-config",
        dest="check_config",
        action="store_true",
        help="load and validate the configuration, print a verdict, exit 0 (good) or 2 (bad)",
    )
    add(
        "--demo",
        action="store_true",
        help="poll a built-in simulated Rocket.Chat instead of a real one",
    )
    add(
        "--version",
        action="version",
        version=f"rocketchat-livechat-exporter {__version__} (Python {platform.python_version()})",
    )
    return parser


def parse_listen_address(text: str) -> tuple[str | None, int]:
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError("--web.listen-address", f'"{text}" is not host:port (e.g. :9776)')
    host = host.removeprefix("[").removesuffix("]")
    return (host or None), int(port_text)


def parse_options(argv: Sequence[str] | None) -> Options:
    args = _parser().parse_args(argv)
    host, port = parse_listen_address(args.listen_address)
    if not args.telemetry_path.startswith("/"):
        raise ConfigError("--web.telemetry-path", f'"{args.telemetry_path}" must start with /')
    if args.telemetry_path.startswith("/-/"):
        raise ConfigError("--web.telemetry-path", "/-/ is kept for the health endpoints")
    return Options(
        args.config_file,
        host,
        port,
        args.telemetry_path,
        args.web_config_file,
        args.log_level,
        args.log_format,
        args.check_config,
        args.demo,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_options(argv)
        config = load_config(options.config_file, demo=options.demo)
        web_config = WebConfigWatcher(options.web_config_file) if options.web_config_file else None
    except (ConfigError, WebConfigError) as error:
        print(f"rocketchat-livechat-exporter: config error: {error}", file=sys.stderr)
        return 2
    redactor = setup_logging(options.log_level, options.log_format, config.secrets())
    log.debug("effective configuration", extra={"kv": {"config": redacted_dump(config)}})
    if options.check_config:
        web = f"; web config {options.web_config_file}" if web_config else ""
        print(f"config OK: {describe(config)}{web}")
        return 0
    try:
        return asyncio.run(serve(config, options, redactor, web_config))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    finally:
        if web_config is not None:
            web_config.close()


# --- wiring ------------------------------------------------------------------------------


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


def make_collectors(config: Config, client: RocketChatClient) -> list[Collector]:
    enabled = config.collectors
    departments = DepartmentDirectory(enabled.department_refresh)
    collectors: list[Collector] = []
    if enabled.queue.enabled:
        collectors.append(QueueCollector(client, config.poll, departments))
    if enabled.inquiries.enabled:
        collectors.append(InquiriesCollector(client, config.poll, departments))
    if enabled.agents.enabled:
        collectors.append(AgentsCollector(client, config.poll))
    return collectors


def demo_config(config: Config, url: str, user_id: str, token: str) -> Config:
    """Points the configuration at the simulated server; without a config file, the demo also
    turns every collector on and polls at the simulated server's pace."""
    rocketchat = dataclasses.replace(
        config.rocketchat,
        url=url,
        user_id=user_id,
        auth_token=Secret(token),
        auth_token_file="",
        username="",
        password_file="",
        password=Secret(""),
    )
    config = dataclasses.replace(config, rocketchat=rocketchat)
    if config.source != "(no config file)":
        return config
    on = CollectorConfig(True)
    return dataclasses.replace(
        config,
        poll=PollConfig(interval=DEMO_INTERVAL),
        source="(demo)",
        collectors=CollectorsConfig(queue=on, inquiries=on, agents=on),
    )


def tune_runtime() -> None:
    """Process-wide settings for scrapes that stay fast while a large poll is decoded and
    rendered in worker threads (bench/ measures them at 50,000 series):

    - a lower switch interval: a worker holding the GIL gives it back to the event loop within
      0.5 ms instead of 5 ms, and a scrape of 8 MB needs it back dozens of times;
    - `gc.freeze()`, once everything is loaded: the ~40,000 objects of the modules never become
      garbage, yet every full collection scanned them, holding the GIL ~12 ms once or twice a
      poll.
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
    gc.freeze()


async def serve(
    config: Config,
    options: Options,
    redactor: RedactingFilter,
    web_config: WebConfigWatcher | None = None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if web_config is not None:  # SIGHUP re-reads the web config now, as the toolkit does
        loop.add_signal_handler(signal.SIGHUP, lambda: web_config.maybe_reload(force=True))
    async with contextlib.AsyncExitStack() as stack:
        if options.demo:
            from exporter.fake import start_demo_server

            demo = await start_demo_server()
            stack.push_async_callback(demo.stop)
            config = demo_config(config, demo.url, demo.user_id, demo.token)
            redactor.add([demo.token])
            log.info("demo: simulated Rocket.Chat started", extra={"kv": {"url": demo.url}})
        return await _run(config, options, redactor, stop, stack, web_config)
    return 0


async def _run(
    config: Config,
    options: Options,
    redactor: RedactingFilter,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
    web_config: WebConfigWatcher | None = None,
) -> int:
    log.info("starting", extra={"kv": {"version": __version__, "config": describe(config)}})
    client = await stack.enter_async_context(make_client(config, redactor))
    schedules = [Schedule(c, config.interval_of(c.name)) for c in make_collectors(config, client)]
    for warning in rate_limit_warnings(schedules):
        log.warning(warning)
    metrics = SelfMetrics(config.collectors.enabled_names())
    exposition = Exposition(metrics.registry)
    poller = Poller(schedules, client.ready_at, exposition, metrics, config.poll.max_staleness)
    limits = ConnectionLimits()
    web_options = WebOptions(options.telemetry_path, config.rocketchat.url, limits)
    middlewares = [web_config_middleware(web_config)] if web_config is not None else []
    app = create_app(exposition, web_options, lambda: poller.status.values(), middlewares)
    runner = web.AppRunner(
        app,
        keepalive_timeout=limits.keepalive_timeout,
        shutdown_timeout=SHUTDOWN_GRACE,
        access_log=None,
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    tune_runtime()
    tls = web_config.ssl_context if web_config is not None else None
    try:
        await GuardedSite(runner, options.listen_host, options.listen_port, ssl_context=tls).start()
    except OSError as error:
        where = f"{options.listen_host or ''}:{options.listen_port}"
        log.error("cannot listen", extra={"kv": {"address": where, "error": error.strerror}})
        return 1
    addresses = ", ".join(_address(a) for a in runner.addresses)
    scheme = "https" if tls is not None else "http"
    log.info(
        "listening",
        extra={"kv": {"address": addresses, "path": options.telemetry_path, "scheme": scheme}},
    )
    if options.demo:
        log.info(
            "demo running: open this in a browser",
            extra={"kv": {"url": _browser_url(options, scheme, runner.addresses)}},
        )
    polling = asyncio.create_task(poller.run(), name="poller")
    stopping = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if polling.done() and not polling.cancelled() and polling.exception() is not None:
        log.error("poller stopped", exc_info=polling.exception())
        return 1
    log.info("shutting down")
    polling.cancel()
    stopping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await polling
    return 0


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def _browser_url(options: Options, scheme: str, addresses: list[Any]) -> str:
    host = options.listen_host or "localhost"
    if host in ("0.0.0.0", "::"):
        host = "localhost"
    port = addresses[0][1] if addresses else options.listen_port
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}/"
