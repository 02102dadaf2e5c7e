"""The scheduling use cases in process, against the session's real database and Redis.

The HTTP tests cover the contract; these call ``Scheduling`` directly, so a broken rule
fails here with its own traceback instead of as a status code in another process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, time, timedelta

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from amrutam.audit.log import Actor, Entry
from amrutam.auth.models import Role
from amrutam.auth.service import Accounts
from amrutam.dev.servers import RedisServer
from amrutam.doctors.schemas import ProfileIn
from amrutam.doctors.service import DoctorDirectory
from amrutam.errors import Conflict, InvalidInput, PermissionDenied
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database, create_engine
from amrutam.infra.redis_client import create_redis
from amrutam.jsonutil import json_value
from amrutam.scheduling.availability import Availability
from amrutam.scheduling.holds import Holds
from amrutam.scheduling.limits import BookingLimits
from amrutam.scheduling.schemas import ExplicitSlots, WeeklyRule
from amrutam.scheduling.service import Scheduling, _event
from amrutam.settings import Settings
from amrutam.timeutil import utcnow
from tests.helpers import PASSWORD, as_app_role, unique_email


@dataclass
class Core:
    accounts: Accounts
    doctors: DoctorDirectory
    availability: Availability
    scheduling: Scheduling
    capped: Scheduling  # two upcoming bookings per patient
    db: Database
    holds: Holds

    async def person(self, role: Role) -> Actor:
        user = await self.accounts.create_user(
            email=unique_email(role.value), password=PASSWORD, full_name="In Process", role=role
        )
        return Actor(user.id, role.value)

    async def doctor(self) -> Actor:
        doctor = await self.person(Role.doctor)
        profile = ProfileIn(
            specialty="cardiology",
            languages=["english"],
            consultation_fee=100,
            experience_years=3,
            timezone="Asia/Kolkata",
        )
        assert doctor.user_id is not None
        await self.doctors.upsert_profile(doctor, doctor.user_id, profile)
        return doctor


@pytest.fixture
async def core(database_url: str, redis_server: RedisServer) -> AsyncIterator[Core]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        environment="test",
        database_url=as_app_role(database_url),
        redis_url=redis_server.url(3),
        argon2_time_cost=1,
        argon2_memory_kib=8192,
    )
    db, redis = Database(create_engine(settings)), create_redis(settings)
    cache = Cache(redis)
    yield Core(
        Accounts(db, settings),
        DoctorDirectory(db, cache),
        Availability(db, cache),
        Scheduling(db, cache, redis, settings.slot_lock_ttl_ms),
        Scheduling(db, cache, redis, settings.slot_lock_ttl_ms, BookingLimits(2, 2)),
        db,
        Holds(db, cache, redis, settings.slot_lock_ttl_ms, 600),
    )
    await db.dispose()
    await redis.aclose()


def _tomorrow_at(hour: int) -> ExplicitSlots:
    start = (utcnow() + timedelta(days=1)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return ExplicitSlots.model_validate(
        {"slots": [{"starts_at": start, "ends_at": start + timedelta(minutes=30)}]}
    )


async def _one_slot(core: Core, doctor: Actor, hour: int = 10) -> uuid.UUID:
    body = orjson.loads(await core.availability.publish(doctor, _tomorrow_at(hour)))
    return uuid.UUID(body["items"][0]["id"])


async def test_only_patients_book_whoever_calls_the_use_case(core: Core) -> None:
    doctor = await core.doctor()
    slot = await _one_slot(core, doctor)
    for who in (doctor, await core.person(Role.admin)):
        with pytest.raises(PermissionDenied):
            await core.scheduling.book(who, slot_id=slot, reason=None, idempotency_key=None)


async def test_a_doctor_publishes_only_their_own_availability(core: Core) -> None:
    doctor, other = await core.doctor(), await core.doctor()
    with pytest.raises(PermissionDenied):
        await core.availability.publish(other, _tomorrow_at(9), doctor_id=doctor.user_id)


async def test_a_weekly_rule_is_expanded_and_capped_in_the_use_case(core: Core) -> None:
    doctor = await core.doctor()
    start = date.today() + timedelta(days=7)
    rule = WeeklyRule(
        from_date=start,
        to_date=start + timedelta(days=6),
        weekdays=[0, 1, 2, 3, 4],
        start_time=time(9),
        end_time=time(11),
        slot_minutes=30,
        timezone="Asia/Kolkata",
    )
    created = orjson.loads(await core.availability.publish(doctor, rule))["items"]
    assert len(created) == 5 * 4
    too_many = rule.model_copy(
        update={
            "start_time": time(0),
            "end_time": time(23, 55),
            "slot_minutes": 5,
            "to_date": start + timedelta(days=60),
            "weekdays": [0, 1, 2, 3, 4, 5, 6],
        }
    )
    with pytest.raises(InvalidInput, match="too many slots"):
        await core.availability.publish(doctor, too_many)


async def test_a_replayed_booking_returns_the_same_appointment(core: Core) -> None:
    doctor, patient = await core.doctor(), await core.person(Role.patient)
    slot = await _one_slot(core, doctor)
    first = await core.scheduling.book(patient, slot_id=slot, reason="x", idempotency_key="k-1")
    again = await core.scheduling.book(patient, slot_id=slot, reason="x", idempotency_key="k-1")
    assert (first.created, again.created) == (True, False)
    assert first.id == again.id
    other = await core.person(Role.patient)
    with pytest.raises(Conflict):
        await core.scheduling.book(other, slot_id=slot, reason=None, idempotency_key="k-1")


async def test_a_booking_writes_its_audit_row_and_event_as_the_other_paths_do(
    core: Core,
) -> None:
    """The booking's audit row and event are written inside the database function: the
    row hashes as any other, and the event is the payload every appointment event has."""
    doctor, patient = await core.doctor(), await core.person(Role.patient)
    slot = await _one_slot(core, doctor)
    async with core.db.connection() as conn:  # a start with microseconds, formatted too
        await conn.execute(
            "UPDATE availability_slots SET starts_at = starts_at + interval '0.000042 s' "
            "WHERE id = $1",
            slot,
        )
    booking = await core.scheduling.book(patient, slot_id=slot, reason=None, idempotency_key=None)
    appointment = orjson.loads(booking.body)
    async with core.db.connection() as conn:
        event = await conn.fetchrow(
            "SELECT event_type, payload FROM outbox WHERE aggregate_id = $1", booking.id
        )
        audited = await conn.fetchrow(
            "SELECT * FROM audit_logs WHERE entity_id = $1 AND action = 'appointment.booked'",
            str(booking.id),
        )
        stored = await conn.fetchrow(
            "SELECT starts_at, patient_id, doctor_id FROM appointments WHERE id = $1", booking.id
        )
    assert event["event_type"] == "appointment.booked"
    assert json_value(event["payload"]) == _event({"id": booking.id, **stored})
    assert stored["starts_at"].microsecond == 42
    assert appointment["starts_at"] == stored["starts_at"].isoformat()
    assert (audited["actor_id"], audited["actor_role"]) == (patient.user_id, "patient")
    assert json_value(audited["detail"]) == {"slot_id": str(slot)}
    assert Entry.of(audited).digest() == audited["row_hash"]


async def test_parallel_bookings_by_one_patient_never_pass_the_cap(core: Core) -> None:
    """Each booking counts the patient's others only after it holds their lock, so a
    booking committed while it waited is counted."""
    doctors = [await core.doctor() for _ in range(3)]
    patient = await core.person(Role.patient)
    slots = [await _one_slot(core, doctor, hour) for hour in range(8, 14) for doctor in doctors]
    await core.capped.book(patient, slot_id=slots[0], reason=None, idempotency_key=None)
    outcomes = await asyncio.gather(
        *(
            core.capped.book(patient, slot_id=slot, reason=None, idempotency_key=None)
            for slot in slots[1:]
        ),
        return_exceptions=True,
    )
    booked = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(booked) == 1, outcomes
    assert len(refused) == len(outcomes) - 1, outcomes


async def test_a_hold_booked_again_with_its_key_returns_the_same_appointment(core: Core) -> None:
    """What a booking cut off by an outage after its commit meets when it is run again."""
    doctor, patient = await core.doctor(), await core.person(Role.patient)
    slot = await _one_slot(core, doctor)
    hold = uuid.UUID(orjson.loads(await core.holds.hold(patient, slot))["id"])
    first = await core.scheduling.book(patient, hold_id=hold, reason=None, idempotency_key="h-1")
    again = await core.scheduling.book(patient, hold_id=hold, reason=None, idempotency_key="h-1")
    assert (first.created, again.created) == (True, False)
    assert again.body == first.body
    with pytest.raises(Conflict, match="not open"):
        await core.scheduling.book(patient, hold_id=hold, reason=None, idempotency_key="h-2")


async def test_cancel_reopens_and_reschedule_moves_the_booking(core: Core) -> None:
    doctor, patient = await core.doctor(), await core.person(Role.patient)
    first, second = await _one_slot(core, doctor, 10), await _one_slot(core, doctor, 11)
    booking = await core.scheduling.book(patient, slot_id=first, reason=None, idempotency_key=None)
    moved = orjson.loads(await core.scheduling.reschedule(patient, booking.id, second))
    assert moved["slot_id"] == str(second)
    again = await core.scheduling.book(
        await core.person(Role.patient), slot_id=first, reason=None, idempotency_key=None
    )
    assert again.created  # the slot left behind is open again
    cancelled = orjson.loads(await core.scheduling.cancel(patient, booking.id))
    assert cancelled["status"] == "cancelled"
    with pytest.raises(Conflict):
        await core.scheduling.cancel(patient, booking.id)


async def test_a_failed_statement_does_not_log_its_parameters(core: Core) -> None:
    """F18: SQLAlchemy's error text carried every parameter (emails, password hashes)."""
    secret = "$argon2id$v=19$not-for-the-logs"
    with pytest.raises(DBAPIError) as failure:
        async with core.accounts._db.transaction() as session:
            await session.execute(
                text("SELECT 1 / (length(:hash) - length(:hash))"), {"hash": secret}
            )
    assert secret not in str(failure.value)
