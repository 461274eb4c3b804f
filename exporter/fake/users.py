"""The accounts the fake accepts, and the permissions its routes check."""

from __future__ import annotations

from dataclasses import dataclass, field

SUPERVISOR_PERMISSIONS: frozenset[str] = frozenset(
    {
        "view-l-room",  # livechat/queue, livechat/department
        "view-livechat-manager",  # livechat/inquiries.list
        "view-livechat-departments",  # livechat/department
        "transfer-livechat-guest",  # livechat/users/agent, TypeScript eras
        "manage-livechat-agents",  # livechat/users/agent, JavaScript eras
    }
)
ALL_PERMISSIONS: frozenset[str] = SUPERVISOR_PERMISSIONS | {
    "edit-omnichannel-contact",
    "view-livechat-rooms",
}
BYPASS_RATE_LIMIT = "api-bypass-rate-limit"  # such users are never limited and get no headers

DEFAULT_USER_ID = "ExporterBot000001"
DEFAULT_TOKEN = "exporter-personal-access-token-000000000000"
DEFAULT_TOTP_CODE = "123456"


@dataclass
class ApiUser:
    """A Rocket.Chat account with a Personal Access Token (docs/rocketchat-api.md,
    "Login and tokens").

    Mutable on purpose: a test revokes access with ``user.token = ""`` or
    :meth:`FakeRocketChat.revoke`. Tokens issued by ``POST /api/v1/login`` are added to
    ``login_tokens`` and authenticate as well. Secrets are left out of ``repr``.
    """

    user_id: str
    token: str = field(repr=False)
    username: str
    permissions: set[str] = field(default_factory=set)
    bypass_rate_limit: bool = False
    password: str | None = field(default=None, repr=False)
    totp_required: bool = False
    totp_code: str = field(default=DEFAULT_TOTP_CODE, repr=False)
    name: str = ""
    email: str = ""
    login_tokens: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def supervisor(
        cls,
        user_id: str = DEFAULT_USER_ID,
        token: str = DEFAULT_TOKEN,
        username: str = "exporter",
        *,
        bypass_rate_limit: bool = False,
        password: str | None = None,
        totp_required: bool = False,
    ) -> ApiUser:
        """The exporter's user: the permissions of a livechat supervisor or bot."""
        return cls(
            user_id,
            token,
            username,
            set(SUPERVISOR_PERMISSIONS),
            bypass_rate_limit=bypass_rate_limit,
            password=password,
            totp_required=totp_required,
        )

    def accepts(self, token: str) -> bool:
        return bool(token) and (token == self.token or token in self.login_tokens)

    def has_any(self, permissions: tuple[str, ...]) -> bool:
        return not self.permissions.isdisjoint(permissions)

    @property
    def bypasses_rate_limit(self) -> bool:
        return self.bypass_rate_limit or BYPASS_RATE_LIMIT in self.permissions
