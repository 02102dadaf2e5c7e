"""Demo data for the local stack: an admin, a patient and a few doctors."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select

from amrutam.auth.models import Role, User
from amrutam.auth.service import AuthService
from amrutam.db import Database


@dataclass(frozen=True)
class DemoAccount:
    email: str
    password: str
    full_name: str
    role: Role


DEMO_PASSWORD = "amrutam-demo-123"
DEMO_ACCOUNTS = (
    DemoAccount("admin@amrutam.example", DEMO_PASSWORD, "Demo Admin", Role.admin),
    DemoAccount("patient@amrutam.example", DEMO_PASSWORD, "Asha Patient", Role.patient),
    DemoAccount("dr.rao@amrutam.example", DEMO_PASSWORD, "Dr. Meera Rao", Role.doctor),
    DemoAccount("dr.iyer@amrutam.example", DEMO_PASSWORD, "Dr. Arjun Iyer", Role.doctor),
    DemoAccount("dr.khan@amrutam.example", DEMO_PASSWORD, "Dr. Sana Khan", Role.doctor),
)


async def seed_demo(db: Database, auth: AuthService) -> list[DemoAccount]:
    """Create the demo accounts that do not exist yet; returns every demo account."""
    async with db.transaction() as session:
        existing = set((await session.exec(select(User.email))).all())
        for account in DEMO_ACCOUNTS:
            if account.email not in existing:
                await auth.create_user(
                    session,
                    email=account.email,
                    password=account.password,
                    full_name=account.full_name,
                    role=account.role,
                )
    return list(DEMO_ACCOUNTS)
