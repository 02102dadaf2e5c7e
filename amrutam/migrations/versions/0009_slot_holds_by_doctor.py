"""Holds in force by doctor: when a doctor's cached slot listing stops being true.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_slot_holds_unended_by_doctor ON slot_holds (doctor_id, expires_at) "
        "WHERE ended_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_slot_holds_unended_by_doctor")
