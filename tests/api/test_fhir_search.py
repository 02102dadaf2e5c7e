"""FHIR search values read exactly as the specification means them: a date's prefix
applies to the whole period its precision names, and what cannot be read is a 400."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.fhir.resources import parse_medication_request_id
from api.fhir.search import Range, date_range, reference, token
from api.problems import BadRequest


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["ge2026-12-01"], Range(utc(2026, 12, 1), None)),
        (["gt2026-12-01"], Range(utc(2026, 12, 2), None)),
        (["lt2026-12-01"], Range(None, utc(2026, 12, 1))),
        (["le2026-12-01"], Range(None, utc(2026, 12, 2))),
        (["2026-12-01"], Range(utc(2026, 12, 1), utc(2026, 12, 2))),
        (["eq2026-12"], Range(utc(2026, 12, 1), utc(2027, 1, 1))),
        (["eq2026-02"], Range(utc(2026, 2, 1), utc(2026, 3, 1))),
        (["2026"], Range(utc(2026, 1, 1), utc(2027, 1, 1))),
        (["ge2026-12-01T09:30Z"], Range(utc(2026, 12, 1, 9, 30), None)),
        (["gt2026-12-01T09:30Z"], Range(utc(2026, 12, 1, 9, 31), None)),
        (["le2026-12-01T09:30:15Z"], Range(None, utc(2026, 12, 1, 9, 30, 16))),
        (
            ["eq2026-12-01T09:30:15.5+05:30"],
            Range(
                datetime(2026, 12, 1, 9, 30, 15, 500000, timezone(timedelta(hours=5, minutes=30))),
                datetime(2026, 12, 1, 9, 30, 15, 500001, timezone(timedelta(hours=5, minutes=30))),
            ),
        ),
        # Two values narrow each other: the window of both.
        (["ge2026-12-01", "lt2026-12-03"], Range(utc(2026, 12, 1), utc(2026, 12, 3))),
        (["ge2026-12-01", "ge2026-12-02"], Range(utc(2026, 12, 2), None)),
    ],
)
def test_a_date_covers_the_period_its_precision_names(values: list[str], expected: Range) -> None:
    assert date_range("start", values) == expected


@pytest.mark.parametrize(
    "value",
    [
        "sa2026-12-01",  # a prefix we do not serve
        "ap2026-12-01",
        "2026-13-01",
        "2026-02-30",
        "26-12-01",
        "2026-12-01T25:00Z",
        "2026-12-01T09:00+15:00",
        "1066-10-14",  # outside the range a cursor or a column holds
        "",
        "ge",
        "2026-12-01T09Z",
        "２０２６-12-01",  # digits, but not ASCII ones
    ],
)
def test_an_unreadable_date_is_a_bad_request(value: str) -> None:
    with pytest.raises(BadRequest):
        date_range("start", [value])


def test_references_name_our_ids_in_any_form() -> None:
    some = uuid.uuid4()
    for form in (f"Schedule/{some}", str(some), f"https://host/fhir/R4/Schedule/{some}"):
        assert reference("schedule", form, "Schedule") == some
    spellings = (f"Schedule/{some.hex}", f"Schedule/{str(some).upper()}", f"Schedule/{{{some}}}")
    for wrong in (f"Practitioner/{some}", "Schedule/not-an-id", "Schedule/", *spellings):
        with pytest.raises(BadRequest):
            reference("schedule", wrong, "Schedule")


def test_tokens_give_their_system_and_codes() -> None:
    assert token("status", "free") == (None, ["free"])
    assert token("status", "free,busy") == (None, ["free", "busy"])
    assert token("specialty", "https://x|cardiology") == ("https://x", ["cardiology"])
    assert token("specialty", "|cardiology") == ("", ["cardiology"])
    with pytest.raises(BadRequest):
        token("status", "")


def test_a_medication_request_has_one_id() -> None:
    some = uuid.uuid4()
    assert parse_medication_request_id(f"{some}-2") == (some, 2)
    others = (f"{some}-02", f"{some}-0", f"{some}--1", f"{some}", "x-1", f"{some}-1.5")
    for other in (*others, f"{some}-²", f"{some}-٣"):
        assert parse_medication_request_id(other) is None
