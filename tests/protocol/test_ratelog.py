"""`RateLimitedLog`: one line per cause per interval, repeats counted, tracebacks for bugs."""

from __future__ import annotations

import logging

import pytest

from quietsync.protocol.ratelog import RateLimitedLog, describe

LOGGER = "quietsync.test.ratelog"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def test_a_repeating_cause_logs_once_per_interval_with_its_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = RateLimitedLog(logging.getLogger(LOGGER), interval=60.0, clock=clock)
    caplog.set_level(logging.WARNING, LOGGER)
    assert log.failure("flush", "flushing failed: disk full 💾")
    for _ in range(800):  # 16 a second for 50 s
        clock.now += 0.0625
        assert not log.failure("flush", "flushing failed: disk full 💾")
    assert lines(caplog) == ["flushing failed: disk full 💾"]
    clock.now += 10.0
    assert log.failure("flush", "flushing failed: disk full 💾")
    assert lines(caplog)[1] == "flushing failed: disk full 💾 (repeated 800 times in the last 60 s)"
    clock.now += 61.0
    assert log.failure("flush", "flushing failed again")
    assert lines(caplog)[2] == "flushing failed again"  # nothing was suppressed since
    assert all(record.exc_info is None for record in caplog.records)


def test_causes_are_counted_apart_and_flush_reports_what_is_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = RateLimitedLog(logging.getLogger(LOGGER), interval=60.0, clock=clock)
    caplog.set_level(logging.INFO, LOGGER)
    for _ in range(3):
        log.failure("store", "store failed")
        log.failure("provider: Ünïcode ✓ 𝔘", "provider failed", level=logging.INFO)
    assert lines(caplog) == ["store failed", "provider failed"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    clock.now += 5
    log.flush()
    assert lines(caplog)[2:] == [
        "store: repeated 2 times in the last 5 s",
        "provider: Ünïcode ✓ 𝔘: repeated 2 times in the last 5 s",
    ]
    log.flush()
    assert len(lines(caplog)) == 4
    assert log.failure("store", "store failed")  # forgotten: logged again at once


def test_describe_is_one_line_without_a_traceback() -> None:
    try:
        "\ud800".encode()
    except UnicodeEncodeError as exc:
        text = describe(exc)
    assert text.startswith("UnicodeEncodeError: 'utf-8' codec can't encode")
    assert "\n" not in describe(ValueError("two\nlines  é"))
    assert describe(ValueError("two\nlines  é")) == "ValueError: two lines é"
    assert describe(TimeoutError()) == "TimeoutError"


def test_a_bugs_line_carries_its_traceback_and_its_repeats_are_only_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = RateLimitedLog(logging.getLogger(LOGGER), interval=60.0, clock=clock)
    caplog.set_level(logging.ERROR, LOGGER)
    for _ in range(5):
        try:
            {"ключ": 1}["clé 🔑"]
        except KeyError as exc:
            log.failure(
                "loop: KeyError", f"unexpected failure, {describe(exc)}", logging.ERROR, exc
            )
    assert lines(caplog) == ["unexpected failure, KeyError: 'clé 🔑'"]
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "Traceback" in caplog.text and "in test_a_bugs_line" in caplog.text
    clock.now += 61
    log.flush(logging.ERROR)
    assert lines(caplog)[1] == "loop: KeyError: repeated 4 times in the last 61 s"
    assert caplog.records[1].exc_info is None
