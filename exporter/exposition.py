"""The /metrics body: data series rendered once per snapshot, self-metrics on every scrape.

Rendering 10,000 series takes prometheus-client ~50-100 ms; a scrape must take a few ms. So the
data part of each snapshot is rendered once per variant (format x gzip), in a worker thread, and
cached as bytes. Only the variants scrapers asked for lately are rendered eagerly when a new
snapshot arrives; a variant asked for the first time is rendered on demand, once.

Large families are rendered a slice of samples at a time and kept as a tuple of chunks, never
joined: prometheus-client holds a dict per sample and every line of what it renders at once, so
one render of 50,000 series would need ~45 MB more at its peak, and each scrape that joined the
cached text to its self-metrics would copy 8 MB. A scrape sends the cached chunks as they are.

Each scrape appends the small self-metrics part. For gzip, the cached data part is a raw deflate
stream ended by a sync flush; the scrape compresses only the self part as the stream's final
block and writes the gzip trailer from the cached CRC. The result is one ordinary gzip member.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter.snapshot import Families, Family, FamilySlice, Snapshot

log = logging.getLogger(__name__)

GZIP_LEVEL = 6
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime
OPENMETRICS_EOF = b"# EOF\n"
# Samples per prometheus-client render: ~800 kB of text, ~3 MB of transient objects.
SLICE = 5000
# A variant nobody asked for in this long is no longer rendered eagerly.
WANTED_FOR = 900.0


class Format(Enum):
    TEXT = "text/plain; version=0.0.4; charset=utf-8"
    OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    @property
    def content_type(self) -> str:
        return self.value

    def render(self, registry: Collector) -> bytes:
        if self is Format.TEXT:
            return text_latest(registry)
        rendered: bytes = openmetrics_latest(registry)  # type: ignore[no-untyped-call]
        return rendered


@dataclass(frozen=True, slots=True)
class Variant:
    format: Format
    gzip: bool


def negotiate(accept: str, accept_encoding: str) -> Variant:
    """The variant a scraper prefers, by the q-values of its headers (RFC 9110, 12.5).

    OpenMetrics when its media type is listed and ranks at least as high as the text format
    (Prometheus ranks it first); otherwise the text format, which every scraper reads, even
    one that ranks nothing acceptable. gzip when `gzip` (or `*` without a `gzip` entry) has a
    q-value above 0; `gzip;q=0` refuses it."""
    types = _weights(accept)
    openmetrics = types.get("application/openmetrics-text", 0.0)
    text = max(types.get("text/plain", 0.0), types.get("text/*", 0.0), types.get("*/*", 0.0))
    codings = _weights(accept_encoding)
    gzip = codings.get("gzip", codings.get("*", 0.0))
    return Variant(
        Format.OPENMETRICS if openmetrics > 0 and openmetrics >= text else Format.TEXT,
        gzip > 0,
    )


def _weights(header: str) -> dict[str, float]:
    """Each listed name (lower case) with its highest q-value; a bad q-value counts as 0."""
    weights: dict[str, float] = {}
    for item in header.split(",")[:64]:  # a scraper lists a few; bound what a client can cost
        name, *params = (part.strip() for part in item.split(";"))
        if not name:
            continue
        weight = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                weight = _q_value(value.strip())
        name = name.lower()
        weights[name] = max(weights.get(name, 0.0), weight)
    return weights


def _q_value(text: str) -> float:
    # RFC 9110: 0 to 1 with at most three decimals; anything else is not a weight.
    if not re.fullmatch(r"(0(\.\d{0,3})?|1(\.0{0,3})?)", text):
        return 0.0
    return float(text)


Chunks = tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Body:
    """One scrape's answer, as the chunks to send one after the other."""

    chunks: Chunks

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks)


@dataclass(frozen=True, slots=True)
class DataPart:
    """The data series of one snapshot in one variant."""

    chunks: Chunks  # plain text, or a raw deflate stream ended by a sync flush
    crc: int = 0  # of the uncompressed text, for the gzip trailer
    size: int = 0  # of the uncompressed text

    @staticmethod
    def plain(text: Chunks) -> DataPart:
        return DataPart(text)

    @staticmethod
    def deflated(text: Chunks) -> DataPart:
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = [compressor.compress(chunk) for chunk in text]
        deflated.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        crc = 0
        for chunk in text:
            crc = zlib.crc32(chunk, crc)
        return DataPart((b"".join(deflated),), crc, sum(len(chunk) for chunk in text))

    def with_tail(self, tail: bytes, gzip: bool) -> Body:
        if not gzip:
            return Body((*self.chunks, tail))
        compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        end = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
        trailer = struct.pack(
            "<II", zlib.crc32(tail, self.crc), (self.size + len(tail)) & 0xFFFFFFFF
        )
        return Body((GZIP_HEADER, *self.chunks, end + trailer))


def render_text(snapshot: Snapshot, fmt: Format) -> Chunks:
    """`snapshot`'s data series in `fmt`, as chunks of at most SLICE samples."""
    return tuple(chunk for family in snapshot.families() for chunk in _render_family(family, fmt))


def _render_family(family: Family, fmt: Format) -> Iterator[bytes]:
    if len(family.samples) <= SLICE:
        yield fmt.render(FamilySlice(family, family.samples)).removesuffix(OPENMETRICS_EOF)
        return
    # Every slice renders as a whole family: the HELP and TYPE lines of the first one stay.
    header = fmt.render(FamilySlice(family, ())).removesuffix(OPENMETRICS_EOF)
    for start in range(0, len(family.samples), SLICE):
        text = fmt.render(FamilySlice(family, family.samples[start : start + SLICE]))
        text = text.removesuffix(OPENMETRICS_EOF)
        if start:
            if not text.startswith(header):
                raise AssertionError(f"{family.name}: a slice renders another header")
            text = text[len(header) :]
        yield text


def render_parts(
    snapshot: Snapshot, variants: Iterable[Variant], reuse: Mapping[Variant, DataPart] = {}
) -> dict[Variant, DataPart]:
    """Renders `snapshot`'s data series in each variant (CPU-bound: run it in a thread).
    Plain parts in `reuse` (of the same snapshot) spare rendering their format again."""
    texts = {v.format: part.chunks for v, part in reuse.items() if not v.gzip}
    parts: dict[Variant, DataPart] = {}
    for variant in variants:
        if variant.format not in texts:
            texts[variant.format] = render_text(snapshot, variant.format)
        text = texts[variant.format]
        parts[variant] = DataPart.deflated(text) if variant.gzip else DataPart.plain(text)
    return parts


class _OneFamily(Collector):
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


class SelfMetricsText:
    """Renders the self-metrics for every scrape, a family at a time, and reuses a family's
    text while its samples stay the same: the poll counters and histograms change once a poll,
    only a few process_* series on every scrape, and formatting is most of the cost."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._texts: dict[tuple[Format, str], tuple[list[Sample], bytes]] = {}

    def render(self, fmt: Format) -> bytes:
        pieces = []
        for metric in self._registry.collect():
            known = self._texts.get((fmt, metric.name))
            if known is not None and known[0] == metric.samples:
                pieces.append(known[1])
                continue
            text = fmt.render(_OneFamily(metric)).removesuffix(OPENMETRICS_EOF)
            self._texts[fmt, metric.name] = (metric.samples, text)
            pieces.append(text)
        if fmt is Format.OPENMETRICS:
            pieces.append(OPENMETRICS_EOF)
        return b"".join(pieces)


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
        self._self_metrics = SelfMetricsText(self_registry)
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
            started = time.perf_counter()
            parts = await asyncio.to_thread(render_parts, snapshot, variants) if variants else {}
            self._current = _Rendered(snapshot, parts)
            # The moment a scrape gets the new series: bench/ times polls against it.
            fields = {
                "collector": collector,
                "version": snapshot.version,
                "series": snapshot.series_count(),
                "variants": len(parts),
                "render": f"{time.perf_counter() - started:.3f}s",
            }
            log.debug("snapshot published", extra={"kv": fields})

    async def answer(self, variant: Variant) -> Body:
        """The body for one scrape: cached data part plus fresh self-metrics."""
        self._wanted[variant] = self._clock()
        rendered = self._current
        # The self-metrics are read together with the snapshot: a poll published and counted
        # while this variant's first render is awaited must not show without its series.
        tail = self._self_metrics.render(variant.format)
        part = rendered.parts.get(variant)
        if part is None:
            part = await self._render_on_demand(rendered, variant)
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

    async def _render_and_keep(self, rendered: _Rendered, variant: Variant) -> DataPart:
        parts = await asyncio.to_thread(render_parts, rendered.snapshot, [variant], rendered.parts)
        rendered.parts.update(parts)
        del rendered.pending[variant]
        return parts[variant]
