"""MongoDB-like ``$sort`` for the fake's documents (docs/rocketchat-api.md, "livechat/queue").

MongoDB promises no order among equal keys, so ties come back in a fresh random order on every
call: a client that pages under a sort with ties sees what it would see on a real server.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from exporter.fake.query import SortSpec

JsonObject = dict[str, Any]


def sort_documents(docs: list[JsonObject], sort: SortSpec, rng: random.Random) -> None:
    """Sort in place like ``$sort``, with ties in a fresh random order on every call.

    MongoDB promises no order among equal keys, so shuffle first and then apply
    stable sorts from the last run of same-direction keys to the first.
    """
    if not sort:
        return
    rng.shuffle(docs)
    runs: list[tuple[list[str], int]] = []
    for path, direction in sort:
        if runs and runs[-1][1] == direction:
            runs[-1][0].append(path)
        else:
            runs.append(([path], direction))
    for paths, direction in reversed(runs):
        columns = [_sortable([get(doc) for doc in docs]) for get in map(_path_getter, paths)]
        keys = columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))
        order = sorted(range(len(docs)), key=keys.__getitem__, reverse=direction == -1)
        docs[:] = [docs[i] for i in order]


def _sortable(values: list[Any]) -> list[Any]:
    """Values that Python compares as MongoDB would: as they are when all are numbers or all
    strings (the common case, and fast), else mapped to their BSON type order."""
    kinds = set(map(type, values))
    if kinds <= {int, float} or kinds == {str}:
        return values
    return [_bson_order(value) for value in values]


def _path_getter(path: str) -> Callable[[JsonObject], object]:
    """A dotted path into a document; missing anywhere reads as null, as in MongoDB."""
    parts = path.split(".")
    if len(parts) == 1:
        return lambda doc: doc.get(path)
    if len(parts) == 2:
        outer, inner = parts
        return lambda doc: (
            inner_value.get(inner) if type(inner_value := doc.get(outer)) is dict else None
        )

    def get(doc: JsonObject) -> object:
        value: Any = doc
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return get


def _bson_order(value: object) -> tuple[int, Any]:
    """BSON comparison order: missing = null < numbers < strings < objects < arrays < bool."""
    kind = type(value)
    if kind is str:
        return (3, value)
    if kind is int or kind is float:
        return (2, value)
    if value is None:
        return (1, 0)
    if kind is bool:
        return (8, value)
    if kind is dict or kind is list:
        return (4 if kind is dict else 5, json.dumps(value))
    return (9, repr(value))
