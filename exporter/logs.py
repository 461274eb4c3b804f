"""Logging: logfmt or JSON lines on stderr, one line per event, credentials redacted.

Call sites attach structured fields with `extra={"kv": {...}}`:
    log.warning("poll failed", extra={"kv": {"collector": "queue", "outcome": "timeout"}})
"""

from __future__ import annotations

import html
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
REDACTED = "<redacted>"
MIN_SECRET = 4  # shorter texts would blank out ordinary words
MIN_PREFIX = 8  # a server that truncates a secret it echoes still shows this much of it


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _level_name(record: logging.LogRecord) -> str:
    return "warn" if record.levelno == logging.WARNING else record.levelname.lower()


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": _timestamp(record),
        "level": _level_name(record),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    extra = getattr(record, "kv", None)
    if isinstance(extra, Mapping):
        fields.update(extra)
    fields.update(_exception_fields(record))  # only when no RedactingFilter took it already
    return fields


def _exception_fields(record: logging.LogRecord) -> dict[str, str]:
    """A bug, not bad input: keep the stack, but as a field of the same line, so that the log
    stays one event a line."""
    if not record.exc_info or record.exc_info[1] is None:
        return {}
    error = record.exc_info[1]
    return {
        "error": f"{type(error).__name__}: {error}",
        "stack": logging.Formatter().formatException(record.exc_info),
    }


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' ="\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


class RedactingFilter(logging.Filter):
    """Replaces every known credential in a record with <redacted>: defence in depth, since no
    code path is meant to log one. A server may echo a credential back HTML-escaped,
    URL-encoded, JSON-escaped or cut short, so those forms are redacted too."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        new = {s for s in secrets if len(s) >= MIN_SECRET} - self.secrets
        if new:
            self.secrets.update(new)
            forms = {form for secret in self.secrets for form in _echoed_forms(secret)}
            # Whole forms first, longest first, so that one wins over another's prefix.
            whole = [re.escape(f) for f in sorted(forms, key=len, reverse=True)]
            self._pattern = re.compile("|".join(whole + [_prefix_pattern(f) for f in forms]))

    def clean(self, text: str) -> str:
        """`text` with every form of every known credential replaced by <redacted>."""
        return text if self._pattern is None else self._pattern.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        fields = {**(getattr(record, "kv", None) or {}), **_exception_fields(record)}
        record.exc_info, record.exc_text = None, None  # now fields, redacted below
        record.msg = self.clean(record.getMessage())
        record.args = None
        record.kv = {k: self.clean(v) if isinstance(v, str) else v for k, v in fields.items()}
        return True


def _echoed_forms(secret: str) -> set[str]:
    return {
        secret,
        html.escape(secret, quote=True),
        html.escape(secret, quote=False),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1],
    }


def _prefix_pattern(form: str) -> str:
    """A pattern for `form` or any prefix of it at least MIN_PREFIX long."""
    head, tail = form[:MIN_PREFIX], form[MIN_PREFIX:]
    rest = ""
    for char in reversed(tail):
        rest = f"(?:{re.escape(char)}{rest})?"
    return re.escape(head) + rest


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configures the root logger; returns the redaction filter so later secrets (a token from a
    login, a re-read token file) can be added to it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # aiohttp's access log would add a line per scrape; its errors still come through.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return redactor
