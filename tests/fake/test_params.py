"""Unknown query parameters per era, and where validation sits among the checks (§1.2, §4.4)."""

from __future__ import annotations

import pytest

from exporter.fake import ApiUser, Era, ServerSettings

from . import serve

E5_BODY = {
    "success": False,
    "error": "must NOT have additional properties [invalid-params]",
    "errorType": "invalid-params",
}
E6_BODY = {
    "success": False,
    "errorType": "error-invalid-params",
    "error": "must NOT have additional properties",
}


@pytest.mark.parametrize("era", ["E1", "E2"])
@pytest.mark.parametrize("name", ["page", "query", "fields", "_"])
async def test_unknown_params_are_ignored_before_schemas(era: Era, name: str) -> None:
    """§1.2: E1/E2 have no schema, so unknown names are ignored."""
    async with serve(settings=ServerSettings(era=era)) as client:
        answer = await client.queue({name: "1"})
    assert answer.status == 200


@pytest.mark.parametrize("era", ["E3", "E4", "E5"])
async def test_unknown_param_is_rejected_from_e3_with_the_restivus_body(era: Era) -> None:
    """§4.4: validateParams raises Meteor.Error('invalid-params', ...)."""
    async with serve(settings=ServerSettings(era=era)) as client:
        answer = await client.queue({"count": "0", "_": "1700000000"})
    assert (answer.status, answer.body) == (400, E5_BODY)


async def test_unknown_param_is_rejected_in_e6_with_the_router_body() -> None:
    """§4.4: the typed router answers with errorType first and no suffix."""
    async with serve(settings=ServerSettings(era="E6")) as client:
        answer = await client.queue({"page": "2"})
    assert (answer.status, answer.body) == (400, E6_BODY)


async def test_e6_rejects_bad_params_before_authentication() -> None:
    """§4.4: bad parameters give 400 even without credentials, and are not rate-counted."""
    async with serve(settings=ServerSettings(era="E6")) as client:
        answer = await client.anonymous_get("livechat/queue", {"page": "2"})
    assert (answer.status, answer.body) == (400, E6_BODY)
    assert "X-RateLimit-Limit" not in answer.headers


async def test_e5_authenticates_before_validating() -> None:
    """§3: authentication comes first in the Restivus eras."""
    async with serve(settings=ServerSettings(era="E5")) as client:
        answer = await client.anonymous_get("livechat/queue", {"page": "2"})
    assert answer.status == 401


async def test_e5_validation_failures_are_rate_counted() -> None:
    """§3: the limiter runs before validateParams, so a 400 carries the headers."""
    caller = ApiUser.supervisor()
    async with serve(settings=ServerSettings(era="E5"), users=[caller]) as client:
        answer = await client.queue({"page": "2"})
    assert answer.status == 400
    assert answer.headers["X-RateLimit-Remaining"] == "9"


async def test_the_six_documented_params_are_accepted_by_every_era() -> None:
    """§1.2: count, offset, sort, agentId, departmentId, includeOfflineAgents."""
    params = {
        "count": "25",
        "offset": "0",
        "sort": '{"chats":-1}',
        "agentId": "x",
        "departmentId": "y",
        "includeOfflineAgents": "true",
    }
    eras: tuple[Era, ...] = ("E1", "E2", "E5", "E6")
    for era in eras:
        async with serve(settings=ServerSettings(era=era)) as client:
            assert (await client.queue(params)).status == 200, era


async def test_repeated_param_is_rejected_by_the_schema() -> None:
    """A repeated name arrives as an array, which is not a number (§1.2)."""
    async with serve(settings=ServerSettings(era="E6")) as client:
        answer = await client.queue([("count", "1"), ("count", "2")])
    assert answer.body["error"] == "must be number"
