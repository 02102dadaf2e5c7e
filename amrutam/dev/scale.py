"""Data at scale for load runs: doctors, admins, patients, slots and audit rows, by COPY.

Idempotent: every row has a deterministic email or id suffix, so a second run adds only
what is missing. Every seeded account has the password ``SCALE_PASSWORD`` (one Argon2id
hash shared by all, computed once). Doctors and admins have a TOTP second factor whose
secret derives from their email (``totp_secret``), so that the load generator can log
them in with codes as their authenticator apps would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from amrutam.audit.log import COLUMNS, Entry, canonical_detail
from amrutam.auth.mfa import SecretBox

SCALE_PASSWORD = "amrutam-load-test-1"
SCALE_ADMINS = 20
# Test data only: what makes the seeded accounts' TOTP secrets computable.
_TOTP_SEED = b"amrutam-scale-totp-secrets"
SPECIALTIES = [
    "cardiology",
    "dermatology",
    "general medicine",
    "pediatrics",
    "orthopedics",
    "gynecology",
    "psychiatry",
    "ent",
    "ophthalmology",
    "neurology",
    "ayurveda",
    "endocrinology",
]
CITIES = [
    "Pune",
    "Mumbai",
    "Delhi",
    "Bengaluru",
    "Chennai",
    "Hyderabad",
    "Kolkata",
    "Jaipur",
    "Ahmedabad",
    "Lucknow",
]
LANGUAGES = ["english", "hindi", "marathi", "tamil", "telugu", "bengali", "kannada", "urdu"]
_NS = uuid.UUID("3f6c0a52-8a0e-4b7e-9d0c-7e6f1b2a9c41")
CHUNK = 20_000

Progress = Callable[[str, int], None]


def doctor_email(i: int) -> str:
    return f"scale-doctor-{i}@amrutam.example"


def patient_email(i: int) -> str:
    return f"scale-patient-{i}@amrutam.example"


def admin_email(i: int) -> str:
    return f"scale-admin-{i}@amrutam.example"


def totp_secret(email: str) -> str:
    """The TOTP secret of a seeded doctor or admin."""
    digest = hmac.new(_TOTP_SEED, email.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:20]).decode()


DOCTOR_COLUMNS = (
    "user_id",
    "display_name",
    "specialty",
    "languages",
    "consultation_fee",
    "experience_years",
    "rating",
    "city",
    "timezone",
)


async def copy_doctors(conn: asyncpg.Connection, records: Sequence[tuple[object, ...]]) -> None:
    """Doctor profiles by COPY, each record in ``DOCTOR_COLUMNS`` order."""
    await conn.copy_records_to_table("doctors", records=records, columns=list(DOCTOR_COLUMNS))


def _user_id(kind: str, i: int) -> uuid.UUID:
    return uuid.uuid5(_NS, f"{kind}:{i}")


async def _existing(conn: asyncpg.Connection, pattern: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM users WHERE email LIKE $1", pattern))


async def seed_scale(
    conn: asyncpg.Connection,
    password_hash: str,
    box: SecretBox,
    doctors: int,
    patients: int,
    days: int,
    slots_per_day: int = 8,
    audit_rows: int = 0,
    progress: Progress | None = None,
) -> dict[str, int]:
    report = progress or (lambda _label, _n: None)
    rng = random.Random(11)
    added = {"doctors": 0, "admins": 0, "patients": 0, "slots": 0, "audit_rows": 0}

    have = await _existing(conn, "scale-doctor-%")
    for start in range(have, doctors, CHUNK):
        batch = range(start, min(doctors, start + CHUNK))
        await conn.copy_records_to_table(
            "users",
            records=[
                (_user_id("d", i), doctor_email(i), password_hash, f"Dr Scale {i}", "doctor")
                for i in batch
            ],
            columns=["id", "email", "password_hash", "full_name", "role"],
        )
        await copy_doctors(
            conn,
            [
                (
                    _user_id("d", i),
                    f"Dr Scale {i}",
                    SPECIALTIES[i % len(SPECIALTIES)],
                    rng.sample(LANGUAGES, 2),
                    rng.randrange(20_000, 150_000, 500),
                    rng.randrange(0, 35),
                    round(rng.uniform(3.0, 5.0), 2),
                    CITIES[i % len(CITIES)],
                    "Asia/Kolkata",
                )
                for i in batch
            ],
        )
        added["doctors"] += len(batch)
        report("doctors", len(batch))

    have = await _existing(conn, "scale-admin-%")
    if have < SCALE_ADMINS:
        await conn.copy_records_to_table(
            "users",
            records=[
                (_user_id("a", i), admin_email(i), password_hash, f"Admin Scale {i}", "admin")
                for i in range(have, SCALE_ADMINS)
            ],
            columns=["id", "email", "password_hash", "full_name", "role"],
        )
        added["admins"] = SCALE_ADMINS - have
    await _enrol_second_factors(conn, box, doctors)

    have = await _existing(conn, "scale-patient-%")
    for start in range(have, patients, CHUNK):
        batch = range(start, min(patients, start + CHUNK))
        await conn.copy_records_to_table(
            "users",
            records=[
                (_user_id("p", i), patient_email(i), password_hash, f"Patient {i}", "patient")
                for i in batch
            ],
            columns=["id", "email", "password_hash", "full_name", "role"],
        )
        added["patients"] += len(batch)
        report("patients", len(batch))

    # Slots: from tomorrow for `days` days, `slots_per_day` half-hour slots from 09:00 IST.
    first_day = datetime.now(UTC).replace(hour=3, minute=30, second=0, microsecond=0)
    first_day += timedelta(days=1)
    seeded = await conn.fetch(
        "SELECT d.user_id FROM doctors d JOIN users u ON u.id = d.user_id "
        "WHERE u.email LIKE 'scale-doctor-%' AND NOT EXISTS (SELECT 1 FROM availability_slots s "
        "WHERE s.doctor_id = d.user_id AND s.starts_at > now())"
    )
    rows: list[tuple[uuid.UUID, uuid.UUID, datetime, datetime]] = []
    for record in seeded:
        for day in range(days):
            for k in range(slots_per_day):
                begins = first_day + timedelta(days=day, minutes=30 * k)
                rows.append(
                    (uuid.uuid4(), record["user_id"], begins, begins + timedelta(minutes=30))
                )
        if len(rows) >= CHUNK:
            await _copy_slots(conn, rows)
            added["slots"] += len(rows)
            report("slots", len(rows))
            rows = []
    if rows:
        await _copy_slots(conn, rows)
        added["slots"] += len(rows)
        report("slots", len(rows))

    have_audit = int(
        await conn.fetchval("SELECT count(*) FROM audit_logs WHERE action = 'seed.activity'")
    )
    todo = max(0, audit_rows - have_audit)
    now = datetime.now(UTC)
    patient_ids = [_user_id("p", i) for i in range(max(patients, 1))]
    while todo > 0:
        size = min(CHUNK * 5, todo)
        await conn.copy_records_to_table(
            "audit_logs",
            records=audit_records(
                size,
                now - timedelta(days=365),
                365 * 24 * 3600.0,
                patient_ids,
                rng,
                ["seed.activity"],
            ),
            columns=AUDIT_COLUMNS,
        )
        todo -= size
        added["audit_rows"] += size
        report("audit rows", size)
    await conn.execute("ANALYZE")
    return added


AUDIT_COLUMNS = list(COLUMNS)


async def _enrol_second_factors(conn: asyncpg.Connection, box: SecretBox, doctors: int) -> None:
    """A confirmed TOTP factor for every seeded doctor and admin that has none."""
    accounts = {_user_id("d", i): doctor_email(i) for i in range(doctors)}
    accounts |= {_user_id("a", i): admin_email(i) for i in range(SCALE_ADMINS)}
    enrolled = {
        r["user_id"]
        for r in await conn.fetch(
            "SELECT user_id FROM mfa_factors WHERE user_id = ANY($1::uuid[])", list(accounts)
        )
    }
    await conn.executemany(
        "INSERT INTO mfa_factors (user_id, secret_sealed, enabled_at) VALUES ($1, $2, now()) "
        "ON CONFLICT (user_id) DO NOTHING",
        [
            (uid, box.seal(totp_secret(email)))
            for uid, email in accounts.items()
            if uid not in enrolled
        ],
    )


def audit_records(
    count: int,
    start: datetime,
    span_s: float,
    actors: Sequence[uuid.UUID],
    rng: random.Random,
    actions: Sequence[str],
) -> list[tuple[object, ...]]:
    """Audit rows spread over [start, start + span), hashed as the application does."""
    rows: list[tuple[object, ...]] = []
    for _ in range(count):
        row_id, when = uuid.uuid4(), start + timedelta(seconds=rng.random() * span_s)
        actor, action = rng.choice(actors), rng.choice(actions)
        entity, detail = str(uuid.uuid4()), canonical_detail({"n": rng.randrange(1000)})
        entry = Entry(
            id=row_id,
            occurred_at=when,
            actor_id=actor,
            actor_role="patient",
            action=action,
            entity_type="appointment",
            entity_id=entity,
            request_id=None,
            ip="10.0.0.1",
            detail=detail,
        )
        rows.append(entry.row())
    return rows


async def _copy_slots(conn: asyncpg.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    await conn.copy_records_to_table(
        "availability_slots", records=rows, columns=["id", "doctor_id", "starts_at", "ends_at"]
    )
