"""Weekly availability rules, expanded into UTC slots across daylight-saving changes.

Slots start on the doctor's wall clock: 09:00 local is 09:00 local on both sides of a
DST change, so its UTC instant moves. Every slot lasts ``slot_minutes`` of real time.
A start that does not exist on the wall clock (the hour skipped in spring) yields no
slot, nor does one whose real end would pass the next slot's start; an ambiguous one
(the hour repeated in autumn) takes its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from amrutam.errors import FieldError, InvalidInput
from amrutam.scheduling.schemas import MAX_SLOTS_PER_REQUEST, WeeklyRule


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
            starts = []
            cursor = datetime.combine(day, start)
            last = datetime.combine(day, end)
            while cursor + length <= last:
                local_start = cursor.replace(tzinfo=zone, fold=0)
                if _exists(local_start):
                    starts.append(local_start.astimezone(UTC))
                cursor += length
            # Across the spring gap a slot's real end can pass the next wall-clock start
            # (or the window's end): such a slot is skipped, never made to overlap.
            bounds = [*starts[1:], last.replace(tzinfo=zone, fold=0).astimezone(UTC)]
            for begin, limit in zip(starts, bounds, strict=False):
                if begin + length <= limit:
                    yield begin, begin + length
        day += timedelta(days=1)


def slots_of(rule: WeeklyRule) -> list[tuple[datetime, datetime]]:
    """The rule's slots, refused when it makes none or more than one request may hold."""
    times = list(
        expand_weekly(
            rule.from_date,
            rule.to_date,
            set(rule.weekdays),
            rule.start_time,
            rule.end_time,
            rule.slot_minutes,
            rule.timezone,
        )
    )
    if len(times) > MAX_SLOTS_PER_REQUEST:
        raise InvalidInput(
            "the rule makes too many slots",
            [FieldError("to_date", f"at most {MAX_SLOTS_PER_REQUEST} slots per request")],
        )
    if not times:
        raise InvalidInput("the rule makes no slots", [FieldError("weekdays", "no slot fits")])
    return times
