"""Demo data for the local stack: an admin, a patient, and doctors with open slots."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta

from sqlmodel import select

from amrutam.audit.log import SYSTEM
from amrutam.auth.models import Role, User
from amrutam.auth.service import AuthService
from amrutam.doctors.schemas import ProfileIn
from amrutam.doctors.service import DoctorDirectory
from amrutam.infra.db import Database
from amrutam.scheduling.rules import expand_weekly
from amrutam.scheduling.service import Scheduling
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


async def seed_demo(
    db: Database, auth: AuthService, doctors: DoctorDirectory, scheduling: Scheduling
) -> list[DemoAccount]:
    """Create what is missing of the demo data; a second run changes nothing."""
    async with db.transaction() as session:
        existing = {u.email: u for u in (await session.exec(select(User))).all()}
        users = {}
        for account in DEMO_ACCOUNTS:
            users[account.email] = existing.get(account.email) or await auth.create_user(
                session,
                email=account.email,
                password=DEMO_PASSWORD,
                full_name=account.full_name,
                role=account.role,
            )
    today = utcnow().date()
    for account in DEMO_ACCOUNTS:
        if account.role is not Role.doctor:
            continue
        user_id = users[account.email].id
        if await doctors.timezone_of(user_id) is None:
            await doctors.upsert_profile(
                SYSTEM,
                user_id,
                ProfileIn.model_validate({**account.profile, "timezone": DEMO_TIMEZONE}),
            )
        if not await scheduling.has_future_slots(user_id):
            times = expand_weekly(
                today + timedelta(days=1),
                today + timedelta(days=DEMO_DAYS),
                {0, 1, 2, 3, 4, 5},
                time(9, 0),
                time(13, 0),
                30,
                DEMO_TIMEZONE,
            )
            await scheduling.create_slots(SYSTEM, user_id, list(times))
    return list(DEMO_ACCOUNTS)
