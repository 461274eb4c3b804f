"""`load_web_config`: the schema's checks, then the certificates proven to load."""

from __future__ import annotations

from exporter.webconfig.schema import WebConfig, parse
from exporter.webconfig.tls import build_ssl_context


def load_web_config(path: str) -> WebConfig:
    """Reads and fully validates a web config file, certificates and hashes included (the
    toolkit's web.Validate); raises WebConfigError."""
    config = parse(path)
    build_ssl_context(config)  # proves that the certificate, key and CA load
    return config
