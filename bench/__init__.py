"""Benchmark: what the exporter costs on both sides, against a hand-written baseline.

`python -m bench` (or `scripts/bench`) runs the real exporter process, the baseline
(`bench/baseline.py`: prometheus-client `Gauge.labels().set()` and its stock HTTP server,
rendering on every scrape) and a bare aiohttp handler serving bytes of the same size, each
against the fake Rocket.Chat (`bench/fakeproc.py`) in its own process on loopback. See
README.md, "Performance", for how to read the results.
"""
