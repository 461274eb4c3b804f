"""Query strings as Rocket.Chat reads them: the routes' ajv schemas, JavaScript-flavoured number
parsing, ``getPaginationItems`` and ``parseJsonQuery``'s sort (docs/rocketchat-api.md,
"Query parameters" and "Paging")."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from multidict import MultiMapping

from exporter.fake.errors import ApiError, failure, invalid_params, invalid_sort
from exporter.fake.settings import ServerSettings

Kind: TypeAlias = Literal["number", "string", "boolean", "true|false"]
"""ajv types; "true|false" is a string restricted to those two values (an ``enum``)."""
Schema: TypeAlias = Mapping[str, Kind]
Params: TypeAlias = Mapping[str, object]
"""Query values: raw strings in E1/E2; ajv-coerced (float, str, bool or None) from E3."""

PAGING: Schema = {"count": "number", "offset": "number", "sort": "string"}

_INVALID = object()
_ENUM_MISS = object()


def validate_query(query: MultiMapping[str], schema: Schema) -> dict[str, object]:
    """The ajv query instance: ``additionalProperties: false`` and ``coerceTypes: 'array'``.

    A repeated name is an array: one element is unwrapped, more fail "must be <type>".
    """
    for name in query:
        if name not in schema:
            raise invalid_params("must NOT have additional properties")
    params: dict[str, object] = {}
    for name, kind in schema.items():
        values = query.getall(name, [])
        if not values:
            continue
        coerced = _coerce(values[0], kind) if len(values) == 1 else _INVALID
        if coerced is _ENUM_MISS:
            raise invalid_params("must be equal to one of the allowed values")
        if coerced is _INVALID:
            raise invalid_params(f"must be {'string' if kind == 'true|false' else kind}")
        params[name] = coerced
    return params


def lenient_query(query: MultiMapping[str], schema: Schema) -> dict[str, object]:
    """E1/E2: no schema. Unknown names are ignored; a repeated name reads as String(array)."""
    return {name: ",".join(query.getall(name)) for name in schema if name in query}


def _coerce(value: str, kind: Kind) -> object:
    """ajv's coercion of one query string; every field is nullable, so "" becomes null."""
    if kind == "string":
        return value
    if kind == "true|false":
        return value if value in ("true", "false") else _ENUM_MISS
    if value == "":
        return None
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, _INVALID)
    number = js_number(value)
    if number is None:
        return _INVALID
    return number if math.isfinite(number) else None  # "Infinity": null, the default page


_JS_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?Infinity")
_JS_RADIX = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+")
_JS_INT_PREFIX = re.compile(r"\s*([+-]?\d+)")


def js_number(text: str) -> float | None:
    """JavaScript's ``+text`` for a non-empty string; None where it would give NaN."""
    stripped = text.strip()
    if _JS_DECIMAL.fullmatch(stripped):
        return float(stripped.replace("Infinity", "inf"))
    if _JS_RADIX.fullmatch(stripped):
        return float(int(stripped, 0))
    return None


def _js_parse_int(value: object) -> int | None:
    """``parseInt(String(value))``; None stands for NaN."""
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    match = _JS_INT_PREFIX.match(str(value))
    return int(match.group(1)) if match else None


def _js_truthy(value: object) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


@dataclass(frozen=True)
class Page:
    offset: int | None  # None: NaN (E1/E2 `offset=abc`), answered as null
    count: int | None  # None: NaN (E1/E2 `count=abc`), which means no limit

    @property
    def unlimited(self) -> bool:
        return not self.count

    def rows(self, rows: list[Any]) -> list[Any]:
        start = self.offset or 0  # the pipelines only add $skip/$limit when truthy
        return rows[start : start + self.count] if self.count else rows[start:]

    def check_for_mongo(self) -> None:
        """MongoDB refuses a negative $skip or $limit; the route turns it into a 400."""
        if self.offset is not None and self.offset < 0:
            raise failure(
                "invalid argument to $skip stage: Expected a non-negative number in: "
                f"$skip: {self.offset}"
            )
        if self.count is not None and self.count < 0:
            raise failure("the limit must be positive")


def pagination(params: Params, settings: ServerSettings) -> Page:
    """``getPaginationItems``: a count of null (ajv's "" or "Infinity") is the default page."""
    # A negative (truthy, <= 0) setting falls back; exactly 0 slips through.
    default = settings.default_count if settings.default_count >= 0 else 50
    upper = settings.upper_count_limit if settings.upper_count_limit >= 0 else 100
    raw_offset = params.get("offset")
    offset = _js_parse_int(raw_offset) if _js_truthy(raw_offset) else 0
    count: int | None = default
    raw_count = params.get("count")
    if raw_count is not None:
        count = _js_parse_int(raw_count if _js_truthy(raw_count) else 0)
    if count is not None and count > upper:
        count = upper  # silently clamped: no error, no header
    if count == 0 and not settings.allow_infinite_count:
        count = default
    return Page(offset, count)


SortSpec: TypeAlias = list[tuple[str, int]]


def parse_sort(params: Params) -> SortSpec | None:
    """``parseJsonQuery``: the sort, a JSON object whose values are 1 or -1; ``fields`` and
    ``query`` (accepted only by the newest schemas) are parsed too and then ignored."""
    _check_json_param(params, "fields", lambda value: all(v in (0, 1) for v in value.values()))
    _check_json_param(params, "query", lambda value: True)
    raw = params.get("sort")
    if not raw:
        return None
    text = str(raw)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(_is_direction(v) for v in value.values()):
        raise invalid_sort(text)
    return [(key, int(direction)) for key, direction in value.items()]


def _check_json_param(params: Params, name: str, valid: Callable[[dict[str, Any]], bool]) -> None:
    raw = params.get(name)
    if not raw:
        return
    try:
        value = json.loads(str(raw), parse_constant=_reject_constant)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not valid(value):
        message = f'Invalid {name} parameter provided: "{raw}"'
        raise ApiError(
            400,
            {
                "success": False,
                "error": f"{message} [error-invalid-{name}]",
                "errorType": f"error-invalid-{name}",
                "details": {"helperMethod": "parseJsonQuery"},
            },
        )


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # JSON.parse refuses NaN and Infinity


def _is_direction(value: object) -> bool:
    return type(value) in (int, float) and value in (1, -1)


__all__ = [
    "PAGING",
    "ApiError",
    "Kind",
    "Page",
    "Params",
    "Schema",
    "SortSpec",
    "js_number",
    "lenient_query",
    "pagination",
    "parse_sort",
    "validate_query",
]
