"""Unknown query parameters per model era, and where validation sits among the checks
(docs/rocketchat-api.md, "Query parameters" and "Order of checks")."""

from __future__ import annotations

import pytest

from exporter.fake import ApiUser, Framework, ModelEra, ServerSettings

from . import serve

INVALID_BODY = {
    "success": False,
    "error": "must NOT have additional properties [invalid-params]",
    "errorType": "invalid-params",
}
NO_PERMISSION = "User does not have the permissions required for this action [error-unauthorized]"


@pytest.mark.parametrize("era", ["E1", "E2"])
@pytest.mark.parametrize("name", ["page", "query", "fields", "_"])
async def test_unknown_params_are_ignored_before_schemas(era: ModelEra, name: str) -> None:
    """E1/E2 have no schema, so unknown names are ignored."""
    async with serve(settings=ServerSettings(model=era)) as client:
        answer = await client.queue({name: "1"})
    assert answer.status == 200


@pytest.mark.parametrize("era", ["E3", "E4", "E5"])
@pytest.mark.parametrize("framework", ["restivus-ts", "hono"])
async def test_unknown_param_is_rejected_from_e3(era: ModelEra, framework: Framework) -> None:
    """validateParams raises Meteor.Error('invalid-params', ...) on every framework."""
    async with serve(settings=ServerSettings(model=era, framework=framework)) as client:
        answer = await client.queue({"count": "0", "_": "1700000000"})
    assert (answer.status, answer.body) == (400, INVALID_BODY)


@pytest.mark.parametrize("framework", ["restivus-ts", "hono"])
async def test_authentication_comes_before_validation(framework: Framework) -> None:
    async with serve(settings=ServerSettings(framework=framework)) as client:
        answer = await client.anonymous_get("livechat/queue", {"page": "2"})
    assert answer.status == 401
    assert "X-RateLimit-Limit" not in answer.headers


@pytest.mark.parametrize("framework", ["restivus-ts", "hono"])
async def test_validation_failures_are_rate_counted(framework: Framework) -> None:
    """The limiter runs before validateParams, so a 400 carries the headers."""
    caller = ApiUser.supervisor()
    async with serve(settings=ServerSettings(framework=framework), users=[caller]) as client:
        answer = await client.queue({"page": "2"})
    assert answer.status == 400
    assert answer.headers["X-RateLimit-Remaining"] == "9"


async def test_hono_answers_403_before_the_rate_limiter() -> None:
    """The permissions middleware runs first: the 403 is not counted and has no headers."""
    nobody = ApiUser("NoPermissions0001", "token", "nobody")
    settings = ServerSettings(rate_limit_calls=1)
    async with serve(settings=settings, users=[nobody]) as client:
        answers = [await client.queue({"page": "2"}) for _ in range(3)]
    assert [a.status for a in answers] == [403, 403, 403]
    assert answers[0].body == {"success": False, "error": NO_PERMISSION}
    assert all("X-RateLimit-Limit" not in a.headers for a in answers)


async def test_restivus_counts_403s() -> None:
    nobody = ApiUser("NoPermissions0001", "token", "nobody")
    settings = ServerSettings(framework="restivus-ts", rate_limit_calls=1)
    async with serve(settings=settings, users=[nobody]) as client:
        first, second = [await client.queue() for _ in range(2)]
    assert (first.status, first.headers["X-RateLimit-Remaining"]) == (403, "0")
    assert second.status == 429


async def test_the_six_documented_params_are_accepted_by_every_era() -> None:
    """count, offset, sort, agentId, departmentId, includeOfflineAgents."""
    params = {
        "count": "25",
        "offset": "0",
        "sort": '{"chats":-1}',
        "agentId": "x",
        "departmentId": "y",
        "includeOfflineAgents": "true",
    }
    eras: tuple[ModelEra, ...] = ("E1", "E2", "E3", "E4", "E5")
    for era in eras:
        async with serve(settings=ServerSettings(model=era)) as client:
            assert (await client.queue(params)).status == 200, era


async def test_repeated_param_is_rejected_by_the_schema() -> None:
    """A repeated name arrives as an array of two, which is not a number."""
    async with serve() as client:
        answer = await client.queue([("count", "1"), ("count", "2")])
    assert answer.body["error"] == "must be number [invalid-params]"
