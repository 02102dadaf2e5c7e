"""Weekly availability rules, expanded into UTC slots across daylight-saving changes.

Slots follow the doctor's wall clock: 09:00-09:30 local is 09:00-09:30 local on both
sides of a DST change, so its UTC instant moves. A wall time that does not exist (the
hour skipped in spring) yields no slot, and a slot whose real duration would differ
from the rule's (it straddles a change) is skipped rather than made shorter or longer.
An ambiguous wall time (the hour repeated in autumn) takes its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def _exists(local: datetime) -> bool:
    round_trip = local.astimezone(UTC).astimezone(local.tzinfo)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)


def expand_weekly(
    from_date: date,
    to_date: date,
    weekdays: set[int],
    start: time,
    end: time,
    slot_minutes: int,
    timezone: str,
) -> Iterator[tuple[datetime, datetime]]:
    """Yield (starts_at, ends_at) in UTC; weekdays are 0 = Monday ... 6 = Sunday."""
    zone = ZoneInfo(timezone)
    length = timedelta(minutes=slot_minutes)
    day = from_date
    while day <= to_date:
        if day.weekday() in weekdays:
            cursor = datetime.combine(day, start)
            last = datetime.combine(day, end)
            while cursor + length <= last:
                local_start = cursor.replace(tzinfo=zone, fold=0)
                local_end = (cursor + length).replace(tzinfo=zone, fold=0)
                if _exists(local_start) and _exists(local_end):
                    utc_start, utc_end = local_start.astimezone(UTC), local_end.astimezone(UTC)
                    if utc_end - utc_start == length:
                        yield utc_start, utc_end
                cursor += length
        day += timedelta(days=1)
