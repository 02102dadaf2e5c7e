"""book_slot() counts the patient's holds in force with their bookings (G1, G2).

Holds count toward the booking caps (10 upcoming, 3 with one doctor): without it a
patient could hold slots beyond the caps, slots that everyone else was kept from and
that their holder could never book. The hold on the very slot being booked becomes the
booking and is not counted twice.

Only the count changes, so the function is rewritten from its own definition in the
database, and the migration refuses to run on a book_slot it does not recognise.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SIGNATURE = "book_slot(uuid, uuid, boolean, uuid, text, text, integer, integer, audit_logs, uuid)"
BOOKINGS = """FROM appointments a
            WHERE a.patient_id = p_patient AND a.status = 'booked' AND a.starts_at > now();"""
BOOKINGS_AND_HOLDS = """FROM (
                SELECT b.doctor_id FROM appointments b
                WHERE b.patient_id = p_patient AND b.status = 'booked' AND b.starts_at > now()
                UNION ALL
                SELECT h.doctor_id FROM slot_holds h
                WHERE h.patient_id = p_patient AND h.ended_at IS NULL
                  AND h.expires_at > now() AND h.slot_id <> p_slot
            ) a;"""


def _rewrite(old: str, new: str) -> None:
    op.execute(
        f"""
        DO $rewrite$
        DECLARE
            definition text := pg_get_functiondef('{SIGNATURE}'::regprocedure);
        BEGIN
            IF position($old${old}$old$ IN definition) = 0 THEN
                RAISE EXCEPTION 'book_slot is not the function this migration knows';
            END IF;
            EXECUTE replace(definition, $old${old}$old$, $new${new}$new$);
        END
        $rewrite$
        """
    )


def upgrade() -> None:
    _rewrite(BOOKINGS, BOOKINGS_AND_HOLDS)


def downgrade() -> None:
    _rewrite(BOOKINGS_AND_HOLDS, BOOKINGS)
