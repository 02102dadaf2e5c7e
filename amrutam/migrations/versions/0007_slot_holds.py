"""Holds: a slot kept for one patient for a few minutes while they decide.

A hold is in force while it has not ended and ``expires_at`` is in the future: no task
has to run for an expired hold to stop counting. Besides the checks made under the slot
row's lock, the database itself refuses what must never be:
- two holds in force on one slot (the partial unique index, once expired holds are ended,
  which every new hold does under the slot's lock first);
- an appointment on a slot another patient holds, and a hold on a slot that is not open
  (triggers, raising exclusion_violation like the booking constraints).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE slot_holds (
            id uuid PRIMARY KEY,
            slot_id uuid NOT NULL REFERENCES availability_slots (id) ON DELETE CASCADE,
            doctor_id uuid NOT NULL,
            patient_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            ended_at timestamptz,
            ended_as varchar(16)
                CHECK (ended_as IN ('released', 'booked', 'expired', 'replaced')),
            CONSTRAINT ck_slot_holds_ended CHECK ((ended_at IS NULL) = (ended_as IS NULL))
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_slot_holds_one_per_slot ON slot_holds (slot_id) "
        "WHERE ended_at IS NULL"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_slot_holds_one_per_doctor ON slot_holds (patient_id, doctor_id) "
        "WHERE ended_at IS NULL"
    )
    op.execute(
        "CREATE INDEX ix_slot_holds_unended_expiry ON slot_holds (expires_at) "
        "WHERE ended_at IS NULL"
    )
    op.execute(
        """
        CREATE FUNCTION appointments_respect_holds() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM slot_holds h
                       WHERE h.slot_id = NEW.slot_id AND h.ended_at IS NULL
                         AND h.expires_at > now() AND h.patient_id <> NEW.patient_id) THEN
                RAISE EXCEPTION 'slot % is held by another patient', NEW.slot_id
                    USING ERRCODE = 'exclusion_violation',
                          CONSTRAINT = 'ex_appointments_held_slot';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER tg_appointments_respect_holds BEFORE INSERT OR UPDATE OF slot_id "
        "ON appointments FOR EACH ROW EXECUTE FUNCTION appointments_respect_holds()"
    )
    op.execute(
        """
        CREATE FUNCTION slot_holds_on_open_slots() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (SELECT status FROM availability_slots WHERE id = NEW.slot_id) <> 'open' THEN
                RAISE EXCEPTION 'slot % is not open', NEW.slot_id
                    USING ERRCODE = 'exclusion_violation',
                          CONSTRAINT = 'ex_slot_holds_open_slot';
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER tg_slot_holds_on_open_slots BEFORE INSERT ON slot_holds "
        "FOR EACH ROW EXECUTE FUNCTION slot_holds_on_open_slots()"
    )
    op.execute("ALTER TABLE slot_holds OWNER TO amrutam_owner")
    op.execute("ALTER FUNCTION appointments_respect_holds() OWNER TO amrutam_owner")
    op.execute("ALTER FUNCTION slot_holds_on_open_slots() OWNER TO amrutam_owner")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON slot_holds TO amrutam_app")


def downgrade() -> None:
    op.execute("DROP TRIGGER tg_appointments_respect_holds ON appointments")
    op.execute("DROP TABLE slot_holds")
    op.execute("DROP FUNCTION appointments_respect_holds()")
    op.execute("DROP FUNCTION slot_holds_on_open_slots()")
