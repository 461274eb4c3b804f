"""``POST login``: password, two-factor code and resume-token logins
(docs/rocketchat-api.md, "Login and tokens")."""

from __future__ import annotations

import hashlib
import json
import secrets

from exporter.fake.errors import ApiError, JsonObject
from exporter.fake.routes import Call, Route
from exporter.fake.settings import ServerSettings
from exporter.fake.users import ApiUser


def login(call: Call) -> JsonObject:
    payload = _json_object(call.body)
    resume = payload.get("resume")
    if isinstance(resume, str):
        user = next((u for u in call.accounts.values() if u.accepts(resume)), None)
        if user is None:
            raise _login_error(
                call.settings, 403, "You've been logged out by the server. Please log in again."
            )
        return _login_success(call.settings, user, resume)
    name = payload.get("user") or payload.get("username") or payload.get("email")
    password = payload.get("password")
    if not isinstance(name, str) or password is None:
        raise _login_error(call.settings, 400, "Unrecognized options for login request")
    user = next((u for u in call.accounts.values() if name in (u.username, u.email)), None)
    if user is None:
        # Rocket.Chat replaces "User not found" by "Unauthorized".
        raise _login_error(call.settings, "Unauthorized", "Unauthorized")
    if user.password is None or not _password_matches(password, user.password):
        raise _login_error(call.settings, 403, "Incorrect password")
    if user.totp_required:
        _check_totp(call.settings, user, payload.get("code") or call.headers.get("X-2fa-code"))
    token = secrets.token_urlsafe(32)
    user.login_tokens.add(token)  # every REST login adds a resume token
    return _login_success(call.settings, user, token)


def _check_totp(settings: ServerSettings, user: ApiUser, code: object) -> None:
    details = {"method": "totp", "availableMethods": ["totp"]}
    if not code:
        raise _login_error(settings, "totp-required", "TOTP Required", details)
    if str(code) != user.totp_code:
        raise _login_error(settings, "totp-invalid", "TOTP Invalid", {"method": "totp"})


def _login_success(settings: ServerSettings, user: ApiUser, token: str) -> JsonObject:
    me = {
        "_id": user.user_id,
        "username": user.username,
        "name": user.name or user.username,
        "status": "online",
        "active": True,
        "roles": ["user", "livechat-manager"],
    }
    body: JsonObject = {
        "status": "success",
        "data": {"userId": user.user_id, "authToken": token, "me": me},
    }
    if settings.hono:
        body["success"] = True  # the newest ApiClass adds it
    return body


def _login_error(
    settings: ServerSettings, error: str | int, message: str, details: JsonObject | None = None
) -> ApiError:
    body: JsonObject = {"success": False} if settings.hono else {}
    body.update({"status": "error", "error": error})
    if details is not None:
        body["details"] = details
    body["message"] = message
    return ApiError(401, body)


def _json_object(body: bytes) -> JsonObject:
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _password_matches(given: object, password: str) -> bool:
    """A plain password, or ``{"digest": sha256 hex, "algorithm": "sha-256"}``."""
    if isinstance(given, dict):
        expected = hashlib.sha256(password.encode()).hexdigest()
        return secrets.compare_digest(str(given.get("digest", "")), expected)
    return isinstance(given, str) and secrets.compare_digest(given.encode(), password.encode())


LOGIN_ROUTE = Route("POST", "login", login, {}, auth_required=False, adds_success=False)
