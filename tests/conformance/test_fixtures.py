"""Every recorded request -> answer pair, against the fake, per server profile."""

from __future__ import annotations

import pytest

from tests.conformance.runner import GROUPS, Selected, load_all, run

CASES = load_all()


def test_the_fixtures_cover_what_the_collectors_rely_on() -> None:
    """Breadth guard: each endpoint the exporter reads has fixtures, on released servers."""
    paths = {c.case.request.path.split("?")[0] for c in CASES if c.profile in GROUPS["released"]}
    assert {
        "livechat/queue",
        "livechat/inquiries.list",
        "livechat/users/agent",
        "livechat/department",
        "login",
    } <= paths
    statuses = {c.case.expect.status for c in CASES}
    assert {200, 400, 401, 403, 429} <= statuses
    assert all(c.source.commit or c.source.version for c in CASES)


@pytest.mark.parametrize("selected", CASES, ids=[c.id for c in CASES])
async def test_fixture(selected: Selected) -> None:
    outcome = await run(selected)
    source = selected.source
    origin = f"{source.repository} {source.path} @ {source.commit or source.version}"
    assert not outcome.problems, f"{origin}: {outcome.problems}; answer {outcome.body!r}"
