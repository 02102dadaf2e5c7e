"""Transactional outbox, notifications and the dead-letter store.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("outbox", "notifications", "dead_letters")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE outbox (
            id uuid PRIMARY KEY,
            event_type varchar(64) NOT NULL,
            aggregate_id uuid NOT NULL,
            payload jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            published_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL"
    )
    # One row per message to one person: the unique key makes every producer
    # (event handler, reminder scan) idempotent, whatever is retried or restarted.
    op.execute(
        """
        CREATE TABLE notifications (
            id uuid PRIMARY KEY,
            source_id uuid NOT NULL,
            kind varchar(32) NOT NULL,
            recipient_id uuid NOT NULL REFERENCES users (id),
            appointment_id uuid,
            status varchar(16) NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed')),
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz,
            UNIQUE (source_id, kind, recipient_id)
        )
        """
    )
    op.execute("CREATE INDEX ix_notifications_recipient ON notifications (recipient_id)")
    op.execute(
        """
        CREATE TABLE dead_letters (
            id uuid PRIMARY KEY,
            task_name varchar(200) NOT NULL,
            queue varchar(64) NOT NULL DEFAULT 'default',
            args jsonb NOT NULL DEFAULT '[]',
            error text NOT NULL,
            failed_at timestamptz NOT NULL DEFAULT now(),
            requeued_at timestamptz
        )
        """
    )
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} OWNER TO amrutam_owner")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO amrutam_app")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE {table}")
