"""The short soak, in the default test run: 40 seconds of tests/soak/soak.py (scripts/soak runs
it for 30 minutes). Its report is checked one property per test."""

from __future__ import annotations

import asyncio

import pytest

from tests.soak.soak import SCRAPE_BOUND, THREADS_BOUND, SoakOptions, SoakReport, soak

SHORT = SoakOptions(duration=40.0, warm_up=10.0, outage_every=15.0, seed=3)


@pytest.fixture(scope="module")
def report() -> SoakReport:
    result = asyncio.run(soak(SHORT))
    print(result.summary())  # shown with -s, or on a failure
    if result.crashed:
        pytest.fail(f"the soak did not run through: {result.crashed}")
    return result


def flat(report: SoakReport, what: str) -> None:
    (check,) = [c for c in report.flatness() if c.what.startswith(what)]
    assert check.flat, str(check)


def test_memory_stays_flat(report: SoakReport) -> None:
    flat(report, "rss")


def test_asyncio_tasks_stay_flat(report: SoakReport) -> None:
    flat(report, "tasks")


def test_open_file_descriptors_stay_flat(report: SoakReport) -> None:
    flat(report, "fds")


def test_open_sockets_stay_flat(report: SoakReport) -> None:
    flat(report, "sockets")


def test_threads_stay_bounded(report: SoakReport) -> None:
    assert max(s.threads for s in report.samples) <= THREADS_BOUND


def test_every_scrape_is_answered_quickly_and_well(report: SoakReport) -> None:
    assert report.scrape_errors == []
    assert len(report.latencies) > 100
    assert max(report.latencies) < SCRAPE_BOUND


def test_faults_of_many_kinds_were_mixed_in(report: SoakReport) -> None:
    assert sum(report.faults.values()) >= 20
    assert len(report.faults) >= 6
    failed = {key.split()[1] for key, count in report.polls.items() if count} - {"success"}
    assert len(failed) >= 4  # outcomes counted by polls_total
    assert sum(report.polls.values()) >= 3 * SHORT.duration * 0.8  # 3 collectors, 1 s apart


def test_nothing_is_logged_as_a_traceback(report: SoakReport) -> None:
    assert report.bad_log_lines == []
    assert report.stdout == []


def test_every_collector_recovers_to_the_truth(report: SoakReport) -> None:
    assert report.recovery == "ok"


def test_the_exporter_stops_cleanly(report: SoakReport) -> None:
    assert report.exit_code == 0
