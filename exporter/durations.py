"""Prometheus durations (`500ms`, `30s`, `1h30m`): parsing and formatting.

Parsing is bounded because the text comes from a user's file: ASCII digits only (Python's `\\d`
and `int()` also take Arabic-Indic or full-width digits), at most `MAX_TEXT` characters, and at
most `MAX_SECONDS` in total (a 310-digit number of seconds is not an interval anyone means).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from exporter.yamlfile import kind, quote

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


if TYPE_CHECKING:
    Seconds = float  # to readers of a config, a duration is a plain float
else:

    class Seconds(float):
        """A duration in seconds, written in a file as a Prometheus duration (`30s`): a type
        of its own, so that msgspec hands the text to the decoder's dec_hook."""


def decode_seconds(value: object) -> Seconds:
    """A YAML value as Seconds, for a msgspec dec_hook: ValueError says why in a few words,
    quoting at most a short piece of the value."""
    if not isinstance(value, str):
        raise ValueError(
            f"must be a duration such as 30s or 5m, not {kind(value)} ({quote(value)}); add a unit"
        )
    try:
        return Seconds(parse_duration(value.strip()))
    except DurationError as error:
        why = error.args[0] if error.args[0] != NOT_A_DURATION else "want e.g. 30s, 5m, 1h30m"
        raise ValueError(f"{quote(value)} is not a duration ({why})") from None
