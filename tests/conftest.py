"""Shared test set-up."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import aiohttp
import aioresponses.core


class _StreamWriterCompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9, the newest, builds responses without the `stream_writer` argument
    that aiohttp 3.14 (a security release) requires (pnuckowski/aioresponses#289). A writer
    with nothing left to send is all a finished mock response needs."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
    aioresponses.core.ClientResponse = _StreamWriterCompatResponse  # type: ignore[attr-defined]
