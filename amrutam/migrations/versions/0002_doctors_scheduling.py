"""Doctors, availability slots and appointments, with the no-double-booking rules.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        """
        CREATE TABLE doctors (
            user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            display_name varchar(200) NOT NULL,
            specialty varchar(80) NOT NULL,
            languages text[] NOT NULL DEFAULT '{}',
            consultation_fee integer NOT NULL CHECK (consultation_fee >= 0),
            currency char(3) NOT NULL DEFAULT 'INR',
            experience_years integer NOT NULL DEFAULT 0 CHECK (experience_years BETWEEN 0 AND 80),
            rating numeric(3, 2) NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5),
            rating_count integer NOT NULL DEFAULT 0,
            city varchar(120),
            timezone varchar(64) NOT NULL,
            bio text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # Every search filter or sort has an index that serves it, with user_id as the
    # tie-breaker the keyset cursor pages on (scanned backwards for descending sorts).
    for name, columns in {
        "ix_doctors_specialty_rating": "specialty, rating, user_id",
        "ix_doctors_specialty_fee": "specialty, consultation_fee, user_id",
        "ix_doctors_specialty_experience": "specialty, experience_years, user_id",
        "ix_doctors_city_specialty": "lower(city), specialty, rating, user_id",
        "ix_doctors_rating": "rating, user_id",
        "ix_doctors_fee": "consultation_fee, user_id",
        "ix_doctors_experience": "experience_years, user_id",
    }.items():
        op.execute(f"CREATE INDEX {name} ON doctors ({columns})")
    op.execute("CREATE INDEX ix_doctors_languages ON doctors USING gin (languages)")
    op.execute(
        "CREATE INDEX ix_doctors_search_text ON doctors USING gin "
        "((lower(display_name || ' ' || specialty)) gin_trgm_ops)"
    )

    op.execute(
        """
        CREATE TABLE availability_slots (
            id uuid PRIMARY KEY,
            doctor_id uuid NOT NULL REFERENCES doctors (user_id) ON DELETE CASCADE,
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL,
            status varchar(16) NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'booked', 'blocked')),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_slots_positive CHECK (ends_at > starts_at),
            CONSTRAINT ex_slots_no_overlap EXCLUDE USING gist (
                doctor_id WITH =, tstzrange(starts_at, ends_at) WITH &&
            )
        )
        """
    )
    op.execute("CREATE INDEX ix_slots_doctor_starts ON availability_slots (doctor_id, starts_at)")
    op.execute(
        "CREATE INDEX ix_slots_open_doctor_starts ON availability_slots (doctor_id, starts_at) "
        "WHERE status = 'open'"
    )

    op.execute(
        """
        CREATE TABLE appointments (
            id uuid PRIMARY KEY,
            -- NULL once an open slot that a cancelled appointment held is deleted;
            -- the appointment keeps its own copy of the times.
            slot_id uuid REFERENCES availability_slots (id) ON DELETE SET NULL,
            doctor_id uuid NOT NULL REFERENCES doctors (user_id),
            patient_id uuid NOT NULL REFERENCES users (id),
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL,
            status varchar(16) NOT NULL DEFAULT 'booked'
                CHECK (status IN ('booked', 'cancelled', 'completed', 'no_show')),
            reason varchar(1000),
            idempotency_key varchar(255),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ex_appointments_patient_no_overlap EXCLUDE USING gist (
                patient_id WITH =, tstzrange(starts_at, ends_at) WITH &&
            ) WHERE (status = 'booked')
        )
        """
    )
    # The last word on double booking: one booked appointment per slot, in the database.
    op.execute(
        "CREATE UNIQUE INDEX uq_appointments_booked_slot ON appointments (slot_id) "
        "WHERE status = 'booked'"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_appointments_patient_idempotency ON appointments "
        "(patient_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ix_appointments_patient_starts ON appointments (patient_id, starts_at, id)"
    )
    op.execute(
        "CREATE INDEX ix_appointments_doctor_starts ON appointments (doctor_id, starts_at, id)"
    )
    op.execute("CREATE INDEX ix_appointments_slot ON appointments (slot_id)")


def downgrade() -> None:
    op.execute("DROP TABLE appointments")
    op.execute("DROP TABLE availability_slots")
    op.execute("DROP TABLE doctors")
