"""Weekly rules keep the doctor's wall clock across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

from amrutam.scheduling.rules import expand_weekly


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_spring_forward_skips_the_missing_hour() -> None:
    # Europe/Berlin: 2030-03-31 02:00 local does not exist (clocks jump to 03:00).
    slots = list(
        expand_weekly(
            date(2030, 3, 31), date(2030, 3, 31), {6}, time(1, 0), time(4, 0), 60, "Europe/Berlin"
        )
    )
    assert slots == [
        (_utc(2030, 3, 31, 0), _utc(2030, 3, 31, 1)),  # 01:00 CET, an hour of real time
        (_utc(2030, 3, 31, 1), _utc(2030, 3, 31, 2)),  # 03:00 CEST (02:00 never happens)
    ]


def test_fall_back_takes_the_first_occurrence() -> None:
    # Europe/Berlin: 2030-10-27 02:00-03:00 local happens twice.
    slots = list(
        expand_weekly(
            date(2030, 10, 27), date(2030, 10, 27), {6}, time(1, 0), time(4, 0), 60, "Europe/Berlin"
        )
    )
    assert (_utc(2030, 10, 26, 23), _utc(2030, 10, 27, 0)) in slots  # 01:00 CEST
    assert (_utc(2030, 10, 27, 0), _utc(2030, 10, 27, 1)) in slots  # 02:00 first (CEST)
    assert (_utc(2030, 10, 27, 2), _utc(2030, 10, 27, 3)) in slots  # 03:00 CET
    assert len(slots) == 3
    assert all(end - start == timedelta(hours=1) for start, end in slots)


def test_weekdays_and_range_are_respected() -> None:
    slots = list(
        expand_weekly(
            date(2030, 1, 1), date(2030, 1, 14), {0, 2}, time(9, 0), time(10, 0), 30, "Asia/Kolkata"
        )
    )
    days = sorted({s.astimezone(UTC).date() for s, _ in slots})
    assert [d.weekday() for d in days] == [2, 0, 2, 0]  # Wed 2nd, Mon 7th, Wed 9th, Mon 14th
    assert len(slots) == 8
    assert slots[0] == (_utc(2030, 1, 2, 3, 30), _utc(2030, 1, 2, 4, 0))


def test_a_slot_that_does_not_fit_is_not_made() -> None:
    assert not list(
        expand_weekly(date(2030, 1, 1), date(2030, 1, 1), {1}, time(9, 0), time(9, 20), 30, "UTC")
    )


def test_a_slot_that_would_run_into_the_next_across_the_spring_gap_is_skipped() -> None:
    # America/New_York 2027-03-14: 45-minute slots from midnight. The 01:30 EST slot would
    # end at 03:15 EDT, past the 03:00 EDT slot: it is left out, the rest published.
    slots = list(
        expand_weekly(
            date(2027, 3, 14), date(2027, 3, 14), {6}, time(0), time(5), 45, "America/New_York"
        )
    )
    assert all(end <= nxt for (_, end), (nxt, _) in pairwise(slots))
    assert slots == [
        (_utc(2027, 3, 14, 5), _utc(2027, 3, 14, 5, 45)),  # 00:00 EST
        (_utc(2027, 3, 14, 5, 45), _utc(2027, 3, 14, 6, 30)),  # 00:45 EST
        (_utc(2027, 3, 14, 7), _utc(2027, 3, 14, 7, 45)),  # 03:00 EDT
        (_utc(2027, 3, 14, 7, 45), _utc(2027, 3, 14, 8, 30)),  # 03:45 EDT
    ]
