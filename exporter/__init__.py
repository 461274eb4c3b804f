"""Prometheus exporter for Rocket.Chat Omnichannel (livechat)."""

__version__ = "0.1.0"
