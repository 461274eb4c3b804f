"""A hostile or unlucky Rocket.Chat, against the real exporter process (issue 13, points 1, 2,
3 and 15, and the 403 from /login): wrong totals, answers that cannot be read, header numbers
of hundreds of digits, a login that fails in every way. Every answer ends as a counted poll
with a one-line log, never a traceback nor a stopped process; a failed login is one attempt
for all collectors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.fake import ApiUser, ServerSettings, World
from tests.e2e.harness import ExporterProcess, exporter_config, queue_truth, start_exporter
from tests.e2e.observe import QUEUE_CHATS, tracebacks
from tests.support.faults import InstrumentedFake, Reply

WITHIN = 15.0
QUEUE = "livechat/queue"
PASSWORD = "correct-horse-battery-staple-42"
POLLS = "rocketchat_livechat_exporter_polls_total"
REQUESTS = "rocketchat_livechat_exporter_requests_total"


def polls(scrape: Any, result: str, collector: str = "queue") -> float:
    return scrape.value(POLLS, collector=collector, result=result) or 0.0


def requests(scrape: Any, code: str, collector: str = "queue") -> float:
    return scrape.value(REQUESTS, collector=collector, code=code) or 0.0


async def poll_results_after(exporter: ExporterProcess, result: str, more_than: float = 0) -> Any:
    return await exporter.wait_for_polls("queue", result, more_than=more_than, within=WITHIN)


def down_logs(exporter: ExporterProcess, collector: str = "queue") -> list[dict[str, Any]]:
    return [
        e
        for e in exporter.logs
        if e.get("collector") == collector and e.get("msg", "").startswith("collector ")
    ]


# --- point 1: a total far too low does not cut the rows --------------------------------------


def wide_world() -> World:
    """1,000 (agent, department) rows of one chat each."""
    world = World(seed=3)
    departments = [world.add_department(f"Dept {i}").id for i in range(4)]
    for i in range(250):
        agent = world.add_agent(f"agent{i:03d}", department_ids=departments).id
        for department in departments:
            world.open_room(agent, department)
    return world


async def test_paging_gets_every_row_when_total_is_150_too_low(tmp_path: Path) -> None:
    bot = ApiUser.supervisor(bypass_rate_limit=True)
    fake = InstrumentedFake(wide_world(), ServerSettings(total_skew=-150), [bot], shuffle_seed=5)
    await fake.start()
    try:
        config = exporter_config(fake, poll={"page_size": 100})
        exporter = await start_exporter(config, tmp_path)
        try:
            scrape = await exporter.wait_for_polls(within=WITHIN)
        finally:
            await exporter.stop()
    finally:
        await fake.stop()
    truth = queue_truth(fake.world)
    assert len(truth) == 1000
    assert scrape.family(QUEUE_CHATS) == truth
    assert tracebacks(exporter) == []


# --- issue 9, point 1: a server whose model refuses count=0 ---------------------------------


async def test_a_400_to_count_zero_pages_the_endpoint_from_then_on(
    fake: InstrumentedFake, tmp_path: Path
) -> None:
    # What Users.findAgentsWithDepartments answers to an unlimited count, here on the queue.
    facet = "elements of arrays in $facet spec must be non-empty objects"
    fake.inject(Reply.json({"success": False, "error": facet}, status=400), path=QUEUE)
    exporter = await start_exporter(exporter_config(fake), tmp_path)
    try:
        scrape = await exporter.wait_for_polls(more_than=2, within=WITHIN)
    finally:
        await exporter.stop()
    assert scrape.family(QUEUE_CHATS) == queue_truth(fake.world)
    assert polls(scrape, "bad_request") == 0  # the first poll already paged instead
    counts = [dict(r.query).get("count") for r in fake.requests_to(QUEUE)]
    assert counts[0] == "0"
    assert "0" not in counts[1:]
    refused = [e for e in exporter.logs if "refuses count=0" in e.get("msg", "")]
    assert len(refused) == 1
    assert tracebacks(exporter) == []


# --- points 2 and 3: answers that made the client raise ----------------------------------


def limit_headers(**overrides: str) -> dict[str, str]:
    reset = str(int((time.time() + 30) * 1000))
    return {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "5",
        "X-RateLimit-Reset": reset,
        **overrides,
    }


HOSTILE = {
    "json-nested-200000-deep": Reply(200, b"[" * 200_000 + b"]" * 200_000),
    "page-with-a-field-nested-200000-deep": Reply(
        200, b'{"queue":[],"total":0,"success":true,"x":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    ),
    "latin-1-error-body": Reply(400, '{"success":false,"error":"fermé"}'.encode("latin-1")),
    "latin-1-success-body": Reply(
        200, '{"queue":[{"chats":1,"user":{"_id":"a1","username":"josé"}}]}'.encode("latin-1")
    ),
    "reset-of-400-digits": Reply.json(
        {"queue": [], "total": 0, "success": True},
        headers=limit_headers(**{"X-RateLimit-Reset": "9" * 400}),
    ),
    "429-with-a-reset-of-400-digits": Reply.json(
        {"success": False, "error": "too many requests [error-too-many-requests]"},
        status=429,
        headers=limit_headers(**{"X-RateLimit-Reset": "9" * 400, "X-RateLimit-Remaining": "0"}),
    ),
    "remaining-of-300-digits": Reply.json(
        {"queue": [], "total": 0, "success": True},
        headers=limit_headers(**{"X-RateLimit-Remaining": "7" * 300}),
    ),
}
EXPECTED = {"latin-1-error-body": "bad_request"}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_hostile_answer_is_a_counted_failure_and_the_exporter_goes_on(
    fake: InstrumentedFake, tmp_path: Path, name: str
) -> None:
    exporter = await start_exporter(exporter_config(fake), tmp_path)
    try:
        await exporter.wait_for_polls(within=WITHIN)
        fake.inject(HOSTILE[name], times=None, path=QUEUE)
        result = EXPECTED.get(name, "invalid_response")
        failing = await poll_results_after(exporter, result, more_than=2)  # three in a row
        assert exporter.process.returncode is None
        fake.clear_faults()
        before = polls(failing, "success")
        recovered = await exporter.wait_for_polls(more_than=before, within=WITHIN)
    finally:
        code = await exporter.stop()
    assert code == 0
    assert recovered.family(QUEUE_CHATS) == queue_truth(fake.world)
    status = str(HOSTILE[name].status)
    assert requests(failing, status) >= 3  # every request counted, with its status
    assert tracebacks(exporter) == []
    # Logged once per change of state: down once (then debug), recovered once.
    messages = [e["msg"] for e in down_logs(exporter)]
    assert messages.count("collector down") == 1
    assert messages.count("collector recovered") == 1


# --- point 15 and the 403 from /login: one login attempt for every collector ----------------


@pytest.fixture
def password_bot() -> ApiUser:
    user = ApiUser.supervisor(bypass_rate_limit=True, password=PASSWORD)
    user.token = ""
    return user


@pytest.fixture
async def login_fake(password_bot: ApiUser) -> Any:
    from tests.e2e.conftest import small_world

    server = InstrumentedFake(small_world(), ServerSettings(), [password_bot], shuffle_seed=5)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def start_with_password(fake: InstrumentedFake, tmp_path: Path) -> ExporterProcess:
    config = exporter_config(fake, collectors={"queue": True, "inquiries": True, "agents": True})
    rocketchat = config["rocketchat"]
    del rocketchat["user_id"], rocketchat["auth_token"]
    rocketchat["username"] = "exporter"
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    rocketchat["password_file"] = str(password_file)
    return await start_exporter(config, tmp_path)


def login_attempts(fake: InstrumentedFake) -> int:
    return sum(1 for r in fake.requests_to("login") if r.method == "POST")


LOGIN_FAILURES = {
    "429-reset-in-60s": Reply.json(
        {"success": False, "error": "Error, too many requests. [error-too-many-requests]"},
        status=429,
        headers=limit_headers(
            **{
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int((time.time() + 60) * 1000)),
            }
        ),
    ),
    "503": Reply(503, b"Service Unavailable", content_type="text/plain"),
    "403": Reply.json({"success": False, "error": "blocked by policy"}, status=403),
    "garbage": Reply(200, b"<html>gateway</html>", content_type="text/html"),
}


@pytest.mark.parametrize("name", list(LOGIN_FAILURES))
async def test_a_failed_login_is_one_attempt_for_all_collectors(
    login_fake: InstrumentedFake, tmp_path: Path, name: str
) -> None:
    login_fake.inject(LOGIN_FAILURES[name], times=None, path="login")
    exporter = await start_with_password(login_fake, tmp_path)
    try:
        # Three collectors, a poll a second each: about ten polls in 3.5 seconds.
        await asyncio.sleep(3.5)
        scrape = await exporter.scrape()
        attempts = login_attempts(login_fake)
        assert exporter.process.returncode is None
    finally:
        await exporter.stop()
    failed = sum(
        polls(scrape, result, collector)
        for collector in ("queue", "inquiries", "agents")
        for result in ("rate_limited", "server_error", "forbidden", "invalid_response")
    )
    assert failed >= 6  # the collectors kept polling ...
    assert attempts == 1  # ... on one login attempt, within the reset and the first backoff
    assert tracebacks(exporter) == []
    if name == "403":
        errors = [e.get("error", "") for e in down_logs(exporter)]
        assert errors
        assert all("login refused (403)" in error for error in errors)
        assert not any("view-l-room" in error or "needs" in error for error in errors)
