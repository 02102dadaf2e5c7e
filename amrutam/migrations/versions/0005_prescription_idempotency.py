"""Prescriptions remember their Idempotency-Key, so a retry issues one prescription even
when Redis (the usual idempotency store) is away.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE prescriptions ADD COLUMN idempotency_key varchar(255)")
    op.execute(
        "CREATE UNIQUE INDEX uq_prescriptions_doctor_idempotency "
        "ON prescriptions (doctor_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX uq_prescriptions_doctor_idempotency")
    op.execute("ALTER TABLE prescriptions DROP COLUMN idempotency_key")
