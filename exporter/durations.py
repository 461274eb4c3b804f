"""Prometheus durations (`500ms`, `30s`, `1h30m`): parsing and formatting.

Parsing is bounded because the text comes from a user's file: ASCII digits only (Python's `\\d`
and `int()` also take Arabic-Indic or full-width digits), at most `MAX_TEXT` characters, and at
most `MAX_SECONDS` in total (a 310-digit number of seconds is not an interval anyone means).
"""

from __future__ import annotations

import re

MAX_TEXT = 40
MAX_SECONDS = 10 * 365 * 86400.0  # ten years

_UNITS = (
    ("y", 365 * 86400.0),
    ("w", 7 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)
_PATTERN = re.compile(
    r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?"
    r"(?:([0-9]+)ms)?",
    re.ASCII,
)


NOT_A_DURATION = "not a duration"


class DurationError(ValueError):
    """Text that is not a duration; the message says why in a few words."""


def parse_duration(text: str) -> float:
    """A Prometheus duration in seconds; DurationError if malformed or out of bounds."""
    if len(text) > MAX_TEXT:
        raise DurationError(f"longer than {MAX_TEXT} characters")
    if text == "0":
        return 0.0
    match = _PATTERN.fullmatch(text)
    if not text or match is None:
        raise DurationError(NOT_A_DURATION)
    seconds = sum(int(n) * unit for n, (_, unit) in zip(match.groups(), _UNITS, strict=True) if n)
    if seconds > MAX_SECONDS:
        raise DurationError("more than ten years")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as the shortest duration text that reads back the same (within a millisecond)."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    parts = []
    for suffix, unit in (("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts) or "0s"
