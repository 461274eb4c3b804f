"""Loads the fixtures and checks one case against a running fake.

A case's ``servers`` lists profiles (``E5/hono``, ``E5/hono+9`` for the 9.0 bodies,
``E2/restivus-js``...) or groups of them (``GROUPS``); its ``expect`` may hold:

- ``status``; ``body`` (the exact JSON); ``keys`` (top-level keys present);
- ``values`` (dotted path -> exact value); ``prefix`` (dotted path -> string prefix);
- ``rows`` (``{field, unordered}``: that list equals these items in any order);
- ``every`` (``{field, key, in}``: every item of that list has ``key`` among ``in``);
- ``headers_present`` / ``headers_absent`` (header names).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_args

import aiohttp
import msgspec
import yaml

from exporter.fake import ApiUser, Framework, ModelEra, ServerSettings
from tests.conformance.world import PLACEHOLDERS, caller, conformance_world
from tests.support.faults import InstrumentedFake

FIXTURES = Path(__file__).parent / "fixtures"

RELEASED = "E5/hono"
GROUPS: dict[str, list[str]] = {
    "released": [RELEASED],
    "hono": ["E4/hono", "E5/hono"],
    "restivus": [
        "E1/restivus-js",
        "E2/restivus-js",
        "E3/restivus-ts",
        "E4/restivus-ts",
        "E5/restivus-ts",
    ],
    "js": ["E1/restivus-js", "E2/restivus-js"],
    "ajv": ["E3/restivus-ts", "E4/restivus-ts", "E4/hono", "E5/restivus-ts", "E5/hono"],
}
GROUPS["all"] = GROUPS["restivus"] + GROUPS["hono"]
GROUPS["E2+"] = [p for p in GROUPS["all"] if not p.startswith("E1/")]


class Source(msgspec.Struct, forbid_unknown_fields=True):
    repository: str
    path: str
    commit: str | None = None
    version: str | None = None
    note: str | None = None


class Request(msgspec.Struct, forbid_unknown_fields=True):
    path: str
    method: str = "GET"
    query: list[tuple[str, str]] = []
    json: dict[str, Any] | None = None


class Expect(msgspec.Struct, forbid_unknown_fields=True):
    status: int
    body: Any = None
    keys: list[str] = []
    values: dict[str, Any] = {}
    prefix: dict[str, str] = {}
    rows: dict[str, Any] | None = None
    every: dict[str, Any] | None = None
    headers_present: list[str] = []
    headers_absent: list[str] = []


class Case(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    request: Request
    expect: Expect
    servers: list[str] = msgspec.field(default_factory=lambda: ["released"])
    user: str | list[str] = "all"
    rate_limited: bool = False
    settings: dict[str, Any] = {}
    repeat: int = 1  # send the request this many times; the last answer is checked


class FixtureFile(msgspec.Struct, forbid_unknown_fields=True):
    source: Source
    cases: list[Case]


@dataclass(frozen=True)
class Selected:
    file: str
    source: Source
    case: Case
    profile: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.case.name}[{self.profile}]"


def load_all() -> list[Selected]:
    selected = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        fixture = msgspec.convert(yaml.safe_load(path.read_text()), FixtureFile)
        for case in fixture.cases:
            for profile in _profiles(case.servers):
                selected.append(Selected(path.stem, fixture.source, case, profile))
    return selected


def _profiles(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for profile in GROUPS.get(name, [name]):
            if profile not in out:
                out.append(profile)
    return out


def settings_for(profile: str, overrides: dict[str, Any]) -> ServerSettings:
    model, _, framework = profile.partition("/")
    framework, plus, breaking = framework.partition("+")
    if model not in get_args(ModelEra) or framework not in get_args(Framework):
        raise ValueError(f"unknown server profile {profile!r}")
    if plus and breaking != "9":
        raise ValueError(f"unknown switch in {profile!r}")
    settings = ServerSettings(breaking_9=bool(plus))
    settings.model, settings.framework = cast(ModelEra, model), cast(Framework, framework)
    return _replaced(settings, overrides)


def _replaced(settings: ServerSettings, overrides: dict[str, Any]) -> ServerSettings:
    for key, value in overrides.items():
        if not hasattr(settings, key):
            raise ValueError(f"unknown setting {key!r}")
        setattr(settings, key, value)
    return settings


@dataclass
class Received:
    status: int
    headers: dict[str, str]
    body: Any
    problems: list[str] = field(default_factory=list)


async def run(selected: Selected) -> Received:
    case = selected.case
    user = None if case.user == "anonymous" else caller(case.user, rate_limited=case.rate_limited)
    users: list[ApiUser] = [user] if user is not None else [caller("all")]
    settings = settings_for(selected.profile, case.settings)
    async with (
        InstrumentedFake(conformance_world(), settings, users, shuffle_seed=1) as fake,
        aiohttp.ClientSession() as session,
    ):
        headers = {} if user is None else {"X-User-Id": user.user_id, "X-Auth-Token": user.token}
        for _ in range(max(1, min(case.repeat, 50))):
            outcome = await _send(session, fake.url, case.request, headers)
    outcome.problems = check(case.expect, outcome)
    return outcome


async def _send(
    session: aiohttp.ClientSession, url: str, request: Request, headers: dict[str, str]
) -> Received:
    async with session.request(
        request.method,
        f"{url}/api/v1/{_fill(request.path)}",
        params=[(name, _fill(value)) for name, value in request.query],
        json=_filled(request.json),
        headers=headers,
    ) as response:
        raw = await response.read()
        return Received(response.status, dict(response.headers), msgspec.json.decode(raw))


def _fill(text: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


def _filled(value: Any) -> Any:
    if isinstance(value, str):
        return _fill(value)
    if isinstance(value, list):
        return [_filled(v) for v in value]
    if isinstance(value, dict):
        return {k: _filled(v) for k, v in value.items()}
    return value


_MISSING = object()


def _at(body: Any, path: str) -> Any:
    value = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def check(expect: Expect, outcome: Received) -> list[str]:
    """Every way the answer differs from the recorded one."""
    body = outcome.body
    problems = []
    if outcome.status != expect.status:
        problems.append(f"status {outcome.status}, expected {expect.status}")
    if expect.body is not None and body != _filled(expect.body):
        problems.append(f"body {body!r}, expected {_filled(expect.body)!r}")
    problems += [
        f"no key {k!r}" for k in expect.keys if not isinstance(body, dict) or k not in body
    ]
    for path, wanted in _filled(expect.values).items():
        if (got := _at(body, path)) != wanted:
            problems.append(f"{path} = {got!r}, expected {wanted!r}")
    for path, start in expect.prefix.items():
        got = _at(body, path)
        if not isinstance(got, str) or not got.startswith(start):
            problems.append(f"{path} = {got!r}, expected to start with {start!r}")
    problems += _check_lists(expect, body)
    lower = {name.lower() for name in outcome.headers}
    problems += [f"no header {h}" for h in expect.headers_present if h.lower() not in lower]
    problems += [f"header {h} present" for h in expect.headers_absent if h.lower() in lower]
    return problems


def _check_lists(expect: Expect, body: Any) -> list[str]:
    problems = []
    if expect.rows is not None:
        got = _at(body, expect.rows["field"])
        wanted = _filled(expect.rows["unordered"])
        if not isinstance(got, list) or Counter(map(_key, got)) != Counter(map(_key, wanted)):
            problems.append(f"{expect.rows['field']} = {got!r}, expected (any order) {wanted!r}")
    if expect.every is not None:
        items = _at(body, expect.every["field"])
        key, allowed = expect.every["key"], expect.every["in"]
        if not isinstance(items, list) or not items:
            problems.append(f"{expect.every['field']} is not a non-empty list: {items!r}")
        else:
            problems += [f"{item.get(key)!r} not in {allowed}" for item in items
                         if item.get(key) not in allowed]  # fmt: skip
    return problems


def _key(item: Any) -> str:
    return msgspec.json.encode(item, order="sorted").decode()
