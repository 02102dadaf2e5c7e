"""BackupFresh: whether every schedule's last due run left a backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from amrutam_operator.backups import freshness

from amrutam.backups import status


def test_freshness_counts_a_bigger_backup_for_a_smaller_schedule() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    full = status.Backup("F", "full", now - timedelta(hours=3), now - timedelta(hours=2), 1, 1)
    schedules = {"incremental": "0 */4 * * *", "full": "0 1 * * 0"}
    since = now - timedelta(days=30)
    ok, _ = freshness(schedules, [full], now, since, timedelta(hours=1))
    assert ok  # the 08:00 incremental is covered by the 10:00 full
    ok, message = freshness(schedules, [full], now + timedelta(hours=6), since, timedelta(hours=1))
    assert not ok
    assert "incremental due" in message


def test_nothing_is_overdue_before_the_first_run_was_due() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    ok, _ = freshness({"full": "0 1 * * 0"}, [], now, now - timedelta(hours=1), timedelta(0))
    assert ok
