"""The exporter's HTTP server: routes in app.py, per-connection bounds in limits.py."""

from exporter.web.app import StatusView, WebOptions, create_app, landing_page
from exporter.web.limits import ConnectionLimits, GuardedSite

__all__ = [
    "ConnectionLimits",
    "GuardedSite",
    "StatusView",
    "WebOptions",
    "create_app",
    "landing_page",
]
