"""Immutable snapshots of the data series, and the prometheus-client Collector that yields them.

Each collector's last good poll is one entry of a `Snapshot`. A poll replaces its entry whole,
so a series that is gone from Rocket.Chat's answer is gone from the next snapshot: stale series
cannot exist, and readers never need a lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.rocketchat.outcome import Outcome

# One sample: its label values (in the family's label order) and its value.
Sample = tuple[tuple[str, ...], float]
# A histogram's sample carries two more label values after the family's: the sample's suffix
# ("_bucket", "_sum", "_count") and its `le` ("" except on buckets).
Kind = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family with all its samples (a counter's name ends in _total)."""

    name: str
    documentation: str
    label_names: tuple[str, ...]
    samples: tuple[Sample, ...]
    kind: Kind = "gauge"

    def __len__(self) -> int:
        return len(self.samples)


Families = tuple[Family, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The data series of every collector that has data to serve, by collector name."""

    families_by_collector: Mapping[str, Families] = field(
        default_factory=lambda: MappingProxyType({})
    )
    version: int = 0

    def replace(self, collector: str, families: Families | None) -> Snapshot:
        """A new snapshot with `collector`'s series replaced (None: removed)."""
        updated = dict(self.families_by_collector)
        if families is None:
            updated.pop(collector, None)
        else:
            updated[collector] = families
        return Snapshot(MappingProxyType(updated), self.version + 1)

    def families(self) -> Iterator[Family]:
        for collector in sorted(self.families_by_collector):
            yield from self.families_by_collector[collector]

    def series_count(self) -> int:
        return sum(len(family) for family in self.families())


@dataclass(frozen=True, slots=True)
class CollectorStatus:
    """What the poller publishes about one collector, for the landing page: a value that the
    poller replaces after each poll, so that readers never see a half-updated one."""

    name: str
    interval: float
    outcome: Outcome | None = None
    message: str = ""  # the last failure's one-line reason, credentials redacted
    last_success: float | None = None  # Unix time
    series: int = 0
    serving: bool = False  # its series are in the snapshot


class FamilySlice(Collector):
    """Yields one family with only `samples` (some of its own), so that prometheus-client
    renders a large family a slice at a time."""

    def __init__(self, family: Family, samples: Sequence[Sample]) -> None:
        self._family = family
        self._samples = samples

    def collect(self) -> Iterator[Metric]:
        yield metric_of(self._family, self._samples)


def metric_of(family: Family, samples: Iterable[Sample]) -> Metric:
    if family.kind == "counter":
        counter = CounterMetricFamily(family.name, family.documentation, labels=family.label_names)
        for labels, value in samples:
            counter.add_metric(labels, value)
        return counter
    if family.kind == "histogram":
        return histogram(family, samples)
    return gauge(family, samples)


def histogram(family: Family, samples: Iterable[Sample]) -> Metric:
    metric = Metric(family.name, family.documentation, "histogram")
    width = len(family.label_names)
    for labels, value in samples:
        named = dict(zip(family.label_names, labels[:width], strict=True))
        suffix, le = labels[width], labels[width + 1]
        if le:
            named["le"] = le
        metric.add_sample(family.name + suffix, named, value)
    return metric


def gauge(family: Family, samples: Iterable[Sample]) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(family.name, family.documentation, labels=family.label_names)
    for labels, value in samples:
        metric.add_metric(labels, value)
    return metric


class Interner:
    """Shares one str object per distinct label value across a snapshot's samples: an agent's
    name and status repeat across departments, and at 50,000 rows the copies add up."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        return self._seen.setdefault(value, value)
