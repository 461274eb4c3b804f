"""The error answers of the fake, with Rocket.Chat's exact bodies per framework
(docs/rocketchat-api.md, "Error bodies")."""

from __future__ import annotations

from typing import Any, TypeAlias

from exporter.fake.settings import ServerSettings

JsonObject: TypeAlias = dict[str, Any]

LOGGED_OUT = "You must be logged in to do this."
NO_PERMISSION = "User does not have the permissions required for this action"


class ApiError(Exception):
    """Ends a request with this status and JSON body (rate-limit headers still apply)."""

    def __init__(self, status: int, body: JsonObject) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def unauthenticated(settings: ServerSettings) -> ApiError:
    """401 for a missing, wrong or revoked token."""
    if not settings.hono:
        return ApiError(401, {"status": "error", "message": LOGGED_OUT})
    if settings.breaking:
        return ApiError(401, {"success": False, "error": LOGGED_OUT})
    body = {"success": False, "status": "error", "message": LOGGED_OUT, "error": LOGGED_OUT}
    return ApiError(401, body)


def forbidden(settings: ServerSettings) -> ApiError:
    """403 of a route-level ``permissionsRequired`` failure."""
    code = "error-forbidden" if settings.breaking else "error-unauthorized"
    return ApiError(403, {"success": False, "error": f"{NO_PERMISSION} [{code}]"})


def bare_forbidden(settings: ServerSettings) -> ApiError:
    """403 of a route that returns ``API.v1.forbidden()`` with no message."""
    return ApiError(
        403, {"success": False, "error": "forbidden" if settings.breaking else "unauthorized"}
    )


def failure(message: str) -> ApiError:
    """Any exception inside a route action, MongoDB's included, is a 400 ``failure()``."""
    return ApiError(400, {"success": False, "error": message})


def invalid_params(message: str) -> ApiError:
    """A query refused by the route's ``validateParams`` schema (a ``Meteor.Error``)."""
    body = {"success": False, "error": f"{message} [invalid-params]", "errorType": "invalid-params"}
    return ApiError(400, body)


def invalid_sort(text: str) -> ApiError:
    body = {
        "success": False,
        "error": f'Invalid sort parameter provided: "{text}" [error-invalid-sort]',
        "errorType": "error-invalid-sort",
        "details": {"helperMethod": "parseJsonQuery"},
    }
    return ApiError(400, body)


def too_many_requests(wait_seconds: int) -> ApiError:
    message = (
        "Error, too many requests. Please slow down. You must wait "
        f"{wait_seconds} seconds before trying this endpoint again. [error-too-many-requests]"
    )
    return ApiError(429, {"success": False, "error": message})


def not_found() -> ApiError:
    return ApiError(404, {"success": False, "error": "API endpoint does not exist"})
