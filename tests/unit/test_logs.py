"""Log lines: logfmt or JSON, one line per event, credentials never shown."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from exporter.logs import JSONFormatter, LogfmtFormatter, RedactingFilter


def record(msg: str, kv: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad tok-SECRET-1 here")
        except ValueError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord("exporter.test", logging.WARNING, __file__, 1, msg, None, exc_info)
    if kv is not None:
        rec.kv = kv
    return rec


def test_logfmt_quotes_only_what_needs_it() -> None:
    line = LogfmtFormatter().format(
        record("poll failed", {"collector": "queue", "n": 3, "error": 'say "hi"'})
    )
    assert line.startswith("ts=")
    assert ' level=warn logger=exporter.test msg="poll failed" collector=queue n=3 ' in line
    assert line.endswith('error="say \\"hi\\""')


def test_json_lines_carry_the_fields() -> None:
    line = JSONFormatter().format(record("poll failed", {"collector": "queue"}))
    decoded = json.loads(line)
    assert decoded["level"] == "warn"
    assert decoded["msg"] == "poll failed"
    assert decoded["collector"] == "queue"


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JSONFormatter()])
def test_an_exception_stays_on_one_line(formatter: logging.Formatter) -> None:
    line = formatter.format(record("bug", exc=True))
    assert "\n" not in line
    assert "ValueError" in line


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JSONFormatter()])
def test_secrets_are_redacted_everywhere(formatter: logging.Formatter) -> None:
    redactor = RedactingFilter(["tok-SECRET-1"])
    rec = record(
        "token tok-SECRET-1 in message", {"header": "X-Auth-Token: tok-SECRET-1"}, exc=True
    )
    assert redactor.filter(rec)
    line = formatter.format(rec)
    assert "tok-SECRET-1" not in line
    assert line.count("<redacted>") >= 3


def test_secrets_learned_later_are_redacted_too() -> None:
    redactor = RedactingFilter()
    redactor.add(["session-token-42"])
    rec = record("got session-token-42")
    redactor.filter(rec)
    assert rec.getMessage() == "got <redacted>"


SPECIAL = 'p<a&s"s w/rd+0123456789'


@pytest.mark.parametrize(
    "echoed",
    [
        SPECIAL,
        "p&lt;a&amp;s&quot;s w/rd+0123456789",  # HTML-escaped
        'p&lt;a&amp;s"s w/rd+0123456789',  # HTML-escaped without quotes
        "p%3Ca%26s%22s%20w%2Frd%2B0123456789",  # URL-encoded
        "p%3Ca%26s%22s+w%2Frd%2B0123456789",  # form-encoded
        'p<a&s\\"s w/rd+0123456789',  # JSON-escaped
        SPECIAL[:10] + "...",  # cut short by the server
    ],
)
def test_a_secret_echoed_in_another_form_is_redacted(echoed: str) -> None:
    redactor = RedactingFilter([SPECIAL])
    cleaned = redactor.clean(f"denied ({echoed}) by the server")
    assert cleaned.startswith("denied (<redacted>")
    assert cleaned.endswith(") by the server")
    assert SPECIAL[:8] not in cleaned


def test_a_short_prefix_or_ordinary_text_is_left_alone() -> None:
    redactor = RedactingFilter([SPECIAL, "abc"])  # too short to redact
    assert redactor.clean('p<a&s"s, and abc') == 'p<a&s"s, and abc'
