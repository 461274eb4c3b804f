"""The /metrics body: data series rendered once per snapshot, self-metrics on every scrape.

Rendering 10,000 series takes prometheus-client ~50-100 ms; a scrape must take a few ms. So the
data part of each snapshot is rendered once per variant (format x gzip), in a worker thread, and
cached as bytes. Only the variants scrapers asked for lately are rendered eagerly when a new
snapshot arrives; a variant asked for the first time is rendered on demand, once.

Each scrape appends the small self-metrics part. For gzip, the cached data part is a raw deflate
stream ended by a sync flush; the scrape compresses only the self part as the stream's final
block and writes the gzip trailer from the cached CRC. The result is one ordinary gzip member.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from exporter.snapshot import Families, Snapshot, SnapshotCollector

GZIP_LEVEL = 6
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime
OPENMETRICS_EOF = b"# EOF\n"
# A variant nobody asked for in this long is no longer rendered eagerly.
WANTED_FOR = 900.0


class Format(Enum):
    TEXT = "text/plain; version=0.0.4; charset=utf-8"
    OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    @property
    def content_type(self) -> str:
        return self.value

    def render(self, registry: CollectorRegistry) -> bytes:
        if self is Format.TEXT:
            return text_latest(registry)
        rendered: bytes = openmetrics_latest(registry)  # type: ignore[no-untyped-call]
        return rendered


@dataclass(frozen=True, slots=True)
class Variant:
    format: Format
    gzip: bool


def negotiate(accept: str, accept_encoding: str) -> Variant:
    """OpenMetrics when the scraper lists it (Prometheus does), else the text format; gzip when
    accepted. A media type or coding with q=0 counts as refused."""
    return Variant(
        Format.OPENMETRICS if _accepts(accept, "application/openmetrics-text") else Format.TEXT,
        _accepts(accept_encoding, "gzip"),
    )


def _accepts(header: str, wanted: str) -> bool:
    for item in header.split(","):
        name, *params = (part.strip() for part in item.split(";"))
        if name.lower() != wanted:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


@dataclass(frozen=True, slots=True)
class DataPart:
    """The data series of one snapshot in one variant."""

    body: bytes  # plain text, or a raw deflate stream ended by a sync flush
    crc: int = 0  # of the uncompressed text, for the gzip trailer
    size: int = 0  # of the uncompressed text

    @staticmethod
    def plain(text: bytes) -> DataPart:
        return DataPart(text)

    @staticmethod
    def deflated(text: bytes) -> DataPart:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return DataPart(body, zlib.crc32(text), len(text))

    def with_tail(self, tail: bytes, gzip: bool) -> bytes:
        if not gzip:
            return self.body + tail
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        end = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
        trailer = struct.pack(
            "<II", zlib.crc32(tail, self.crc), (self.size + len(tail)) & 0xFFFFFFFF
        )
        return b"".join((GZIP_HEADER, self.body, end, trailer))


def render_parts(
    snapshot: Snapshot, variants: Iterable[Variant], reuse: Mapping[Variant, DataPart] = {}
) -> dict[Variant, DataPart]:
    """Renders `snapshot`'s data series in each variant (CPU-bound: run it in a thread).
    Plain parts in `reuse` (of the same snapshot) spare rendering their format again."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    texts = {v.format: part.body for v, part in reuse.items() if not v.gzip}
    parts: dict[Variant, DataPart] = {}
    for variant in variants:
        if variant.format not in texts:
            text = variant.format.render(registry)
            texts[variant.format] = text.removesuffix(OPENMETRICS_EOF)
        text = texts[variant.format]
        parts[variant] = DataPart.deflated(text) if variant.gzip else DataPart.plain(text)
    return parts


@dataclass
class _Rendered:
    """A snapshot and the variants of it rendered so far (filled in lazily)."""

    snapshot: Snapshot
    parts: dict[Variant, DataPart] = field(default_factory=dict)
    pending: dict[Variant, asyncio.Task[DataPart]] = field(default_factory=dict)


class Exposition:
    """Holds the served snapshot; the poller publishes into it, the web layer scrapes it."""

    def __init__(
        self, self_registry: CollectorRegistry, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._self_registry = self_registry
        self._clock = clock
        self._current = _Rendered(Snapshot())
        self._wanted: dict[Variant, float] = {}
        self._publish_lock = asyncio.Lock()

    @property
    def snapshot(self) -> Snapshot:
        return self._current.snapshot

    async def publish(self, collector: str, families: Families | None) -> None:
        """Replaces `collector`'s series (None: drops them) and serves the result once the
        variants in demand are rendered. Scrapes meanwhile get the previous snapshot."""
        async with self._publish_lock:
            snapshot = self._current.snapshot.replace(collector, families)
            variants = self._variants_in_demand()
            parts = await asyncio.to_thread(render_parts, snapshot, variants) if variants else {}
            self._current = _Rendered(snapshot, parts)

    async def scrape(self, variant: Variant) -> bytes:
        """The whole body for one scrape: cached data part plus fresh self-metrics."""
        self._wanted[variant] = self._clock()
        rendered = self._current
        part = rendered.parts.get(variant)
        if part is None:
            part = await self._render_on_demand(rendered, variant)
        tail = variant.format.render(self._self_registry)
        return part.with_tail(tail, variant.gzip)

    def _variants_in_demand(self) -> list[Variant]:
        now = self._clock()
        for variant, asked in list(self._wanted.items()):
            if now - asked > WANTED_FOR:
                del self._wanted[variant]
        return list(self._wanted)

    async def _render_on_demand(self, rendered: _Rendered, variant: Variant) -> DataPart:
        task = rendered.pending.get(variant)
        if task is None:
            task = asyncio.ensure_future(self._render_and_keep(rendered, variant))
            rendered.pending[variant] = task
        # shield: a scraper that hangs up must not cancel the render others wait for.
        return await asyncio.shield(task)

    @staticmethod
    async def _render_and_keep(rendered: _Rendered, variant: Variant) -> DataPart:
        parts = await asyncio.to_thread(render_parts, rendered.snapshot, [variant], rendered.parts)
        rendered.parts.update(parts)
        del rendered.pending[variant]
        return parts[variant]
