"""The waitlist: patients in line for a doctor's date, offered a slot when one opens.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE waitlist_entries (
            id uuid PRIMARY KEY,
            doctor_id uuid NOT NULL REFERENCES doctors (user_id) ON DELETE CASCADE,
            patient_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            day date NOT NULL,
            from_time time,
            to_time time,
            status varchar(16) NOT NULL DEFAULT 'waiting'
                CHECK (status IN ('waiting', 'offered', 'booked', 'expired', 'cancelled')),
            hold_id uuid REFERENCES slot_holds (id) ON DELETE SET NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_waitlist_window CHECK (from_time < to_time)
        )
        """
    )
    # In line once per doctor and date; the line is served oldest first.
    op.execute(
        "CREATE UNIQUE INDEX uq_waitlist_in_line ON waitlist_entries (patient_id, doctor_id, day) "
        "WHERE status IN ('waiting', 'offered')"
    )
    op.execute(
        "CREATE INDEX ix_waitlist_line ON waitlist_entries (doctor_id, day, created_at) "
        "WHERE status = 'waiting'"
    )
    op.execute("CREATE INDEX ix_waitlist_hold ON waitlist_entries (hold_id)")
    op.execute("ALTER TABLE waitlist_entries OWNER TO amrutam_owner")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON waitlist_entries TO amrutam_app")


def downgrade() -> None:
    op.execute("DROP TABLE waitlist_entries")
