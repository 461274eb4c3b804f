"""Command line: parses flags, loads and checks the configuration, wires the parts, runs them.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT) or a passing --check-config; 1 when the
exporter cannot run (e.g. its port is taken); 2 for a bad flag or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import platform
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.config import Config, ConfigError, describe, load_config, redacted_dump
from exporter.exposition import Exposition
from exporter.logs import LEVELS, RedactingFilter, setup_logging
from exporter.poller import Poller
from exporter.reload import Collectors, Reloader, ReloadMetrics
from exporter.selfmetrics import SelfMetrics
from exporter.web import ConnectionLimits, GuardedSite, WebOptions, create_app
from exporter.webconfig import WebConfigError, WebConfigWatcher, web_config_middleware
from exporter.yamlfile import quote

log = logging.getLogger("exporter")

SHUTDOWN_GRACE = 1.0  # seconds for in-flight scrapes; the whole stop stays under 2 s
# While a render thread runs, the event loop waits up to the interpreter's switch interval (5 ms
# by default) each time it wants the GIL back, and a scrape wants it dozens of times.
SWITCH_INTERVAL = 0.0005
# The telemetry path is a literal path: aiohttp would read "{...}" as a route pattern.
TELEMETRY_PATH = re.compile(r"/[A-Za-z0-9/._~-]*")


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


# flag, default, help: the Prometheus exporter conventions (contract: "Command line").
_VALUE_FLAGS = (
    ("--config.file", None, "YAML configuration file (env LIVECHAT_EXPORTER_CONFIG)"),
    ("--web.listen-address", ":9776", "host:port to listen on; :port means every interface"),
    ("--web.telemetry-path", "/metrics", "path of the metrics"),
    ("--web.config.file", None, "TLS and basic auth for this server (exporter-toolkit format)"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rocketchat-livechat-exporter",
        description="Prometheus exporter for Rocket.Chat Omnichannel (livechat).",
    )
    add = parser.add_argument
    for flag, default, text in _VALUE_FLAGS:
        dest = flag.removeprefix("--").replace(".", "_").replace("-", "_")
        metavar = "ADDR" if flag.endswith("address") else "PATH"
        text += " (default %(default)s)" if default else ""
        add(flag, dest=dest, default=default, metavar=metavar, help=text)
    add("--log.level", dest="log_level", default="info", choices=list(LEVELS))
    add("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"])
    add(
        "--check-config",
        dest="check_config",
        action="store_true",
        help="load and validate the configuration, print a verdict, exit 0 (good) or 2 (bad)",
    )
    add("--demo", action="store_true", help="poll a built-in simulated Rocket.Chat")
    add(
        "--version",
        action="version",
        version=f"rocketchat-livechat-exporter {__version__} (Python {platform.python_version()})",
    )
    return parser


def parse_listen_address(text: str) -> tuple[str | None, int]:
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError("--web.listen-address", f"{quote(text)} is not host:port (e.g. :9776)")
    host = host.removeprefix("[").removesuffix("]")
    return (host or None), int(port_text)


def parse_options(argv: Sequence[str] | None) -> Options:
    args = _parser().parse_args(argv)
    host, port = parse_listen_address(args.web_listen_address)
    path = args.web_telemetry_path
    if not path.startswith("/"):
        raise ConfigError("--web.telemetry-path", f"{quote(path)} must start with /")
    if not TELEMETRY_PATH.fullmatch(path):
        raise ConfigError(
            "--web.telemetry-path",
            f"{quote(path)} must be a literal path of letters, digits and / . _ ~ -",
        )
    if path.startswith("/-/"):
        raise ConfigError("--web.telemetry-path", "/-/ is kept for the health endpoints")
    return Options(
        args.config_file,
        host,
        port,
        path,
        args.web_config_file,
        args.log_level,
        args.log_format,
        args.check_config,
        args.demo,
    )


def main(argv: Sequence[str] | None = None) -> int:
    # Until the event loop takes SIGHUP over for reloads, it must not end the process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        options = parse_options(argv)
        config = config_loader(options, None)()
        web_config = WebConfigWatcher(options.web_config_file) if options.web_config_file else None
    except (ConfigError, WebConfigError) as error:
        print(f"rocketchat-livechat-exporter: config error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug met by odd input: still one line, still exit 2
        problem = f"{type(error).__name__}: {error}"[:200]
        print(f"rocketchat-livechat-exporter: config error: {problem}", file=sys.stderr)
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


def config_loader(options: Options, demo: Any) -> Callable[[], Config]:
    """What loads the config, at start and on each reload. With --demo, the file is pointed at
    the simulated server (`demo`: its running instance; None: only check the file)."""
    if not options.demo:
        return lambda: load_config(options.config_file)
    from exporter import demo as demo_mode

    target = demo_mode.CHECK_ONLY if demo is None else demo_mode.target_of(demo)
    return lambda: demo_mode.demo_config(options.config_file, os.environ, target)


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
    async with contextlib.AsyncExitStack() as stack:
        load = config_loader(options, None)
        if options.demo:
            from exporter.demo import start_demo

            server, config = await start_demo(options.config_file, os.environ)
            stack.push_async_callback(server.stop)
            load = config_loader(options, server)
            redactor.add(config.secrets())
            log.info("demo: simulated Rocket.Chat started", extra={"kv": {"url": server.url}})
        return await _run(config, options, redactor, stop, stack, load, web_config)
    return 0


async def _run(
    config: Config,
    options: Options,
    redactor: RedactingFilter,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
    load: Callable[[], Config],
    web_config: WebConfigWatcher | None = None,
) -> int:
    log.info("starting", extra={"kv": {"version": __version__, "config": describe(config)}})
    metrics = SelfMetrics(config.collectors.enabled_names())
    exposition = Exposition(metrics.registry)
    poller = Poller(
        [], _never_gated, exposition, metrics, config.poll.max_staleness, redact=redactor.clean
    )
    collectors = Collectors(config, poller, metrics, redactor)
    stack.push_async_callback(collectors.close)
    try:
        await collectors.start()
    except ConfigError as error:  # a collector this build cannot make
        log.error("config error", extra={"kv": {"error": str(error)}})
        return 2
    reloader = Reloader(
        load, collectors, ReloadMetrics(metrics), redactor, web_config, options.web_config_file
    )
    _on_signal(signal.SIGHUP, reloader.reload)
    limits = ConnectionLimits()
    web_options = WebOptions(options.telemetry_path, config.rocketchat.url, limits)
    middlewares = [web_config_middleware(web_config)] if web_config is not None else []
    app = create_app(exposition, web_options, poller.statuses, middlewares, reload=reloader.reload)
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
    _log_listening(options, runner, tls is not None)
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


def _never_gated(_: str) -> float:
    return 0.0  # each schedule brings its client's gate


_signal_tasks: set[asyncio.Task[Any]] = set()


def _on_signal(signum: int, handler: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """Runs `handler` in a task at each `signum`; one at a time is the handler's business."""

    def spawn() -> None:
        task = asyncio.create_task(handler(), name=f"signal-{signum}")
        _signal_tasks.add(task)
        task.add_done_callback(_signal_tasks.discard)

    asyncio.get_running_loop().add_signal_handler(signum, spawn)


def _log_listening(options: Options, runner: web.AppRunner, tls: bool) -> None:
    addresses = ", ".join(_address(a) for a in runner.addresses)
    scheme = "https" if tls else "http"
    log.info(
        "listening",
        extra={"kv": {"address": addresses, "path": options.telemetry_path, "scheme": scheme}},
    )
    if options.demo:
        from exporter.demo import browser_url

        port = runner.addresses[0][1] if runner.addresses else options.listen_port
        log.info(
            "demo running: open this in a browser",
            extra={"kv": {"url": browser_url(options.listen_host, port, scheme)}},
        )


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)
