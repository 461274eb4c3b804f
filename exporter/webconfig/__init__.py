"""`--web.config.file`: TLS and basic auth for the exporter's own HTTP server, in the Prometheus
exporter-toolkit format (docs/web-config.md)."""

from exporter.webconfig import loader
from exporter.webconfig.basic_auth import BasicAuth, Verdict, parse_basic_authorization
from exporter.webconfig.loader import load_web_config
from exporter.webconfig.middleware import PROBE_PATHS, REALM, web_config_middleware
from exporter.webconfig.reload import WebConfigWatcher
from exporter.webconfig.schema import WebConfig, WebConfigError
from exporter.webconfig.tls import build_ssl_context

__all__ = [
    "PROBE_PATHS",
    "REALM",
    "BasicAuth",
    "Verdict",
    "WebConfig",
    "WebConfigError",
    "WebConfigWatcher",
    "build_ssl_context",
    "load_web_config",
    "loader",
    "parse_basic_authorization",
    "web_config_middleware",
]
