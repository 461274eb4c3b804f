"""The shapes of Rocket.Chat's answers that the exporter reads, as msgspec types.

Decoding validates as it goes: a wrong type anywhere (``chats`` as a string, ``queue`` not a
list) fails the whole answer with a message naming the path, e.g.
``Expected `int`, got `str` - at `$.queue[3].chats```. Unknown fields are ignored, because newer
servers add some (docs/rocketchat-api.md, "livechat/queue"). Numbers are bounded: a count of
hundreds of digits is a wrong answer, not a metric value. ``gc=False`` on the row types: they
hold only strings and numbers, and skipping the cycle collector makes a 50,000-row answer
decode ~3x faster.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# Above 2**53 a count would not survive the float of a Prometheus sample.
NonNegative = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class Page(msgspec.Struct, kw_only=True):
    """The paging fields every list endpoint returns that the exporter reads
    (docs/rocketchat-api.md, "Paging"); `count` and `offset` only echo the request."""

    total: NonNegative | None = None  # the row count of the whole result: a hint, never exact
    success: bool = True


# --- livechat/queue ------------------------------------------------------------------------


class QueueUser(msgspec.Struct, gc=False, kw_only=True):
    # `{}` for a deleted agent on E1/E2 servers, so every field may be missing.
    id: str | None = msgspec.field(name="_id", default=None)
    username: str | None = None
    status: str | None = None


class QueueDepartment(msgspec.Struct, gc=False, kw_only=True):
    # `{}` (E4+) or `{_id: null, name: null}` (E1/E2) for "no department"; a deleted department
    # keeps its id and loses its name.
    id: str | None = msgspec.field(name="_id", default=None)
    name: str | None = None


class QueueRow(msgspec.Struct, gc=False, kw_only=True):
    chats: NonNegative
    user: QueueUser = msgspec.field(default_factory=QueueUser)
    department: QueueDepartment | None = None


class QueuePage(Page, kw_only=True):
    queue: list[QueueRow]

    @property
    def rows(self) -> list[QueueRow]:
        return self.queue


# --- livechat/inquiries.list ------------------------------------------------------------


class Inquiry(msgspec.Struct, gc=False, kw_only=True):
    id: str = msgspec.field(name="_id")
    ts: str | float | None = None  # ISO 8601 ("2021-07-22T14:28:57.987Z"); EJSON dates as ms
    status: str | None = None
    department: str | None = None  # the department's id; absent when there is none


class InquiriesPage(Page, kw_only=True):
    inquiries: list[Inquiry]

    @property
    def rows(self) -> list[Inquiry]:
        return self.inquiries


# --- livechat/users/agent ---------------------------------------------------------------


class Agent(msgspec.Struct, gc=False, kw_only=True):
    id: str = msgspec.field(name="_id")
    username: str | None = None
    status: str | None = None  # presence: online, away, busy, offline
    status_livechat: str | None = msgspec.field(name="statusLivechat", default=None)
    # Department ids, from a $lookup on the agent's department memberships (conversations.md).
    departments: list[str] | None = None


class AgentsPage(Page, kw_only=True):
    users: list[Agent]

    @property
    def rows(self) -> list[Agent]:
        return self.users


# --- livechat/department ----------------------------------------------------------------


class Department(msgspec.Struct, gc=False, kw_only=True):
    id: str = msgspec.field(name="_id")
    name: str | None = None


class DepartmentsPage(Page, kw_only=True):
    departments: list[Department]

    @property
    def rows(self) -> list[Department]:
        return self.departments


# --- livechat/rooms (docs/conversations.md) ------------------------------------------------
# Only what the conversations metrics need. A room also holds the visitor (v.token, name,
# e-mails, livechatData): those fields are not declared, so msgspec skips them unread.


class RoomAgent(msgspec.Struct, gc=False, kw_only=True):
    id: str = msgspec.field(name="_id", default="")
    username: str | None = None


class RoomResponse(msgspec.Struct, gc=False, kw_only=True):
    ft: float | None = None  # first agent reply minus the visitor's first message, seconds


class RoomMetrics(msgspec.Struct, gc=False, kw_only=True):
    chat_duration: float | None = msgspec.field(name="chatDuration", default=None)
    response: RoomResponse | None = None


class ClosedRoom(msgspec.Struct, gc=False, kw_only=True):
    id: str = msgspec.field(name="_id")
    ts: str | None = None  # creation, ISO 8601
    # Absent on open rooms, which a server ignoring the filter would list: skipped, not fatal.
    closed_at: str | None = msgspec.field(name="closedAt", default=None)
    department_id: str | None = msgspec.field(name="departmentId", default=None)
    department: Department | None = None  # {_id, name}, added by the route
    served_by: RoomAgent | None = msgspec.field(name="servedBy", default=None)
    metrics: RoomMetrics | None = None


class RoomsPage(Page, kw_only=True):
    rooms: list[ClosedRoom]

    @property
    def rows(self) -> list[ClosedRoom]:
        return self.rooms


# --- POST login ---------------------------------------------------------------------------


class LoginData(msgspec.Struct, kw_only=True):
    user_id: str = msgspec.field(name="userId")
    auth_token: str = msgspec.field(name="authToken")


class LoginSuccess(msgspec.Struct, kw_only=True):
    status: str | None = None
    data: LoginData
