"""Demo data for the local stack: an admin, a patient, and doctors with open slots."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, time, timedelta

from sqlmodel import select

from amrutam.audit.log import SYSTEM
from amrutam.auth.models import Role, User
from amrutam.auth.service import Accounts
from amrutam.doctors.schemas import ProfileIn
from amrutam.doctors.service import DoctorDirectory
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database, create_engine
from amrutam.infra.redis_client import create_redis
from amrutam.scheduling.availability import Availability
from amrutam.scheduling.schemas import WeeklyRule
from amrutam.settings import Settings
from amrutam.timeutil import utcnow


@dataclass(frozen=True)
class DemoAccount:
    email: str
    full_name: str
    role: Role
    profile: dict[str, object] = field(default_factory=dict)


DEMO_PASSWORD = "amrutam-demo-123"
DEMO_ACCOUNTS = (
    DemoAccount("admin@amrutam.example", "Demo Admin", Role.admin),
    DemoAccount("patient@amrutam.example", "Asha Patient", Role.patient),
    DemoAccount(
        "dr.rao@amrutam.example",
        "Dr. Meera Rao",
        Role.doctor,
        {
            "specialty": "cardiology",
            "languages": ["english", "hindi", "marathi"],
            "consultation_fee": 80000,
            "experience_years": 15,
            "city": "Pune",
            "bio": "Preventive cardiology and hypertension.",
        },
    ),
    DemoAccount(
        "dr.iyer@amrutam.example",
        "Dr. Arjun Iyer",
        Role.doctor,
        {
            "specialty": "dermatology",
            "languages": ["english", "tamil"],
            "consultation_fee": 50000,
            "experience_years": 8,
            "city": "Chennai",
            "bio": "Skin, hair and nails.",
        },
    ),
    DemoAccount(
        "dr.khan@amrutam.example",
        "Dr. Sana Khan",
        Role.doctor,
        {
            "specialty": "general medicine",
            "languages": ["english", "hindi", "urdu"],
            "consultation_fee": 30000,
            "experience_years": 5,
            "city": "Delhi",
            "bio": "Family medicine and follow-ups.",
        },
    ),
)
DEMO_TIMEZONE = "Asia/Kolkata"
DEMO_DAYS = 14


async def seed_demo(settings: Settings) -> list[DemoAccount]:
    """Create what is missing of the demo data; a second run changes nothing."""
    db, redis = Database(create_engine(settings, "amrutam-cli")), create_redis(settings)
    cache = Cache(redis)
    try:
        accounts = Accounts(db, settings)
        doctors = DoctorDirectory(db, cache)
        availability = Availability(db, cache)
        async with db.session() as session:
            existing = {u.email: u.id for u in (await session.exec(select(User))).all()}
        for account in DEMO_ACCOUNTS:
            if account.email not in existing:
                user = await accounts.create_user(
                    email=account.email,
                    password=DEMO_PASSWORD,
                    full_name=account.full_name,
                    role=account.role,
                )
                existing[account.email] = user.id
        today = utcnow().date()
        for account in DEMO_ACCOUNTS:
            if account.role is Role.doctor:
                await _doctor(doctors, availability, existing[account.email], account, today)
    finally:
        await db.dispose()
        await redis.aclose()
    return list(DEMO_ACCOUNTS)


async def _doctor(
    doctors: DoctorDirectory,
    availability: Availability,
    user_id: uuid.UUID,
    account: DemoAccount,
    today: date,
) -> None:
    if await doctors.timezone_of(user_id) is None:
        await doctors.upsert_profile(
            SYSTEM,
            user_id,
            ProfileIn.model_validate({**account.profile, "timezone": DEMO_TIMEZONE}),
        )
    if not await availability.has_future_slots(user_id):
        rule = WeeklyRule(
            from_date=today + timedelta(days=1),
            to_date=today + timedelta(days=DEMO_DAYS),
            weekdays=[0, 1, 2, 3, 4, 5],
            start_time=time(9, 0),
            end_time=time(13, 0),
            slot_minutes=30,
            timezone=DEMO_TIMEZONE,
        )
        await availability.publish(SYSTEM, rule, doctor_id=user_id)
