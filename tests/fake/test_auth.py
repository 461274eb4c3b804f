"""Authentication, permissions and login, with each framework's bodies (docs/rocketchat-api.md,
"Error bodies", "Permissions" and "Login and tokens")."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from exporter.fake import ApiUser, Framework, ServerSettings

from . import Answer, Client, bot, serve

LOGGED_OUT = "You must be logged in to do this."
NO_PERMISSION = "User does not have the permissions required for this action"

UNAUTHENTICATED_BODIES: list[tuple[Framework, bool, dict[str, Any]]] = [
    ("restivus-js", False, {"status": "error", "message": LOGGED_OUT}),
    ("restivus-ts", False, {"status": "error", "message": LOGGED_OUT}),
    ("restivus-ts", True, {"status": "error", "message": LOGGED_OUT}),  # no 9.0 switch there
    (
        "hono",
        False,
        {"success": False, "status": "error", "message": LOGGED_OUT, "error": LOGGED_OUT},
    ),
    ("hono", True, {"success": False, "error": LOGGED_OUT}),
]


async def without_credentials(client: Client) -> Answer:
    return await client.anonymous_get("livechat/queue")


async def with_a_wrong_token(client: Client) -> Answer:
    """A bad, expired or revoked token."""
    return await client.queue(user=ApiUser(client.user.user_id, "not-the-token", "x"))


@pytest.mark.parametrize(
    "send", [without_credentials, with_a_wrong_token], ids=["no credentials", "wrong token"]
)
@pytest.mark.parametrize(("framework", "v9", "body"), UNAUTHENTICATED_BODIES)
async def test_missing_or_wrong_credentials_are_a_401_never_a_403_with_the_frameworks_body(
    send: Callable[[Client], Awaitable[Answer]],
    framework: Framework,
    v9: bool,
    body: dict[str, Any],
) -> None:
    settings = ServerSettings(framework=framework, breaking_9=v9)
    async with serve(settings=settings) as client:
        answer = await send(client)
    assert (answer.status, answer.body) == (401, body)


async def test_a_user_id_that_does_not_match_the_token_is_a_401() -> None:
    other = ApiUser("OtherUser00000001", "other-token", "other", {"view-l-room"})
    async with serve(users=[bot(), other]) as client:
        mixed = ApiUser(other.user_id, client.user.token, "mixed")
        answer = await client.queue(user=mixed)
    assert answer.status == 401


async def test_revoking_a_token_makes_the_next_call_a_401() -> None:
    async with serve() as client:
        assert (await client.queue()).status == 200
        client.fake.revoke(client.user.user_id, client.user.token)
        assert (await client.queue()).status == 401


async def test_deleting_the_user_makes_the_next_call_a_401() -> None:
    async with serve() as client:
        client.fake.revoke(client.user.user_id)
        assert (await client.queue()).status == 401


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        (ServerSettings(model="E2", framework="restivus-js"), "error-unauthorized"),
        (ServerSettings(model="E5", framework="restivus-ts"), "error-unauthorized"),
        (ServerSettings(), "error-unauthorized"),
        (ServerSettings(breaking_9=True), "error-forbidden"),
    ],
)
async def test_missing_view_l_room_is_a_403_from_e2(settings: ServerSettings, code: str) -> None:
    """Route-level permissionsRequired."""
    user = ApiUser("NoPermissions0001", "token", "nobody")
    async with serve(settings=settings, users=[user]) as client:
        answer = await client.queue()
    assert (answer.status, answer.body) == (
        403,
        {"success": False, "error": f"{NO_PERMISSION} [{code}]"},
    )


async def test_missing_view_l_room_is_a_400_in_e1() -> None:
    """docs/rocketchat-api.md, "livechat/queue": E1 checks inside the lib and turns the Error into a
    400."""
    user = ApiUser("NoPermissions0001", "token", "nobody")
    async with serve(settings=ServerSettings(model="E1"), users=[user]) as client:
        answer = await client.queue()
    assert (answer.status, answer.body) == (
        400,
        {"success": False, "error": "error-not-authorized"},
    )


async def test_e1_parses_the_sort_before_checking_the_permission() -> None:
    """docs/rocketchat-api.md, "livechat/queue": E1's route parses paging and sort, then the lib
    checks the permission."""
    user = ApiUser("NoPermissions0001", "token", "nobody")
    async with serve(settings=ServerSettings(model="E1"), users=[user]) as client:
        answer = await client.queue({"sort": "bad"})
    assert answer.body["errorType"] == "error-invalid-sort"


async def test_unknown_path_is_a_json_404() -> None:
    async with serve() as client:
        answer = await client.get("livechat/nothing-here")
        wrong_method = await client.request("DELETE", "livechat/queue")
    assert (answer.status, answer.body["success"]) == (404, False)
    assert wrong_method.status == 404


# --- POST /api/v1/login (docs/rocketchat-api.md, "Login and tokens")
# -------------------------------------------------------------


def password_user(**options: Any) -> ApiUser:
    return ApiUser.supervisor(
        user_id="PasswordUser00001", token="", username="bot", password="s3cret", **options
    )


@pytest.mark.parametrize("field", ["user", "username"])
async def test_login_issues_a_token_that_authenticates(field: str) -> None:
    user = password_user()
    async with serve(users=[user], settings=ServerSettings(framework="restivus-ts")) as client:
        answer = await client.request("POST", "login", json={field: "bot", "password": "s3cret"})
        data = answer.body["data"]
        as_logged_in = ApiUser(data["userId"], data["authToken"], "bot")
        queue = await client.queue(user=as_logged_in)
    assert (answer.status, answer.body["status"], "success" in answer.body) == (
        200,
        "success",
        False,
    )
    assert data["userId"] == user.user_id
    assert data["me"]["username"] == "bot"
    assert queue.status == 200


async def test_login_answer_adds_success_on_hono() -> None:
    """docs/rocketchat-api.md, "Login and tokens": the newest ApiClass adds ``success: true``."""
    async with serve(users=[password_user()]) as client:
        answer = await client.request("POST", "login", json={"user": "bot", "password": "s3cret"})
    assert answer.body["success"] is True


async def test_every_login_adds_another_valid_token() -> None:
    """docs/rocketchat-api.md, "Login and tokens": each REST login adds a resume token; earlier ones
    stay valid."""
    async with serve(users=[password_user()]) as client:
        tokens = [
            (
                await client.request("POST", "login", json={"user": "bot", "password": "s3cret"})
            ).body["data"]["authToken"]
            for _ in range(2)
        ]
        statuses = [
            (await client.queue(user=ApiUser("PasswordUser00001", t, "bot"))).status for t in tokens
        ]
    assert tokens[0] != tokens[1]
    assert statuses == [200, 200]


async def test_login_accepts_a_sha256_digest() -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    async with serve(users=[password_user()]) as client:
        answer = await client.request(
            "POST",
            "login",
            json={"user": "bot", "password": {"digest": digest, "algorithm": "sha-256"}},
        )
    assert answer.status == 200


@pytest.mark.parametrize(("framework", "has_success"), [("restivus-ts", False), ("hono", True)])
async def test_login_with_a_wrong_password_is_a_401(
    framework: Framework, has_success: bool
) -> None:
    settings = ServerSettings(framework=framework)
    async with serve(users=[password_user()], settings=settings) as client:
        answer = await client.request("POST", "login", json={"user": "bot", "password": "nope"})
    expected: dict[str, Any] = {"status": "error", "error": 403, "message": "Incorrect password"}
    if has_success:
        expected = {"success": False, **expected}
    assert (answer.status, answer.body) == (401, expected)


async def test_login_of_an_unknown_user_says_unauthorized() -> None:
    """docs/rocketchat-api.md, "Login and tokens": "User not found" is replaced by
    "Unauthorized"."""
    async with serve(
        users=[password_user()], settings=ServerSettings(framework="restivus-ts")
    ) as client:
        answer = await client.request("POST", "login", json={"user": "ghost", "password": "x"})
    assert (answer.status, answer.body) == (
        401,
        {"status": "error", "error": "Unauthorized", "message": "Unauthorized"},
    )


async def test_login_with_totp_needs_a_code() -> None:
    """docs/rocketchat-api.md, "Login and tokens": 401 totp-required without a code, totp-invalid
    with a wrong one."""
    async with serve(users=[password_user(totp_required=True)]) as client:
        answer = await client.request("POST", "login", json={"user": "bot", "password": "s3cret"})
    assert answer.status == 401
    assert answer.body == {
        "success": False,
        "status": "error",
        "error": "totp-required",
        "details": {"method": "totp", "availableMethods": ["totp"]},
        "message": "TOTP Required",
    }


async def test_login_with_a_wrong_totp_code_is_totp_invalid() -> None:
    async with serve(users=[password_user(totp_required=True)]) as client:
        answer = await client.request(
            "POST", "login", json={"user": "bot", "password": "s3cret", "code": "000000"}
        )
    assert (answer.status, answer.body["error"]) == (401, "totp-invalid")


@pytest.mark.parametrize("where", ["body", "header"])
async def test_login_with_the_right_totp_code_succeeds(where: str) -> None:
    """docs/rocketchat-api.md, "Login and tokens": the code goes in ``code`` or in the X-2fa-code
    header."""
    credentials: dict[str, str] = {"user": "bot", "password": "s3cret"}
    headers = {}
    if where == "body":
        credentials["code"] = "123456"
    else:
        headers["X-2fa-code"] = "123456"
    async with serve(users=[password_user(totp_required=True)]) as client:
        answer = await client.request("POST", "login", json=credentials, headers=headers)
    assert answer.status == 200


async def test_a_personal_access_token_works_without_totp() -> None:
    """docs/rocketchat-api.md, "Login and tokens": GET endpoints are not 2FA-protected; an existing
    token just works."""
    user = ApiUser.supervisor(totp_required=True, bypass_rate_limit=True)
    async with serve(users=[user]) as client:
        assert (await client.queue()).status == 200
