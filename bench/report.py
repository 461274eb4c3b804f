"""Markdown tables and the targets of issue 6, from the benchmark's results.

`python -m bench.report bench/results/FILE.json` prints them again.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str, str, str]


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(_finite(results), indent=1)


def _finite(value: Any) -> Any:
    """NaN (no measurement) as null, so the file is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_finite(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def ms(value: Any) -> str:
    v = _num(value)
    if math.isnan(v):
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def size(value: Any) -> str:
    v = _num(value)
    if math.isnan(v):
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} MB"
    return f"{v / 1e3:.1f} kB" if v >= 1e3 else f"{v:.0f} B"


def ratio(numerator: Any, denominator: Any) -> str:
    a, b = _num(numerator), _num(denominator)
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return "-"
    r = a / b
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 0.1 else f"{r:.2f}x"


def pair(a: str, b: str) -> str:
    return f"{a} / {b}"


def _get(data: dict[str, Any], *path: str) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def size_table(figures: dict[str, Any]) -> list[Row]:
    ex, base, bare = (figures.get(t, {}) for t in ("exporter", "baseline", "bare"))
    rows: list[Row] = []

    def poll_row(label: str, key: str, fmt: Any) -> None:
        e, b = _get(ex, "polls", key), _get(base, "polls", key)
        rows.append((label, fmt(e), fmt(b), "", ratio(b, e), ""))

    poll_row("requests per poll", "requests", lambda v: f"{_num(v):g}")
    poll_row("bytes received per poll", "wire_bytes", size)
    poll_row("poll wall time, ms (first request → served)", "wall_s", lambda v: ms(_num(v) * 1e3))
    poll_row("answer's last byte → snapshot served, ms", "served_ms", ms)
    poll_row("CPU seconds per poll", "cpu_s", lambda v: f"{_num(v):.3f}")
    for variant, clients in (("text", 1), ("gzip", 1), ("text", 8), ("gzip", 8)):
        key = f"{variant}_{clients}"
        lat = [_get(t, "steady", "scrape", key) or {} for t in (ex, base, bare)]
        p50 = [x.get("p50_ms") for x in lat]
        p99 = [x.get("p99_ms") for x in lat]
        rows.append(
            (
                f"/metrics p50 / p99, ms: {variant}, {clients} client{'s' if clients > 1 else ''}",
                pair(ms(p50[0]), ms(p99[0])),
                pair(ms(p50[1]), ms(p99[1])),
                pair(ms(p50[2]), ms(p99[2])),
                pair(ratio(p50[1], p50[0]), ratio(p99[1], p99[0])),
                pair(ratio(p50[0], p50[2]), ratio(p99[0], p99[2])),
            )
        )
    for variant in ("text", "gzip"):
        rate = [
            [_get(t, "steady", "scrape", f"{variant}_{c}", "per_second") for c in (1, 8)]
            for t in (ex, base, bare)
        ]
        rows.append(
            (
                f"scrapes per second: {variant}, 1 / 8 clients",
                pair(*(f"{_num(r):,.0f}" for r in rate[0])),
                pair(*(f"{_num(r):,.1f}" for r in rate[1])),
                pair(*(f"{_num(r):,.0f}" for r in rate[2])),
                pair(*(ratio(e, b) for e, b in zip(rate[0], rate[1], strict=True))),
                pair(*(ratio(e, b) for e, b in zip(rate[0], rate[2], strict=True))),
            )
        )
    sizes = [_get(t, "steady", "size") or {} for t in (ex, base)]
    rows.append(
        (
            "exposition size: text / gzip",
            pair(size(sizes[0].get("text")), size(sizes[0].get("gzip"))),
            pair(size(sizes[1].get("text")), size(sizes[1].get("gzip"))),
            "same as exporter",
            "",
            "",
        )
    )
    for key, label in DURING:
        rows.append(during_row(ex, base, key, label))
    peaks = [(_get(t, "peak_rss_mb"), _get(t, "steady", "peak_rss_mb")) for t in (ex, base, bare)]
    rows.append(
        (
            "peak RSS, MB: polling / scraping",
            pair(*(f"{_num(v):.0f}" for v in peaks[0])),
            pair(*(f"{_num(v):.0f}" for v in peaks[1])),
            f"- / {_num(peaks[2][1]):.0f}",
            pair(*(ratio(b, e) for e, b in zip(peaks[0], peaks[1], strict=True))),
            "",
        )
    )
    return rows


DURING = (
    ("during_poll", "while a poll is processed"),
    ("during_poll_text", "while a poll is processed: text"),
    ("during_poll_gzip", "while a poll is processed: gzip"),
)


def during_row(ex: dict[str, Any], base: dict[str, Any], key: str, label: str) -> Row:
    e, b = _get(ex, key) or {}, _get(base, key) or {}
    return (
        f"/metrics p50 / p99 {label}, ms",
        pair(ms(e.get("p50_ms")), ms(e.get("p99_ms"))),
        pair(ms(b.get("p50_ms")), ms(b.get("p99_ms"))),
        "",
        pair(ratio(b.get("p50_ms"), e.get("p50_ms")), ratio(b.get("p99_ms"), e.get("p99_ms"))),
        "",
    )


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def paging_table(medians: dict[str, Any]) -> str:
    rows = []
    for rows_count, figures in medians.items():
        for name, label in (("page_size_0", "0 (falls back)"), ("page_size_100", "100")):
            case = _get(figures, "paging", name)
            if not case:
                continue
            rows.append(
                (
                    f"{int(rows_count):,}",
                    label,
                    f"{_num(case['requests']):g} (fewest: {case['fewest_requests']})",
                    size(case["wire_bytes"]),
                    ms(_num(case["wall_s"]) * 1e3),
                    ms(case["served_ms"]),
                    f"{_num(case['cpu_s']):.3f}",
                )
            )
    if not rows:
        return ""
    header = (
        "rows",
        "page_size",
        "requests per poll",
        "bytes received",
        "poll wall time, ms",
        "last byte → served, ms",
        "CPU s per poll",
    )
    return markdown(header, rows)


def targets(results: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """Issue 6's targets that these results cover: (target, met, the figures)."""
    medians: dict[str, Any] = results["medians"]
    checks: list[tuple[str, bool, str]] = []
    for rows_count, figures in medians.items():
        requests = _num(_get(figures, "exporter", "polls", "requests"))
        if not math.isnan(requests):
            checks.append(
                (
                    f"{int(rows_count):,} rows: one request per poll (count=0)",
                    requests == 1,
                    f"{requests:g}",
                )
            )
        for name in ("page_size_0", "page_size_100"):
            case = _get(figures, "paging", name)
            if case:
                checks.append(
                    (
                        f"{int(rows_count):,} rows, paging ({name}): fewest pages",
                        _num(case["requests"]) <= case["fewest_requests"],
                        f"{_num(case['requests']):g} (fewest {case['fewest_requests']})",
                    )
                )
    ten = medians.get("10000")
    if ten and all(_get(ten, t, "steady", "scrape") for t in ("exporter", "baseline", "bare")):
        ex = _get(ten, "exporter", "steady", "scrape") or {}
        base = _get(ten, "baseline", "steady", "scrape") or {}
        bare = _get(ten, "bare", "steady", "scrape") or {}
        for variant in ("text", "gzip"):
            key = f"{variant}_1"
            e50, e99 = _num(ex[key]["p50_ms"]), _num(ex[key]["p99_ms"])
            checks.append(
                (f"10,000 series, {variant}: p99 < 5 ms, 1 client", e99 < 5, f"{e99:.2f} ms")
            )
            b50, b99 = _num(base[key]["p50_ms"]), _num(base[key]["p99_ms"])
            checks.append(
                (
                    f"10,000 series, {variant}: ≥ 20x faster than the baseline (p50, p99)",
                    b50 / e50 >= 20 and b99 / e99 >= 20,
                    f"{b50 / e50:.0f}x, {b99 / e99:.0f}x",
                )
            )
            r50, r99 = e50 / _num(bare[key]["p50_ms"]), e99 / _num(bare[key]["p99_ms"])
            checks.append(
                (
                    f"10,000 series, {variant}: within 3x of the bare handler (p50, p99)",
                    r50 <= 3 and r99 <= 3,
                    f"{r50:.1f}x, {r99:.1f}x",
                )
            )
        served = _num(_get(ten, "exporter", "polls", "served_ms"))
        checks.append(
            ("10,000 rows: served ≤ 300 ms after the last byte", served <= 300, f"{served:.0f} ms")
        )
    fifty = medians.get("50000")
    if fifty and _get(fifty, "exporter", "polls"):
        served = _num(_get(fifty, "exporter", "polls", "served_ms"))
        checks.append(
            ("50,000 rows: served ≤ 1.5 s after the last byte", served <= 1500, f"{served:.0f} ms")
        )
        during = _num(_get(fifty, "exporter", "during_poll", "p99_ms"))
        checks.append(
            ("50,000 rows: /metrics p99 < 50 ms during a poll", during < 50, f"{during:.1f} ms")
        )
        peak = max(
            _num(_get(fifty, "exporter", "peak_rss_mb")),
            _num(_get(fifty, "exporter", "steady", "peak_rss_mb")),
        )
        checks.append(("50,000 series: peak RSS < 120 MB", peak < 120, f"{peak:.0f} MB"))
    return checks


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = results["load_average"]
    parts = [
        f"Run {results['date']} on {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, "
        f"{m['system']}; load average {load['before'][0]:.2f} before, "
        f"{load['after'][0]:.2f} after; medians of {results['plan']['repeats']} rounds.",
    ]
    header = (
        "",
        "exporter",
        "baseline",
        "bare handler",
        "baseline ÷ exporter",
        "exporter ÷ bare",
    )
    for rows_count, figures in results["medians"].items():
        parts.append(f"\n**{int(rows_count):,} queue rows**\n")
        parts.append(markdown(header, size_table(figures)))
    paging = paging_table(results["medians"])
    if paging:
        parts.append("\n**Paging (API_Allow_Infinite_Count off: pages of 100 at most)**\n")
        parts.append(paging)
    checks = targets(results)
    if checks:
        parts.append("\n**Targets**\n")
        parts.append(
            markdown(
                ("target", "measured", "met"),
                [(t, figure, "yes" if ok else "**no**") for t, ok, figure in checks],
            )
        )
    return "\n".join(parts)


def summary(results: dict[str, Any]) -> str:
    """One compact table for the README: exporter / baseline (/ bare handler) per queue size."""
    medians: dict[str, Any] = results["medians"]
    sizes = list(medians)

    def cells(fmt: Any, *paths: tuple[str, ...]) -> list[str]:
        return [" / ".join(fmt(_get(medians[n], *path)) for path in paths) for n in sizes]

    def msec(v: Any) -> str:
        return ms(_num(v) * 1e3)

    rows: list[list[str]] = [
        ["requests per poll: count=0 / pages of 100",
         *cells(lambda v: f"{_num(v):g}", ("exporter", "polls", "requests"),
                ("paging", "page_size_100", "requests"))],
        ["bytes received per poll", *cells(size, ("exporter", "polls", "wire_bytes"))],
        ["poll wall time, ms (first request → served)",
         *cells(msec, ("exporter", "polls", "wall_s"), ("baseline", "polls", "wall_s"))],
        ["answer's last byte → snapshot served, ms",
         *cells(ms, ("exporter", "polls", "served_ms"), ("baseline", "polls", "served_ms"))],
        ["CPU seconds per poll",
         *cells(lambda v: f"{_num(v):.3f}", ("exporter", "polls", "cpu_s"),
                ("baseline", "polls", "cpu_s"))],
    ]  # fmt: skip
    for variant, clients in (("text", 1), ("gzip", 1), ("text", 8), ("gzip", 8)):
        key = f"{variant}_{clients}"
        for stat in ("p50_ms", "p99_ms"):
            rows.append(
                [
                    f"/metrics {stat[:3]}, ms: {variant}, {clients} client"
                    + ("s" if clients > 1 else ""),
                    *cells(
                        ms,
                        *(
                            (t, "steady", "scrape", key, stat)
                            for t in ("exporter", "baseline", "bare")
                        ),
                    ),
                ]
            )
    rows += [
        ["scrapes per second: gzip, 8 clients",
         *cells(lambda v: f"{_num(v):,.0f}",
                *((t, "steady", "scrape", "gzip_8", "per_second")
                  for t in ("exporter", "baseline", "bare")))],
        ["exposition size: text / gzip",
         *cells(size, ("exporter", "steady", "size", "text"),
                ("exporter", "steady", "size", "gzip"))],
        ["/metrics p99 while a poll is processed, ms (text and gzip)",
         *cells(ms, ("exporter", "during_poll", "p99_ms"), ("baseline", "during_poll", "p99_ms"))],
        ["peak RSS, MB: polling",
         *cells(lambda v: f"{_num(v):.0f}", ("exporter", "peak_rss_mb"),
                ("baseline", "peak_rss_mb"))],
        ["peak RSS, MB: 8 clients scraping",
         *cells(lambda v: f"{_num(v):.0f}", *((t, "steady", "peak_rss_mb")
                for t in ("exporter", "baseline", "bare")))],
    ]  # fmt: skip
    header = ["", *(f"{int(n):,} rows" for n in sizes)]
    return markdown(header, rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    compact = "--summary" in args
    files = [a for a in args if a != "--summary"]
    if len(files) != 1:
        print("usage: python -m bench.report [--summary] bench/results/FILE.json", file=sys.stderr)
        return 2
    results = json.loads(Path(files[0]).read_text())
    print(summary(results) if compact else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
